"""SUPERB-style downstream evaluation of frozen upstreams from cached features: tasks, heads, metrics."""
