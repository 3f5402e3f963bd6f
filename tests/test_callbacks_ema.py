"""EMAWeights on a real GNN run with a tuned cut: the averaged weights are what is validated, saved and
left behind, and the cut a checkpoint carries is the one chosen on those averaged weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from _trainers import quiet_trainer
from streamguard_pl.callbacks import EMAWeights
from streamguard_pl.data.datamodules import GraphDataModule
from streamguard_pl.models import GNNClassifier
from streamguard_pl.models.threshold import best_accuracy_threshold

DECAY = 0.8


class ParamLog(Callback):
    """The live parameters after every optimizer step, to average by hand."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: p.detach().clone() for k, p in pl_module.named_parameters()})


def test_ema_run_saves_and_leaves_the_averaged_weights_with_their_own_cut(
        tiny_corpus: Path, tiny_gnn: dict, tmp_path: Path) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=1024, output_dir=str(tmp_path / "run"))
    torch.manual_seed(0)
    model = GNNClassifier(**tiny_gnn, scheduler="none", tune_threshold=True)
    log = ParamLog()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max", filename="best")
    trainer = quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=True, num_sanity_val_steps=0,
                            callbacks=[log, EMAWeights(decay=DECAY), ckpt])
    trainer.fit(model, dm)

    # What training leaves on the module is the EMA of the live parameters, step by step.
    ema = dict(log.steps[0])
    for step in log.steps[1:]:
        ema = {k: DECAY * ema[k] + (1 - DECAY) * step[k] for k in ema}
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), ema[name], rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(log.steps[-1][k], ema[k]) for k in ema)  # averaged, not the last step

    saved = torch.load(ckpt.best_model_path, weights_only=False)
    assert set(saved["current_model_state"]) == set(saved["state_dict"])
    averaged = [k for k, v in saved["state_dict"].items() if not torch.equal(v, saved["current_model_state"][k])]
    assert averaged and "decision_threshold" not in averaged

    # The cut a checkpoint carries is the best cut for its (averaged) weights' val scores, and the
    # module keeps the last tuned cut after training instead of the one it started with.
    best = GNNClassifier.load_from_checkpoint(ckpt.best_model_path)
    outs = quiet_trainer(tmp_path).predict(best, dm.val_dataloader())
    probs = torch.cat([o["probs"] for o in outs])
    labels = torch.cat([b.y.view(-1) for b in dm.val_dataloader()])
    expected, _ = best_accuracy_threshold(probs, labels)
    assert float(best.decision_threshold) == pytest.approx(expected, abs=1e-6) and expected != 0.5
    assert float(model.decision_threshold) == pytest.approx(float(trainer.callback_metrics["val/threshold"]))
    assert float(model.decision_threshold) != 0.5


def test_decay_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        EMAWeights(decay=1.0)
