"""Generate a synthetic batch: ``python -m jobs.generate --out DIR --items 100000`` (see README).

``--upload s3://bucket[/prefix]`` also stages it in the landing zone's layout (raw parts and
``manifests/<batch-id>.json``) and prints the manifest URI; S3 settings come from the ``ECOM_``
environment (``ECOM_S3_ENDPOINT_URL`` for MinIO), credentials from the AWS default chain.
Exit codes: 0 written; 1 the upload failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common.errors import ConfigurationError, PipelineError
from common.generator import GeneratorConfig, generate_batch
from common.settings import load_settings
from common.usecases.stage_batch import stage_batch
from jobs.exit_codes import ExitCode


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked (exits 2 with the usage on a bad one, as argparse does)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.generate", description=__doc__)
    parser.add_argument("--out", type=Path, help="output directory (default with --upload: a temporary one)")
    parser.add_argument(
        "--upload",
        metavar="URI",
        help="stage the batch under this root (s3://bucket[/prefix]): raw/<dataset>/<batch-id>/ + manifests/",
    )
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
    parser.add_argument("--first-product-id", type=int, default=1)
    parser.add_argument("--products", type=int, help="products to generate (default: max(50, items/10))")
    parser.add_argument(
        "--order-corrections",
        type=int,
        default=0,
        metavar="N",
        help="N earlier orders (random ids below --first-order-id) re-delivered as Returned, on these days",
    )
    parser.add_argument(
        "--product-corrections",
        type=int,
        default=0,
        metavar="N",
        help="N earlier products (random ids below --first-product-id) re-delivered with a new price",
    )
    parser.add_argument(
        "--corrections-below",
        metavar="ORDER_ID,PRODUCT_ID",
        help="draw corrected ids below these instead (default: --first-order-id,--first-product-id)",
    )
    parser.add_argument(
        "--first-day", type=int, default=0, help="orders are created from 2024-01-01 plus this many days ..."
    )
    parser.add_argument("--days", type=int, default=730, help="... over this many days (a day's batch: 1)")
    parser.add_argument("--no-products", action="store_true", help="leave products out of the manifest")
    args = parser.parse_args(argv)
    if args.out is None and args.upload is None:
        parser.error("give --out DIR, --upload URI, or both")
    if args.items < 1 or args.parts < 1 or args.days < 1:
        parser.error("--items, --parts and --days must be at least 1")
    if args.first_day < 0:
        parser.error("--first-day must be 0 or more")
    if not (
        0 <= args.defect_rate <= 1
        and 0 <= args.warning_rate <= 1
        and args.defect_rate + args.warning_rate <= 1
    ):
        parser.error("--defect-rate and --warning-rate must be in [0, 1] and add up to at most 1")
    below = (args.first_order_id, args.first_product_id)
    if args.corrections_below:
        try:
            orders_below, products_below = (int(v) for v in args.corrections_below.split(","))
        except ValueError:
            parser.error("--corrections-below takes two ids: ORDER_ID,PRODUCT_ID")
        below = (min(orders_below, args.first_order_id), min(products_below, args.first_product_id))
    args.corrections_below = below
    if args.order_corrections >= below[0] or args.order_corrections < 0:
        parser.error("--order-corrections N needs N earlier ids: --first-order-id above N")
    if args.product_corrections >= below[1] or args.product_corrections < 0:
        parser.error("--product-corrections N needs N earlier ids: --first-product-id above N")
    if args.product_corrections and args.no_products:
        parser.error("--product-corrections needs the products in the batch (drop --no-products)")
    if args.products is not None and args.products < 1:
        parser.error("--products must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Write CSV parts, manifest.json and ground_truth.json; print the ground truth summary."""
    args = parse_args(argv)
    config = GeneratorConfig(
        items=args.items,
        parts=args.parts,
        seed=args.seed,
        defect_rate=0.0 if args.clean else args.defect_rate,
        warning_rate=0.0 if args.clean else args.warning_rate,
        first_order_id=args.first_order_id,
        first_item_id=args.first_item_id,
        first_product_id=args.first_product_id,
        products=args.products,
        order_corrections=args.order_corrections,
        product_corrections=args.product_corrections,
        order_corrections_below=args.corrections_below[0],
        product_corrections_below=args.corrections_below[1],
        first_day=args.first_day,
        days=args.days,
        include_products=not args.no_products,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ecom-generate-") as scratch:
        out = args.out or Path(scratch)
        truth = generate_batch(out, config, args.batch_id)
        report: dict[str, object] = {"out": str(out) if args.out else None}
        if args.upload:
            try:
                settings = load_settings([], prog="python -m jobs.generate")
            except ConfigurationError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return ExitCode.CONFIG
            try:
                report["manifest"] = stage_batch(out / "manifest.json", args.upload, settings)
            except PipelineError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return ExitCode.FAILED
    report["seconds"] = round(time.monotonic() - started, 1)
    report["datasets"] = {
        name: {k: v for k, v in d.items() if k.startswith("rows")} for name, d in truth["datasets"].items()
    }
    print(json.dumps(report))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
