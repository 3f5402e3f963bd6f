"""EMAWeights on real runs: the averaged weights are what is validated, saved and left behind (checked
against an average taken by hand), the cut a checkpoint carries is the one chosen on those averaged
weights, a from-scratch transformer (built in its own `setup`) is averaged whole, and a resumed run
carries on the average it saved."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from _trainers import quiet_trainer
from streamguard_pl.callbacks import EMAWeights
from streamguard_pl.data.datamodules import GraphDataModule, TokenDataModule
from streamguard_pl.models import GNNClassifier, TransformerClassifier
from streamguard_pl.models.threshold import best_accuracy_threshold

DECAY = 0.8


class ParamLog(Callback):
    """The live parameters after every optimizer step, to average by hand."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = {k: p.detach().clone() for k, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: p.detach().clone() for k, p in pl_module.named_parameters()})


def by_hand(steps: list[dict[str, torch.Tensor]], start: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """EMA of the logged parameters; without `start` the first step is copied, as AveragedModel does."""
    ema = dict(start) if start is not None else dict(steps[0])
    for step in steps if start is not None else steps[1:]:
        ema = {k: DECAY * ema[k] + (1 - DECAY) * step[k] for k in ema}
    return ema


def assert_holds(model: torch.nn.Module, ema: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), ema[name], rtol=1e-4, atol=1e-5)


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
    ema = by_hand(log.steps)
    assert_holds(model, ema)
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


def test_a_from_scratch_transformer_is_averaged_whole_and_a_resumed_run_continues_its_average(
        tiny_corpus: Path, tiny_roberta: dict, tmp_path: Path) -> None:
    dm = TokenDataModule(data_dir=str(tiny_corpus), batch_size=16, bpe_vocab_size=400, max_length=128,
                         output_dir=str(tmp_path / "run"))
    torch.manual_seed(0)
    model = TransformerClassifier(config=tiny_roberta, scheduler="none")
    assert model.encoder is None  # built in setup, after the callbacks' setup
    log = ParamLog()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)  # saved at epoch end, mid-fit
    quiet_trainer(tmp_path, max_epochs=1, enable_checkpointing=True, num_sanity_val_steps=1,
                  callbacks=[log, EMAWeights(decay=DECAY), ckpt]).fit(model, dm)
    assert len(log.steps) > 3 and any(k.startswith("encoder.") for k in log.steps[0])
    assert_holds(model, by_hand(log.steps))

    # Resuming restores the saved average and goes on from it, rather than restarting from the live weights.
    (epoch_end,) = sorted((tmp_path / "ckpt").glob("*.ckpt"))  # (last.ckpt is written after training, when the average is all there is)
    saved = torch.load(epoch_end, weights_only=False)
    assert any(not torch.equal(v, saved["current_model_state"][k]) for k, v in saved["state_dict"].items())
    log2 = ParamLog()
    quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=True, num_sanity_val_steps=0,
                  callbacks=[log2, EMAWeights(decay=DECAY), ModelCheckpoint(dirpath=tmp_path / "ckpt2")]
                  ).fit(model, dm, ckpt_path=epoch_end)
    assert len(log2.steps) == len(log.steps)
    for k, p in log2.start.items():  # training goes on from the live weights, not from their average
        torch.testing.assert_close(p, saved["current_model_state"][k], rtol=0, atol=0)
    start = {k: v for k, v in saved["state_dict"].items() if k in log2.steps[0]}
    assert_holds(model, by_hand(log2.steps, start=start))


class TestedWeights(Callback):
    """The parameters the test loop runs with."""

    def on_test_start(self, trainer, pl_module) -> None:
        self.params = {k: p.detach().clone() for k, p in pl_module.named_parameters()}


def test_testing_the_best_checkpoint_after_fit_tests_its_averaged_weights(
        tiny_corpus: Path, tiny_gnn: dict, tmp_path: Path) -> None:
    """`trainer.test(ckpt_path="best")` on the trainer that fitted (what `streamguard study` does):
    Lightning's callback, still holding its average from fit, would load the checkpoint's live weights
    (`current_model_state`) over the averaged ones and test those instead."""
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=1024, output_dir=str(tmp_path / "run"))
    torch.manual_seed(0)
    tested = TestedWeights()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max", filename="best")
    trainer = quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=True, num_sanity_val_steps=0,
                            callbacks=[EMAWeights(decay=DECAY), ckpt, tested])
    trainer.fit(GNNClassifier(**tiny_gnn, scheduler="none"), dm)
    trainer.test(ckpt_path="best", datamodule=dm)
    saved = torch.load(ckpt.best_model_path, weights_only=False)
    assert any(not torch.equal(v, saved["current_model_state"][k]) for k, v in saved["state_dict"].items())
    for name, p in tested.params.items():
        assert torch.equal(p, saved["state_dict"][name]), name


class ValidatedWeights(Callback):
    """The parameters the validation loop scores with (after any swap at the epoch's start)."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            self.params = {k: p.detach().clone() for k, p in pl_module.named_parameters()}


def test_validating_an_earlier_checkpoint_after_fit_validates_its_averaged_weights(
        tiny_corpus: Path, tiny_gnn: dict, tmp_path: Path) -> None:
    """Once, `trainer.validate(ckpt_path=...)` on the trainer that fitted swapped the loaded weights for
    the fit's final average: every checkpoint validated as the last one."""
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=1024, output_dir=str(tmp_path / "run"))
    torch.manual_seed(0)
    validated = ValidatedWeights()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}")
    trainer = quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=True, num_sanity_val_steps=0,
                            callbacks=[EMAWeights(decay=DECAY), ckpt, validated])
    trainer.fit(GNNClassifier(**tiny_gnn, scheduler="none"), dm)
    first = tmp_path / "ckpt" / "epoch=0.ckpt"
    trainer.validate(ckpt_path=str(first), datamodule=dm)
    saved = torch.load(first, weights_only=False)["state_dict"]
    last = torch.load(tmp_path / "ckpt" / "epoch=1.ckpt", weights_only=False)["state_dict"]
    assert any(not torch.equal(v, last[k]) for k, v in saved.items())
    for name, p in validated.params.items():
        assert torch.equal(p, saved[name]), name


def test_decay_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        EMAWeights(decay=1.0)


class AverageDevice(Callback):
    """Where EMAWeights keeps its average while training."""

    def __init__(self, ema: EMAWeights) -> None:
        self.ema, self.devices = ema, set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.devices |= {p.device.type for p in self.ema._average_model.parameters()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the average is made on the CPU only on a GPU run")
def test_a_resumed_gpu_run_keeps_its_average_on_the_gpu(tiny_corpus: Path, tiny_gnn: dict, tmp_path: Path) -> None:
    # Resuming restores the average before the strategy moves the module to the GPU.
    dm = GraphDataModule(data_dir=str(tiny_corpus), token_buckets=tiny_gnn["token_buckets"], batch_size=16,
                         output_dir=str(tmp_path / "run"))
    model = GNNClassifier(**tiny_gnn)
    first = quiet_trainer(tmp_path, accelerator="gpu", devices=1, max_epochs=1, callbacks=[EMAWeights(decay=DECAY)])
    first.fit(model, dm)
    first.save_checkpoint(tmp_path / "epoch1.ckpt")
    ema = EMAWeights(decay=DECAY)
    where = AverageDevice(ema)
    quiet_trainer(tmp_path, accelerator="gpu", devices=1, max_epochs=2, callbacks=[ema, where]).fit(
        GNNClassifier(**tiny_gnn), dm, ckpt_path=tmp_path / "epoch1.ckpt")
    assert where.devices == {"cuda"}
