"""The order of training batches: each epoch its own, a resumed run the uninterrupted run's, and a
study's seeds their own.

Lightning's `set_epoch` reaches `loader.sampler` and `loader.batch_sampler.sampler` only. Once, the
length-bucketed batch sampler kept its epoch itself (always 0), so every transformer and fusion epoch
saw the same batches; a resumed GNN replayed epoch 0's order; and the samplers were seeded with
`data.seed`, so `seed_everything` 1 and 7 trained on the same batches.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest

from _trainers import quiet_trainer
from streamguard_pl.data.datamodules import GraphDataModule, TokenDataModule
from streamguard_pl.models import GNNClassifier, TransformerClassifier

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class BatchOrder(L.Callback):
    """The record positions of every training batch, by epoch."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.epochs.setdefault(trainer.current_epoch, []).append(pl_module.batch_index(batch).tolist())


def _fit(model: L.LightningModule, dm: L.LightningDataModule, tmp_path: Path, seed: int, epochs: int,
         ckpt_path: str | None = None, **kw: Any) -> BatchOrder:
    L.seed_everything(seed)
    order = BatchOrder()
    trainer = quiet_trainer(tmp_path, max_epochs=epochs, limit_val_batches=0, callbacks=[order], **kw)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return order


def _tokens(corpus: Path, tmp_path: Path, **kw: Any) -> TokenDataModule:
    return TokenDataModule(data_dir=str(corpus), bpe_vocab_size=400, max_length=64, batch_size=16,
                           output_dir=str(tmp_path / "run"), **kw)


@pytest.mark.parametrize("balanced", [False, True])
def test_every_transformer_epoch_has_its_own_batches_and_each_seed_its_own(tiny_corpus: Path, tmp_path: Path,
                                                                         tiny_roberta: dict, balanced: bool) -> None:
    runs = {seed: _fit(TransformerClassifier(config=tiny_roberta), _tokens(tiny_corpus, tmp_path,
                                                                          balanced_sampler=balanced),
                       tmp_path, seed, epochs=3).epochs for seed in (1, 7)}
    first = runs[1]
    assert len(first) == 3 and len(first[0]) > 4
    assert first[0] != first[1] != first[2] != first[0]
    if not balanced:  # every train record once an epoch, in another order
        assert sorted(sum(first[0], [])) == sorted(sum(first[1], []))
    assert runs[7][0] != first[0]


def test_a_resumed_gnn_trains_on_the_batches_the_uninterrupted_run_had(tiny_corpus: Path, tmp_path: Path,
                                                                       tiny_gnn: dict) -> None:
    def dm() -> GraphDataModule:
        return GraphDataModule(data_dir=str(tiny_corpus), token_buckets=tiny_gnn["token_buckets"], batch_size=16,
                               balanced_sampler=True, output_dir=str(tmp_path / "run"))

    whole = _fit(GNNClassifier(**tiny_gnn), dm(), tmp_path / "whole", 3, epochs=3).epochs
    ckpt = tmp_path / "one_epoch.ckpt"
    L.seed_everything(3)
    trainer = quiet_trainer(tmp_path / "first", max_epochs=1, limit_val_batches=0)
    trainer.fit(GNNClassifier(**tiny_gnn), datamodule=dm())
    trainer.save_checkpoint(ckpt)
    resumed = _fit(GNNClassifier(**tiny_gnn), dm(), tmp_path / "resumed", 3, epochs=3, ckpt_path=str(ckpt)).epochs
    assert sorted(resumed) == [1, 2]
    assert resumed[1] == whole[1] and resumed[2] == whole[2]
    assert resumed[1] != whole[0]


def test_overfit_batches_keeps_the_same_bucketed_batches_every_epoch(tiny_corpus: Path, tmp_path: Path,
                                                                     tiny_roberta: dict) -> None:
    # Lightning makes a plain loader sequential under overfit_batches; a batch sampler's it cannot reach.
    order = _fit(TransformerClassifier(config=tiny_roberta), _tokens(tiny_corpus, tmp_path), tmp_path, 1, epochs=3,
                 overfit_batches=2).epochs
    assert len(order[0]) == 2 and order[0] == order[1] == order[2]
    assert sorted(sum(order[0], [])) != list(range(32))  # a seeded draw, not the first records
