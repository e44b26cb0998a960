"""Age a lake's logs as Delta's cleanup does: ``python -m tests.bench.aged LAKE``.

Delta drops log entries older than ``delta.logRetentionDuration`` (30 days) at its checkpoints, so
a lake that has lived for years has logs that begin long after version 0. The bench's history lakes
are built in one batch, minutes before they are timed: each of their logs is cut here to its latest
version (a checkpoint there, no entry before it), as the cleanup would leave it a month later.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from common.io import delta
from common.io.spark import build_spark
from tests.conftest import make_settings
from tests.helpers import cut_log


def main(argv: Sequence[str] | None = None) -> int:
    lake = Path((sys.argv[1:] if argv is None else argv)[0])
    spark = build_spark(make_settings(), "bench-aged-logs")
    try:
        for log_dir in sorted([*lake.glob("*/*/_delta_log"), *lake.glob("_runs/_delta_log")]):
            table = log_dir.parent
            latest = delta.commits(spark, str(table))[-1].version
            cut_log(spark, table, latest)
            print(f"{table.relative_to(lake)}: log cut to version {latest}")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
