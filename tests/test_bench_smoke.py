"""The transformer benchmarks run end to end with tiny settings and print the rows they promise.

Each script runs in its own process (as a user runs it) on the embedded tiny corpus, so the module
needs no shared data. Only counts and equalities are asserted, never timings.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamguard_pl.locations import repo_root

BENCH = repo_root() / "bench"
TINY = ["--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64"]


def run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=180, cwd=repo_root())
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def row(out: str, name: str) -> list[str]:
    """The whitespace-separated cells after a row's (possibly multi-word) name."""
    for line in out.splitlines():
        if line.startswith(name + " "):
            return line[len(name):].split()
    raise AssertionError(f"no row {name!r} in:\n{out}")


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%x"))


def test_padding_prints_both_modes_on_the_same_tokens(tiny_corpus: Path) -> None:
    out = run("padding.py", "--data-dir", str(tiny_corpus), "--limit", "64", "--batch-size", "16",
              "--max-length", "256", "--bpe-vocab", "400", *TINY)
    dyn, fixed = row(out, "dynamic + bucketing"), row(out, "fixed 256")
    # batches, epoch s, samples/s, tokens incl. pad, real tokens, pad %
    assert number(dyn[0]) == number(fixed[0]) == 4
    assert number(fixed[3]) == 64 * 256  # every sequence padded to max_length
    assert number(dyn[4]) == number(fixed[4])  # same records, same tokenizer
    assert number(dyn[4]) <= number(dyn[3]) < number(fixed[3])
    assert re.search(r"dynamic / fixed: time [\d.]+x, tokens incl\. pad [\d.]+x; target time <= 0\.5x (OK|MISSED)", out)
    assert re.search(r"load average before: [\d.]+/[\d.]+/[\d.]+", out) and "load average after:" in out


def test_padding_names_a_missing_data_dir(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "padding.py"), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"no files match {tmp_path / 'train*.jsonl'}" in proc.stderr


def test_lightning_overhead_compares_identical_training(tiny_corpus: Path) -> None:
    out = run("lightning_overhead.py", "--data-dir", str(tiny_corpus), "--steps", "3", "--rounds", "2",
              "--warmup-steps", "1", "--batch-size", "8", "--max-length", "128", "--bpe-vocab", "400", *TINY)
    lightning, plain = row(out, "lightning"), row(out, "plain")
    # samples/s, ms/step, CPU samples/s, fit wall s, final loss, loop wall s per round...
    assert len(lightning[5:]) == len(plain[5:]) == 2  # two timed rounds each
    assert lightning[4] == plain[4]  # same final loss to 5 decimals
    diff = re.search(r"max \|param difference\| after 3 steps = (\S+)", out)
    assert diff and float(diff.group(1)) < 1e-6
    assert re.search(r"target >= 0\.95x: wall (OK|MISSED), CPU time (OK|MISSED)", out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip message is only printed without CUDA")
def test_gpu_throughput_skips_without_cuda() -> None:
    assert run("gpu_throughput.py").strip().splitlines()[-1] == "no CUDA device: skipped"


def test_gpu_throughput_counts_the_model_it_trains() -> None:
    from streamguard_pl.models.transformer import TransformerClassifier

    out = run("gpu_throughput.py", "--force-cpu", *TINY, "--vocab", "500", "--seq-len", "32", "--batch-size", "2",
              "--steps", "2", "--warmup-steps", "1")
    config = {"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 34}
    params = sum(p.numel() for p in TransformerClassifier(config=config, vocab_size=500, pad_token_id=1).parameters())
    assert f"MFU = 6 x {params:,} params" in out
    assert "2 timed steps after 1 warm-up" in out
    header = next(i for i, line in enumerate(out.splitlines()) if line.split()[:1] == ["samples/s"])
    samples_s, tokens_s = (number(c) for c in out.splitlines()[header + 1].split()[:2])
    # samples/s is printed to 0.1 and tokens/s to 1: allow exactly that rounding (slow steps make samples/s small).
    assert samples_s > 0 and tokens_s == pytest.approx(32 * samples_s, abs=32 * 0.05 + 0.5)
