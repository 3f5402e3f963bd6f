"""A short fit through `streamguard fit` leaves TensorBoard events with every view we promise:
loss/metric scalars, per-group LRs, gradient norms, the PR curve, the confusion matrix and hparams.
The event files are read back with TensorBoard's own EventAccumulator."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from streamguard_pl.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GNN_CONF = Path(__file__).resolve().parent / "conf" / "gnn.yaml"
# Three epochs: on seed 1 the best val/f1 is the first epoch's, not the last (hparams must say the best's).
EPOCHS, STEPS_PER_EPOCH = 3, 2


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> EventAccumulator:
    run = tmp_path_factory.mktemp("tb_run")
    args = ["fit", "--config", str(GNN_CONF), "--trainer.max_epochs", str(EPOCHS),
            "--trainer.limit_train_batches", str(STEPS_PER_EPOCH), "--trainer.log_every_n_steps", "1",
            "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
            "--seed_everything", "5"]  # a seed whose best val/f1 (epoch 0, tied by 1) is not the last epoch's
    assert main(args) == 0
    assert list(run.glob("events.out.tfevents.*")), "no event file in the run folder"
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    return acc


def _scalars(acc: EventAccumulator, tag: str) -> list[Any]:
    assert tag in acc.Tags()["scalars"], f"{tag} not in {acc.Tags()['scalars']}"
    return acc.Scalars(tag)


def test_loss_and_metric_scalars(events: EventAccumulator) -> None:
    steps = _scalars(events, "train/loss_step")
    assert [e.step for e in steps] == list(range(EPOCHS * STEPS_PER_EPOCH))
    assert all(math.isfinite(e.value) and e.value > 0 for e in steps)
    for tag in ("val/loss", "val/f1", "val/auroc"):
        values = _scalars(events, tag)
        assert len(values) == EPOCHS, tag
        # logged at the end of each epoch's training steps
        assert [e.step for e in values] == [STEPS_PER_EPOCH * (i + 1) - 1 for i in range(EPOCHS)], tag
    assert all(0.0 <= e.value <= 1.0 for e in _scalars(events, "val/f1") + _scalars(events, "val/auroc"))


def test_learning_rate_per_param_group(events: EventAccumulator) -> None:
    lr_tags = {t for t in events.Tags()["scalars"] if t.startswith(("lr/", "lr-AdamW/"))}
    groups = {t.split("/", 1)[1] for t in lr_tags}
    assert groups == {"gnn", "gnn_no_decay", "head", "head_no_decay"}  # GNNClassifier's groups, decay split
    curves = {tag: [e.value for e in events.Scalars(tag)] for tag in lr_tags}
    first = next(iter(curves.values()))
    assert len(first) == EPOCHS * STEPS_PER_EPOCH
    assert first[0] == pytest.approx(0.05)  # the tiny config's lr; warmup 5% of 4 steps rounds to none
    assert all(a > b for a, b in zip(first, first[1:]))  # cosine decay, one point per step
    assert all(values == pytest.approx(first) for values in curves.values())  # lr_mult 1.0 everywhere


def test_gradient_norms(events: EventAccumulator) -> None:
    for component in ("gnn", "head", "total"):
        values = _scalars(events, f"grad_norm/{component}")
        assert len(values) == EPOCHS * STEPS_PER_EPOCH
        assert all(math.isfinite(e.value) and e.value > 0 for e in values), component
    total = {e.step: e.value for e in events.Scalars("grad_norm/total")}
    for g, h in zip(events.Scalars("grad_norm/gnn"), events.Scalars("grad_norm/head")):
        assert total[g.step] == pytest.approx(math.hypot(g.value, h.value), rel=1e-4)


def test_pr_curve_each_validation(events: EventAccumulator) -> None:
    assert "val/pr_curve" in events.Tags()["tensors"]
    assert "val/pr_curve" in events.PluginTagToContent("pr_curves")
    curves = events.Tensors("val/pr_curve")
    assert len(curves) == EPOCHS
    shape = [d.size for d in curves[-1].tensor_proto.tensor_shape.dim]
    assert shape[0] == 6 and shape[1] > 2  # TP, FP, TN, FN, precision, recall per threshold
    from tensorboard.util import tensor_util

    data = tensor_util.make_ndarray(curves[-1].tensor_proto)
    tp, fp, tn, fn = data[0], data[1], data[2], data[3]
    assert tp[0] + fp[0] == 16  # at threshold 0 every item of the one 16-item validation batch is positive
    assert all(t + f + n + m == 16 for t, f, n, m in zip(tp, fp, tn, fn))


def test_confusion_matrix_image(events: EventAccumulator) -> None:
    assert "val/confusion_matrix" in events.Tags()["images"]
    images = events.Images("val/confusion_matrix")
    assert len(images) == EPOCHS
    assert images[-1].width > 100 and images[-1].height > 100
    assert images[-1].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_hparams_with_final_metrics(events: EventAccumulator) -> None:
    content = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["lr"].number_value == pytest.approx(0.05)
    assert hparams["hidden_dim"].number_value == 16
    assert hparams["encoder"].string_value == "ggnn"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    # every column, the test ones too: a test after the fit logs into this one session
    assert {m.name.tag for m in experiment.metric_infos} == {f"hp/{s}/{m}" for s in ("val", "test")
                                                             for m in ("f1", "accuracy", "auroc")}
    # the HPARAMS copies are the validation of the epoch best.ckpt was saved at (the first with the best
    # val/f1, which ModelCheckpoint monitors), not the last epoch's; the curves themselves are left alone
    f1 = [e.value for e in events.Scalars("val/f1")]
    best = f1.index(max(f1))
    assert len(f1) == EPOCHS and best != EPOCHS - 1 and f1[best] != f1[-1]  # else this test tells nothing
    for tag in ("val/f1", "val/accuracy", "val/auroc"):
        final = events.Scalars(f"hp/{tag}")
        assert len(final) == 1 and final[0].value == pytest.approx(events.Scalars(tag)[best].value), tag
        assert final[0].step == EPOCHS * STEPS_PER_EPOCH
