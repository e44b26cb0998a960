"""Compute daily KPIs for a validated batch: ``python -m jobs.transform --batch-id B`` (see README).

Exit codes: 0 KPIs written; 1 internal error; 2 bad arguments or configuration; 3 the batch's
validation result is missing or not SUCCEEDED (nothing is computed).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.errors import ConfigurationError, PipelineError, ResultNotUsableError, internal_error
from common.io.lake import Lake
from common.io.results import BatchStatus, TransformResult, read_result, write_result
from common.io.spark import BatchSize, build_spark, stop_spark
from common.logs import configure_logging
from common.settings import load_settings
from common.usecases.report.publish import publish_transform
from common.usecases.report.summary import format_transform
from common.usecases.transform_batch import run_transform
from jobs.exit_codes import ExitCode

log = logging.getLogger("jobs.transform")


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the transform job; returns the process exit code."""
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, prog="python -m jobs.transform")
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log_format, settings.log_level)
    if not settings.batch_id:
        log.error("no batch id: pass --batch-id (ECOM_BATCH_ID)")
        return ExitCode.CONFIG
    batch_id = settings.batch_id
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    lake = Lake(settings.lake_root)
    source = settings.validation_result or lake.result(batch_id, "validate")
    try:
        validation = read_result(source, settings)
        if validation.batch_id != batch_id:
            raise ResultNotUsableError(
                f"{source} is the result of batch {validation.batch_id!r}, not {batch_id!r}"
            )
        if validation.status is not BatchStatus.SUCCEEDED:
            raise ResultNotUsableError(
                f"batch {batch_id} validation status is {validation.status.value} (expected SUCCEEDED): "
                "its rows were not published, so there is nothing to transform. "
                + "; ".join(validation.errors)
            )
    except ResultNotUsableError as exc:
        log.error("refusing to transform: %s", exc)
        return ExitCode.NOT_VALIDATED
    except PipelineError as exc:
        log.error("cannot read the validation result: %s", exc)
        return ExitCode.FAILED
    result_uri = lake.result(batch_id, "transform")
    result = TransformResult(
        batch_id=batch_id, status=BatchStatus.ERROR, started_at=started.isoformat(timespec="seconds")
    )
    session = spark
    outcome = None
    failure_code = ExitCode.FAILED
    try:
        rows = sum(d.rows_read for d in validation.datasets.values())
        session = session or build_spark(settings, "ecom-transform", BatchSize(rows_read=rows))
        outcome = run_transform(session, settings, batch_id, started)
        result.touched_dates = outcome.touched_dates
        result.notes = outcome.notes
        result.outputs = {
            o.table: {"rows": o.rows, "delta": o.delta, "dynamodb": o.dynamodb} for o in outcome.outputs
        }
        result.status = BatchStatus.SUCCEEDED
    except ConfigurationError as exc:  # e.g. the pinned jars are missing: says what to run
        log.error("%s", exc)
        result.errors.append(str(exc))
        failure_code = ExitCode.CONFIG
    except Exception as exc:  # the entrypoint turns any failure into a logged error + exit 1
        log.exception("transform of batch %s failed", batch_id)
        result.errors.append(internal_error(exc))
    finally:
        result.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        result.duration_seconds = round(time.monotonic() - clock, 3)
        try:
            write_result(result, result_uri, settings)
        except PipelineError:
            log.exception("could not write the transform result to %s", result_uri)
        report = None
        if result.status is BatchStatus.SUCCEEDED and session is not None:
            written = {o.table: o.data for o in outcome.outputs} if outcome else {}
            report = publish_transform(session, settings, validation, result, written, source, result_uri)
        if spark is None and session is not None:
            stop_spark(session)
    if result.status is not BatchStatus.SUCCEEDED:
        return failure_code
    for note in result.notes:
        log.info("%s", note)
    if outcome is not None:
        print(format_transform(result, {o.table: o.data for o in outcome.outputs}))
    if report:
        print(f"Report: {report}")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
