"""FusionClassifier: transformer + GNN encoders and a fusion head, with discriminative learning rates."""
from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from ..errors import InputNotFoundError
from ..nets.fusion_head import FusionHead, FusionKind
from .base import VulnerabilityClassifier
from .gnn import GNNClassifier, check_graph_features, check_graph_settings
from .transformer import TransformerClassifier, check_tokenizer


def load_classifier_checkpoint(path: str | Path, cls: type[VulnerabilityClassifier]) -> VulnerabilityClassifier:
    """Rebuild a trained classifier from a Lightning checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{cls.__name__} checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    try:
        model = _build_part(cls, hparams)
    except TypeError as exc:  # another classifier's hyperparameters, e.g. a GNN checkpoint given as transformer_ckpt
        raise ValueError(f"{path}: not a {cls.__name__} checkpoint ({exc})") from exc
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    wanted = [k for k in missing if k.startswith(("encoder.", "head."))]
    if wanted or unexpected:
        raise ValueError(f"{path}: not a {cls.__name__} checkpoint (missing {wanted[:3]}, unexpected {unexpected[:3]})")
    return model


class FusionClassifier(VulnerabilityClassifier):
    """Both encoders, loaded from trained runs (`*_ckpt`) or fresh (`transformer` / `gnn` kwargs).

    Parameter groups get `lr = lr * lr_mult_<component>` (x0.1 transformer, x0.5 GNN, x1.0 head by
    default); the schedule acts on `lr`, so the ratios hold in training. Lightning's LR finder sweeps
    every group at one rate (its sweep sets all groups alike): its suggestion is the head's rate, the
    parts' follow by the multipliers once the sweep ends.
    """

    model_type = "fusion"
    part_hparams = {"text": "transformer", "graph": "gnn"}

    def __init__(
        self,
        transformer_ckpt: str | None = None,
        gnn_ckpt: str | None = None,
        transformer: dict[str, Any] | None = None,
        gnn: dict[str, Any] | None = None,
        fusion: FusionKind = "gated",
        fusion_hidden: int = 256,
        dropout: float = 0.1,
        freeze_transformer: bool = False,
        freeze_gnn: bool = False,
        unfreeze_after_epochs: int | None = None,
        lr_mult_transformer: float = 0.1,
        lr_mult_gnn: float = 0.5,
        lr_mult_head: float = 1.0,
        lr: float = 1e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        scheduler: Literal["linear", "cosine", "constant", "none"] = "linear",
        loss: Literal["ce", "focal"] = "ce",
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 1.5,
        threshold: float = 0.5,
        tune_threshold: bool = False,
    ) -> None:
        super().__init__(
            lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, scheduler=scheduler, loss=loss,
            class_weights=class_weights, label_smoothing=label_smoothing, focal_gamma=focal_gamma, threshold=threshold,
            tune_threshold=tune_threshold,
        )
        # A fusion checkpoint stores both encoders' hyperparameters, so reloading it never needs the
        # original part checkpoints to still exist.
        self.text: TransformerClassifier | None = None
        self.graph: GNNClassifier
        t_hp = transformer or {}
        if transformer_ckpt and not t_hp.get("_resolved"):
            self.text = load_classifier_checkpoint(transformer_ckpt, TransformerClassifier)  # type: ignore[assignment]
            _warn_overridden("transformer", t_hp, self.text.hparams, transformer_ckpt)
        elif t_hp.get("model_name_or_path") or t_hp.get("vocab_size") is not None:
            self.text = _build_part(TransformerClassifier, t_hp)  # type: ignore[assignment]
        g_hp = gnn or {}
        if gnn_ckpt and not g_hp.get("_resolved"):
            self.graph = load_classifier_checkpoint(gnn_ckpt, GNNClassifier)  # type: ignore[assignment]
            _warn_overridden("gnn", g_hp, self.graph.hparams, gnn_ckpt)
        else:
            self.graph = _build_part(GNNClassifier, g_hp)  # type: ignore[assignment]
        self.fusion_head: FusionHead | None = None
        if self.text is not None:
            self._finish_build()

    def _finish_build(self) -> None:
        hp = self.hparams
        assert self.text is not None and self.text.encoder is not None
        self.fusion_head = FusionHead(
            self.text.encoder.out_dim, self.graph.encoder.out_dim, hp.fusion_hidden, hp.fusion, hp.dropout,
            text_head=self.text.head if hp.fusion == "residual" else None,
        )
        # Only the encoders are fused: the part classifiers' own heads go (the residual head has
        # taken the transformer's into the fusion head, where it trains at the head's rate).
        self.text.head = None
        self.graph.head = None  # type: ignore[assignment]
        self.hparams.transformer = {**_clean(dict(self.text.hparams)), "_resolved": True}
        self.hparams.gnn = {**_clean(dict(self.graph.hparams)), "_resolved": True}
        self._apply_freeze(hp.freeze_transformer, hp.freeze_gnn)

    def _apply_freeze(self, freeze_transformer: bool, freeze_gnn: bool) -> None:
        for module, frozen in ((self.text, freeze_transformer), (self.graph, freeze_gnn)):
            for p in module.parameters():
                p.requires_grad_(not frozen)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        check_graph_settings(dm, self.graph.hparams.token_buckets, self.graph.hparams.num_edge_types, "model.gnn",
                             self.graph.hparams.get("min_token_count", 0))
        tokenizer = getattr(dm, "tokenizer", None)
        if self.text is not None and tokenizer is not None and len(tokenizer) > self.text.hparams.vocab_size:
            raise ValueError(  # else an opaque IndexError in the embedding mid-step
                f"tokenizer has {len(tokenizer)} tokens but the fused transformer's embedding has "
                f"{self.text.hparams.vocab_size}: set data.tokenizer_name_or_path to the transformer's own tokenizer"
            )
        if self.text is None:
            if tokenizer is None:
                raise RuntimeError("a fresh from-scratch transformer in FusionClassifier needs a FusionDataModule tokenizer")
            t_hp = _clean(self.hparams.transformer or {})
            t_hp.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
            self.text = _build_part(TransformerClassifier, t_hp)  # type: ignore[assignment]
            self._finish_build()
        recorded = check_tokenizer(self.text.hparams, dm, "model.transformer")
        recorded |= check_graph_features(self.graph.hparams, dm, "model.gnn")
        if recorded:  # the fusion checkpoint keeps the parts' records in its own hyperparameters
            self.hparams.transformer = {**_clean(dict(self.text.hparams)), "_resolved": True}
            self.hparams.gnn = {**_clean(dict(self.graph.hparams)), "_resolved": True}

    def on_train_epoch_start(self) -> None:
        # ">=", not "==": a run resumed after epoch n starts frozen again (__init__ froze) and must unfreeze.
        n = self.hparams.unfreeze_after_epochs
        if n is not None and self.current_epoch >= n:
            self._apply_freeze(False, False)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        assert self.text is not None and self.fusion_head is not None
        text = self.text.encode(batch["tokens"])
        graph = self.graph.encoder(batch["graph"])
        return self.fusion_head(text, graph)

    def param_groups(self) -> list[dict[str, Any]]:
        hp = self.hparams
        return [
            {"name": "transformer", "params": list(self.text.parameters()), "lr_mult": hp.lr_mult_transformer},
            {"name": "gnn", "params": list(self.graph.parameters()), "lr_mult": hp.lr_mult_gnn},
            {"name": "head", "params": list(self.fusion_head.parameters()), "lr_mult": hp.lr_mult_head},
        ]


def _build_part(cls: type[VulnerabilityClassifier], hparams: dict[str, Any]) -> VulnerabilityClassifier:
    """Build a part so it records its own hyperparameters, not the fusion model's.

    Lightning's save_hyperparameters walks up the __init__ frames (so the call is kept out of
    FusionClassifier.__init__) and LightningCLI hands the fusion config down through a context
    variable (so the part is built in a fresh, empty contextvars context).
    """
    return contextvars.Context().run(cls, **_clean(hparams))


def _warn_overridden(part: str, given: dict[str, Any], loaded: Any, ckpt: str) -> None:
    """A part checkpoint fixes the part: settings of it in the config that differ go unused, and are named."""
    differ = {k: v for k, v in _clean(given).items() if loaded.get(k) != v}
    if differ:
        rank_zero_warn(f"model.{part}: {', '.join(f'{k}={v!r}' for k, v in differ.items())} not used: the {part} comes "
                       f"from {part}_ckpt {ckpt}, where " + ", ".join(f"{k}={loaded.get(k)!r}" for k in differ))


def _clean(hparams: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


__all__ = ["FusionClassifier", "load_classifier_checkpoint"]
