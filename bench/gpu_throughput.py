"""Training throughput and model FLOPs utilisation of a codebert-base-sized encoder on one CUDA GPU.

    .venv/bin/python bench/gpu_throughput.py                         # bf16-mixed, seq 512, batch 32
    .venv/bin/python bench/gpu_throughput.py --peak-flops 1979e12    # another GPU's peak (here: H100 sparse)
    .venv/bin/python bench/gpu_throughput.py --force-cpu --hidden 32 --layers 1 --heads 2 --intermediate 64 \
        --vocab 500 --seq-len 32 --batch-size 2 --steps 2 --warmup-steps 1     # code path check, no GPU

TransformerClassifier with a random-init RoBERTa (hidden 768, 12 layers, 12 heads, FFN 3072, vocab
50265 by default: CodeBERT's shape) trained by a real Trainer on random token ids padded to a fixed
`--seq-len` by our PadCollator, so every step costs the same. Steps after `--warmup-steps` are timed
between CUDA synchronisations. MFU = 6 * parameters * tokens/s / peak; the default peak is H100 SXM
dense bf16 (989 TFLOP/s). 6PT counts the embedding tables (no matmul) and leaves out attention scores;
the second MFU column counts it PaLM's way instead: 6 x non-embedding parameters + 12 x layers x seq x hidden.
Without a CUDA device it prints "no CUDA device: skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from streamguard_pl.data.tokens import PadCollator, TokenDataset  # noqa: E402
from streamguard_pl.models.transformer import TransformerClassifier  # noqa: E402

H100_SXM_BF16_DENSE = 989e12


class SteadyStateTimer(Callback):
    """Wall time of the steps after the first `warmup` ones (compilation, allocator growth), synchronised."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.steps = 0

    def _sync(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self._sync(trainer)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx >= self.warmup:
            self.steps += 1
            self._sync(trainer)
            self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("no timed steps: --steps must be >= 1")
        return self.end - self.start


def random_batches(args: argparse.Namespace) -> DataLoader:
    """Full-length random ids (specials 0..4 left out), padded by the collator the datamodules use."""
    n = args.batch_size * (args.warmup_steps + args.steps)
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(5, args.vocab, (n, args.seq_len), generator=g).tolist()
    labels = torch.randint(0, 2, (n,), generator=g).tolist()
    ds = TokenDataset(ids, labels, [str(i) for i in range(n)])
    collate = PadCollator(pad_token_id=1, fixed_length=args.seq_len)
    return DataLoader(ds, batch_size=args.batch_size, shuffle=False, collate_fn=collate, pin_memory=not args.force_cpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--peak-flops", type=float, default=H100_SXM_BF16_DENSE,
                    help="peak FLOP/s of the device at this precision (default: H100 SXM dense bf16, 989e12)")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=50265)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--force-cpu", action="store_true", help="run on CPU anyway (checks the code path; MFU is meaningless)")
    args = ap.parse_args(argv)

    if not torch.cuda.is_available() and not args.force_cpu:
        print("no CUDA device: skipped")
        return 0
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*have no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message)
    device = "cpu" if args.force_cpu else "cuda"
    device_name = "CPU" if args.force_cpu else torch.cuda.get_device_name(0)
    torch.backends.cuda.matmul.allow_tf32 = True  # only matters for fp32 runs
    print(f"device {device_name}; load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")

    L.seed_everything(args.seed, verbose=False)
    config = {"model_type": "roberta", "hidden_size": args.hidden, "num_hidden_layers": args.layers,
              "num_attention_heads": args.heads, "intermediate_size": args.intermediate,
              "max_position_embeddings": args.seq_len + 2}
    model = TransformerClassifier(config=config, vocab_size=args.vocab, pad_token_id=1, lr=1e-4, scheduler="constant")
    params = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for p in model.encoder.model.embeddings.parameters())
    timer = SteadyStateTimer(args.warmup_steps)
    trainer = L.Trainer(
        accelerator=device, devices=1, precision=args.precision, max_epochs=1,
        limit_train_batches=args.warmup_steps + args.steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer],
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, train_dataloaders=random_batches(args))

    samples_s = timer.steps * args.batch_size / timer.seconds
    tokens_s = samples_s * args.seq_len
    flops_6pt = 6 * params * tokens_s
    # QK^T and AV: 2 matmuls x 2 FLOPs x seq x hidden per token per layer, x3 for forward + backward.
    flops_palm = (6 * (params - embedding) + 12 * args.layers * args.seq_len * args.hidden) * tokens_s
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    print(f"RoBERTa hidden {args.hidden}, {args.layers} layers, {args.heads} heads, FFN {args.intermediate}, "
          f"vocab {args.vocab}: {params / 1e6:.1f} M parameters ({embedding / 1e6:.1f} M embeddings); seq {args.seq_len}, batch {args.batch_size}, "
          f"{args.precision}; {timer.steps} timed steps after {args.warmup_steps} warm-up")
    print(f"{'samples/s':>10} {'tokens/s':>10} {'ms/step':>8} {'model TFLOP/s':>14} {'MFU':>6} {'MFU (non-emb+attn)':>19} "
          f"{'peak GiB':>9}")
    print(f"{samples_s:>10.1f} {tokens_s:>10,.0f} {1e3 * timer.seconds / timer.steps:>8.1f} {flops_6pt / 1e12:>14.1f} "
          f"{flops_6pt / args.peak_flops:>6.1%} {flops_palm / args.peak_flops:>19.1%} {peak_mem:>9.1f}")
    print(f"MFU = 6 x {params:,} params x tokens/s / peak {args.peak_flops:.3g} FLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
