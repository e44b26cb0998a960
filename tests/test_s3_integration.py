"""The validate job as a container runs it: a subprocess, raw files, Delta tables and the result
all in S3 (moto's server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable

from common.generator import GeneratorConfig, generate_batch
from tests.aws_stack import CATEGORY_KPI_TABLE, ORDER_KPI_TABLE, create_kpi_tables
from tests.moto_server import client, moto_server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
BUCKET = "ecom-lake"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        client("s3", url).create_bucket(Bucket=BUCKET)
        yield url


def job_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOM_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        ECOM_S3_ENDPOINT_URL=endpoint,
        ECOM_SPARK_MASTER="local[2]",
        ECOM_SPARK_SHUFFLE_PARTITIONS="2",
        ECOM_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
    )
    return env


def upload_batch(endpoint: str, local: Path, batch_id: str, datasets: list[str] | None = None) -> str:
    s3 = client("s3", endpoint)
    files = json.loads((local / "manifest.json").read_text())["files"]
    remote: dict[str, list[str]] = {}
    for name, paths in files.items():
        if datasets is not None and name not in datasets:
            continue
        for path in paths:
            key = f"raw/{name}/{batch_id}/{Path(path).name}"
            s3.upload_file(path, BUCKET, key)
            remote.setdefault(name, []).append(f"s3://{BUCKET}/{key}")
    manifest_key = f"manifests/{batch_id}.json"
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps({"batch_id": batch_id, "files": remote}))
    return f"s3://{BUCKET}/{manifest_key}"


def storage_options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def test_validate_reads_and_writes_s3(endpoint: str, tmp_path: Path) -> None:
    truth = generate_batch(tmp_path / "in", GeneratorConfig(items=1500, parts=2, seed=3, defect_rate=0.02))
    manifest = upload_batch(endpoint, tmp_path / "in", "s3-b1")
    lake = f"s3://{BUCKET}/lake"
    command = [
        sys.executable,
        "-m",
        "jobs.validate",
        "--manifest",
        manifest,
        "--lake-root",
        lake,
        "--quarantine-threshold",
        "0.5",
    ]
    done = subprocess.run(
        command, env=job_env(endpoint), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    body = (
        client("s3", endpoint)
        .get_object(Bucket=BUCKET, Key="lake/_results/s3-b1/validate.json")["Body"]
        .read()
    )
    result = json.loads(body)
    assert result["status"] == "SUCCEEDED"
    for name, expected in truth["datasets"].items():
        got = result["datasets"][name]
        assert (got["rows_valid"], got["rows_quarantined"], got["rule_counts"]) == (
            expected["rows_valid"],
            expected["rows_quarantined"],
            expected["rule_counts"],
        )
        assert got["files"][0]["uri"].startswith(f"s3://{BUCKET}/raw/{name}/")
        table = DeltaTable(f"{lake}/validated/{name}", storage_options=storage_options(endpoint))
        assert table.to_pyarrow_table().num_rows == expected["rows_valid"]
    # container logs are JSON lines
    json_lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any("SUCCEEDED" in entry["message"] for entry in json_lines)


def test_missing_s3_object_fails_the_batch_visibly(endpoint: str, tmp_path: Path) -> None:
    s3 = client("s3", endpoint)
    s3.put_object(
        Bucket=BUCKET,
        Key="manifests/s3-b2.json",
        Body=json.dumps(
            {"batch_id": "s3-b2", "files": {"orders": [f"s3://{BUCKET}/raw/orders/never-arrived.csv"]}}
        ),
    )
    result_uri = f"s3://{BUCKET}/results/s3-b2.json"
    command = [
        sys.executable,
        "-m",
        "jobs.validate",
        "--manifest",
        f"s3://{BUCKET}/manifests/s3-b2.json",
        "--lake-root",
        f"s3://{BUCKET}/lake",
        "--result-uri",
        result_uri,
    ]
    done = subprocess.run(
        command, env=job_env(endpoint), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(s3.get_object(Bucket=BUCKET, Key="results/s3-b2.json")["Body"].read())
    assert result["status"] == "FAILED"
    missing = f"s3://{BUCKET}/raw/orders/never-arrived.csv"
    assert result["errors"][0] == f"{missing}: file does not exist: expected a CSV file listed by the batch"


def test_validate_then_transform_against_s3_and_dynamodb(endpoint: str, tmp_path: Path) -> None:
    """The whole local flow the way containers run it: two processes, S3 and DynamoDB over HTTP."""
    ddb = client("dynamodb", endpoint)
    create_kpi_tables(ddb)
    generate_batch(
        tmp_path / "in", GeneratorConfig(items=1000, parts=2, seed=9, defect_rate=0, warning_rate=0)
    )
    manifest = upload_batch(endpoint, tmp_path / "in", "flow-1")
    env = job_env(endpoint)
    env.update(
        ECOM_LAKE_ROOT=f"s3://{BUCKET}/flow-lake",
        ECOM_DYNAMODB_ENDPOINT_URL=endpoint,
        ECOM_DYNAMODB_ORDER_TABLE=ORDER_KPI_TABLE,
        ECOM_DYNAMODB_CATEGORY_TABLE=CATEGORY_KPI_TABLE,
    )
    for command in (
        [sys.executable, "-m", "jobs.validate", "--manifest", manifest],
        [sys.executable, "-m", "jobs.transform", "--batch-id", "flow-1"],
    ):
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    s3 = client("s3", endpoint)
    result = json.loads(
        s3.get_object(Bucket=BUCKET, Key="flow-lake/_results/flow-1/transform.json")["Body"].read()
    )
    assert result["status"] == "SUCCEEDED"
    kpi = DeltaTable(f"s3://{BUCKET}/flow-lake/kpi/order_daily", storage_options=storage_options(endpoint))
    delta_dates = sorted(d.isoformat() for d in kpi.to_pyarrow_table().column("order_date").to_pylist())
    items = ddb.scan(TableName=ORDER_KPI_TABLE)["Items"]  # ~400 small items: one page
    assert sorted(i["order_date"]["S"] for i in items) == delta_dates == result["touched_dates"]
    assert (
        result["outputs"]["category_daily"]["dynamodb"]["puts"] == result["outputs"]["category_daily"]["rows"]
    )
