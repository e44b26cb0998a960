"""Write the batch's report, record the run in the ledger, refresh the index (both jobs).

A report that cannot be written is logged as an error and does not change the job's outcome:
the result JSON, which the state machine and transform read, is already written by then.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession

from common.errors import PipelineError
from common.io import runs, storage
from common.io.lake import Lake, beside, report_uri
from common.io.results import TransformResult, ValidationResult
from common.usecases.report.page import KpiView, RunRow, render_batch_report, render_index

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

SAMPLES_FILE = "report-samples.json"


def _run_row(
    result: ValidationResult | TransformResult, job: str, result_uri: str, report: str
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "batch_id": result.batch_id,
        "job": job,
        "status": result.status.value,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "result_uri": result_uri,
        "report_uri": report,
        **dict.fromkeys(runs.COUNTS, 0),
    }
    if isinstance(result, ValidationResult):
        row["dataset_counts"] = {
            name: {c: int(getattr(d, c)) for c in runs.COUNTS} | runs.park_counts(d)
            for name, d in result.datasets.items()
        }
        row["rule_counts"] = {
            f"{name}:{code}": n for name, d in result.datasets.items() for code, n in d.rule_counts.items()
        }
        for column in runs.COUNTS:
            row[column] = sum(int(getattr(d, column)) for d in result.datasets.values())
    return row


def _link(index_uri: str, target: str) -> str:
    """``target`` relative to the index when both are in one place (a folder, or one bucket)."""
    index_dir = index_uri.rsplit("/", 1)[0]
    if storage.is_s3(index_uri) != storage.is_s3(target):
        return target
    if storage.is_s3(target):
        a, b = storage.parse_s3(index_dir + "/"), storage.parse_s3(target)
        if a.bucket != b.bucket:
            return target
        return posixpath.relpath(b.key, a.key.rstrip("/") or ".")
    return posixpath.relpath(target, index_dir)


def _refresh_index(spark: SparkSession, settings: Settings, lake: Lake) -> None:
    index = lake.reports_index()
    rows = [
        RunRow(
            batch_id=r["batch_id"],
            status=r["status"],
            finished_at=r["finished_at"].isoformat(timespec="seconds") if r["finished_at"] else "",
            rows_read=int(r["rows_read"]),
            rows_quarantined=int(r["rows_quarantined"]),
            report=_link(index, r["report_uri"]),
        )
        for r in runs.latest_runs(spark, lake.runs(), "validate")
    ]
    storage.write_text(index, render_index(rows), settings, content_type="text/html; charset=utf-8")


def publish_validation(
    spark: SparkSession,
    settings: Settings,
    lake: Lake,
    result: ValidationResult,
    samples: dict[str, list[dict[str, Any]]],
    result_uri: str,
) -> str | None:
    """The report beside the result, the samples for transform's re-render, the ledger, the index;
    returns the report's URI (None when it could not be written)."""
    uri = report_uri(result_uri)
    clock = time.monotonic()
    try:
        storage.write_text(beside(result_uri, SAMPLES_FILE), json.dumps(samples, default=str), settings)
        html = render_batch_report(result, samples, result_uri=result_uri)
        storage.write_text(uri, html, settings, content_type="text/html; charset=utf-8")
        runs.record_run(spark, lake.runs(), _run_row(result, "validate", result_uri, uri))
        _refresh_index(spark, settings, lake)
    except PipelineError:
        log.exception("the report of batch %s could not be written to %s", result.batch_id, uri)
        return None
    log.info("report, run ledger and index written in %.1fs (%d bytes)", time.monotonic() - clock, len(html))
    return uri


def publish_transform(
    spark: SparkSession,
    settings: Settings,
    lake: Lake,
    validation: ValidationResult,
    transform: TransformResult,
    written: dict[str, list[dict[str, Any]]],
    validation_uri: str,
    transform_uri: str,
) -> str | None:
    """Re-render the batch's report with the transform's part: ``written``, the KPI rows it wrote
    for the touched dates by table (held by the job already: not read back from the tables)."""
    uri = report_uri(validation_uri)
    try:
        samples_uri = beside(validation_uri, SAMPLES_FILE)
        samples = (
            json.loads(storage.read_text(samples_uri, settings))
            if storage.exists(samples_uri, settings)
            else {}
        )
        kpis = KpiView(written.get("order_daily", []), written.get("category_daily", []))
        html = render_batch_report(validation, samples, transform, kpis, result_uri=validation_uri)
        storage.write_text(uri, html, settings, content_type="text/html; charset=utf-8")
        runs.record_run(spark, lake.runs(), _run_row(transform, "transform", transform_uri, uri))
    except PipelineError:
        log.exception("the report of batch %s could not be updated at %s", transform.batch_id, uri)
        return None
    return uri
