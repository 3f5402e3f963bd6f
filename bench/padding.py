"""Dynamic padding + length bucketing (our default) vs fixed padding to max_length, same run, same model.

    .venv/bin/python bench/padding.py                    # 256 Juliet train functions, one epoch each way
    .venv/bin/python bench/padding.py --limit 4000       # a bigger subset (fixed padding: ~10 s a batch here)
    .venv/bin/python bench/padding.py --all              # the whole train split (hours on a CPU)

The baseline is how the CodeXGLUE defect-detection script batches: random batches, every sequence
padded to 512. Ours: batches cut from length-sorted pools, padded to their longest member (multiple
of 8). Both train the same from-scratch RoBERTa for one epoch through a real Trainer (forward,
backward, AdamW step; no validation, no logger, no checkpoints) on the same records, tokenizer and seed.
Target: dynamic epoch time <= 0.5x fixed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback, Timer  # noqa: E402

from streamguard_pl.data.datamodules import TokenDataModule  # noqa: E402
from streamguard_pl.data.tokens import tokenizer_fingerprint  # noqa: E402
from streamguard_pl.locations import juliet_dir  # noqa: E402
from streamguard_pl.models.transformer import TransformerClassifier  # noqa: E402
from streamguard_pl.nets.text_encoder import SMALL_ROBERTA  # noqa: E402

TARGET_RATIO = 0.5


def quiet_lightning() -> None:
    """Keep the printed table readable: Lightning's per-fit banners and tips say nothing measured."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*have no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message)


class TokenCounter(Callback):
    """Counts what each training batch costs: padded tokens (what the encoder computes on) and real ones."""

    def __init__(self) -> None:
        self.batches = self.samples = self.padded = self.real = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.batches += 1
        self.samples += int(batch["input_ids"].shape[0])
        self.padded += int(batch["input_ids"].numel())
        self.real += int(batch["attention_mask"].sum())


@dataclass
class EpochResult:
    name: str
    seconds: float
    counter: TokenCounter


def load_text() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def encoder_config(args: argparse.Namespace) -> dict[str, Any]:
    return {**SMALL_ROBERTA, "hidden_size": args.hidden, "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads, "intermediate_size": args.intermediate or 4 * args.hidden,
            "max_position_embeddings": args.max_length + 2}


def make_datamodule(args: argparse.Namespace, work: Path, dynamic: bool, tokenizer: str | None) -> TokenDataModule:
    return TokenDataModule(
        data_dir=str(args.data_dir), train_files=args.pattern, max_records=None if args.all else args.limit,
        batch_size=args.batch_size, seed=args.seed, max_length=args.max_length, bpe_vocab_size=args.bpe_vocab,
        tokenizer_name_or_path=tokenizer, bucketing=dynamic, fixed_padding=not dynamic,
        cache_dir=str(work / "cache"), output_dir=str(work / "run"),
    )


def train_epoch(name: str, dm: TokenDataModule, args: argparse.Namespace, limit_batches: int | float = 1.0) -> EpochResult:
    """One epoch (or `limit_batches` of it) of training steps; the Timer spans on_train_start..on_train_end."""
    L.seed_everything(args.seed, verbose=False)  # same initial weights and dropout for both modes
    model = TransformerClassifier(config=encoder_config(args), lr=args.lr)
    timer, counter = Timer(), TokenCounter()
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, max_epochs=1,
        limit_train_batches=limit_batches, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer, counter], default_root_dir=str(dm.output_dir),
    )
    trainer.fit(model, datamodule=dm)
    return EpochResult(name, timer.time_elapsed("train"), counter)


def print_table(rows: list[EpochResult]) -> None:
    print(f"{'mode':<22} {'batches':>8} {'epoch s':>9} {'samples/s':>10} {'tokens incl. pad':>17} "
          f"{'real tokens':>12} {'pad %':>6}")
    for r in rows:
        c = r.counter
        print(f"{r.name:<22} {c.batches:>8} {r.seconds:>9.1f} {c.samples / r.seconds:>10.1f} {c.padded:>17,} "
              f"{c.real:>12,} {100 * (1 - c.real / c.padded):>6.1f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="folder with train*/valid*/test* JSON Lines (default: $STREAMGUARD_JULIET_DIR or ../shared/data/juliet)")
    ap.add_argument("--pattern", default="train*.jsonl", help="training files inside --data-dir")
    ap.add_argument("--limit", type=int, default=256, help="train on a seeded, label-stratified subset of N functions")
    ap.add_argument("--all", action="store_true", help="the whole train split (ignores --limit)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512, help="truncation length, and the fixed padding width")
    ap.add_argument("--bpe-vocab", type=int, default=8000, help="byte-level BPE trained on the train subset")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=None, help="feed-forward width (default 4 x hidden)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--warmup-batches", type=int, default=1, help="untimed batches of each mode first")
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on 2 busy shared cores, 2 threads spin against each "
                         "other); 0 keeps torch's default")
    args = ap.parse_args(argv)

    quiet_lightning()
    args.data_dir = args.data_dir or juliet_dir()
    if not sorted(args.data_dir.glob(args.pattern)):
        sys.exit(f"no files match {args.data_dir / args.pattern} (set --data-dir or STREAMGUARD_JULIET_DIR)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"load average before: {load_text()} on {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory(prefix="sg_bench_padding_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        dynamic = make_datamodule(args, work / "dynamic", dynamic=True, tokenizer=None)
        dynamic.setup("fit")  # reads + caps the records and trains the BPE once
        tok_dir = dynamic.output_dir / "tokenizer"
        fixed = make_datamodule(args, work / "fixed", dynamic=False, tokenizer=str(tok_dir))
        fixed.setup("fit")
        same_tok = tokenizer_fingerprint(dynamic.tokenizer) == tokenizer_fingerprint(fixed.tokenizer)
        same_records = [r.id for r in dynamic.records["train"]] == [r.id for r in fixed.records["train"]]
        if not (same_tok and same_records):
            sys.exit(f"setup differs between modes: same tokenizer {same_tok}, same records {same_records}")
        lengths = dynamic.datasets["train"].lengths
        print(f"{args.data_dir / args.pattern}: {len(lengths):,} train functions, mean {sum(lengths) / len(lengths):.0f} "
              f"tokens, {sum(n >= args.max_length for n in lengths)} truncated at {args.max_length}; "
              f"vocab {len(dynamic.tokenizer)}; data + tokenizer {time.perf_counter() - t0:.1f} s")
        print(f"encoder: RoBERTa hidden {args.hidden}, {args.layers} layers, {args.heads} heads; batch {args.batch_size}; "
              f"precision {args.precision}")

        if args.warmup_batches:
            train_epoch("warmup", dynamic, args, args.warmup_batches)
            train_epoch("warmup", fixed, args, args.warmup_batches)
        rows = [train_epoch("dynamic + bucketing", dynamic, args),
                train_epoch(f"fixed {args.max_length}", fixed, args)]

    print_table(rows)
    dyn, fix = rows
    ratio = dyn.seconds / fix.seconds
    print(f"dynamic / fixed: time {ratio:.3f}x, tokens incl. pad {dyn.counter.padded / fix.counter.padded:.3f}x; "
          f"target time <= {TARGET_RATIO}x {'OK' if ratio <= TARGET_RATIO else 'MISSED'}")
    print(f"load average after: {load_text()}")


if __name__ == "__main__":
    main()
