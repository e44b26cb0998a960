"""A real MinIO server on 127.0.0.1 for the S3 end-to-end tests.

`make minio` builds MinIO from source with the Go toolchain (a pinned release through the Go module
proxy) into .tools/bin; the build is cached there between runs.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.moto_server import free_port

ROOT = Path(__file__).resolve().parents[1]
MINIO_BIN = Path(os.environ.get("ECOM_MINIO_BIN", ROOT / ".tools" / "bin" / "minio"))
ACCESS_KEY, SECRET_KEY = "ecom-test", "ecom-test-secret"


@dataclass(frozen=True)
class Minio:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


def _wait_ready(endpoint: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MinIO exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"MinIO at {endpoint} not ready after {timeout}s")


@contextmanager
def minio_server(data_dir: Path) -> Iterator[Minio]:
    """Start MinIO on a free loopback port with an empty data folder; stop it afterwards."""
    if not MINIO_BIN.is_file():
        raise RuntimeError(f"no MinIO binary at {MINIO_BIN}: run `make minio` (builds it with Go)")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(data_dir),
        "MINIO_ROOT_USER": ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": SECRET_KEY,
        "MINIO_BROWSER": "off",  # no console
        "MINIO_UPDATE": "off",  # never phone home
    }
    command = [str(MINIO_BIN), "server", str(data_dir / "data"), "--address", f"127.0.0.1:{port}", "--quiet"]
    log = (data_dir / "minio.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(endpoint, process)
        yield Minio(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
