"""The one typed settings object for every job.

Every knob is read from an ``ECOM_``-prefixed environment variable or the equivalent kebab-case
CLI flag (``ECOM_LAKE_ROOT`` == ``--lake-root``); flags win over the environment. Nothing here
is read at import time: entrypoints call :func:`load_settings`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict, SettingsError

from common.errors import ConfigurationError

ENV_PREFIX = "ECOM_"
# `make install` puts the pinned jars here (a checkout, or an editable install of it).
PROJECT_JARS = Path(__file__).resolve().parents[1] / ".jars"


class Settings(BaseSettings):
    """Settings shared by the validate, transform and generate jobs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_exit_on_error=False,
        frozen=True,
    )

    # --- the batch ---------------------------------------------------------------------------
    batch_id: str | None = Field(
        default=None,
        description="Batch identifier; batch ids must sort in arrival order (a later batch sorts after).",
    )
    manifest: str | None = Field(
        default=None,
        description=(
            'Batch manifest JSON (path or s3:// URI): {"batch_id": ..., "files": {dataset: [uri, ...]}}.'
        ),
    )
    orders: list[str] = Field(
        default_factory=list, description="orders files (repeat the flag or comma-separate)"
    )
    order_items: list[str] = Field(default_factory=list, description="order_items files")
    products: list[str] = Field(default_factory=list, description="products files")
    processing_date: dt.date | None = Field(
        default=None, description="Processing date stamped on rows (default: today, UTC)."
    )

    # --- where things live --------------------------------------------------------------------
    lake_root: str = Field(
        default="out/lake", description="Root of the Delta lake (local path or s3:// URI)."
    )
    result_uri: str | None = Field(
        default=None,
        description=(
            "Where validate writes its result JSON (default: <lake-root>/_results/<batch-id>/validate.json)."
        ),
    )
    validation_result: str | None = Field(
        default=None,
        description="Validation result the transform reads (default: the validate default location).",
    )
    contracts_dir: str | None = Field(
        default=None, description="Directory of data contract YAML files (default: the packaged contracts)."
    )

    # --- S3-compatible storage ----------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for MinIO/moto (default: AWS). Credentials come from AWS_* env/roles.",
    )
    aws_region: str = Field(default="us-east-1", description="Region for S3 and DynamoDB clients.")
    jars_dir: str = Field(
        default=str(PROJECT_JARS),
        description=(
            "Folder of the pinned JVM jars (make install fetches them there); empty = the platform "
            "(EMR, Glue, spark-submit --jars) provides Delta and S3A."
        ),
    )
    lake_lock_table: str | None = Field(
        default=None,
        description=(
            "DynamoDB table holding the lake's writer lease: one writing job per lake at a time. "
            "Required for an s3:// lake that more than one job may write."
        ),
    )
    lake_lock_wait_seconds: float = Field(
        default=0.0,
        ge=0.0,
        description="How long to wait for another job's lease on the lake before failing.",
    )
    lake_lock_ttl_seconds: int = Field(
        default=600, ge=30, description="A lease not renewed for this long is considered abandoned."
    )

    # --- validation behaviour -----------------------------------------------------------------
    quarantine_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Override every contract's own quarantineThreshold for this run (a share, 0..1).",
    )
    extra_columns: Literal["reject", "ignore"] = Field(
        default="reject", description="What to do with columns the contract does not declare."
    )
    allow_empty_files: bool = Field(
        default=False, description="Accept header-only files (0 data rows) instead of failing the dataset."
    )
    migrate_schema: bool = Field(
        default=False,
        description=(
            "Let a contract that removes or retypes a column rewrite the tables that hold it "
            "(without it the run is refused, exit 2; an added column never needs it)."
        ),
    )
    deletion_vectors: bool = Field(
        default=True,
        description=(
            "Validated tables record updated rows in deletion vectors instead of rewriting whole files "
            "(Delta reader 3 / writer 7). Set false before the first run for readers without deletion "
            "vector support; a table that has them keeps them."
        ),
    )
    csv_multiline: bool = Field(
        default=False, description="Allow quoted fields spanning lines (slower: one task per file)."
    )
    max_line_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description=(
            "The longest line (in bytes) a raw file may hold. A file with a longer one fails its dataset "
            "with a clear error before it is parsed, so one huge line cannot exhaust the job's memory."
        ),
    )
    allowed_input_prefixes: str = Field(
        default="",
        description=(
            "Comma-separated URI prefixes every raw file must start with (e.g. s3://bucket/raw/); "
            "a batch listing any other file is refused. Empty: any."
        ),
    )

    # --- transform outputs --------------------------------------------------------------------
    dynamodb_order_table: str | None = Field(default=None, description="DynamoDB table for order-level KPIs.")
    dynamodb_category_table: str | None = Field(
        default=None, description="DynamoDB table for category-level KPIs."
    )
    dynamodb_endpoint_url: str | None = Field(default=None, description="DynamoDB endpoint (local testing).")
    glue_database: str | None = Field(
        default=None,
        description="Glue Data Catalog database to register the lake's tables in (none: not registered).",
    )
    glue_endpoint_url: str | None = Field(default=None, description="Glue endpoint (local testing).")

    # --- lake maintenance (jobs.maintain) -----------------------------------------------------
    maintain_keep_batches: int = Field(
        default=10,
        ge=0,
        description="Batches whose re-run maintenance keeps possible: VACUUM keeps every version back to "
        "the one before the oldest of a table's last N batches (transform's time travel needs it).",
    )
    maintain_min_retention_hours: int = Field(
        default=168,
        ge=0,
        description="VACUUM keeps at least this many hours of history, whatever the batches (readers of "
        "an older snapshot, e.g. a long Athena query). Delta's own default: 168.",
    )
    maintain_target_file_mb: int = Field(
        default=64,
        ge=1,
        description="Compaction's target data-file size (MiB): smaller files are packed together up to "
        "it. Small enough that a MERGE touching a few rows rewrites little.",
    )
    maintain_min_files: int = Field(
        default=8,
        ge=1,
        description="Compact a table only when it holds at least this many more files than its size "
        "needs at the target size (compaction rewrites its small files: not every day for one new file).",
    )

    # --- runtime ------------------------------------------------------------------------------
    spark_master: str | None = Field(
        default=None,
        description="Spark master URL (default: spark-submit's --master, else local[*]).",
    )
    spark_driver_memory: str = Field(
        default="auto",
        pattern=r"^(auto|[0-9]+[kmgKMG]?)$",
        description="Spark driver heap (spark.driver.memory, e.g. 6g), when the job starts the JVM. auto: "
        "the container's memory limit less a quarter of it (at least 1 GiB) for the JVM's other memory and "
        "Python, or a quarter of the machine's memory when no limit is set; at most 2g for a small batch "
        "(the size --spark-jit auto calls small); between 512m and 30g.",
    )
    spark_driver_java_options: str = Field(
        default="",
        description="Extra driver JVM options (when the job starts the JVM, not under spark-submit).",
    )
    spark_jit: Literal["auto", "quick", "full"] = Field(
        default="auto",
        description="The driver JVM's compiler: quick (the client compiler only: far less compiling, "
        "faster on small batches), full (tiered: faster on large ones), auto (quick for a small batch: "
        "raw input up to 50 MB for validate and run, up to 2M rows read for transform).",
    )
    spark_shuffle_partitions: int = Field(default=8, ge=1, description="spark.sql.shuffle.partitions.")
    spark_snapshot_partitions: int = Field(
        default=2,
        ge=1,
        description="Partitions Delta rebuilds a table's state with (a Spark job per table read); "
        "raise it for tables of very many files.",
    )
    spark_broadcast_mb: int = Field(
        default=64,
        ge=0,
        description="Broadcast joins whose side Spark estimates below this size (0: none). validate never "
        "broadcasts on an estimate: it broadcasts only the sides it measured small (a batch's keys).",
    )
    log_format: Literal["auto", "text", "json"] = Field(
        default="auto", description="Log format: json in containers (auto = json when stderr is not a TTY)."
    )
    log_level: str = Field(default="INFO", description="Log level.")

    # The run's AWS clients (common.io.aws builds them): one set per settings object, not a setting.
    _clients: dict[tuple[str, str | None, str | None], Any] = PrivateAttr(default_factory=dict)

    def clients(self) -> dict[tuple[str, str | None, str | None], Any]:
        return self._clients

    def input_prefixes(self) -> list[str]:
        return [p.strip() for p in self.allowed_input_prefixes.split(",") if p.strip()]

    def files_by_dataset(self) -> dict[str, list[str]]:
        """Files given as flags, by dataset (comma-separated values are split)."""
        out: dict[str, list[str]] = {}
        for name, values in (
            ("products", self.products),
            ("orders", self.orders),
            ("order_items", self.order_items),
        ):
            files = [part.strip() for value in values for part in value.split(",") if part.strip()]
            if files:
                out[name] = files
        return out


def load_settings(argv: Sequence[str] | None = None, prog: str = "ecom") -> Settings:
    """Build settings from the environment and ``argv``.

    Raises:
        ConfigurationError: an unknown flag or a value of the wrong type.
    """
    try:
        return CliApp.run(Settings, cli_args=list(argv or []), cli_prog_name=prog)
    except (ValidationError, SettingsError) as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc
