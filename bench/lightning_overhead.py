"""TransformerClassifier under a Lightning Trainer vs a plain PyTorch loop doing the same steps, same run.

    .venv/bin/python bench/lightning_overhead.py                 # 10 steps x batch 16, 5 rounds A B B A A ...
    .venv/bin/python bench/lightning_overhead.py --steps 50 --rounds 5

Both sides start from the same weights, read the same batches from the same DataLoader (Juliet
train subset, bucketed, dynamically padded), use the module's own AdamW parameter groups with the
same linear warmup schedule, the same number of steps and the same torch seed. Timed: the training
loop only (Lightning: Timer callback, on_train_start..on_train_end; plain: the loop itself), after an
untimed warm-up of each. Runs alternate (A B B A ...) so both see the same machine load; medians are reported,
of wall time and of process CPU time (the latter is what other processes on a busy box disturb least).
The final parameters of the two sides are compared, to show the work done was the same.
Target: Lightning / plain samples/s >= 0.95x.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback, Timer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from streamguard_pl.data.datamodules import TokenDataModule  # noqa: E402
from streamguard_pl.locations import juliet_dir  # noqa: E402
from streamguard_pl.models.transformer import TransformerClassifier  # noqa: E402
from streamguard_pl.nets.text_encoder import SMALL_ROBERTA  # noqa: E402

TARGET_RATIO = 0.95


@dataclass
class Run:
    seconds: float  # training loop only, wall clock
    cpu: float  # training loop only, CPU time of this process: less disturbed by other processes
    wall: float  # incl. Trainer construction, setup and teardown (plain: optimizer set-up)
    loss: float
    params: torch.Tensor  # flattened final parameters


class CpuTimer(Callback):
    """Process CPU time over the same span as Lightning's Timer (which measures wall time only)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.process_time()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.process_time() - self.start


def quiet_lightning() -> None:
    """Keep the printed table readable: Lightning's per-fit banners and tips say nothing measured."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*have no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message)


def load_text() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def new_model(args: argparse.Namespace, vocab: int, pad: int, init: dict[str, torch.Tensor] | None) -> TransformerClassifier:
    cfg = {**SMALL_ROBERTA, "hidden_size": args.hidden, "num_hidden_layers": args.layers,
           "num_attention_heads": args.heads, "intermediate_size": args.intermediate or 4 * args.hidden,
           "max_position_embeddings": args.max_length + 2}
    model = TransformerClassifier(config=cfg, vocab_size=vocab, pad_token_id=pad, lr=args.lr,
                                  warmup_ratio=args.warmup_ratio, scheduler="linear")
    if init is not None:
        model.load_state_dict(init)
    return model


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])


def run_lightning(model: TransformerClassifier, loader: DataLoader, steps: int, args: argparse.Namespace) -> Run:
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    timer, cpu = Timer(), CpuTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_epochs=1, limit_train_batches=steps,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer, cpu], default_root_dir=args.work,
    )
    trainer.fit(model, train_dataloaders=loader)
    wall = time.perf_counter() - t0
    loss = float(trainer.callback_metrics["train/loss_step"])
    return Run(timer.time_elapsed("train"), cpu.seconds, wall, loss, flat_params(model))


def run_plain(model: TransformerClassifier, loader: DataLoader, steps: int, args: argparse.Namespace) -> Run:
    """What the Trainer does for this module, written out: the module's groups, AdamW, per-step linear schedule."""
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    optimizer = torch.optim.AdamW(model._optimizer_groups(), lr=model.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * steps), steps)
    model.train()
    loss = torch.tensor(float("nan"))
    t1, c1 = time.perf_counter(), time.process_time()
    for i, batch in enumerate(loader):
        if i == steps:
            break
        logits = model(batch)
        loss = model.criterion(logits.float(), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    end, cpu = time.perf_counter(), time.process_time() - c1
    return Run(end - t1, cpu, end - t0, loss.item(), flat_params(model))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="folder with train*/valid*/test* JSON Lines (default: $STREAMGUARD_JULIET_DIR or ../shared/data/juliet)")
    ap.add_argument("--pattern", default="train*.jsonl", help="training files inside --data-dir")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps per run")
    ap.add_argument("--rounds", type=int, default=5, help="timed runs of each side, alternating A B B A ...")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed steps of each side first")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--bpe-vocab", type=int, default=8000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=None, help="feed-forward width (default 4 x hidden)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on 2 busy shared cores, 2 threads spin against each "
                         "other); 0 keeps torch's default")
    args = ap.parse_args(argv)

    quiet_lightning()
    data_dir = args.data_dir or juliet_dir()
    if not sorted(data_dir.glob(args.pattern)):
        sys.exit(f"no files match {data_dir / args.pattern} (set --data-dir or STREAMGUARD_JULIET_DIR)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"load average before: {load_text()} on {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory(prefix="sg_bench_overhead_") as tmp:
        args.work = tmp
        dm = TokenDataModule(
            data_dir=str(data_dir), train_files=args.pattern, max_records=args.steps * args.batch_size,
            batch_size=args.batch_size, seed=args.seed, max_length=args.max_length, bpe_vocab_size=args.bpe_vocab,
            cache_dir=str(Path(tmp) / "cache"), output_dir=str(Path(tmp) / "run"),
        )
        dm.setup("fit")
        loader = dm.train_dataloader()  # one DataLoader; its batch sampler reseeds per epoch, so every run sees the same batches
        steps = min(args.steps, len(loader))
        L.seed_everything(args.seed, verbose=False)
        init = copy.deepcopy(new_model(args, len(dm.tokenizer), dm.tokenizer.pad_token_id, None).state_dict())
        make = lambda: new_model(args, len(dm.tokenizer), dm.tokenizer.pad_token_id, init)  # noqa: E731
        print(f"{data_dir / args.pattern}: {len(dm.datasets['train']):,} functions, {steps} steps x batch "
              f"{args.batch_size}; RoBERTa hidden {args.hidden}, {args.layers} layers, {args.heads} heads; "
              f"{args.rounds} rounds")

        if args.warmup_steps:
            run_lightning(make(), loader, args.warmup_steps, args)
            run_plain(make(), loader, args.warmup_steps, args)
        runs: dict[str, list[Run]] = {"lightning": [], "plain": []}
        sides = {"lightning": run_lightning, "plain": run_plain}
        for i in range(args.rounds):
            # A B, then B A: a load that drifts during the run (it does here) does not favour one side.
            for name in (("lightning", "plain") if i % 2 == 0 else ("plain", "lightning")):
                runs[name].append(sides[name](make(), loader, steps, args))

    samples = sum(len(b) for b in itertools.islice(loader.batch_sampler, steps))  # same batches on both sides
    med = {k: (statistics.median(r.seconds for r in v), statistics.median(r.cpu for r in v)) for k, v in runs.items()}
    print(f"{'side':<10} {'samples/s':>10} {'ms/step':>8} {'CPU samples/s':>14} {'fit wall s':>11} {'final loss':>11}"
          f"  loop wall s per round")
    for k, v in runs.items():
        wall, cpu = med[k]
        print(f"{k:<10} {samples / wall:>10.2f} {1e3 * wall / steps:>8.1f} {samples / cpu:>14.2f} "
              f"{statistics.median(r.wall for r in v):>11.2f} {v[-1].loss:>11.5f}  " + " ".join(f"{r.seconds:.2f}" for r in v))
    diff = float((runs["lightning"][-1].params - runs["plain"][-1].params).abs().max())
    ratio, cpu_ratio = med["plain"][0] / med["lightning"][0], med["plain"][1] / med["lightning"][1]
    verdict = lambda r: "OK" if r >= TARGET_RATIO else "MISSED"  # noqa: E731
    print(f"same work: max |param difference| after {steps} steps = {diff:.3g} (medians of {args.rounds} rounds)")
    print(f"lightning / plain: samples/s {ratio:.3f}x (wall), {cpu_ratio:.3f}x (CPU time); "
          f"overhead {1e3 * (med['lightning'][0] - med['plain'][0]) / steps:+.1f} ms/step wall, "
          f"{1e3 * (med['lightning'][1] - med['plain'][1]) / steps:+.1f} ms/step CPU")
    print(f"target >= {TARGET_RATIO}x: wall {verdict(ratio)}, CPU time {verdict(cpu_ratio)}")
    print(f"load average after: {load_text()}")


if __name__ == "__main__":
    main()
