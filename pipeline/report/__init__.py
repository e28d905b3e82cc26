"""Paper-style tables and figures regenerated from the downstream score JSONs alone."""
