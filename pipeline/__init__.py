"""Two-stage feature-cache pipeline for distilling speech foundation models."""
