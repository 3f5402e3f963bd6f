"""Training-safety callbacks: collapse detection, cached LR finder, run metadata, gradient statistics, EMA
weights, plus the TensorBoard views Lightning does not log by itself."""
from .collapse import CollapseDetection
from .ema import EMAWeights
from .grad_stats import GradientStats
from .lr_cache import CachedLRFinder
from .metadata import MetadataExport
from .tensorboard_extras import TensorBoardExtras

__all__ = ["CachedLRFinder", "CollapseDetection", "EMAWeights", "GradientStats", "MetadataExport", "TensorBoardExtras"]
