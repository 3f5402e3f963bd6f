"""Training-safety callbacks: collapse detection, cached LR finder, run metadata, gradient statistics."""
from .collapse import CollapseDetection

__all__ = ["CollapseDetection"]
