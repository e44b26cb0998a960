"""Compute daily KPIs for a validated batch: ``python -m jobs.transform --batch-id B`` (see README).

Exit codes: 0 KPIs written; 1 internal error; 2 bad arguments or configuration; 3 the batch's
validation result is missing or not SUCCEEDED (nothing is computed).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.usecases import lifecycle
from jobs.exit_codes import run_job


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the transform job; returns the process exit code."""
    return run_job(argv, "python -m jobs.transform", lifecycle.transform, spark)


if __name__ == "__main__":
    sys.exit(main())
