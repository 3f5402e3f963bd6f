"""Hugging Face encoder (hub id, local folder, or from-scratch config) + pooling to one vector."""
from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

Pooling = Literal["cls", "mean"]

#: A small RoBERTa that trains on a 2-core CPU; `vocab_size` and `pad_token_id` come from the tokenizer.
SMALL_ROBERTA: dict[str, Any] = {
    "model_type": "roberta",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 514,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}


def build_hf_encoder(
    model_name_or_path: str | None,
    config: dict[str, Any] | None,
    vocab_size: int | None,
    pad_token_id: int | None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Pretrained weights when a name/path is given (the real `from_pretrained` path), else random init.

    A from-scratch `config` next to a name/path is not used (the pretrained config decides), and a
    warning says so: configs that size a from-scratch encoder stay usable with a pretrained one.
    """
    if model_name_or_path:
        if config:
            rank_zero_warn(f"model.config ({', '.join(sorted(config))}) is not used: the encoder and its config come "
                           f"from model_name_or_path={model_name_or_path!r}")
        # from_pretrained returns the model in eval mode and Lightning keeps module modes as found,
        # so without .train() a pretrained encoder would fine-tune with its dropout switched off.
        try:
            model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code, add_pooling_layer=False)
        except TypeError:  # encoders without a pooler do not take add_pooling_layer
            model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        return model.train()
    cfg = dict(config or SMALL_ROBERTA)
    model_type = cfg.pop("model_type", "roberta")
    if vocab_size is not None:
        cfg["vocab_size"] = vocab_size
    if pad_token_id is not None:
        cfg["pad_token_id"] = pad_token_id
    hf_config = AutoConfig.for_model(model_type, **cfg)
    try:
        return AutoModel.from_config(hf_config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(hf_config)


class TextEncoder(nn.Module):
    """Token ids -> pooled vector (`out_dim`), CLS or attention-masked mean pooling."""

    def __init__(self, model: PreTrainedModel, pooling: Pooling = "cls", gradient_checkpointing: bool = False) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.model = model
        self.pooling = pooling
        self.out_dim = int(model.config.hidden_size)
        if gradient_checkpointing:
            # transformers 5 renamed it (the old name warns, and goes in v6); 4.x has only the old one.
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
