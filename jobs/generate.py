"""Generate a synthetic batch: ``python -m jobs.generate --out DIR --items 100000`` (see README)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common.generator import GeneratorConfig, generate_batch


def main(argv: Sequence[str] | None = None) -> int:
    """Write CSV parts, manifest.json and ground_truth.json; print the ground truth summary."""
    parser = argparse.ArgumentParser(prog="python -m jobs.generate", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--items", type=int, default=5_000, help="order items to generate (orders ~ items/2.5)"
    )
    parser.add_argument("--parts", type=int, default=2, help="files per dataset (products get half)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--defect-rate", type=float, default=0.01, help="share of rows given one defect")
    parser.add_argument("--warning-rate", type=float, default=0.01, help="share of rows given one warning")
    parser.add_argument("--clean", action="store_true", help="no defects and no warnings")
    parser.add_argument("--batch-id", default="demo-0001")
    parser.add_argument("--first-order-id", type=int, default=1)
    parser.add_argument("--first-item-id", type=int, default=1)
    parser.add_argument("--no-products", action="store_true", help="leave products out of the manifest")
    args = parser.parse_args(argv)
    if args.items < 1 or args.parts < 1:
        parser.error("--items and --parts must be at least 1")
    if not (
        0 <= args.defect_rate <= 1
        and 0 <= args.warning_rate <= 1
        and args.defect_rate + args.warning_rate <= 1
    ):
        parser.error("--defect-rate and --warning-rate must be in [0, 1] and add up to at most 1")
    config = GeneratorConfig(
        items=args.items,
        parts=args.parts,
        seed=args.seed,
        defect_rate=0.0 if args.clean else args.defect_rate,
        warning_rate=0.0 if args.clean else args.warning_rate,
        first_order_id=args.first_order_id,
        first_item_id=args.first_item_id,
        include_products=not args.no_products,
    )
    started = time.monotonic()
    truth = generate_batch(args.out, config, args.batch_id)
    summary = {
        name: {k: v for k, v in d.items() if k.startswith("rows")} for name, d in truth["datasets"].items()
    }
    print(
        json.dumps(
            {"out": str(args.out), "seconds": round(time.monotonic() - started, 1), "datasets": summary}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
