"""Benchmark baseline: raw CSV -> Delta with no checks (``python -m jobs.baseline --manifest m.json``)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common.baseline import run_baseline
from common.contract import load_contracts
from common.errors import ConfigurationError
from common.logs import configure_logging
from common.manifest import resolve_batch
from common.settings import load_settings
from common.spark import build_spark


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, prog="python -m jobs.baseline")
        batch = resolve_batch(settings)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    work_dir = Path(settings.work_dir or tempfile.mkdtemp(prefix="ecom-baseline-"))
    spark = build_spark(settings, "ecom-baseline")
    try:
        written = run_baseline(spark, settings, batch, load_contracts(), work_dir)
    finally:
        spark.stop()
        if not settings.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps({"rows_written": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
