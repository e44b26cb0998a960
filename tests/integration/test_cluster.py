"""The same jobs on a Spark cluster: a standalone master and two one-core workers (separate
executor JVMs that cannot see the driver's disk), every byte on MinIO through S3A. What they write
equals, row by row, what the same batch gives in local mode (run in the test session)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from common.generator import GeneratorConfig, generate_batch
from jobs import transform, validate
from tests.conftest import read_s3_with
from tests.helpers import job_env, job_environment, read_json, run, upload_batch
from tests.minio_server import Minio
from tests.spark_cluster import spark_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a cluster of JVMs: make drills

BUCKET = "ecom-cluster"
BATCH = "cluster-b1"
TABLES = [
    f"{kind}/{name}" for kind in ("validated", "quarantine") for name in ("products", "orders", "order_items")
]
TABLES += ["kpi/order_daily", "kpi/category_daily"]
DAY = "2026-11-22"  # the processing date of both runs
RUN_STAMPS = {"computed_at"}  # when the KPIs were computed: differs between any two runs


def _cause(stderr: str) -> str:
    """A failed job's log, cut to what says why (Spark's causes), not its stack frames."""
    lines = stderr.replace("\\n", "\n").splitlines()
    causes = [line for line in lines if "Caused by" in line or "Error" in line or "Exception:" in line]
    return "\n".join(causes[:30]) or stderr[-3000:]


def _rows(spark: SparkSession, lake: str, table: str) -> list[tuple[Any, ...]]:
    frame = spark.read.format("delta").load(f"s3a://{BUCKET}/{lake}/{table}")
    columns = sorted(c for c in frame.columns if c not in RUN_STAMPS)
    rows = [tuple(row) for row in frame.select(*columns).collect()]
    return sorted(rows, key=lambda row: [(value is None, str(value)) for value in row])


def _counts(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "rows_read", "rows_valid", "rows_quarantined", "rows_parked", "rule_counts")
    return {name: {k: ds.get(k) for k in keys} for name, ds in result["datasets"].items()}


def test_the_jobs_on_a_spark_cluster_write_what_they_write_locally(
    minio: Minio, spark: SparkSession, tmp_path: Path
) -> None:
    s3 = minio.client()
    s3.create_bucket(Bucket=BUCKET)
    read_s3_with(spark, minio.endpoint, BUCKET, minio.access_key, minio.secret_key)
    truth = generate_batch(
        tmp_path / "in", GeneratorConfig(items=2000, parts=2, seed=11, defect_rate=0.02), batch_id=BATCH
    )
    manifest = upload_batch(minio, tmp_path / "in", BUCKET)
    credentials = {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}
    # Executors of one host read each other's shuffle files from its disk; these workers share a
    # host but not a /tmp (real nodes are hosts of their own): the platform's spark-defaults.conf
    # says so, as a cluster's does for its own settings.
    conf = tmp_path / "spark-conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("spark.shuffle.readHostLocalDisk false\n")
    # locally: in the test session (local[2]), as the suite's other jobs run
    with job_environment(job_env(minio, ECOM_LAKE_ROOT=f"s3://{BUCKET}/local", ECOM_PROCESSING_DATE=DAY)):
        assert validate.main(["--manifest", manifest], spark=spark) == 0
        assert transform.main(["--batch-id", BATCH], spark=spark) == 0
    with spark_cluster(tmp_path / "cluster", {**credentials, "AWS_DEFAULT_REGION": "us-east-1"}) as cluster:
        scratch = tmp_path / "scratch"  # the driver's temporary files: the workers never see it
        scratch.mkdir()
        env = job_env(
            minio,
            TMPDIR=str(scratch),
            ECOM_SPARK_MASTER=cluster.master_url,
            ECOM_LAKE_ROOT=f"s3://{BUCKET}/cluster",
            ECOM_PROCESSING_DATE=DAY,
            SPARK_LOCAL_IP="127.0.0.1",  # the driver binds and advertises loopback only
            SPARK_CONF_DIR=str(conf),
        )
        for job in (["jobs.validate", "--manifest", manifest], ["jobs.transform", "--batch-id", BATCH]):
            done = run([sys.executable, "-m", *job], env, tmp_path)
            assert done.returncode == 0, f"cluster {job[0]}: {_cause(done.stderr)}"
        apps = cluster.state()["completedapps"]
    # the cluster ran both jobs, each with executors on the workers (not a local driver)
    assert sorted(app["name"] for app in apps) == ["ecom-transform", "ecom-validate"]
    assert all(app["cores"] == 2 for app in apps), apps
    local, remote = (
        read_json(s3, f"{lake}/_results/{BATCH}/validate.json", BUCKET) for lake in ("local", "cluster")
    )
    assert _counts(remote) == _counts(local)
    assert remote["datasets"]["order_items"]["rows_valid"] == truth["datasets"]["order_items"]["rows_valid"]
    local_t, remote_t = (
        read_json(s3, f"{lake}/_results/{BATCH}/transform.json", BUCKET) for lake in ("local", "cluster")
    )
    assert remote_t["status"] == local_t["status"] == "SUCCEEDED"
    assert remote_t["touched_dates"] == local_t["touched_dates"]
    for table in TABLES:
        assert _rows(spark, "cluster", table) == _rows(spark, "local", table), table
