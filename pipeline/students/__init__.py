"""Student architectures and their checkpoints (loadable through the upstream interface)."""
