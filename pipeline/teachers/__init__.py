"""Teachers behind one interface: the Upstream contract, CTranslate2 Whisper, Hugging Face encoders."""

from .base import Upstream, align_lengths, weights_sha256
from .registry import load_upstream, pick_device, relative_depth_layers

__all__ = [
    "Upstream", "align_lengths", "weights_sha256", "load_upstream", "pick_device", "relative_depth_layers",
]
