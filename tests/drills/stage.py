"""The stage of the fault drills: MinIO (S3) and moto's server (DynamoDB), each behind a
:mod:`tests.fault_proxy` that injects a fault at an exact request (the commit of a Delta version is
the PUT of ``_delta_log/<version>.json``; a DynamoDB write is a ``BatchWriteItem`` POST), one batch
staged in a bucket of the drill module's own, and the jobs run as processes against it.

The runs a drill only sets up or compares against (the uninterrupted reference, the batches before
the one that is killed) run in the test session instead (:meth:`Stage.run_here`): the same job code,
in a JVM that is already warm. The killed runs and the re-runs that repair them are processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from common.contracts import DATASETS
from jobs import maintain, transform, validate
from tests.aws_stack import create_kpi_tables
from tests.fault_proxy import Fault, FaultProxy
from tests.helpers import job_env, job_environment
from tests.minio_server import Minio

BATCH = "drill-1"
KPIS = ("order_daily", "category_daily")
FIRST_DATA_COMMIT = r"_delta_log/0{19}1\.json$"  # version 0 creates the table from the contract
IN_PROCESS = {"validate": validate.main, "transform": transform.main, "maintain": maintain.main}


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
    bucket: str
    manifest: str
    truth: dict[str, Any]
    cwd: Path
    spark: SparkSession

    def env(self, lake: str, **extra: str) -> dict[str, str]:
        return job_env(
            self.minio,
            self.ddb_proxy.endpoint,
            ECOM_S3_ENDPOINT_URL=self.s3_proxy.endpoint,
            ECOM_LAKE_ROOT=f"s3://{self.bucket}/{lake}",
            ECOM_DYNAMODB_ORDER_TABLE=f"{lake}-order",
            ECOM_DYNAMODB_CATEGORY_TABLE=f"{lake}-category",
            ECOM_PROCESSING_DATE="2026-01-15",  # the same on both sides of midnight
            **extra,
        )

    def _args(self, job: str, args: list[str] | None) -> list[str]:
        """By default, the batch of the manifest."""
        if args is not None:
            return args
        return ["--manifest", self.manifest] if job == "validate" else ["--batch-id", BATCH]

    def start(
        self, job: str, lake: str, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Job:
        """Run ``job`` on ``lake`` as a process, ``env`` added."""
        return Job(f"jobs.{job}", self._args(job, args), self.env(lake, **(env or {})), self.cwd)

    def run(
        self, job: str, lake: str, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        return self.start(job, lake, args, env).finish()

    def run_here(self, job: str, lake: str, args: list[str] | None = None) -> int:
        """Run ``job`` on ``lake`` in the test session, with the environment a process gets (S3A
        reaches MinIO through the session's settings for the bucket, not through the proxy)."""
        with job_environment(self.env(lake)):
            return IN_PROCESS[job](self._args(job, args), spark=self.spark)

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
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{source}/")
        for page in pages:
            for obj in page.get("Contents", []):
                key = target + obj["Key"][len(source) :]
                self.s3.copy_object(
                    Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": obj["Key"]}
                )

    def copy_items(self, source: str, target: str) -> None:
        """The KPI items of lake ``source``'s DynamoDB tables put into ``target``'s."""
        for table in ("order", "category"):
            for item in self.ddb.scan(TableName=f"{source}-{table}")["Items"]:
                self.ddb.put_item(TableName=f"{target}-{table}", Item=item)

    def uri(self, lake: str, kind: str, name: str) -> str:
        return f"s3a://{self.bucket}/{lake}/{kind}/{name}"

    def table(self, lake: str, kind: str, name: str) -> list[str] | None:
        """A Delta table's rows as sorted JSON (the KPI rows' computation time left out)."""
        try:
            frame = self.spark.read.format("delta").load(self.uri(lake, kind, name))
        except AnalysisException:
            return None
        frame = frame.drop("computed_at")
        return sorted(
            json.dumps(r.asDict(recursive=True), default=str, sort_keys=True) for r in frame.collect()
        )

    def version(self, lake: str, kind: str, name: str) -> int:
        prefix = f"{lake}/{kind}/{name}/_delta_log/"
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
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
