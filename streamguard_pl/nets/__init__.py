"""Plain nn.Module networks, kept apart from the LightningModules that train them so fusion can reuse them."""
from .graph_encoder import GraphEncoder
from .text_encoder import TextEncoder
from .fusion_head import FusionHead

__all__ = ["GraphEncoder", "TextEncoder", "FusionHead"]
