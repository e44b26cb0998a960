"""Shared fixtures: one SparkSession for the whole run, small generated batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from common.io.spark import build_spark
from common.settings import Settings
from tests.minio_server import Minio, minio_server

# The slow test files that take longest (measured under `make drills`, two at a time: 5 to 30
# minutes each), longest first. Run file by file (`--dist loadfile --no-loadscope-reorder`), they
# are handed out in collection order: started first, none of them is left running alone at the end.
LONGEST_FIRST = (
    "tests/drills/test_transform_drills.py",
    "tests/drills/test_validate_drills.py",
    "tests/drills/test_bench.py",
    "tests/drills/test_small_heap.py",
    "tests/integration/test_cluster.py",
    "tests/integration/test_s3_integration.py",
    "tests/spark/test_transform_job.py",
    "tests/unit/test_orchestration.py",
    "tests/integration/test_container_run.py",
    "tests/integration/test_executor_pod.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadfile``, the files of :data:`LONGEST_FIRST` first, in its order (the
    rest keep theirs)."""
    if getattr(config.option, "dist", "no") != "loadfile":
        return
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session", autouse=True)
def _offline_aws() -> Iterator[None]:
    """Fake credentials so no test can reach a real AWS account."""
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The production session builder, sized for tests: local[2], 2 shuffle partitions."""
    session = build_spark(make_settings(), "ecom-tests")
    yield session
    session.stop()


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests, independent of the developer's environment."""
    base: dict[str, Any] = {"spark_master": "local[2]", "spark_shuffle_partitions": 2, "log_format": "text"}
    base.update(overrides)
    return Settings.model_validate(base)


def write_csv(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    """A real MinIO server (built from source by `make minio`) on 127.0.0.1 for the whole run."""
    with minio_server(tmp_path_factory.mktemp("minio")) as server:
        yield server


def read_s3_with(
    spark: SparkSession, endpoint: str, bucket: str, access_key: str = "testing", secret_key: str = "testing"
) -> None:
    """Point the shared test session's S3A at ``endpoint`` for ``bucket`` only (per-bucket settings).

    Jobs handed this session (in-process tests) do not build their own, so this stands in for the
    S3A settings :func:`common.io.spark.build_spark` derives from ``ECOM_S3_ENDPOINT_URL``.
    """
    conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]  # per-bucket keys only
    for key, value in {
        "endpoint": endpoint,
        "endpoint.region": "us-east-1",
        "path.style.access": "true",
        "connection.ssl.enabled": "false",
        "access.key": access_key,
        "secret.key": secret_key,
    }.items():
        conf.set(f"fs.s3a.bucket.{bucket}.{key}", value)
