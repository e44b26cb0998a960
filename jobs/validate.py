"""Validate a batch of raw CSV files: ``python -m jobs.validate --manifest m.json`` (see README).

Exit codes: 0 a result was written (SUCCEEDED or FAILED: read its status); 2 bad arguments or
configuration; 1 internal error (a result with status ERROR is still written where possible).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from common.contracts import load_contracts
from common.errors import ConfigurationError, PipelineError, internal_error
from common.io.lake import Lake
from common.io.manifest import pin_versions, resolve_batch
from common.io.results import BatchStatus, ValidationResult, write_result
from common.io.spark import BatchSize, build_spark, stop_spark
from common.logs import configure_logging
from common.settings import Settings, load_settings
from common.usecases.report.publish import publish_validation
from common.usecases.report.summary import format_validation
from common.usecases.validate_batch import checked_bytes, inspect_batch, run_validation
from jobs.exit_codes import ExitCode

log = logging.getLogger("jobs.validate")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_error(result: ValidationResult | None, uri: str | None, settings: Settings, message: str) -> None:
    if result is None or uri is None:
        return
    result.status = BatchStatus.ERROR
    result.errors.append(message)
    result.finished_at = _now()
    try:
        write_result(result, uri, settings)
    except PipelineError:
        log.exception("could not write the ERROR result to %s", uri)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the validate job; returns the process exit code."""
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, prog="python -m jobs.validate")
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log_format, settings.log_level)
    started, clock = _now(), time.monotonic()
    result: ValidationResult | None = None
    result_uri: str | None = None
    if settings.batch_id:
        result_uri = settings.result_uri or Lake(settings.lake_root).result(settings.batch_id, "validate")
        result = ValidationResult(batch_id=settings.batch_id, status=BatchStatus.ERROR, started_at=started)
    try:
        batch = resolve_batch(settings)
        contracts = load_contracts(Path(settings.contracts_dir) if settings.contracts_dir else None)
    except ConfigurationError as exc:
        log.error("%s", exc)
        _write_error(result, result_uri, settings, str(exc))
        return ExitCode.CONFIG
    result_uri = settings.result_uri or Lake(settings.lake_root).result(batch.batch_id, "validate")
    processing_date = settings.processing_date or dt.datetime.now(dt.UTC).date()
    result = ValidationResult(
        batch_id=batch.batch_id,
        status=BatchStatus.ERROR,
        started_at=started,
        processing_date=processing_date.isoformat(),
        quarantine_threshold=settings.quarantine_threshold,
    )
    session = spark
    samples: dict[str, list[dict[str, Any]]] = {}
    report: str | None = None
    try:
        # Each object as it arrived (a copy of its recorded version when it changed since), then
        # the headers (each file's first bytes, and its size): they size the batch for the JVM.
        batch = pin_versions(batch, partial(Lake(settings.lake_root).pinned, batch.batch_id), settings)
        inspected = inspect_batch(batch, contracts, settings)
        size = BatchSize(input_bytes=checked_bytes(inspected))
        session = session or build_spark(settings, "ecom-validate", size)
        run_validation(session, settings, batch, contracts, processing_date, result, samples, inspected)
        result.finished_at = _now()
        result.duration_seconds = round(time.monotonic() - clock, 3)
        write_result(result, result_uri, settings)
        report = publish_validation(session, settings, result, samples, result_uri)
    except ConfigurationError as exc:  # e.g. the pinned jars are missing: says what to run
        log.error("%s", exc)
        _write_error(result, result_uri, settings, str(exc))
        return ExitCode.CONFIG
    except Exception as exc:  # the entrypoint turns any failure into a logged error + exit 1
        log.exception("validation of batch %s failed", batch.batch_id)
        _write_error(result, result_uri, settings, internal_error(exc))
        return ExitCode.FAILED
    finally:
        if spark is None and session is not None:  # only a session this call built
            stop_spark(session)
    print(format_validation(result))
    if report:
        print(f"Report: {report}")
    log.info("batch %s: %s; result written to %s", batch.batch_id, result.status.value, result_uri)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
