"""The val-chosen decision threshold: the search itself, and a real GNN run that tunes, saves and tests with it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from _trainers import quiet_trainer
from streamguard_pl.callbacks import TensorBoardExtras
from streamguard_pl.data.datamodules import GraphDataModule
from streamguard_pl.models import GNNClassifier
from streamguard_pl.models.threshold import best_accuracy_threshold


def brute_force(probs: torch.Tensor, labels: torch.Tensor) -> float:
    cuts = torch.cat([probs, torch.tensor([0.0, 1.01])])
    return max(float(((probs >= c).long() == labels).float().mean()) for c in cuts)


@pytest.mark.parametrize("seed", range(5))
def test_the_cut_reaches_the_best_accuracy_any_cut_reaches(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (200,), generator=g)
    # Scores that rank positives higher but sit mostly below 0.5, as a focal-loss model's may.
    probs = (0.25 + 0.15 * labels + 0.1 * torch.randn(200, generator=g)).clamp(0, 1).round(decimals=2)  # with ties
    cut, accuracy = best_accuracy_threshold(probs, labels)
    assert accuracy == pytest.approx(brute_force(probs, labels))
    assert float(((probs >= cut).long() == labels).float().mean()) == pytest.approx(accuracy)
    assert float(((probs >= 0.5).long() == labels).float().mean()) < accuracy  # 0.5 is a poor cut here


def test_ties_go_to_the_cut_closest_to_one_half_and_an_empty_split_is_refused() -> None:
    # Cutting between 0.9 and 0.6 or between 0.3 and 0.1 both give 3 of 4; 0.75 is the closer to 0.5.
    cut, accuracy = best_accuracy_threshold(torch.tensor([0.9, 0.6, 0.3, 0.1]), torch.tensor([1, 0, 1, 0]))
    assert accuracy == 0.75 and cut == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least one"):
        best_accuracy_threshold(torch.tensor([]), torch.tensor([]))


def test_predicting_none_stays_none_when_the_top_scores_are_saturated() -> None:
    # softmax of a logit gap of 17 is exactly 1.0 in float32; once, the "predict none" cut was 1.0 too,
    # claimed 0.8 accuracy on these five and flagged the four negatives (0.2).
    probs = torch.softmax(torch.tensor([[0.0, 17.0]] * 4 + [[0.0, -1.4]]), dim=-1)[:, 1]
    labels = torch.tensor([0, 0, 0, 0, 1])
    assert probs[0].item() == 1.0
    cut, accuracy = best_accuracy_threshold(probs, labels)
    as_saved = torch.tensor(cut)  # the float32 buffer the cut lives in
    assert accuracy == 0.8 and ((probs >= as_saved).long() == labels).sum().item() == 4


def test_a_cut_between_adjacent_float32_scores_survives_the_float32_buffer() -> None:
    # Halfway between two neighbouring float32 numbers rounds onto the lower one, which `p >= cut`
    # then flags: the saved cut claimed 1.0 accuracy on these and gave 0.5.
    high = torch.tensor(0.7000004649, dtype=torch.float32)
    low = torch.nextafter(high, torch.tensor(0.0))
    probs = torch.stack([high, low, low, torch.tensor(0.2689)])
    labels = torch.tensor([1, 0, 0, 0])
    cut, accuracy = best_accuracy_threshold(probs, labels)
    as_saved = torch.tensor(cut)
    assert accuracy == 1.0 and ((probs >= as_saved).long() == labels).all()


def test_logged_metrics_flag_what_predictions_flag_at_the_cut_itself() -> None:
    # torchmetrics flags p > t; our predictions p >= cut. A probability equal to the cut (0.5 from equal
    # logits) counted positive in predict and negative in test/accuracy.
    from torchmetrics.classification import BinaryAccuracy

    from streamguard_pl.models.threshold import metric_threshold

    probs, labels = torch.tensor([0.5, 0.25, 0.7000004649]), torch.tensor([1, 0, 1])
    for cut in (0.5, 0.7000004649):
        ours = float(((probs >= torch.tensor(cut)).long() == labels).float().mean())
        metric = BinaryAccuracy(threshold=metric_threshold(cut))
        assert float(metric(probs, labels)) == pytest.approx(ours)
    assert float(BinaryAccuracy(threshold=metric_threshold(0.5))(probs, labels)) == 1.0


def test_a_tuned_run_tests_and_predicts_at_the_cut_its_best_checkpoint_chose(
        tiny_corpus: Path, tiny_gnn: dict, tmp_path: Path) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=1024, output_dir=str(tmp_path / "run"))
    torch.manual_seed(0)
    model = GNNClassifier(**tiny_gnn, scheduler="none", tune_threshold=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max", filename="best")
    extras = TensorBoardExtras()
    trainer = quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[ckpt, extras],
                            num_sanity_val_steps=0, logger=TensorBoardLogger(tmp_path / "tb"))
    trainer.fit(model, dm)

    # TensorBoard's confusion matrix is drawn at the cut the last epoch chose, not at 0.5.
    last = torch.cat([o["probs"] for o in quiet_trainer(tmp_path).predict(model, dm.val_dataloader())])
    val_labels = torch.cat([b.y.view(-1) for b in dm.val_dataloader()])
    assert extras.last_cut == pytest.approx(float(model.decision_threshold)) and extras.last_cut != 0.5
    pred = (last >= extras.last_cut).long()
    counts = [[int(((pred == p) & (val_labels == t)).sum()) for p in (0, 1)] for t in (0, 1)]
    assert extras.last_confusion.tolist() == counts

    best = GNNClassifier.load_from_checkpoint(ckpt.best_model_path)
    # The cut in the checkpoint is the best cut for that model's own val scores.
    outs = quiet_trainer(tmp_path).predict(best, dm.val_dataloader())
    probs = torch.cat([o["probs"] for o in outs])
    labels = torch.cat([b.y.view(-1) for b in dm.val_dataloader()])
    expected, _ = best_accuracy_threshold(probs, labels)
    assert float(best.decision_threshold) == pytest.approx(expected, abs=1e-6)
    assert float(best.decision_threshold) != 0.5
    assert torch.equal(torch.cat([o["preds"] for o in outs]), (probs >= expected).long())

    # trainer.test scores at that cut: accuracy equals the count at the cut, not at 0.5.
    result = quiet_trainer(tmp_path).test(best, dm.val_dataloader(), verbose=False)[0]
    assert result["test/accuracy"] == pytest.approx(float(((probs >= expected).long() == labels).float().mean()), abs=1e-6)

    # A checkpoint from before the tuned cut loads and decides at its `threshold`.
    old = torch.load(ckpt.best_model_path, weights_only=False)
    del old["state_dict"]["decision_threshold"]
    torch.save(old, tmp_path / "old.ckpt")
    assert float(GNNClassifier.load_from_checkpoint(tmp_path / "old.ckpt").decision_threshold) == 0.5


def test_auroc_of_one_class_is_nan_not_zero() -> None:
    from streamguard_pl.models.base import _metrics

    metrics = _metrics(0.5)
    metrics.update(torch.tensor([0.2, 0.9, 0.4]), torch.tensor([0, 0, 0]))
    assert torch.isnan(metrics.compute()["auroc"])
    both = _metrics(0.5)
    both.update(torch.tensor([0.2, 0.9, 0.4]), torch.tensor([0, 1, 0]))
    assert float(both.compute()["auroc"]) == 1.0
