"""The validation result JSON: the contract between the validate job, the state machine and
the transform job. Versioned; documented in docs/jobs.md#result-json-schema-version-10.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, computed_field

from common.errors import ResultNotUsableError, StorageError, shorten
from common.io import storage

if TYPE_CHECKING:
    from common.settings import Settings

# 1.1 added the park (rows_parked, parked_counts, park, notices); 1.2 files' version_id, read_from
SCHEMA_VERSION = "1.2"
SAMPLE_PER_RULE = 20  # quarantined rows a validation keeps per failing rule, for its report
SUMMARY_MAX_ERRORS = 10  # the summary the state machine reads stays small (its payload limit)
SUMMARY_MAX_CHARS = 400


def summary_uri(result_uri: str) -> str:
    """``…/validate.json`` -> ``…/validate.summary.json`` (the state machine reads only this)."""
    stem = result_uri.removesuffix(".json")
    return f"{stem}.summary.json"


def _bounded(errors: list[str]) -> list[str]:
    kept = [shorten(e, SUMMARY_MAX_CHARS) for e in errors]
    if len(kept) > SUMMARY_MAX_ERRORS:
        more = len(kept) - SUMMARY_MAX_ERRORS + 1
        kept = [*kept[: SUMMARY_MAX_ERRORS - 1], f"… and {more} more (see the result file)"]
    return kept


class BatchStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"  # every dataset passed: valid rows were published
    FAILED = "FAILED"  # a data-quality outcome: schema failure or threshold exceeded
    ERROR = "ERROR"  # the job could not run (configuration or internal error)


class DatasetStatus(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    ABSENT = "ABSENT"  # no file of this dataset in the batch
    NOT_RUN = "NOT_RUN"  # the job stopped before reaching it


class FileResult(BaseModel):
    uri: str
    version_id: str | None = None  # the S3 version the batch read (recorded when the file arrived)
    read_from: str | None = None  # a copy of that version, read because the object changed since
    rows_read: int | None = None
    error: str | None = None  # what is wrong, in words (no text taken from the file)
    excerpt: str | None = None  # what the file held where it went wrong (shortened; never alerted)


class ParkResult(BaseModel):
    """What a run did with the rows parked by earlier batches (waiting for a parent), and the park
    as the run leaves it."""

    rows_checked: int = 0  # parked rows of earlier batches this run re-checked
    rows_released: int = 0  # their parents have arrived: published with this batch
    released_from: dict[str, int] = Field(default_factory=dict)  # batch they came with -> rows
    rows_expired: int = 0  # quarantined as parent_never_arrived (waited past parkFor)
    rows_parent_quarantined: int = 0  # quarantined: their parent arrived only as a quarantined row
    rows_waiting: int = 0  # in the park after this run (this batch's parked rows included)
    oldest_parked_since: str | None = None  # the date the longest-waiting of them was parked
    oldest_parked_days: int | None = None  # its age on this run's processing date
    park_table: dict[str, Any] | None = None  # the park's last write, if any


class DatasetResult(BaseModel):
    status: DatasetStatus = DatasetStatus.NOT_RUN
    files: list[FileResult] = Field(default_factory=list)
    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_parked: int = 0  # waiting for a parent (not counted as quarantined: see ``park``)
    duplicates_collapsed: int = 0
    quarantine_share: float = 0.0
    quarantine_threshold: float | None = None  # the contract's own, or the run's override
    rule_counts: dict[str, int] = Field(default_factory=dict)
    parked_counts: dict[str, int] = Field(default_factory=dict)  # reasons of this batch's parked rows
    warning_counts: dict[str, int] = Field(default_factory=dict)
    rows_with_warnings: int = 0
    checks_skipped: list[str] = Field(default_factory=list)
    validated_table: dict[str, Any] | None = None
    quarantine_table: dict[str, Any] | None = None
    park: ParkResult | None = None  # only for a dataset whose foreign keys park rows
    errors: list[str] = Field(default_factory=list)


class ValidationResult(BaseModel):
    schema_version: str = SCHEMA_VERSION
    job: str = "validate"
    batch_id: str
    status: BatchStatus
    processing_date: str | None = None
    started_at: str
    finished_at: str | None = None
    duration_seconds: float | None = None
    quarantine_threshold: float | None = None  # set only when the run overrode the contracts' own
    datasets: dict[str, DatasetResult] = Field(default_factory=dict)
    rule_descriptions: dict[str, str] = Field(default_factory=dict)
    catalog: dict[str, str] = Field(default_factory=dict)  # Glue table -> created|updated|unchanged
    errors: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, Any]:
        """A compact view for alerts and logs, bounded in size. Its messages name files, columns,
        rules and counts, never values taken from the data (excerpts stay in ``files``)."""
        return {
            "schema_version": self.schema_version,
            "batch_id": self.batch_id,
            "status": self.status.value,
            "errors": _bounded(self.errors),
            "datasets": {
                name: {
                    "status": d.status.value,
                    "rows_read": d.rows_read,
                    "rows_valid": d.rows_valid,
                    "rows_quarantined": d.rows_quarantined,
                    "rows_parked": d.rows_parked,
                    "duplicates_collapsed": d.duplicates_collapsed,
                }
                for name, d in self.datasets.items()
            },
            "notices": self.notices,
            **({"park": self.park_summary} if self.park_summary is not None else {}),
        }

    @property
    def park_summary(self) -> dict[str, int] | None:
        """The park across datasets, for the state machine's metrics (None when no dataset parks):
        rows that expired on this run, rows waiting after it, and the oldest one's age in days."""
        parks = [d.park for d in self.datasets.values() if d.park is not None]
        if not parks:
            return None
        return {
            "rows_expired": sum(p.rows_expired for p in parks),
            "rows_waiting": sum(p.rows_waiting for p in parks),
            "oldest_parked_days": max(p.oldest_parked_days or 0 for p in parks),
        }

    @property
    def notices(self) -> list[str]:
        """What a person should hear of even when the batch succeeded: parked rows that expired
        (counts and reason codes only, never values)."""
        out: list[str] = []
        for name, d in self.datasets.items():
            if d.park is not None and d.park.rows_expired:
                out.append(
                    f"{name}: {d.park.rows_expired} parked row(s) quarantined as parent_never_arrived "
                    f"(their parent did not arrive within the contract's parkFor); "
                    f"{d.park.rows_waiting} still waiting"
                )
        return out


def read_result(uri: str, settings: Settings) -> ValidationResult:
    """Read a validation result.

    Raises:
        ResultNotUsableError: it is missing or not a result of this schema.
    """
    try:
        text = storage.read_text(uri, settings)
    except FileNotFoundError as exc:
        raise ResultNotUsableError(
            f"no validation result at {uri}: run the validate job for this batch first"
        ) from exc
    except StorageError as exc:
        raise ResultNotUsableError(str(exc)) from exc
    try:
        return ValidationResult.model_validate_json(text)
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ResultNotUsableError(
            f"{uri} is not a validation result (schema {SCHEMA_VERSION}): {exc}"
        ) from exc


class TransformResult(BaseModel):
    """What the transform job did (written next to the validation result)."""

    schema_version: str = SCHEMA_VERSION
    job: str = "transform"
    batch_id: str
    status: BatchStatus
    started_at: str
    finished_at: str | None = None
    duration_seconds: float | None = None
    touched_dates: list[str] = Field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


def write_result(model: BaseModel, uri: str, settings: Settings) -> None:
    """Write any result model as JSON (local path or S3); a validation result also writes its
    summary beside it (:func:`summary_uri`), after the result.

    Raises:
        StorageError: it cannot be written.
    """
    storage.write_text(uri, json.dumps(model.model_dump(mode="json"), indent=2) + "\n", settings)
    if isinstance(model, ValidationResult):
        storage.write_text(summary_uri(uri), json.dumps(model.summary) + "\n", settings)
