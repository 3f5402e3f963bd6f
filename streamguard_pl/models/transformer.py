"""TransformerClassifier: any Hugging Face encoder over a function's tokens."""
from __future__ import annotations

from typing import Any, Literal

import torch

from ..nets.fusion_head import ClassifierHead
from ..nets.text_encoder import Pooling, TextEncoder, build_hf_encoder
from .base import VulnerabilityClassifier
from .compat import check_or_record, check_pretrained_tokenizer, tokenizer_sha256


def check_tokenizer(hparams: Any, dm: Any, where: str) -> bool:
    """The pretrained-vs-own-BPE check before the first record, then the fingerprint; True when recorded now."""
    if hparams.get("tokenizer_sha256") is None:
        check_pretrained_tokenizer(hparams.get("model_name_or_path"), dm, where)
    return check_or_record(hparams, "tokenizer_sha256", tokenizer_sha256(dm), where)


class TransformerClassifier(VulnerabilityClassifier):
    """Pretrained (`model_name_or_path`: hub id or local folder) or from-scratch (`config`) encoder.

    A from-scratch encoder is sized by the tokenizer the datamodule trains, so it is built in
    `setup` once that tokenizer exists; the vocabulary size is then saved in the hyperparameters
    and a checkpoint rebuilds the same network without the datamodule.

    `tokenizer_sha256` is recorded at the first setup; a later one (test, predict, fusion) with
    another tokenizer is an error, since the embedding would read its ids as other tokens.
    """

    model_type = "transformer"
    feature_keys = ("tokenizer_sha256",)

    def __init__(
        self,
        model_name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        pooling: Pooling = "cls",
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        tokenizer_sha256: str | None = None,
        dropout: float = 0.1,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        scheduler: Literal["linear", "cosine", "constant", "none"] = "linear",
        loss: Literal["ce", "focal"] = "ce",
        class_weights: list[float] | None = [1.0, 3.0],
        label_smoothing: float = 0.05,
        focal_gamma: float = 1.5,
        threshold: float = 0.5,
        tune_threshold: bool = False,
    ) -> None:
        super().__init__(
            lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, scheduler=scheduler, loss=loss,
            class_weights=class_weights, label_smoothing=label_smoothing, focal_gamma=focal_gamma, threshold=threshold,
            tune_threshold=tune_threshold,
        )
        self.encoder: TextEncoder | None = None
        self.head: ClassifierHead | None = None
        if model_name_or_path or vocab_size is not None:
            self._build(vocab_size, pad_token_id)

    def _build(self, vocab_size: int | None, pad_token_id: int | None) -> None:
        hp = self.hparams
        model = build_hf_encoder(hp.model_name_or_path, hp.config, vocab_size, pad_token_id, hp.trust_remote_code)
        self.encoder = TextEncoder(model, hp.pooling, hp.gradient_checkpointing)
        self.head = ClassifierHead(self.encoder.out_dim, self.encoder.out_dim, hp.dropout)
        self.hparams.vocab_size = int(model.config.vocab_size)
        self.hparams.pad_token_id = pad_token_id

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        tokenizer = getattr(dm, "tokenizer", None)
        if self.encoder is None:
            if tokenizer is None:
                raise RuntimeError(
                    "TransformerClassifier without model_name_or_path needs vocab_size, or a TokenDataModule "
                    "whose tokenizer sizes the from-scratch encoder"
                )
            self._build(len(tokenizer), tokenizer.pad_token_id)
        elif tokenizer is not None and len(tokenizer) > self.hparams.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the encoder's embedding has {self.hparams.vocab_size}: "
                "set data.tokenizer_name_or_path to the model's own tokenizer"
            )
        check_tokenizer(self.hparams, dm, "model")

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.encoder is not None, "encoder not built yet (call setup or pass vocab_size)"
        return self.encoder(batch["input_ids"], batch["attention_mask"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encode(batch))

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"name": "transformer", "params": list(self.encoder.parameters()), "lr_mult": 1.0},
            {"name": "head", "params": list(self.head.parameters()), "lr_mult": 1.0},
        ]
