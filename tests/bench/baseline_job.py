"""Benchmark baseline: raw CSV -> Delta, no checks.

``python -m tests.bench.baseline_job --manifest m.json``
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from common.contracts import load_contracts
from common.errors import ConfigurationError
from common.io.manifest import input_bytes, resolve_batch
from common.io.spark import BatchSize, build_spark, stop_spark
from common.logs import configure_logging
from common.settings import load_settings
from tests.bench.baseline import run_baseline


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(
            sys.argv[1:] if argv is None else argv, prog="python -m tests.bench.baseline_job"
        )
        batch = resolve_batch(settings)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    # the same engine as validate's, down to the driver's compiler for the batch's size
    spark = build_spark(settings, "ecom-baseline", BatchSize(input_bytes=input_bytes(batch, settings)))
    try:
        written = run_baseline(spark, settings, batch, load_contracts())
    finally:
        stop_spark(spark)
    print(json.dumps({"rows_written": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
