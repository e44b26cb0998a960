"""The image, built and run for real: generate, validate and transform as containers against a real
MinIO and moto's DynamoDB on 127.0.0.1, the way ECS runs them (non-root, read-only root filesystem,
a writable /tmp only, credentials only from the environment)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tests.aws_stack import CATEGORY_KPI_TABLE, ORDER_KPI_TABLE, create_kpi_tables, create_lock_table
from tests.conftest import read_s3_with
from tests.minio_server import Minio
from tests.moto_server import client, moto_server

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
ENGINE = str(ROOT / "docker" / "engine")
IMAGE = "ecom-pipeline:local"
BUCKET = "ecom-container"
LOCK_TABLE = "ecom-container-lock"


@pytest.fixture(scope="module")
def image() -> str:
    """`make image`, as a user runs it (layers are reused when nothing changed)."""
    done = subprocess.run(
        ["make", "-s", "image", f"IMAGE={IMAGE}"], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return IMAGE


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[str]:
    with moto_server() as url:
        ddb = client("dynamodb", url)
        create_kpi_tables(ddb)
        create_lock_table(ddb, LOCK_TABLE)
        yield url


@pytest.fixture(scope="module")
def s3(minio: Minio, spark: SparkSession) -> Any:
    s3 = minio.client()
    s3.create_bucket(Bucket=BUCKET)
    read_s3_with(spark, minio.endpoint, BUCKET, minio.access_key, minio.secret_key)
    return s3


def run_container(
    image: str, minio: Minio, dynamodb: str, *args: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`engine run` with the ECS task's constraints; settings and credentials only as environment
    variables passed by name (their values never appear on the command line). ``options``: more
    `engine run` options (a memory limit)."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "AWS_REGION": "us-east-1",
        "ECOM_S3_ENDPOINT_URL": minio.endpoint,
        "ECOM_DYNAMODB_ENDPOINT_URL": dynamodb,
        "ECOM_LAKE_ROOT": f"s3://{BUCKET}/lake",
        "ECOM_LAKE_LOCK_TABLE": LOCK_TABLE,
        "ECOM_DYNAMODB_ORDER_TABLE": ORDER_KPI_TABLE,
        "ECOM_DYNAMODB_CATEGORY_TABLE": CATEGORY_KPI_TABLE,
        "ECOM_SPARK_MASTER": "local[2]",
        "ECOM_SPARK_SHUFFLE_PARTITIONS": "2",
    }
    passed = [name for name in env if name.startswith(("AWS_", "ECOM_"))]
    command = [
        ENGINE,
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=2g",
        *options,
    ]
    for name in passed:
        command += ["--env", name]
    return subprocess.run([*command, image, *args], env=env, capture_output=True, text=True, timeout=900)


def read_json(s3: Any, key: str) -> dict[str, Any]:
    return dict(json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def test_image_runs_as_a_non_root_user(image: str) -> None:
    done = subprocess.run(
        [ENGINE, "image", "inspect", "--format", "{{.Config.User}}", image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(":")[0] not in {"", "0", "root"}


@pytest.mark.slow  # two minutes of four JVMs in containers: make drills (and CI) run it
def test_generate_validate_transform_as_containers(
    image: str, minio: Minio, s3: Any, dynamodb: str, spark: SparkSession
) -> None:
    generated = run_container(
        image, minio, dynamodb,
        "generate", "--items", "3000", "--parts", "2", "--batch-id", "ctr-0001", "--upload", f"s3://{BUCKET}",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-3000:]
    report = json.loads(generated.stdout.strip().splitlines()[-1])
    assert report["manifest"] == f"s3://{BUCKET}/manifests/ctr-0001.json"
    staged = read_json(s3, "manifests/ctr-0001.json")
    assert sorted(staged["files"]) == ["order_items", "orders", "products"]
    assert all(uri.startswith(f"s3://{BUCKET}/raw/") for uris in staged["files"].values() for uri in uris)

    # A 2 GiB container: the driver's heap is sized from its limit (2 GiB less 1 GiB), not from the
    # host (a small batch there gets 2g).
    validated = run_container(
        image, minio, dynamodb, "validate", "--manifest", report["manifest"], options=("--memory", "2g")
    )
    assert validated.returncode == 0, validated.stderr[-3000:]
    logged = [json.loads(line) for line in validated.stderr.splitlines() if line.startswith("{")]
    assert any("driver JVM: heap 1024m (auto)" in entry.get("message", "") for entry in logged), logged[:5]
    result = read_json(s3, "lake/_results/ctr-0001/validate.json")
    assert result["status"] == "SUCCEEDED"
    for name, truth in report["datasets"].items():
        got = result["datasets"][name]
        assert (got["rows_read"], got["rows_valid"], got["rows_quarantined"]) == (
            truth["rows_read"],
            truth["rows_valid"],
            truth["rows_quarantined"],
        ), name
        table = spark.read.format("delta").load(f"s3a://{BUCKET}/lake/validated/{name}")
        assert table.count() == truth["rows_valid"], name

    transformed = run_container(image, minio, dynamodb, "transform", "--batch-id", "ctr-0001")
    assert transformed.returncode == 0, transformed.stderr[-3000:]
    outcome = read_json(s3, "lake/_results/ctr-0001/transform.json")
    assert outcome["status"] == "SUCCEEDED"
    kpi = spark.read.format("delta").load(f"s3a://{BUCKET}/lake/kpi/order_daily")
    dates = sorted(row["order_date"].isoformat() for row in kpi.select("order_date").collect())
    items = client("dynamodb", dynamodb).scan(TableName=ORDER_KPI_TABLE)["Items"]
    assert dates and sorted(item["order_date"]["S"] for item in items) == dates
    # The logs are JSON lines (ECOM_LOG_FORMAT=json is the image's default).
    assert all(json.loads(line) for line in transformed.stderr.splitlines() if line.startswith("{"))

    # Maintenance on the same lake through S3A, holding the lake's lease: the run ledger's two
    # rows (one file each) packed into one; every table still reads the same.
    maintained = run_container(image, minio, dynamodb, "maintain", "--maintain-min-files", "1")
    assert maintained.returncode == 0, maintained.stderr[-3000:]
    assert "Maintenance maintain-" in maintained.stdout
    assert re.search(r"^_runs +2 -> 1 ", maintained.stdout, re.MULTILINE), maintained.stdout
    for name, truth in report["datasets"].items():
        table = spark.read.format("delta").load(f"s3a://{BUCKET}/lake/validated/{name}")
        assert table.count() == truth["rows_valid"], name


def test_documented_exit_codes(image: str, minio: Minio, s3: Any, dynamodb: str) -> None:
    bad_manifest = run_container(
        image, minio, dynamodb, "validate", "--manifest", f"s3://{BUCKET}/manifests/never-written.json"
    )
    assert bad_manifest.returncode == 2, bad_manifest.stderr[-3000:]
    assert "never-written.json" in bad_manifest.stderr
    not_validated = run_container(image, minio, dynamodb, "transform", "--batch-id", "ctr-never-validated")
    assert not_validated.returncode == 3, not_validated.stderr[-3000:]
    unknown = run_container(image, minio, dynamodb, "vaildate")
    assert unknown.returncode == 2 and "unknown job 'vaildate'" in unknown.stderr


def test_the_image_prints_the_catalog_ddl_from_its_packaged_contracts(
    image: str, minio: Minio, dynamodb: str
) -> None:
    """The ODCS files and the standard's JSON Schema are in the image: it prints the golden DDL."""
    printed = run_container(
        image, minio, dynamodb, "catalog", "--ddl", "--lake-root", "s3://example-bucket/lake"
    )
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert printed.stdout == (ROOT / "tests" / "golden" / "catalog_athena.sql").read_text()
