"""Fault drills: the jobs killed (``kill -9`` of the whole process group, Python and JVM, as ECS stops
a task) at chosen points, S3 answering 503 SlowDown and dropping connections, DynamoDB throttling
beyond the retry budget; then re-run. Afterwards the validated and quarantine tables, the KPI
tables and the KPI items in DynamoDB must equal those of an uninterrupted run of the same batch.

The jobs run as processes against MinIO (S3) and moto's server (DynamoDB), each behind a
:mod:`tests.fault_proxy` that injects the fault at an exact request: the commit of a Delta
version is the PUT of ``_delta_log/<version>.json``; a DynamoDB write is a ``BatchWriteItem`` POST.
Each drill also records what a reader of the lake saw between the crash and the re-run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.contracts import DATASETS
from common.generator import GeneratorConfig, generate_batch
from tests.aws_stack import create_kpi_tables, create_lock_table
from tests.conftest import read_s3_with
from tests.fault_proxy import DYNAMODB_THROTTLED, S3_SLOW_DOWN, Fault, FaultProxy, fault_proxy
from tests.helpers import job_env, read_json, run_local_job, upload_batch
from tests.minio_server import Minio
from tests.moto_server import client, moto_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "ecom-drills"
BATCH = "drill-1"
KPIS = ("order_daily", "category_daily")
FIRST_DATA_COMMIT = r"_delta_log/0{19}1\.json$"  # version 0 creates the table from the contract


class Job:
    """One job process in its own process group."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def kill(self) -> None:
        """kill -9 of the job's Python process and its JVM together."""
        os.killpg(self.process.pid, signal.SIGKILL)

    def finish(self) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=600)
        return self.process.returncode, stderr


@dataclass
class Stage:
    minio: Minio
    s3: Any
    ddb: Any
    s3_proxy: FaultProxy
    ddb_proxy: FaultProxy
    manifest: str
    truth: dict[str, Any]
    cwd: Path
    spark: SparkSession

    def env(self, lake: str, **extra: str) -> dict[str, str]:
        return job_env(
            self.minio,
            self.ddb_proxy.endpoint,
            ECOM_S3_ENDPOINT_URL=self.s3_proxy.endpoint,
            ECOM_LAKE_ROOT=f"s3://{BUCKET}/{lake}",
            ECOM_DYNAMODB_ORDER_TABLE=f"{lake}-order",
            ECOM_DYNAMODB_CATEGORY_TABLE=f"{lake}-category",
            ECOM_PROCESSING_DATE="2026-01-15",  # the same on both sides of midnight
            **extra,
        )

    def start(
        self, job: str, lake: str, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Job:
        """Run ``job`` on ``lake`` (by default for the batch of the manifest), ``env`` added."""
        if args is None:
            args = ["--manifest", self.manifest] if job == "validate" else ["--batch-id", BATCH]
        return Job(f"jobs.{job}", args, self.env(lake, **(env or {})), self.cwd)

    def run(
        self, job: str, lake: str, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        return self.start(job, lake, args, env).finish()

    def killed_at(
        self,
        job: str,
        lake: str,
        fault: Fault,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Fault:
        """Run ``job`` with ``fault`` armed to kill it: as the request reaches the proxy, or (when
        ``fault.after`` is set) once the server answered it. Returns the fault once the job died."""
        holder: dict[str, Job] = {}
        kill: Callable[[], None] = lambda: holder["job"].kill()  # noqa: E731
        if fault.after is None:
            fault.before = kill
        else:
            fault.after = kill
        fault.limit, fault.fatal = 1, True
        proxy = self.ddb_proxy if fault.target else self.s3_proxy
        proxy.add(fault)
        try:
            holder["job"] = self.start(job, lake, args, env)
            code, stderr = holder["job"].finish()
        finally:
            proxy.clear()
        assert (code, fault.fired) == (-signal.SIGKILL, 1), stderr[-3000:]
        return fault

    def kpi_tables(self, lake: str) -> None:
        create_kpi_tables(self.ddb, f"{lake}-order", f"{lake}-category")

    def copy(self, source: str, target: str) -> None:
        """A lake copied object by object (Delta logs hold relative paths)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{source}/")
        for page in pages:
            for obj in page.get("Contents", []):
                key = target + obj["Key"][len(source) :]
                self.s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": obj["Key"]})

    def table(self, lake: str, kind: str, name: str) -> list[str] | None:
        """A Delta table's rows as sorted JSON (the KPI rows' computation time left out)."""
        try:
            frame = self.spark.read.format("delta").load(f"s3a://{BUCKET}/{lake}/{kind}/{name}")
        except AnalysisException:
            return None
        frame = frame.drop("computed_at")
        return sorted(
            json.dumps(r.asDict(recursive=True), default=str, sort_keys=True) for r in frame.collect()
        )

    def version(self, lake: str, kind: str, name: str) -> int:
        prefix = f"{lake}/{kind}/{name}/_delta_log/"
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return max(int(o["Key"][len(prefix) : -5]) for o in listed if o["Key"].endswith(".json"))

    def items(self, lake: str, table: str) -> list[str]:
        scanned = self.ddb.scan(TableName=f"{lake}-{table}")["Items"]  # a few hundred small items
        return sorted(
            json.dumps({k: v for k, v in i.items() if k != "computed_at"}, sort_keys=True) for i in scanned
        )

    def tables(self, lake: str) -> dict[str, list[str] | None]:
        return {
            f"{kind}/{name}": self.table(lake, kind, name)
            for kind in ("validated", "quarantine")
            for name in DATASETS
        }

    def kpis(self, lake: str) -> dict[str, list[str] | None]:
        state: dict[str, list[str] | None] = {f"kpi/{name}": self.table(lake, "kpi", name) for name in KPIS}
        state.update({f"dynamodb/{t}": self.items(lake, t) for t in ("order", "category")})
        return state


@dataclass
class Reference:
    tables: dict[str, list[str] | None]
    kpis: dict[str, list[str] | None]


@pytest.fixture(scope="module")
def stage(minio: Minio, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    s3 = minio.client()
    s3.create_bucket(Bucket=BUCKET)
    read_s3_with(spark, minio.endpoint, BUCKET, minio.access_key, minio.secret_key)
    local = tmp_path_factory.mktemp("drills")
    truth = generate_batch(
        local / "in", GeneratorConfig(items=1200, parts=2, seed=41, defect_rate=0.02), batch_id=BATCH
    )
    manifest = upload_batch(minio, local / "in", BUCKET)
    with moto_server() as ddb_url, fault_proxy(minio.endpoint) as s3_proxy, fault_proxy(ddb_url) as ddb_proxy:
        yield Stage(
            minio, s3, client("dynamodb", ddb_url), s3_proxy, ddb_proxy, manifest, truth, local, spark
        )


@pytest.fixture(scope="module")
def reference(stage: Stage) -> Reference:
    """The uninterrupted run; its validated lake is kept as `validated` for the transform drills."""
    assert stage.run("validate", "ref")[0] == 0
    stage.copy("ref", "validated")
    stage.kpi_tables("ref")
    assert stage.run("transform", "ref")[0] == 0
    ref = Reference(stage.tables("ref"), stage.kpis("ref"))
    for name in DATASETS:  # the batch has valid and quarantined rows in every dataset
        assert ref.tables[f"validated/{name}"] and ref.tables[f"quarantine/{name}"], name
    assert all(ref.kpis.values())
    return ref


def test_validate_killed_while_committing_a_merge(stage: Stage, reference: Reference) -> None:
    """Killed with order_items' MERGE written and its commit on the wire: the commit never lands."""
    lake = "kill-merge"
    stage.killed_at("validate", lake, Fault("PUT", f"/{lake}/validated/order_items/{FIRST_DATA_COMMIT}"))
    # A reader saw products and orders of the batch published, order_items not yet (empty table).
    # Its quarantine table is written beside it: all of the batch's rows there, or none.
    seen = stage.tables(lake)
    assert seen["validated/orders"] == reference.tables["validated/orders"]
    assert seen["validated/order_items"] == []
    assert seen["quarantine/order_items"] in (None, [], reference.tables["quarantine/order_items"])
    assert stage.run("validate", lake)[0] == 0
    assert stage.tables(lake) == reference.tables


def test_validate_killed_after_a_merge_landed(stage: Stage, reference: Reference) -> None:
    """Killed just after order_items' MERGE committed (the answer lost): the re-run's MERGE commits
    nothing, and the quarantine rows (written beside it: all or none of them had landed) are
    published."""
    lake = "kill-landed"
    stage.killed_at(
        "validate",
        lake,
        Fault("PUT", f"/{lake}/validated/order_items/{FIRST_DATA_COMMIT}", after=lambda: None),
    )
    seen = stage.tables(lake)
    assert seen["validated/order_items"] == reference.tables["validated/order_items"]
    assert seen["quarantine/order_items"] in (None, [], reference.tables["quarantine/order_items"])
    assert stage.run("validate", lake)[0] == 0
    assert stage.tables(lake) == reference.tables
    assert stage.version(lake, "validated", "order_items") == 1


def test_validate_killed_between_a_release_and_the_park_delete(stage: Stage) -> None:
    """The items and products come a batch before their orders (parked); the orders' batch releases
    them and is killed once the release landed in validated/order_items, before the park let them
    go. The re-run publishes nothing twice: its MERGE commits nothing, the park is emptied, and
    every table equals that of an uninterrupted run."""
    listed = json.loads(
        stage.s3.get_object(Bucket=BUCKET, Key=stage.manifest.split("/", 3)[3])["Body"].read()
    )
    files = listed["files"]
    early = stage.cwd / "early.json"
    early.write_text(
        json.dumps({"batch_id": "drill-e1", "files": {k: files[k] for k in ("order_items", "products")}})
    )
    late = stage.cwd / "late.json"
    late.write_text(json.dumps({"batch_id": "drill-e2", "files": {"orders": files["orders"]}}))
    lakes = ("park-ref", "park-kill")
    for lake in lakes:
        assert stage.run("validate", lake, ["--manifest", str(early)])[0] == 0
    parked = stage.table("park-kill", "parked", "order_items")
    assert parked and len(parked) > 1000  # nearly all the items wait for their orders
    assert stage.run("validate", "park-ref", ["--manifest", str(late)])[0] == 0
    release = Fault("PUT", f"/park-kill/validated/order_items/{FIRST_DATA_COMMIT}", after=lambda: None)
    stage.killed_at("validate", "park-kill", release, ["--manifest", str(late)])
    # between the commits: the released items are published and still parked
    assert stage.table("park-kill", "parked", "order_items") == parked
    assert stage.table("park-kill", "validated", "order_items") == stage.table(
        "park-ref", "validated", "order_items"
    )
    assert stage.run("validate", "park-kill", ["--manifest", str(late)])[0] == 0
    assert stage.version("park-kill", "validated", "order_items") == 1  # the re-run's MERGE: nothing
    for kind in ("validated", "quarantine", "parked"):
        for name in DATASETS:
            assert stage.table("park-kill", kind, name) == stage.table("park-ref", kind, name), (kind, name)
    waiting = stage.table("park-ref", "parked", "order_items")
    assert waiting is not None and len(waiting) < len(parked) / 10  # only the orphans still wait


def test_validate_killed_between_two_datasets(stage: Stage, reference: Reference) -> None:
    """Killed as orders' publishing began, products being published beside it (parents are
    written side by side): whatever of products' landed, orders' table was never even created and
    order_items (their child) not begun. The lake has a writer lease, as on AWS: the dead job's
    lease stays until its TTL lapses, and the re-run waits that out (with no wait it fails as
    "lake busy")."""
    lake = "kill-between"
    create_lock_table(stage.ddb, f"{lake}-lock")
    lease = {
        "ECOM_LAKE_LOCK_TABLE": f"{lake}-lock",
        "ECOM_LAKE_LOCK_TTL_SECONDS": "30",
        "ECOM_LAKE_LOCK_WAIT_SECONDS": "90",
    }
    stage.killed_at("validate", lake, Fault("PUT", f"/{lake}/validated/orders/"), env=lease)
    assert stage.ddb.get_item(TableName=f"{lake}-lock", Key={"lake": {"S": f"s3://{BUCKET}/{lake}"}}).get(
        "Item"
    )
    seen = stage.tables(lake)
    assert seen["validated/orders"] is None and seen["validated/order_items"] is None
    code, stderr = stage.run("validate", lake, env=lease)
    assert code == 0, stderr[-3000:]
    assert stage.tables(lake) == reference.tables


def test_transform_killed_during_its_dynamodb_writes(stage: Stage, reference: Reference) -> None:
    """Killed once the second BatchWriteItem landed (of either KPI table: they are written side by
    side). The proxy forwards nothing after that instant, so DynamoDB holds those two requests' 50
    items (25 if the first, sent by the other writer, is still on its way), not all of them; the
    daily KPIs' Delta table none."""
    lake = "kill-dynamodb"
    stage.copy("validated", lake)
    stage.kpi_tables(lake)
    stage.killed_at(
        "transform", lake, Fault("POST", target="BatchWriteItem", every=2, limit=1, after=lambda: None)
    )
    landed = len(stage.items(lake, "order")) + len(stage.items(lake, "category"))
    expected = len(reference.kpis["dynamodb/order"] or []) + len(reference.kpis["dynamodb/category"] or [])
    assert 25 <= landed <= 50 and landed < expected, (landed, expected)
    assert stage.table(lake, "kpi", "order_daily") is None
    assert stage.run("transform", lake)[0] == 0
    assert stage.kpis(lake) == reference.kpis


@pytest.mark.parametrize("landed", [False, True], ids=["on-the-wire", "landed"])
def test_transform_killed_while_committing_its_delta_write(
    stage: Stage, reference: Reference, landed: bool
) -> None:
    """Killed with the daily KPIs in DynamoDB and their Delta commit on the wire, or just after it
    landed: the re-run replaces those dates' rows (an append would double them)."""
    lake = f"kill-kpi-{'landed' if landed else 'wire'}"
    stage.copy("validated", lake)
    stage.kpi_tables(lake)
    after = (lambda: None) if landed else None
    stage.killed_at(
        "transform", lake, Fault("PUT", f"/{lake}/kpi/order_daily/{FIRST_DATA_COMMIT}", after=after)
    )
    assert stage.items(lake, "order") == reference.kpis["dynamodb/order"]
    expected = reference.kpis["kpi/order_daily"] if landed else []
    assert stage.table(lake, "kpi", "order_daily") == expected
    assert stage.run("transform", lake)[0] == 0
    assert stage.kpis(lake) == reference.kpis


def test_a_correction_killed_after_its_kpi_commit_still_deletes_the_vanished_date(
    stage: Stage, reference: Reference
) -> None:
    """A second batch moves the only order of one day to another day: that day's KPI row must go,
    from Delta and from DynamoDB. Transform is killed just after order_daily's Delta commit landed.
    DynamoDB is written before Delta, so the re-run still finds the vanished day in Delta and deletes
    its item; written the other way round, the re-run would find nothing to delete."""
    orders = stage.spark.read.format("delta").load(f"s3a://{BUCKET}/ref/validated/orders")
    dated = orders.withColumn("day", F.to_date("created_at"))
    lonely = dated.groupBy("day").count().where("count = 1").select("day")
    row = dated.join(lonely, "day").orderBy("order_id").first()
    assert row is not None
    gone = row["day"].isoformat()
    assert any(json.loads(r)["order_date"] == gone for r in reference.kpis["kpi/order_daily"] or [])
    columns = [c for c in orders.columns if not c.startswith("_")]  # the contract's, in its order
    values = {**row.asDict(), "created_at": row["created_at"] - dt.timedelta(days=400)}
    cells = [
        "" if v is None else v.isoformat() if isinstance(v, dt.date) else str(v)
        for v in (values[c] for c in columns)
    ]
    key = "raw/orders/drill-2.csv"
    stage.s3.put_object(Bucket=BUCKET, Key=key, Body=f"{','.join(columns)}\n{','.join(cells)}\n".encode())
    second = ["--batch-id", "drill-2", "--orders", f"s3://{BUCKET}/{key}"]
    for lake in ("fix-ref", "fix-kill"):  # both start from the reference lake after batch 1
        stage.copy("ref", lake)
        stage.kpi_tables(lake)
        for table in ("order", "category"):
            for item in stage.ddb.scan(TableName=f"ref-{table}")["Items"]:
                stage.ddb.put_item(TableName=f"{lake}-{table}", Item=item)
        assert stage.run("validate", lake, second)[0] == 0
    assert stage.run("transform", "fix-ref", ["--batch-id", "drill-2"])[0] == 0
    expected = stage.kpis("fix-ref")
    assert not any(json.loads(r)["order_date"] == gone for r in expected["kpi/order_daily"] or [])
    assert not any(json.loads(i)["order_date"]["S"] == gone for i in expected["dynamodb/order"] or [])
    commit = Fault("PUT", r"/fix-kill/kpi/order_daily/_delta_log/\d{20}\.json$", after=lambda: None)
    stage.killed_at("transform", "fix-kill", commit, ["--batch-id", "drill-2"])
    assert stage.run("transform", "fix-kill", ["--batch-id", "drill-2"])[0] == 0
    assert stage.kpis("fix-kill") == expected


def test_maintain_killed_while_committing_a_compaction(stage: Stage, reference: Reference) -> None:
    """Maintenance killed with orders' compacted file written and its commit on the wire: readers
    still see the batch's rows; the re-run packs the table and a third run finds nothing to do."""
    lake = "kill-maintain"
    stage.copy("ref", lake)
    orders = f"s3a://{BUCKET}/{lake}/validated/orders"
    # the same rows, spread over three files: something to compact (version 2)
    stage.spark.read.format("delta").load(orders).repartition(3).write.format("delta").mode("overwrite").save(
        orders
    )
    assert stage.version(lake, "validated", "orders") == 2
    args = ["--maintain-min-files", "1"]
    stage.killed_at(
        "maintain", lake, Fault("PUT", f"/{lake}/validated/orders/_delta_log/0{{19}}3\\.json$"), args
    )
    assert stage.version(lake, "validated", "orders") == 2  # the compaction never committed
    assert stage.tables(lake) == reference.tables
    code, stderr = stage.run("maintain", lake, args)
    assert code == 0, stderr[-3000:]
    assert stage.tables(lake) == reference.tables
    assert stage.version(lake, "validated", "orders") == 3
    files = stage.spark.read.format("delta").load(orders).inputFiles()
    assert len(files) == 1
    versions = {name: stage.version(lake, "validated", name) for name in DATASETS}
    assert stage.run("maintain", lake, args)[0] == 0
    assert {name: stage.version(lake, "validated", name) for name in DATASETS} == versions


def test_s3_errors_and_dropped_connections_are_retried(stage: Stage, reference: Reference) -> None:
    """Every 5th request to the bucket (raw files, tables, results) answered 503 SlowDown, every 13th
    of the others dropped unanswered (both capped, so the run ends): both jobs retry and finish with
    the uninterrupted run's outputs."""
    lake = "flaky"
    stage.kpi_tables(lake)
    slow = stage.s3_proxy.add(Fault(path=f"^/{BUCKET}/", respond=S3_SLOW_DOWN, every=5, limit=40))
    dropped = stage.s3_proxy.add(Fault(path=f"^/{BUCKET}/", drop=True, every=13, limit=15))
    try:
        for job in ("validate", "transform"):
            code, stderr = stage.run(job, lake)
            assert code == 0, stderr[-3000:]
    finally:
        stage.s3_proxy.clear()
    assert (slow.fired, dropped.fired) == (40, 15)
    assert stage.tables(lake) == reference.tables
    assert stage.kpis(lake) == reference.kpis


# S3A retries throttling for minutes by default (right for a real 503 storm: more than 6 minutes
# measured here against a PUT that is always refused); the drill gives it a short budget.
SHORT_S3_RETRIES = " ".join(
    f"--conf spark.hadoop.fs.s3a.{key}"
    for key in (
        "retry.throttle.limit=1",
        "retry.throttle.interval=50ms",
        "retry.limit=1",
        "retry.interval=50ms",
    )
)


def test_s3_throttling_beyond_the_retries_fails_visibly_and_a_rerun_repairs(
    stage: Stage, reference: Reference
) -> None:
    """Every write to the orders table answered 503 SlowDown: the job gives up, exits 1 with an
    ERROR result naming the table and the answer, and the re-run (S3 healthy) publishes it all."""
    lake = "throttled"
    stage.s3_proxy.add(Fault("PUT", f"/{lake}/validated/orders/", respond=S3_SLOW_DOWN))
    try:
        code, stderr = stage.run(
            "validate", lake, env={"PYSPARK_SUBMIT_ARGS": f"{SHORT_S3_RETRIES} pyspark-shell"}
        )
    finally:
        stage.s3_proxy.clear()
    assert code == 1, stderr[-3000:]
    result = read_json(stage.s3, f"{lake}/_results/{BATCH}/validate.json", BUCKET)
    assert result["status"] == "ERROR"
    assert "validated/orders" in result["errors"][-1] and "503" in result["errors"][-1], result["errors"]
    assert stage.run("validate", lake)[0] == 0
    assert stage.tables(lake) == reference.tables


def test_dynamodb_throttling_beyond_the_retries_fails_visibly_and_a_rerun_repairs(
    stage: Stage, reference: Reference
) -> None:
    lake = "ddb-throttled"
    stage.copy("validated", lake)
    stage.kpi_tables(lake)
    throttle = stage.ddb_proxy.add(Fault("POST", target="BatchWriteItem", respond=DYNAMODB_THROTTLED))
    try:
        code, stderr = stage.run("transform", lake)
    finally:
        stage.ddb_proxy.clear()
    assert code == 1, stderr[-3000:]
    assert throttle.fired >= 10
    result = read_json(stage.s3, f"{lake}/_results/{BATCH}/transform.json", BUCKET)
    assert result["status"] == "ERROR"
    assert "ProvisionedThroughputExceededException" in result["errors"][-1], result["errors"]
    assert stage.table(lake, "kpi", "order_daily") is None  # nothing half-published in Delta
    assert stage.run("transform", lake)[0] == 0
    assert stage.kpis(lake) == reference.kpis


def test_a_200_mb_line_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """With a 2 GB driver (the default before the heap was sized from the machine), a single 200 MB
    line once killed the JVM (out of memory). The drill keeps that heap, so it still fails without
    the line bound."""
    orders = tmp_path / "orders.csv"
    with orders.open("w") as out:
        out.write("order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n")
        out.write("1,1,complete,2024-01-01T10:00:00,,,,1\n2,1,")
        for _ in range(200):
            out.write("x" * (1 << 20))
        out.write(",2024-01-01T10:00:00,,,,1\n3,1,complete,2024-01-02T10:00:00,,,,2\n")
    done = run_local_job("jobs.validate", ["--batch-id", "big", "--orders", str(orders)], tmp_path, "2g")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "lake" / "_results" / "big" / "validate.json").read_text())
    assert result["status"] == "FAILED"
    assert result["datasets"]["orders"]["files"][0]["error"].startswith(
        "holds line(s) longer than 1,048,576 bytes (209,715,"
    )
