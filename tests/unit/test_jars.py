"""The pinned JVM jars: present after `make install`, and a clear stop when they are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.errors import ConfigurationError
from common.io.lake import Lake
from common.io.manifest import Batch, input_bytes
from common.io.results import BatchStatus, DatasetResult, ValidationResult, write_result
from common.io.spark import (
    CLASS_ARCHIVE,
    BatchSize,
    auto_heap,
    driver_java_options,
    driver_memory,
    jars_option,
    memory_limit,
    pinned_jars,
)
from common.settings import Settings
from jobs.exit_codes import ExitCode


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


QUICK = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"


def test_the_driver_gets_the_quick_compiler_for_a_small_batch_unless_told_otherwise() -> None:
    auto, small, large = Settings(jars_dir=""), BatchSize(input_bytes=10), BatchSize(rows_read=10**9)
    assert driver_java_options(auto, small) == f"-Duser.timezone=UTC -XX:+UseParallelGC {QUICK}"
    assert driver_java_options(auto, large) == "-Duser.timezone=UTC -XX:+UseParallelGC"
    assert driver_java_options(auto) == "-Duser.timezone=UTC -XX:+UseParallelGC"  # size unknown
    assert QUICK in driver_java_options(Settings(jars_dir="", spark_jit="quick"), large)
    assert QUICK not in driver_java_options(Settings(jars_dir="", spark_jit="full"), small)
    # the user's own options come last, so the JVM takes theirs
    mine = Settings(jars_dir="", spark_driver_java_options="-XX:TieredStopAtLevel=4")
    assert driver_java_options(mine, small).endswith(f"{QUICK} -XX:TieredStopAtLevel=4")


GIB = 1024**3


def test_the_auto_heap_leaves_a_containers_memory_room_beside_it() -> None:
    physical = 64 * GIB
    assert auto_heap(8 * GIB, physical) == "6144m"  # the Fargate task's 8 GB: 2 GiB left over
    assert auto_heap(16 * GIB, physical) == "12288m"  # a quarter left over
    assert auto_heap(3 * GIB, physical) == "2048m"  # at least 1 GiB left over
    assert auto_heap(1 * GIB, physical) == "512m"  # never below what Spark needs to start
    # no limit (or one above the machine): a quarter of the machine, at most 30g
    assert auto_heap(None, 24 * GIB) == "6144m"
    assert auto_heap(128 * GIB, 24 * GIB) == "6144m"
    assert auto_heap(None, 512 * GIB) == "30720m"
    # a small batch's cap (SMALL_BATCH_HEAP), under a container's own share when that is smaller
    assert auto_heap(None, 24 * GIB, most=2 * GIB) == "2048m"
    assert auto_heap(2 * GIB, physical, most=2 * GIB) == "1024m"


def _cgroup_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


def test_the_memory_limit_is_read_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/ecs/task-1\n")
    v2 = _cgroup_tree(tmp_path / "v2", {"ecs/task-1/memory.max": "8589934592", "memory.max": "max"})
    assert memory_limit(v2, proc) == 8 * GIB
    unlimited = _cgroup_tree(tmp_path / "v2max", {"ecs/task-1/memory.max": "max"})
    assert memory_limit(unlimited, proc) is None
    proc.write_text("5:memory:/docker/abc\n0::/\n")
    v1 = _cgroup_tree(
        tmp_path / "v1",
        {
            "memory/docker/abc/memory.limit_in_bytes": "4294967296",
            "memory/memory.limit_in_bytes": "9223372036854771712",
        },
    )
    assert memory_limit(v1, proc) == 4 * GIB
    # inside a container the mount's root is the container's own group
    inside = _cgroup_tree(tmp_path / "inside", {"memory/memory.limit_in_bytes": "2147483648"})
    assert memory_limit(inside, proc) == 2 * GIB
    assert memory_limit(tmp_path / "none", tmp_path / "no-proc-file") is None


def test_a_heap_that_was_set_is_used_as_it_is() -> None:
    assert driver_memory(Settings(jars_dir="", spark_driver_memory="3g")) == "3g"
    assert driver_memory(Settings(jars_dir="")).endswith("m")  # auto: sized for this machine
    small = driver_memory(Settings(jars_dir=""), BatchSize(input_bytes=10))
    assert int(small.removesuffix("m")) <= 2048
    assert driver_memory(Settings(jars_dir="", spark_driver_memory="3g"), BatchSize(input_bytes=10)) == "3g"
    with pytest.raises(ValueError):
        Settings(jars_dir="", spark_driver_memory="lots")


def test_a_batch_is_small_up_to_50_mib_of_raw_input_or_2m_rows_read() -> None:
    assert BatchSize(input_bytes=52_428_800).small and not BatchSize(input_bytes=52_428_801).small
    assert BatchSize(rows_read=2_000_000).small and not BatchSize(rows_read=2_000_001).small
    assert not BatchSize().small


def test_a_batchs_input_bytes_are_its_files_sizes_local_and_on_s3(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"id\n1\n")  # 5 bytes
    (tmp_path / "b.csv").write_bytes(b"id\n22\n")  # 6 bytes
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="raw")
        s3.put_object(Bucket="raw", Key="p/c.csv", Body=b"x" * 1000)
        batch = Batch(
            "b1",
            {
                "products": [str(tmp_path / "a.csv"), "s3://raw/p/c.csv"],
                "orders": [str(tmp_path / "b.csv"), str(tmp_path / "missing.csv"), "s3://raw/p/gone.csv"],
                "order_items": [str(tmp_path), "s3://raw/"],  # a folder, a bucket: no file
            },
        )
        assert input_bytes(batch, Settings(aws_region="us-east-1")) == 5 + 1000 + 6


def _choices(monkeypatch: pytest.MonkeyPatch, *modules: Any) -> list[tuple[str, BatchSize | None]]:
    """The jobs' ``build_spark`` calls, recorded (app name, batch size); each call then stops its
    job with a configuration error, so no JVM starts."""
    chosen: list[tuple[str, BatchSize | None]] = []

    def record(settings: Settings, app_name: str, size: BatchSize | None = None) -> None:
        chosen.append((app_name, size))
        raise ConfigurationError("stopped by the test")

    for module in modules:
        monkeypatch.setattr(module, "build_spark", record)
    return chosen


def test_each_job_sizes_its_batch_before_the_jvm_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from common.usecases import lifecycle
    from jobs import run, transform, validate

    chosen = _choices(monkeypatch, lifecycle)
    files = [tmp_path / "p.csv", tmp_path / "o.csv"]
    files[0].write_bytes(b"id,name\n1,a\n")  # 12 bytes, not the products' columns
    header = b"order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n"
    files[1].write_bytes(header + b"7,1,complete,2025-01-01 00:00:00,,,,1\n")  # 83 + 38 bytes
    lake = tmp_path / "lake"
    args = [
        "--batch-id",
        "b1",
        "--lake-root",
        str(lake),
        "--products",
        str(files[0]),
        "--orders",
        str(files[1]),
    ]
    assert validate.main(args) == ExitCode.CONFIG
    assert run.main(args) == ExitCode.CONFIG
    # both size the files their header checks can use (no second look at each file): not the
    # products file, whose columns are not the products'
    assert chosen == [("ecom-validate", BatchSize(input_bytes=121)), ("ecom-run", BatchSize(input_bytes=121))]
    validation = ValidationResult(
        batch_id="b1",
        status=BatchStatus.SUCCEEDED,
        started_at="2026-11-24T00:00:00Z",
        datasets={"orders": DatasetResult(rows_read=300), "order_items": DatasetResult(rows_read=700)},
    )
    write_result(validation, Lake(str(lake)).result("b1", "validate"), Settings())
    assert transform.main(["--batch-id", "b1", "--lake-root", str(lake)]) == ExitCode.CONFIG
    assert chosen[-1] == ("ecom-transform", BatchSize(rows_read=1000))


def test_a_local_jvm_of_our_own_takes_the_jars_on_its_class_path_and_any_other_from_the_driver() -> None:
    jars = ["/j/delta-spark_2.13-4.4.0.jar", "/j/hadoop-aws-3.4.2.jar"]
    assert jars_option(jars, own_local_jvm=True) == (
        "spark.driver.extraClassPath",
        "/j/delta-spark_2.13-4.4.0.jar:/j/hadoop-aws-3.4.2.jar",
    )
    assert jars_option(jars, own_local_jvm=False) == (
        "spark.jars",
        "/j/delta-spark_2.13-4.4.0.jar,/j/hadoop-aws-3.4.2.jar",
    )
