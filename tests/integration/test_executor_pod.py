"""The image's ``executor`` mode, as Spark on Kubernetes starts it: the entrypoint with the argument
``executor`` and the executor's settings in ``SPARK_*`` variables. Here no Kubernetes schedules it:
the test starts it the way a pod would start, beside a real validate job whose cluster manager
(a standalone master with no workers) has no executor of its own to give, so every task of the
job runs in the executor the entrypoint started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.generator import GeneratorConfig, generate_batch
from tests.helpers import ROOT, job_env, read_json, upload_batch
from tests.minio_server import Minio
from tests.moto_server import free_port
from tests.spark_cluster import SPARK_HOME, spark_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a master, a driver and an executor JVM

BUCKET = "ecom-executor"
BATCH = "pod-b1"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start_executor(
    driver_port: int, credentials: dict[str, str], work: Path, log: Path
) -> subprocess.Popen[bytes]:
    """The entrypoint in ``executor`` mode with what Spark's Kubernetes scheduler sets on a pod, in
    a /tmp of its own (a pod never sees the driver's disk)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "JAVA_HOME") if k in os.environ}
    env.update(credentials)
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",  # the image's venv: python, pyspark
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        ECOM_JARS_DIR=str(ROOT / ".jars"),
        SPARK_DRIVER_URL=f"spark://CoarseGrainedScheduler@127.0.0.1:{driver_port}",
        SPARK_EXECUTOR_ID="1",
        SPARK_EXECUTOR_CORES="2",
        SPARK_EXECUTOR_MEMORY="1g",
        SPARK_APPLICATION_ID="ecom-validate",
        SPARK_EXECUTOR_POD_IP="127.0.0.1",
        SPARK_EXECUTOR_POD_NAME="ecom-validate-exec-1",
        SPARK_JAVA_OPT_0=f"-Dspark.driver.port={driver_port}",
        SPARK_JAVA_OPT_1="-Djava.net.preferIPv4Stack=true",
    )
    entrypoint = ["sh", str(ROOT / "docker" / "entrypoint.sh"), "executor"]
    private_tmp = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1g tmpfs /tmp && exec "$0" "$@"']
    with log.open("wb") as out:
        return subprocess.Popen(
            [*private_tmp, *entrypoint], env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT
        )


def test_the_images_executor_mode_runs_every_task_of_a_validate_job(minio: Minio, tmp_path: Path) -> None:
    s3 = minio.client()
    s3.create_bucket(Bucket=BUCKET)
    truth = generate_batch(
        tmp_path / "in", GeneratorConfig(items=500, seed=3, defect_rate=0.02), batch_id=BATCH
    )
    manifest = upload_batch(minio, tmp_path / "in", BUCKET)
    credentials = {
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    driver_port = free_port()
    conf = tmp_path / "spark-conf"
    conf.mkdir()
    # what a driver pod's spark-defaults.conf says: its fixed port (the executors dial it) and no
    # reading of shuffle files from a disk the executor does not share
    (conf / "spark-defaults.conf").write_text(
        f"spark.driver.port {driver_port}\nspark.shuffle.readHostLocalDisk false\n"
    )
    with spark_cluster(tmp_path / "cluster", {}, workers=0) as cluster:
        env = job_env(
            minio,
            ECOM_SPARK_MASTER=cluster.master_url,
            ECOM_LAKE_ROOT=f"s3://{BUCKET}/lake",
            ECOM_PROCESSING_DATE="2026-11-22",
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_CONF_DIR=str(conf),
            TMPDIR=str(tmp_path),
        )
        with (tmp_path / "driver.out").open("wb") as out, (tmp_path / "driver.err").open("wb") as err:
            driver = subprocess.Popen(
                [sys.executable, "-m", "jobs.validate", "--manifest", manifest],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + 120
        while not _listening(driver_port) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        pod = tmp_path / "pod"  # the image's WORKDIR: the executor must not write there
        pod.mkdir()
        executor = _start_executor(driver_port, credentials, pod, tmp_path / "executor.log")
        try:
            deadline = time.monotonic() + 300
            while driver.poll() is None and executor.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            # the executor leaves when the driver says so, which can be before the driver has
            # finished stopping: give the driver its own time to exit before calling it stuck
            driver.wait(timeout=max(0.0, min(60.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        finally:
            for process in (driver, executor):  # a job that lost its only executor would wait for ever
                if process.poll() is None:
                    process.terminate()
                process.wait(timeout=30)
        apps = cluster.state()["completedapps"]
    executor_log = (tmp_path / "executor.log").read_text()
    assert driver.returncode == 0, (tmp_path / "driver.err").read_text()[-3000:] + executor_log[-3000:]
    # the master gave the job no executor: the one the entrypoint started ran its tasks
    assert [(app["name"], app["cores"]) for app in apps] == [("ecom-validate", 0)]
    assert "Successfully registered with driver" in executor_log
    assert "Finished task" in executor_log
    result = read_json(s3, f"lake/_results/{BATCH}/validate.json", BUCKET)
    assert result["status"] == "SUCCEEDED"
    for name, expected in truth["datasets"].items():
        assert result["datasets"][name]["rows_valid"] == expected["rows_valid"], name
    assert "SUCCEEDED" in (tmp_path / "driver.out").read_text()
    assert not list(pod.iterdir()), "the executor wrote into its working directory, not its /tmp"
