"""The jobs as a container runs them: subprocesses, raw files, Delta tables and results in a real
S3-compatible server (MinIO, built from source), DynamoDB on moto's server; all on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.contracts.columns import SOURCE_FILE
from common.generator import GeneratorConfig, generate_batch
from common.usecases import lifecycle
from jobs import validate
from tests.aws_stack import CATEGORY_KPI_TABLE, ORDER_KPI_TABLE, create_kpi_tables, create_lock_table
from tests.conftest import read_s3_with
from tests.helpers import BUCKET, job_env, read_json, run, upload_batch
from tests.minio_server import Minio
from tests.moto_server import client, moto_server

pytestmark = pytest.mark.integration
LOCK_TABLE = "ecom-lake-lock"


@pytest.fixture(scope="module")
def s3(minio: Minio, spark: SparkSession) -> Any:
    s3 = minio.client()
    s3.create_bucket(Bucket=BUCKET)
    read_s3_with(spark, minio.endpoint, BUCKET, minio.access_key, minio.secret_key)
    return s3


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.mark.slow  # two job processes over HTTP (~60 s): `make drills` (CI runs it)
def test_validate_then_transform_against_s3_and_dynamodb(
    minio: Minio, s3: Any, dynamodb_endpoint: str, spark: SparkSession, tmp_path: Path
) -> None:
    """The whole local flow the way containers run it: two processes, S3 and DynamoDB over HTTP;
    raw files read in place, every count the generator's ground truth, KPIs in both stores."""
    ddb = client("dynamodb", dynamodb_endpoint)
    create_kpi_tables(ddb)
    truth = generate_batch(
        tmp_path / "in", GeneratorConfig(items=1500, parts=2, seed=3, defect_rate=0.02), batch_id="s3-b1"
    )
    manifest = upload_batch(minio, tmp_path / "in")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = job_env(
        minio,
        dynamodb_endpoint,
        TMPDIR=str(scratch),
        ECOM_LAKE_ROOT=f"s3://{BUCKET}/lake",
        ECOM_DYNAMODB_ORDER_TABLE=ORDER_KPI_TABLE,
        ECOM_DYNAMODB_CATEGORY_TABLE=CATEGORY_KPI_TABLE,
    )
    validated = run(
        [sys.executable, "-m", "jobs.validate", "--manifest", manifest, "--quarantine-threshold", "0.5"],
        env,
        tmp_path,
    )
    assert validated.returncode == 0, validated.stderr[-3000:]
    result = read_json(s3, "lake/_results/s3-b1/validate.json")
    assert result["status"] == "SUCCEEDED"
    for name, expected in truth["datasets"].items():
        got = result["datasets"][name]
        assert (got["rows_valid"], got["rows_quarantined"], got["rule_counts"]) == (
            expected["rows_valid"],
            expected["rows_quarantined"],
            expected["rule_counts"],
        )
        assert got["files"][0]["uri"].startswith(f"s3://{BUCKET}/raw/{name}/")
        table = spark.read.format("delta").load(f"s3a://{BUCKET}/lake/validated/{name}")
        assert table.count() == expected["rows_valid"] == got["validated_table"]["rows_inserted"]
        quarantine = spark.read.format("delta").load(f"s3a://{BUCKET}/lake/quarantine/{name}")
        assert quarantine.count() == expected["rows_quarantined"]
    # Spark read the objects in place: no raw file was copied to local disk.
    assert not [p for p in scratch.rglob("*") if p.suffix == ".csv"]
    # container logs are JSON lines
    json_lines = [json.loads(line) for line in validated.stderr.splitlines() if line.startswith("{")]
    assert any("SUCCEEDED" in entry["message"] for entry in json_lines)

    transformed = run([sys.executable, "-m", "jobs.transform", "--batch-id", "s3-b1"], env, tmp_path)
    assert transformed.returncode == 0, transformed.stderr[-3000:]
    result = read_json(s3, "lake/_results/s3-b1/transform.json")
    assert result["status"] == "SUCCEEDED"
    kpi = spark.read.format("delta").load(f"s3a://{BUCKET}/lake/kpi/order_daily")
    delta_dates = sorted(r["order_date"].isoformat() for r in kpi.select("order_date").collect())
    items = ddb.scan(TableName=ORDER_KPI_TABLE)["Items"]  # a few hundred small items: one page
    assert sorted(i["order_date"]["S"] for i in items) == delta_dates == result["touched_dates"]
    assert (
        result["outputs"]["category_daily"]["dynamodb"]["puts"] == result["outputs"]["category_daily"]["rows"]
    )


def test_missing_s3_object_fails_the_batch_visibly(
    minio: Minio, s3: Any, spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"s3://{BUCKET}/raw/orders/never-arrived.csv"
    s3.put_object(
        Bucket=BUCKET,
        Key="manifests/s3-b2.json",
        Body=json.dumps({"batch_id": "s3-b2", "files": {"orders": [missing]}}),
    )
    for name, value in job_env(minio).items():  # the job in this process, its settings from the env
        if name.startswith(("AWS_", "ECOM_")):
            monkeypatch.setenv(name, value)
    argv = [
        "--manifest",
        f"s3://{BUCKET}/manifests/s3-b2.json",
        "--lake-root",
        f"s3://{BUCKET}/lake",
        "--result-uri",
        f"s3://{BUCKET}/results/s3-b2.json",
        "--log-format",
        "text",
    ]
    assert validate.main(argv, spark=spark) == 0
    result = read_json(s3, "results/s3-b2.json")
    assert result["status"] == "FAILED"
    assert result["errors"][0] == f"{missing}: file does not exist: expected a CSV file listed by the batch"


@pytest.mark.slow  # two job processes at once, then a third: a drill (make drills)
def test_two_jobs_writing_one_lake_at_once_never_both_commit(
    minio: Minio, s3: Any, dynamodb_endpoint: str, spark: SparkSession, tmp_path: Path
) -> None:
    """A manual run beside the pipeline: the lake's lease lets one job write; the other fails with a
    clear message and no commit, and succeeds when re-run. The tables hold both batches exactly once."""
    ddb = client("dynamodb", dynamodb_endpoint)
    create_lock_table(ddb, LOCK_TABLE)
    lake = f"s3://{BUCKET}/shared-lake"
    manifests, truths = {}, {}
    for index, batch in enumerate(("w-1", "w-2")):
        first = 1 + index * 100_000  # disjoint keys: the final tables must hold both batches
        config = GeneratorConfig(
            items=600,
            parts=1,
            seed=20 + index,
            defect_rate=0,
            warning_rate=0,
            first_order_id=first,
            first_item_id=first,
            first_product_id=first,
        )
        truths[batch] = generate_batch(tmp_path / batch, config, batch_id=batch)
        manifests[batch] = upload_batch(minio, tmp_path / batch)
    env = job_env(
        minio,
        dynamodb_endpoint,
        ECOM_LAKE_ROOT=lake,
        ECOM_LAKE_LOCK_TABLE=LOCK_TABLE,
        ECOM_LAKE_LOCK_WAIT_SECONDS="0",
    )
    procs = {}
    for batch, manifest in manifests.items():
        procs[batch] = subprocess.Popen(
            [sys.executable, "-m", "jobs.validate", "--manifest", manifest],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The second starts once the first holds the lease: on a busy machine, two started together
        # need not overlap (the first may finish before the second's JVM is up).
        deadline = time.monotonic() + 300
        held = {"TableName": LOCK_TABLE, "Key": {"lake": {"S": lake}}}
        while len(procs) == 1 and not ddb.get_item(**held).get("Item"):
            assert procs[batch].poll() is None and time.monotonic() < deadline, "no lease taken"
            time.sleep(0.2)
    codes = {batch: proc.wait(timeout=600) for batch, proc in procs.items()}
    assert sorted(codes.values()) == [0, 1], {b: p.stderr.read()[-2000:] for b, p in procs.items()}  # type: ignore[union-attr]
    loser = next(b for b, code in codes.items() if code == 1)
    failed = read_json(s3, f"shared-lake/_results/{loser}/validate.json")
    assert failed["status"] == "ERROR"
    assert f"the lake {lake} is being written by validate run" in failed["errors"][-1]
    assert failed["datasets"]["orders"]["validated_table"] is None  # it committed nothing
    assert (
        run([sys.executable, "-m", "jobs.validate", "--manifest", manifests[loser]], env, tmp_path).returncode
        == 0
    )
    for name in ("products", "orders", "order_items"):
        table = spark.read.format("delta").load(f"s3a://{BUCKET}/shared-lake/validated/{name}")
        key = "order_id" if name == "orders" else "id"
        expected = sum(t["datasets"][name]["rows_valid"] for t in truths.values())
        counts = table.agg(F.count("*").alias("n"), F.countDistinct(key).alias("keys")).first()
        assert counts is not None and (counts["n"], counts["keys"]) == (expected, expected), name


VERSIONED = "ecom-versioned"  # a bucket that keeps versions, as the template's data bucket does


def _versioned_batch(minio: Minio, spark: SparkSession, tmp_path: Path, batch_id: str) -> tuple[str, Any]:
    """A generated batch staged in a versioned bucket, and a manifest that records each file's
    version as ingestion would (from S3's event: here, the object's head right after the upload)."""
    s3 = minio.client()
    if VERSIONED not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=VERSIONED)
        s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
        read_s3_with(spark, minio.endpoint, VERSIONED, minio.access_key, minio.secret_key)
    config = GeneratorConfig(items=300, parts=1, seed=7, defect_rate=0, warning_rate=0)
    truth = generate_batch(tmp_path / batch_id, config, batch_id=batch_id)
    manifest_uri = upload_batch(minio, tmp_path / batch_id, VERSIONED)
    key = manifest_uri.removeprefix(f"s3://{VERSIONED}/")
    manifest = read_json(s3, key, VERSIONED)
    versions = {}
    for uri in (u for uris in manifest["files"].values() for u in uris):
        head = s3.head_object(Bucket=VERSIONED, Key=uri.removeprefix(f"s3://{VERSIONED}/"))
        versions[uri] = {"version_id": head["VersionId"], "etag": head["ETag"].strip('"')}
    s3.put_object(Bucket=VERSIONED, Key=key, Body=json.dumps({**manifest, "versions": versions}))
    return manifest_uri, truth


def _validate_in_process(
    minio: Minio, spark: SparkSession, manifest: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    for name, value in job_env(minio).items():  # the job in this process, its settings from the env
        if name.startswith(("AWS_", "ECOM_")):
            monkeypatch.setenv(name, value)
    argv = ["--manifest", manifest, "--lake-root", f"s3://{VERSIONED}/lake", "--log-format", "text"]
    return validate.main(argv, spark=spark)


@pytest.mark.slow  # an object overwritten under the job: a drill (~19 s), in `make drills`
def test_a_raw_file_overwritten_before_validation_is_read_as_it_arrived(
    minio: Minio, spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop overwrites a file after the batch was cut: the batch still reads what arrived (a
    copy of that version), and a re-run reads it again and commits nothing."""
    manifest, truth = _versioned_batch(minio, spark, tmp_path, "v-1")
    s3 = minio.client()
    orders = read_json(s3, manifest.removeprefix(f"s3://{VERSIONED}/"), VERSIONED)["files"]["orders"][0]
    s3.put_object(
        Bucket=VERSIONED, Key=orders.removeprefix(f"s3://{VERSIONED}/"), Body=b"order_id\nnot-a-row\n"
    )
    assert _validate_in_process(minio, spark, manifest, monkeypatch) == 0
    result = read_json(s3, "lake/_results/v-1/validate.json", VERSIONED)
    assert result["status"] == "SUCCEEDED", result["errors"]
    copy = f"s3://{VERSIONED}/lake/_pinned/v-1/{VERSIONED}/{orders.removeprefix(f's3://{VERSIONED}/')}"
    [read] = result["datasets"]["orders"]["files"]
    assert (read["uri"], read["read_from"]) == (orders, copy) and read["version_id"]
    expected = truth["datasets"]["orders"]
    assert (result["datasets"]["orders"]["rows_read"], result["datasets"]["orders"]["rows_valid"]) == (
        expected["rows_read"],
        expected["rows_valid"],
    )
    table = f"s3a://{VERSIONED}/lake/validated/orders"
    assert spark.read.format("delta").load(table).count() == expected["rows_valid"]
    sources = spark.read.format("delta").load(table).select(SOURCE_FILE).distinct().collect()
    assert [r[0] for r in sources] == [orders]  # rows name the file, not the copy
    history = DeltaTable.forPath(spark, table).history().count()
    assert _validate_in_process(minio, spark, manifest, monkeypatch) == 0
    assert DeltaTable.forPath(spark, table).history().count() == history


@pytest.mark.slow  # an object overwritten under the job: a drill (~19 s), in `make drills`
def test_a_raw_file_overwritten_while_validation_reads_it_fails_the_batch(
    minio: Minio, spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is overwritten after the job looked at it and before Spark read it: its rows
    could mix two contents, so the dataset fails and nothing valid is published; the re-run
    reads the version that arrived."""
    manifest, truth = _versioned_batch(minio, spark, tmp_path, "v-2")
    s3 = minio.client()
    orders = read_json(s3, manifest.removeprefix(f"s3://{VERSIONED}/"), VERSIONED)["files"]["orders"][0]
    header = s3.get_object(Bucket=VERSIONED, Key=orders.removeprefix(f"s3://{VERSIONED}/"))["Body"].readline()
    looked = lifecycle.inspect_batch

    def look_then_overwrite(*args: Any) -> Any:
        checks = looked(*args)  # the shop writes the key again, right after the job's first look
        s3.put_object(Bucket=VERSIONED, Key=orders.removeprefix(f"s3://{VERSIONED}/"), Body=header)
        return checks

    monkeypatch.setattr(lifecycle, "inspect_batch", look_then_overwrite)
    assert _validate_in_process(minio, spark, manifest, monkeypatch) == 0
    result = read_json(s3, "lake/_results/v-2/validate.json", VERSIONED)
    assert result["status"] == "FAILED"
    [read] = result["datasets"]["orders"]["files"]
    assert read["error"] == (
        "changed while this batch read it; re-run the batch, which reads the version recorded on arrival"
    )
    assert result["datasets"]["orders"]["validated_table"] is None
    monkeypatch.setattr(lifecycle, "inspect_batch", looked)
    assert _validate_in_process(minio, spark, manifest, monkeypatch) == 0
    result = read_json(s3, "lake/_results/v-2/validate.json", VERSIONED)
    assert result["status"] == "SUCCEEDED"
    assert result["datasets"]["orders"]["rows_valid"] == truth["datasets"]["orders"]["rows_valid"]
