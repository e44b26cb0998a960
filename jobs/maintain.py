"""Maintain the lake's tables: ``python -m jobs.maintain --lake-root L`` (see docs/operations.md).

Compacts each table's small files, deletes the files no kept version needs (VACUUM) and keeps the
log long enough for a re-run of the last ``--maintain-keep-batches`` batches. Holds the lake's
writer lease, so it never runs beside validate or transform.

Exit codes: 0 done (the lake was already maintained, or now is); 1 a table could not be maintained
or the lake is busy (re-run it: each step is atomic); 2 bad arguments or configuration.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from common.contracts import load_contracts
from common.errors import ConfigurationError, PipelineError
from common.io.spark import build_spark, stop_spark
from common.logs import configure_logging
from common.settings import load_settings
from common.usecases.maintain_lake import run_maintenance
from common.usecases.report.summary import format_maintenance
from jobs.exit_codes import ExitCode

log = logging.getLogger("jobs.maintain")


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the maintenance job; returns the process exit code."""
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, prog="python -m jobs.maintain")
        contracts = load_contracts(Path(settings.contracts_dir) if settings.contracts_dir else None)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log_format, settings.log_level)
    session = spark
    try:
        session = session or build_spark(settings, "ecom-maintain")
        outcome = run_maintenance(session, settings, contracts, dt.datetime.now(dt.UTC))
    except ConfigurationError as exc:  # e.g. the pinned jars are missing: says what to run
        log.error("%s", exc)
        return ExitCode.CONFIG
    except PipelineError as exc:
        log.error("maintenance of %s stopped: %s", settings.lake_root, exc)
        return ExitCode.FAILED
    finally:
        if spark is None and session is not None:
            stop_spark(session)
    print(format_maintenance(outcome))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
