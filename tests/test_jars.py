"""The pinned JVM jars: present after `make install`, and a clear stop when they are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigurationError
from common.io.spark import pinned_jars
from common.settings import Settings


def test_missing_jars_stop_the_job_with_the_command_to_run(tmp_path: Path) -> None:
    (tmp_path / "delta-spark_2.13-4.4.0.jar").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"hadoop-aws, s3-2 not found.*run `make install`"):
        pinned_jars(str(tmp_path))


def test_the_pinned_jars_are_complete() -> None:
    jars = pinned_jars(Settings().jars_dir)
    assert any(j.name == "delta-spark_2.13-4.4.0.jar" for j in jars)
    assert any(j.name == "hadoop-aws-3.5.0.jar" for j in jars)
    assert not any(j.name.startswith("bundle-") for j in jars)  # the SDK's 600 MB bundle stays out
