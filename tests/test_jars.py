"""The pinned JVM jars: present after `make install`, and a clear stop when they are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigurationError
from common.io.spark import CLASS_ARCHIVE, driver_java_options, pinned_jars
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


def test_the_driver_maps_the_class_archive_only_when_there_is_one(tmp_path: Path) -> None:
    settings = Settings(jars_dir=str(tmp_path))
    assert driver_java_options(settings) == "-Duser.timezone=UTC -XX:+UseParallelGC"
    (tmp_path / CLASS_ARCHIVE).write_bytes(b"")
    assert driver_java_options(settings) == (
        f"-Duser.timezone=UTC -XX:+UseParallelGC -XX:SharedArchiveFile={tmp_path / CLASS_ARCHIVE} "
        "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"
    )
    assert driver_java_options(Settings(jars_dir="", spark_driver_java_options="-Xss4m")) == (
        "-Duser.timezone=UTC -XX:+UseParallelGC -Xss4m"
    )


def test_the_users_collector_replaces_ours() -> None:
    # Two collectors would stop the JVM from starting: the user's choice replaces ours.
    assert driver_java_options(Settings(jars_dir="", spark_driver_java_options="-XX:+UseG1GC")) == (
        "-Duser.timezone=UTC -XX:+UseG1GC"
    )
