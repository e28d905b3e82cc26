"""Audio I/O, validation, resampling and deterministic distortions."""
