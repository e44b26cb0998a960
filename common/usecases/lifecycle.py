"""The batch jobs from settings to outcome: each resolves its inputs once, builds (or borrows) the
SparkSession, runs its use case, writes its result and report, and says how it ended
(:class:`Outcome`). The entrypoints in ``jobs/`` only parse settings, call one of
:func:`validate`, :func:`transform` or :func:`validate_and_transform`, print what it returns and
map its outcome to an exit code.

A session passed in is borrowed (never stopped); one built here is stopped before returning.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from common.contracts import Contract, load_contracts
from common.errors import ConfigurationError, PipelineError, ResultNotUsableError, internal_error
from common.io.lake import Lake
from common.io.manifest import Batch, pin_versions, resolve_batch
from common.io.results import BatchStatus, TransformResult, ValidationResult, read_result, write_result
from common.io.spark import BatchSize, build_spark, stop_spark
from common.settings import Settings
from common.usecases.report.publish import publish_transform, publish_validation
from common.usecases.report.summary import format_transform, format_validation
from common.usecases.transform_batch import run_transform
from common.usecases.validate_batch import FileCheck, checked_bytes, inspect_batch, run_validation

log = logging.getLogger(__name__)


class Outcome(Enum):
    """How a job ended; ``jobs.exit_codes`` maps each to the process exit code."""

    DONE = "done"  # validate: a result was written (SUCCEEDED or FAILED); transform: KPIs written
    FAILED = "failed"  # an internal error, or a store refused: a re-run may pass
    CONFIG = "config"  # bad settings, manifest, contract or install: fix them first
    NOT_VALIDATED = "not validated"  # transform: no usable SUCCEEDED validation result
    BATCH_FAILED = "batch failed"  # validate then transform: the batch failed its checks


@dataclass
class Finished:
    """A job's end: its outcome and what it has to say on the terminal (summaries, report links)."""

    outcome: Outcome
    lines: list[str] = field(default_factory=list)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Validation:
    """One validate run's inputs, each looked at once, and the result it will write."""

    settings: Settings
    lake: Lake  # the one Lake of the run, built from settings.lake_root here and passed down
    clock: float
    result: ValidationResult | None = None
    result_uri: str | None = None
    batch: Batch | None = None
    contracts: dict[str, Contract] = field(default_factory=dict)
    inspected: dict[tuple[str, str], FileCheck] = field(default_factory=dict)

    def error(self, message: str) -> None:
        """Write the result as ERROR with ``message`` (where a batch is known to write it for)."""
        if self.result is None or self.result_uri is None:
            return
        self.result.status = BatchStatus.ERROR
        self.result.errors.append(message)
        self.result.finished_at = _now()
        try:
            write_result(self.result, self.result_uri, self.settings)
        except PipelineError:
            log.exception("could not write the ERROR result to %s", self.result_uri)


def _start_validation(settings: Settings) -> _Validation | Finished:
    """Resolve the batch and its contracts, pin each file to the version that arrived and check
    each file's header (its first bytes, which also give its size): one look per file."""
    lake = Lake(settings.lake_root)
    run = _Validation(settings, lake, time.monotonic())
    started = _now()
    if settings.batch_id:  # known before the manifest is read: an unreadable one still gets a result
        run.result_uri = settings.result_uri or lake.result(settings.batch_id, "validate")
        run.result = ValidationResult(
            batch_id=settings.batch_id, status=BatchStatus.ERROR, started_at=started
        )
    try:
        batch = resolve_batch(settings)
        run.contracts = load_contracts(Path(settings.contracts_dir) if settings.contracts_dir else None)
    except ConfigurationError as exc:
        log.error("%s", exc)
        run.error(str(exc))
        return Finished(Outcome.CONFIG)
    run.result_uri = settings.result_uri or lake.result(batch.batch_id, "validate")
    processing_date = settings.processing_date or dt.datetime.now(dt.UTC).date()
    run.result = ValidationResult(
        batch_id=batch.batch_id,
        status=BatchStatus.ERROR,
        started_at=started,
        processing_date=processing_date.isoformat(),
        quarantine_threshold=settings.quarantine_threshold,
    )
    run.batch = batch
    try:
        # Each object as it arrived (a copy of its recorded version when it changed since), then
        # the headers (each file's first bytes, and its size): they size the batch for the JVM.
        run.batch = pin_versions(batch, partial(lake.pinned, batch.batch_id), settings)
        run.inspected = inspect_batch(run.batch, run.contracts, settings)
    except ConfigurationError as exc:
        log.error("%s", exc)
        run.error(str(exc))
        return Finished(Outcome.CONFIG)
    except Exception as exc:  # a store refused: logged, and an ERROR result
        log.exception("validation of batch %s failed", batch.batch_id)
        run.error(internal_error(exc))
        return Finished(Outcome.FAILED)
    return run


def _run_validation(run: _Validation, session: SparkSession) -> Finished:
    assert run.result is not None and run.result_uri is not None and run.batch is not None
    settings, result = run.settings, run.result
    samples: dict[str, list[dict[str, Any]]] = {}
    processing_date = dt.date.fromisoformat(result.processing_date or "")
    try:
        run_validation(
            session,
            settings,
            run.lake,
            run.batch,
            run.contracts,
            processing_date,
            result,
            samples,
            run.inspected,
        )
        result.finished_at = _now()
        result.duration_seconds = round(time.monotonic() - run.clock, 3)
        write_result(result, run.result_uri, settings)
        report = publish_validation(session, settings, run.lake, result, samples, run.result_uri)
    except ConfigurationError as exc:  # e.g. a contract's rule does not compile
        log.error("%s", exc)
        run.error(str(exc))
        return Finished(Outcome.CONFIG)
    except Exception as exc:  # any failure: logged, and an ERROR result without its text's data
        log.exception("validation of batch %s failed", run.batch.batch_id)
        run.error(internal_error(exc))
        return Finished(Outcome.FAILED)
    log.info("batch %s: %s; result written to %s", result.batch_id, result.status.value, run.result_uri)
    return Finished(Outcome.DONE, [format_validation(result), *([f"Report: {report}"] if report else [])])


def _session(run: _Validation, spark: SparkSession | None, app_name: str) -> SparkSession | Finished:
    """The borrowed session, or one sized by the batch's checked bytes (or why there is none)."""
    if spark is not None:
        return spark
    try:
        return build_spark(run.settings, app_name, BatchSize(input_bytes=checked_bytes(run.inspected)))
    except ConfigurationError as exc:  # e.g. the pinned jars are missing: says what to run
        log.error("%s", exc)
        run.error(str(exc))
        return Finished(Outcome.CONFIG)
    except Exception as exc:
        log.exception("the SparkSession could not be started")
        run.error(internal_error(exc))
        return Finished(Outcome.FAILED)


def _validating(
    settings: Settings,
    spark: SparkSession | None,
    app_name: str,
    body: Callable[[_Validation, SparkSession], Finished],
) -> Finished:
    """Start a validation (one look per file), then ``body`` in the borrowed session or one sized
    by the batch and stopped afterwards."""
    run = _start_validation(settings)
    if isinstance(run, Finished):
        return run
    session = _session(run, spark, app_name)
    if isinstance(session, Finished):
        return session
    try:
        return body(run, session)
    finally:
        if spark is None:
            stop_spark(session)


def validate(settings: Settings, spark: SparkSession | None = None) -> Finished:
    """Validate the batch ``settings`` names and publish its rows, result and report."""
    return _validating(settings, spark, "ecom-validate", _run_validation)


def _usable_validation(settings: Settings, batch_id: str, source: str) -> ValidationResult:
    """The batch's validation result, when it SUCCEEDED.

    Raises:
        ResultNotUsableError: it is another batch's, or did not succeed.
        PipelineError: it cannot be read.
    """
    validation = read_result(source, settings)
    if validation.batch_id != batch_id:
        raise ResultNotUsableError(
            f"{source} is the result of batch {validation.batch_id!r}, not {batch_id!r}"
        )
    if validation.status is not BatchStatus.SUCCEEDED:
        raise ResultNotUsableError(
            f"batch {batch_id} validation status is {validation.status.value} (expected SUCCEEDED): "
            "its rows were not published, so there is nothing to transform. " + "; ".join(validation.errors)
        )
    return validation


def _run_transform(
    settings: Settings,
    lake: Lake,
    batch_id: str,
    validation: ValidationResult,
    source: str,
    spark: SparkSession | None,
) -> Finished:
    """Transform a batch whose validation SUCCEEDED; writes the transform result whatever happens."""
    started, clock = dt.datetime.now(dt.UTC), time.monotonic()
    result_uri = lake.result(batch_id, "transform")
    result = TransformResult(
        batch_id=batch_id, status=BatchStatus.ERROR, started_at=started.isoformat(timespec="seconds")
    )
    session = spark
    written: dict[str, list[dict[str, Any]]] = {}
    failure = Outcome.FAILED
    report = None
    try:
        rows = sum(d.rows_read for d in validation.datasets.values())
        session = session or build_spark(settings, "ecom-transform", BatchSize(rows_read=rows))
        outcome = run_transform(session, settings, lake, batch_id, started)
        written = {o.table: o.data for o in outcome.outputs}
        result.touched_dates = outcome.touched_dates
        result.notes = outcome.notes
        result.outputs = {
            o.table: {"rows": o.rows, "delta": o.delta, "dynamodb": o.dynamodb} for o in outcome.outputs
        }
        result.status = BatchStatus.SUCCEEDED
    except ConfigurationError as exc:  # e.g. the pinned jars are missing: says what to run
        log.error("%s", exc)
        result.errors.append(str(exc))
        failure = Outcome.CONFIG
    except Exception as exc:  # any failure: logged, and an ERROR result without its text's data
        log.exception("transform of batch %s failed", batch_id)
        result.errors.append(internal_error(exc))
    finally:
        result.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        result.duration_seconds = round(time.monotonic() - clock, 3)
        try:
            write_result(result, result_uri, settings)
        except PipelineError:
            log.exception("could not write the transform result to %s", result_uri)
        if result.status is BatchStatus.SUCCEEDED and session is not None:
            report = publish_transform(
                session, settings, lake, validation, result, written, source, result_uri
            )
        if spark is None and session is not None:
            stop_spark(session)
    if result.status is not BatchStatus.SUCCEEDED:
        return Finished(failure)
    for note in result.notes:
        log.info("%s", note)
    return Finished(
        Outcome.DONE, [format_transform(result, written), *([f"Report: {report}"] if report else [])]
    )


def transform(settings: Settings, spark: SparkSession | None = None) -> Finished:
    """Compute the KPIs of the batch ``settings`` names, once its validation SUCCEEDED."""
    if not settings.batch_id:
        log.error("no batch id: pass --batch-id (ECOM_BATCH_ID)")
        return Finished(Outcome.CONFIG)
    batch_id, lake = settings.batch_id, Lake(settings.lake_root)
    source = settings.validation_result or lake.result(batch_id, "validate")
    try:
        validation = _usable_validation(settings, batch_id, source)
    except ResultNotUsableError as exc:
        log.error("refusing to transform: %s", exc)
        return Finished(Outcome.NOT_VALIDATED)
    except PipelineError as exc:
        log.error("cannot read the validation result: %s", exc)
        return Finished(Outcome.FAILED)
    return _run_transform(settings, lake, batch_id, validation, source, spark)


def validate_and_transform(settings: Settings, spark: SparkSession | None = None) -> Finished:
    """Validate the batch, then (when it SUCCEEDED) transform it, in one SparkSession (sized by
    the raw input, as validate's is): the batch is resolved and each file looked at once, and
    transform takes validate's result as written."""

    def both(run: _Validation, session: SparkSession) -> Finished:
        validated = _run_validation(run, session)
        if validated.outcome is not Outcome.DONE:
            return validated
        assert run.result is not None and run.result_uri is not None
        if run.result.status is not BatchStatus.SUCCEEDED:
            log.error(
                "batch %s %s validation: not transformed (see %s)",
                run.result.batch_id,
                run.result.status.value,
                run.result_uri,
            )
            return Finished(Outcome.BATCH_FAILED, validated.lines)
        transformed = _run_transform(
            settings, run.lake, run.result.batch_id, run.result, run.result_uri, session
        )
        return Finished(transformed.outcome, validated.lines + transformed.lines)

    return _validating(settings, spark, "ecom-run", both)
