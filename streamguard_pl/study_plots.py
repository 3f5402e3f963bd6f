"""Study plots: metric box plots per model and training curves read back from TensorBoard events."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

CURVE_TAGS = ("val/f1", "val/loss", "train/loss_epoch")


def plot_metrics_comparison(output_dir: Path, summary: dict[str, Any]) -> Path | None:
    """One box plot per metric, one box per model, over its seeds (and folds)."""
    models = list(summary["models"])
    if not models:
        return None
    metrics = summary["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data = [[r[metric] for r in summary["models"][m]["runs"]
                 if r.get(metric) is not None and not math.isnan(r[metric])] for m in models]
        ax.boxplot(data, tick_labels=models)
        ax.set_title(metric)
        ax.tick_params(axis="x", rotation=30)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = output_dir / "metrics_comparison.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_scalars(run_dir: Path, tags: tuple[str, ...] = CURVE_TAGS) -> dict[str, list[tuple[int, float]]]:
    """Scalars of one run's TensorBoard event files, by tag: [(step, value), ...]."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    available = set(acc.Tags().get("scalars", []))
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags if t in available}


def plot_training_curves(output_dir: Path, models: list[str]) -> Path | None:
    """Validation F1 and losses per model, one line per seed, each point marked: a one-epoch run
    (the fusion configs) has one point per curve, which a line without markers does not draw."""
    fig, axes = plt.subplots(1, len(CURVE_TAGS), figsize=(4.2 * len(CURVE_TAGS), 3.6), squeeze=False)
    drew = False
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, model in enumerate(models):
        # Run folders are seed_<n> or, with k-fold, seed_<n>/fold_<k>: the ones that hold events.
        run_dirs = sorted({p.parent for p in (output_dir / model).glob("seed_*/**/events.out.tfevents.*")})
        for run_dir in run_dirs:
            for ax, (tag, points) in zip(axes[0], _ordered(read_scalars(run_dir))):
                if points:
                    steps, values = zip(*points)
                    ax.plot(steps, values, color=colours[i % len(colours)], alpha=0.8, marker="o", markersize=3,
                            label=f"{model} {run_dir.relative_to(output_dir / model).as_posix()}")
                    ax.set_title(tag)
                    drew = True
    if not drew:
        plt.close(fig)
        return None
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    path = output_dir / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ordered(scalars: dict[str, list[tuple[int, float]]]) -> list[tuple[str, list[tuple[int, float]]]]:
    return [(t, scalars.get(t, [])) for t in CURVE_TAGS]
