"""Validate then transform one batch in one process: ``python -m jobs.run --manifest m.json``.

One JVM and one SparkSession for both jobs, for laptops and small batches, where each job's fixed
start-up cost is most of its time. Same flags and ``ECOM_*`` environment as ``jobs.validate`` (and
the transform's). The state machine runs it in its one-task layout (template parameter
``JobLayout=one-task``); its default two-task layout keeps separate retries, timeouts and sizes.

Exit codes: 0 validated and KPIs written; 1 internal error; 2 bad arguments or configuration;
4 the batch FAILED validation (its result is written; nothing was published or transformed).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.usecases import lifecycle
from jobs.exit_codes import run_job


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run validate, then (if the batch SUCCEEDED) transform; returns the process exit code."""
    return run_job(argv, "python -m jobs.run", lifecycle.validate_and_transform, spark)


if __name__ == "__main__":
    sys.exit(main())
