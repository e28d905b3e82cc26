"""Distillation methods (a loss plus a registry entry each) and the one training loop."""
