"""A Spark standalone cluster on 127.0.0.1 for the tests: a master and workers started from the
installed pyspark's own classes (``spark-class ...deploy.master.Master`` / ``...deploy.worker.Worker``).

Each worker runs in a mount namespace of its own whose ``/tmp`` is an empty tmpfs: its executors
share the machine's network and the project's read-only files (the venv, the jars) as cluster nodes
share an image, but never see the driver's temporary files, so a job that leaves data on the
driver's local disk for its executors fails here as it would on a real cluster. Workers get the
S3 credentials in their environment, as cluster nodes get an instance role.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspark

from tests.moto_server import free_port

SPARK_HOME = Path(pyspark.__file__).resolve().parent
_PRIVATE_TMP = 'mount -t tmpfs -o size=2g tmpfs /tmp && exec "$0" "$@"'


@dataclass(frozen=True)
class Cluster:
    master_url: str  # spark://127.0.0.1:<port>
    ui_url: str  # the master's web UI (its /json/ lists the workers and applications)

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            return dict(json.loads(response.read()))


def private_tmp_available() -> str | None:
    """Why workers cannot get a private /tmp here (None when they can): ``unshare`` and a mount
    namespace (root, as the suite's machines run it)."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", _PRIVATE_TMP, "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"unshare -m cannot mount a private /tmp here (run as root): {probe.stderr.strip()}"
    return None


def _env(extra: dict[str, str]) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "JAVA_HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",  # bind (and advertise) loopback only, web UIs included
        SPARK_NO_DAEMONIZE="1",
        PYSPARK_PYTHON=sys.executable,
    )
    env.update(extra)
    return env


def _spark_class(name: str, *args: str) -> list[str]:
    return [str(SPARK_HOME / "bin" / "spark-class"), f"org.apache.spark.deploy.{name}", *args]


def _wait(cluster: Cluster, workers: int, processes: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Spark cluster process exited early: see {logs}")
        try:
            alive = [w for w in cluster.state().get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) == workers:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Spark cluster did not have {workers} workers within 90 s: see {logs}")


@contextmanager
def spark_cluster(work: Path, worker_env: dict[str, str], workers: int = 2) -> Iterator[Cluster]:
    """A master and ``workers`` workers (one core, 2 GiB each) on free loopback ports; stopped
    afterwards. Their logs are under ``work``.

    Raises:
        RuntimeError: workers cannot get a private /tmp here, or the cluster did not come up.
    """
    problem = private_tmp_available()
    if problem:
        raise RuntimeError(f"cannot start the test Spark cluster: {problem}")
    work.mkdir(parents=True, exist_ok=True)
    port, ui = free_port(), free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}")
    with ExitStack() as stack:
        processes: list[subprocess.Popen[bytes]] = []

        def start(command: list[str], log_name: str, env: dict[str, str]) -> None:
            log = stack.enter_context((work / log_name).open("wb"))
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            processes.append(process)

        master = _spark_class(
            "master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)
        )
        start(master, "master.log", _env({}))
        for index in range(workers):
            worker = _spark_class(
                "worker.Worker",
                cluster.master_url,
                *("--host", "127.0.0.1", "--cores", "1", "--memory", "2g"),
                *("--port", str(free_port()), "--webui-port", str(free_port())),
                *("--work-dir", "/tmp/spark-worker"),  # inside the worker's own /tmp
            )
            start(
                ["unshare", "-m", "sh", "-c", _PRIVATE_TMP, *worker], f"worker-{index}.log", _env(worker_env)
            )
        try:
            _wait(cluster, workers, processes, work)
            yield cluster
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
