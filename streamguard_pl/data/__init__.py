"""Records, features (tokens, graphs) and the CodeDataModule family.

The datamodules are imported lazily so that `streamguard_pl.data.records` stays light to import.
"""
from typing import Any

__all__ = ["CodeDataModule", "TokenDataModule", "GraphDataModule", "FusionDataModule"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import datamodules

        return getattr(datamodules, name)
    raise AttributeError(name)
