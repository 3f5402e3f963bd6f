"""Training-safety callbacks: collapse detection, cached LR finder, run metadata, gradient statistics."""
from .collapse import CollapseDetection
from .lr_cache import CachedLRFinder

__all__ = ["CachedLRFinder", "CollapseDetection"]
