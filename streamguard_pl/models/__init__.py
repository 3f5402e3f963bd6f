"""LightningModules: one base task and one subclass per detector."""
from .base import VulnerabilityClassifier
from .fusion import FusionClassifier
from .gnn import GNNClassifier
from .transformer import TransformerClassifier

__all__ = ["VulnerabilityClassifier", "TransformerClassifier", "GNNClassifier", "FusionClassifier"]
