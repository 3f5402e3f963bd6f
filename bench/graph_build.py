"""Graph building speed next to its floor (tree-sitter parse only), on the same functions, same run.

    .venv/bin/python bench/graph_build.py                       # Juliet valid split
    .venv/bin/python bench/graph_build.py --data-dir ../shared/data/devign
    .venv/bin/python bench/graph_build.py --memory              # + peak RSS building all of train

Targets: >= 1,000 functions/s and build_time / parse_time <= 4x, in one process.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamguard_pl.data.graphs import GraphBuilder, GraphConfig, build_graphs  # noqa: E402
from streamguard_pl.data.records import read_records  # noqa: E402
from streamguard_pl.locations import juliet_dir  # noqa: E402

TARGET_RATE, TARGET_RATIO = 1_000.0, 4.0


def rss_mib() -> float:
    """Current resident set size (Linux /proc), to show what the graphs themselves hold."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_pass(fn, records) -> float:
    t0 = time.perf_counter()
    for r in records:
        fn(r.func, r.lang)
    return time.perf_counter() - t0


def speed(records, builder: GraphBuilder, repeats: int) -> None:
    # Interleaved passes, best of `repeats` for each: both see the same machine load.
    parse_t, build_t = [], []
    for _ in range(repeats):
        parse_t.append(time_pass(builder.parse, records))
        build_t.append(time_pass(builder.build, records))
    n, tp, tb = len(records), min(parse_t), min(build_t)
    rate, ratio = n / tb, tb / tp
    print(f"{'functions':>10} {'parse-only fn/s':>16} {'build fn/s':>11} {'ms/fn build':>12} {'build/parse':>12}")
    print(f"{n:>10} {n / tp:>16,.0f} {rate:>11,.0f} {1e3 * tb / n:>12.3f} {ratio:>11.2f}x")
    print(f"targets: >= {TARGET_RATE:,.0f} fn/s {'OK' if rate >= TARGET_RATE else 'MISSED'}; "
          f"ratio <= {TARGET_RATIO:.0f}x {'OK' if ratio <= TARGET_RATIO else 'MISSED'} (best of {repeats})")


def memory(data_dir: Path, builder: GraphBuilder) -> None:
    base = rss_mib()
    records, _ = read_records(sorted(data_dir.glob("train-*.jsonl")), dedupe=False, drop_conflicts=False)
    gc.collect()
    after_read = rss_mib()
    t0 = time.perf_counter()
    graphs, stats = build_graphs(records, builder, on_error="skip")
    dt = time.perf_counter() - t0
    gc.collect()
    print(f"train split: {stats.built:,} graphs ({len(stats.failed)} failed, {stats.truncated} truncated) "
          f"in {dt:.1f} s = {stats.built / dt:,.0f} fn/s via build_graphs")
    print(f"RSS MiB: start {base:.0f}, records read {after_read:.0f}, graphs held {rss_mib():.0f} "
          f"(graphs ~{rss_mib() - after_read:.0f}); peak RSS {peak_rss_mib():.0f} MiB")
    del graphs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="folder with *.jsonl (default: $STREAMGUARD_JULIET_DIR or ../shared/data/juliet)")
    ap.add_argument("--pattern", default="valid-*.jsonl", help="files timed for speed (default: valid-*.jsonl)")
    ap.add_argument("--limit", type=int, default=None, help="time only the first N functions")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-nodes", type=int, default=1000)
    ap.add_argument("--memory", action="store_true", help="also build the whole train split and report peak RSS")
    args = ap.parse_args(argv)

    data_dir = args.data_dir or juliet_dir()
    files = sorted(data_dir.glob(args.pattern))
    if not files:
        sys.exit(f"no files match {data_dir / args.pattern} (set --data-dir or STREAMGUARD_JULIET_DIR)")
    builder = GraphBuilder(GraphConfig(max_nodes=args.max_nodes))
    records, _ = read_records(files, dedupe=False, drop_conflicts=False, limit=args.limit)
    print(f"{data_dir / args.pattern}: {len(records):,} functions, config {builder.config}")
    speed(records, builder, args.repeats)
    if args.memory:
        memory(data_dir, builder)


if __name__ == "__main__":
    main()
