"""Helpers shared by job-level tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pyspark.sql import SparkSession

from common.contracts import DATASETS
from common.contracts.loader import contract_path
from common.usecases.stage_batch import stage_batch
from jobs import validate
from tests.conftest import make_settings
from tests.minio_server import Minio

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "ecom-lake"  # the S3 tests' bucket in the session's MinIO


def run_local_job(module: str, args: list[str], cwd: Path, heap: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` as its own process on a local lake: local[2], JSON logs, a driver
    heap of ``heap``, and none of this shell's ECOM_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOM_")}
    env.update(
        PYTHONPATH=str(ROOT),
        ECOM_SPARK_MASTER="local[2]",
        ECOM_LOG_FORMAT="json",
        ECOM_SPARK_DRIVER_MEMORY=heap,
    )
    return run([sys.executable, "-m", module, *args], env, cwd)


def run_validate(spark: SparkSession, lake: Path, *args: str) -> tuple[int, dict[str, Any] | None]:
    """Run the validate entrypoint in-process; return its exit code and result JSON."""
    argv = ["--lake-root", str(lake), "--spark-master", "local[2]", "--spark-shuffle-partitions", "2", *args]
    code = validate.main(argv, spark=spark)
    results = sorted(lake.glob("_results/*/validate.json"), key=lambda p: p.stat().st_mtime)
    return code, (json.loads(results[-1].read_text()) if results else None)


def delta_rows(path: Path | str, columns: list[str] | None = None) -> pa.Table:
    """A Delta table's current rows, read by delta-spark in the test session."""
    spark = SparkSession.getActiveSession()
    assert spark is not None, "delta_rows needs the session-scoped spark fixture"
    frame = spark.read.format("delta").load(str(path))
    return (frame.select(*columns) if columns else frame).toArrow()


def assert_accounted(result: dict[str, Any]) -> None:
    """The row-accounting invariant, checked from the outside too."""
    for name, d in result["datasets"].items():
        if d["status"] in {"PASSED", "FAILED"} and not any(f.get("error") for f in d["files"]):
            kept = d["rows_valid"] + d["rows_quarantined"] + d["rows_parked"]
            assert d["rows_read"] == kept + d["duplicates_collapsed"], name
            assert d["rows_read"] == sum(f["rows_read"] for f in d["files"]), name


def job_env(minio: Minio, dynamodb: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOM_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID=minio.access_key,  # the default credentials chain (S3A and boto3) reads these
        AWS_SECRET_ACCESS_KEY=minio.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
        ECOM_S3_ENDPOINT_URL=minio.endpoint,
        ECOM_SPARK_MASTER="local[2]",
        ECOM_SPARK_SHUFFLE_PARTITIONS="2",
        ECOM_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
    )
    if dynamodb:
        env["ECOM_DYNAMODB_ENDPOINT_URL"] = dynamodb
    env.update(extra)
    return env


@contextmanager
def job_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's ECOM_ and AWS_ variables made those of ``env`` (a :func:`job_env`), for a job
    run in the test session as it would run as a process."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(("ECOM_", "AWS_"))]:
            patch.delenv(key)
        for key, value in env.items():
            if key.startswith(("ECOM_", "AWS_")):
                patch.setenv(key, value)
        yield


def upload_batch(minio: Minio, local: Path, bucket: str = BUCKET) -> str:
    """Stage a generated batch in MinIO the way `generate --upload` does (the landing-zone layout)."""
    with pytest.MonkeyPatch.context() as env:  # the default credentials chain, as the job reads it
        env.setenv("AWS_ACCESS_KEY_ID", minio.access_key)
        env.setenv("AWS_SECRET_ACCESS_KEY", minio.secret_key)
        settings = make_settings(s3_endpoint_url=minio.endpoint)
        return stage_batch(local / "manifest.json", f"s3://{bucket}", settings)


def read_json(s3: Any, key: str, bucket: str = BUCKET) -> dict[str, Any]:
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def add_channel(document: dict[str, Any]) -> None:
    """An edit for :func:`edited_contracts`: orders gains a nullable string column ``channel``."""
    document["schema"][0]["properties"].append(
        {"name": "channel", "logicalType": "string", "physicalType": "string"}
    )


def edited_contracts(tmp_path: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of the packaged ODCS files, in ``tmp_path/contracts``, with ``edit(document)``
    applied to the orders contract: what a user does to change a rule."""
    directory = tmp_path / "contracts"
    directory.mkdir()
    for name in DATASETS:
        shutil.copy(contract_path(name), directory)
    document = yaml.safe_load((directory / "orders.odcs.yaml").read_text())
    edit(document)
    (directory / "orders.odcs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


ORDER_FIELDS = [
    "total_orders",
    "total_revenue",
    "net_revenue",
    "total_items_sold",
    "return_rate",
    "unique_customers",
    "avg_order_value",
]
CATEGORY_FIELDS = [
    "daily_revenue",
    "net_revenue",
    "orders",
    "items_sold",
    "avg_order_value",
    "avg_return_rate",
]


def delta_kpis(lake: Path) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """The lake's KPI tables as :func:`tests.reference_kpis.kpis` gives them: per order date, and
    per category and order date."""
    orders = {
        r["order_date"].isoformat(): {f: r[f] for f in ORDER_FIELDS}
        for r in delta_rows(lake / "kpi" / "order_daily").to_pylist()
    }
    categories = {
        (r["category"], r["order_date"].isoformat()): {f: r[f] for f in CATEGORY_FIELDS}
        for r in delta_rows(lake / "kpi" / "category_daily").to_pylist()
    }
    return orders, categories


def truth_files(batch: Path) -> dict[str, list[str]]:
    """A generated batch's raw files by dataset, from its manifest."""
    return dict(json.loads((batch / "manifest.json").read_text())["files"])


def count_looks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each raw file is looked at (its size or its first bytes) from now on."""
    from common.io import storage

    looks: dict[str, int] = {}
    size, read_head = storage.size, storage.read_head

    def sized(uri: str, settings: Any) -> int | None:
        looks[uri] = looks.get(uri, 0) + 1
        return size(uri, settings)

    def headed(uri: str, limit: int, settings: Any) -> tuple[bytes, int]:
        looks[uri] = looks.get(uri, 0) + 1
        return read_head(uri, limit, settings)

    monkeypatch.setattr(storage, "size", sized)
    monkeypatch.setattr(storage, "read_head", headed)
    return looks


def cut_log(spark: SparkSession, table: Path, first: int) -> None:
    """What Delta's log cleanup leaves once entries are older than the log's retention (30 days):
    a checkpoint at version ``first`` and no log entry before it."""
    jvm = spark._jvm
    assert jvm is not None
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, str(table))
    defaults = [getattr(log, f"getSnapshotAt$default${n}")() for n in (2, 3, 4)]
    log.checkpoint(log.getSnapshotAt(first, *defaults), jvm.scala.Option.empty())
    for entry in (table / "_delta_log").iterdir():
        version = entry.name.lstrip(".")[:20]
        if version.isdigit() and int(version) < first:
            entry.unlink()
    jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
