"""Shared fixtures: one SparkSession for the whole run, small generated batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from common.settings import Settings
from common.spark import build_spark


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
