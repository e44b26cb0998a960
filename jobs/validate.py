"""Validate a batch of raw CSV files: ``python -m jobs.validate --manifest m.json`` (see README).

Exit codes: 0 a result was written (SUCCEEDED or FAILED: read its status); 2 bad arguments or
configuration; 1 internal error (a result with status ERROR is still written where possible).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.usecases import lifecycle
from jobs.exit_codes import run_job


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the validate job; returns the process exit code."""
    return run_job(argv, "python -m jobs.validate", lifecycle.validate, spark)


if __name__ == "__main__":
    sys.exit(main())
