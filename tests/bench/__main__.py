"""``make bench``: ``python -m tests.bench [--quick] [--scales 27000,1000000,5000000] [--runs 2]``.

27,000 order items is the size of the real sample (~46k rows across datasets)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.bench import growth
from tests.bench.bench import run_benchmark


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument(
        "--scales", default="27000,1000000,5000000", help="order items per scale, comma-separated"
    )
    parser.add_argument("--runs", type=int, default=2, help="runs per scale (min and median are reported)")
    parser.add_argument("--quick", action="store_true", help="a fast look: 27k and 1M, one run each")
    parser.add_argument(
        "--with-10m", action="store_true", help="add the 10M scale and the 20M history to the growth rows"
    )
    parser.add_argument(
        "--growth",
        default=",".join(str(h) for h in growth.HISTORIES),
        help="history sizes (order items) the day's batch is timed into, comma-separated ('': none)",
    )
    parser.add_argument(
        "--lived-days",
        type=int,
        default=0,
        choices=range(growth.MAX_LIVED_DAYS + 1),
        metavar=f"0..{growth.MAX_LIVED_DAYS}",
        help="add a row: the first non-empty history again, after this many days of batches like the "
        "day's, each followed by maintain (0: none)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--spark-master", default="local[*]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    histories = [int(h) for h in args.growth.split(",") if h.strip()]
    runs = args.runs
    if args.quick:
        scales, histories, runs = [27_000, 1_000_000], [0, 1_000_000], 1
    if args.with_10m:
        scales.append(10_000_000)
        histories.append(growth.LARGEST)
    run_benchmark(scales, runs, args.out, args.spark_master, histories, lived_days=args.lived_days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
