"""Training-safety callbacks: collapse detection, cached LR finder, run metadata, gradient statistics."""
from .collapse import CollapseDetection
from .grad_stats import GradientStats
from .lr_cache import CachedLRFinder
from .metadata import MetadataExport

__all__ = ["CachedLRFinder", "CollapseDetection", "GradientStats", "MetadataExport"]
