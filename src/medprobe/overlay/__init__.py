"""Text overlays: words drawn on images, to measure how much they move a model's features."""

from medprobe.overlay.render import TextOverlay
from medprobe.overlay.spec import OverlaySpec

__all__ = ["OverlaySpec", "TextOverlay"]
