"""Spark session construction (never at import time): Delta Lake, Hadoop S3A and the pinned jars."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark import SparkContext, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.errors import ConfigurationError

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

# The jars `make jars` fetches (jvm-deps.xml); each run checks that these are present.
REQUIRED_JARS = ("delta-spark_2.13-", "delta-storage-", "hadoop-aws-", "s3-2")
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# A JVM class-data-sharing archive beside the jars (`make install` records it from a small run):
# the driver JVM maps the classes Spark, Delta and S3A load instead of parsing them again, a few
# seconds off every job's start. A stale or foreign archive is ignored by the JVM (-Xshare:auto).
CLASS_ARCHIVE = "spark-classes.jsa"


def pinned_jars(jars_dir: str) -> list[Path]:
    """The jars of ``jars_dir``, checked for completeness.

    Raises:
        ConfigurationError: the folder is missing or lacks a required jar (says what to run).
    """
    folder = Path(jars_dir)
    jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    missing = [
        prefix.rstrip("-") for prefix in REQUIRED_JARS if not any(j.name.startswith(prefix) for j in jars)
    ]
    if missing:
        raise ConfigurationError(
            f"the pinned JVM jars are missing from {folder.resolve()} ({', '.join(missing)} not found): "
            "run `make install` (or `make jars`) once to fetch them from Maven Central, or point "
            "ECOM_JARS_DIR at a folder holding them (an empty ECOM_JARS_DIR means the platform "
            "provides Delta and S3A)"
        )
    return jars


# The throughput collector rather than G1: no concurrent marking threads competing with two
# task threads and the planning driver on a few cores (measured: docs/development.md). Left out
# when the user's options name a collector.
COLLECTOR = "-XX:+UseParallelGC"

# The client compiler only, for small batches (ECOM_SPARK_JIT). A small batch's run is mostly the
# driver planning queries on a cold JVM, where the tiered JIT's optimising compiler competes with
# the job for the cores; on large batches C1's code runs the rows slower, hence the bounds below
# (measured: docs/development.md). With C1 alone the JVM reserves only a 48 MB code cache, which
# one run filled ("Out of space in CodeCache for adapters"): 256 MB.
QUICK_JIT = ("-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=256m")
QUICK_JIT_MAX_BYTES = 50 * 1024 * 1024  # raw input of a batch validate calls small
QUICK_JIT_MAX_ROWS = 2_000_000  # rows read (all datasets) of a batch transform calls small


@dataclass(frozen=True)
class BatchSize:
    """What a job knows of its batch's size before the JVM starts: the raw input's bytes
    (validate, ``jobs.run``) or the rows validation read (transform)."""

    input_bytes: int | None = None
    rows_read: int | None = None

    @property
    def small(self) -> bool:
        """Small enough for :data:`QUICK_JIT` (the thresholds above); an unknown size is not."""
        if self.input_bytes is not None:
            return self.input_bytes <= QUICK_JIT_MAX_BYTES
        return self.rows_read is not None and self.rows_read <= QUICK_JIT_MAX_ROWS


# A join side of at most this many rows, counted by the job (a batch's keys), is broadcast.
BROADCAST_MAX_ROWS = 2_000_000


def broadcast_if_small(frame: DataFrame, rows: int) -> DataFrame:
    """``frame`` hinted for a broadcast join when it holds at most :data:`BROADCAST_MAX_ROWS`
    rows (``rows``: counted, or an upper bound the job knows); else as it is (a shuffle join)."""
    return F.broadcast(frame) if rows <= BROADCAST_MAX_ROWS else frame


@contextmanager
def kept(frame: DataFrame) -> Iterator[DataFrame]:
    """``frame`` kept (memory, then disk) inside the block and released after: its plan is run
    once, however many actions use it."""
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield frame
    finally:
        frame.unpersist()


def _threshold(megabytes: int) -> str:
    return f"{megabytes}m" if megabytes > 0 else "-1"


_BROADCAST_THRESHOLDS = (
    "spark.sql.autoBroadcastJoinThreshold",
    "spark.sql.adaptive.autoBroadcastJoinThreshold",
)


@contextmanager
def broadcast_only_when_hinted(spark: SparkSession) -> Iterator[None]:
    """Inside the block, Spark broadcasts only the join sides hinted with :func:`broadcast_if_small`,
    never one it estimates small: a lake table's compressed files made 5M rows look small, and
    their hash table did not fit a 2 GB driver (a MERGE failed). The session's own setting is put
    back afterwards (``jobs.run`` goes on to transform in it)."""
    with session_conf(spark, dict.fromkeys(_BROADCAST_THRESHOLDS, "-1")):
        yield


@contextmanager
def session_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """The session's settings ``values`` inside the block; each one's own value (or its absence)
    put back afterwards."""
    before = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def quick_jit(settings: Settings, size: BatchSize | None) -> bool:
    """Whether the driver gets :data:`QUICK_JIT`: as set, or (auto) when the batch is small."""
    return settings.spark_jit == "quick" or (settings.spark_jit == "auto" and size is not None and size.small)


def driver_java_options(settings: Settings, size: BatchSize | None = None) -> str:
    """The driver JVM's options: UTC, the collector, the compiler for the batch's size, and the
    class archive when one sits beside the jars; the user's own options last (they win).

    They apply when this process starts the JVM (python -m, the container); under spark-submit
    the JVM is already running and takes its options from spark-submit instead.
    """
    options = ["-Duser.timezone=UTC"]
    if not re.search(r"-XX:\+Use\w+GC\b", settings.spark_driver_java_options):
        options.append(COLLECTOR)
    if quick_jit(settings, size):
        options += QUICK_JIT
    archive = Path(settings.jars_dir) / CLASS_ARCHIVE if settings.jars_dir else None
    if archive is not None and archive.is_file():
        # A stale archive (the JDK or the jars changed) is skipped; its warning would go to stdout.
        options += [
            f"-XX:SharedArchiveFile={archive.resolve()}",
            "-Xshare:auto",
            "-Xlog:cds=off",
            "-Xlog:cds+dynamic=off",
        ]
    if settings.spark_driver_java_options:
        options.append(settings.spark_driver_java_options)
    return " ".join(options)


GIB = 1024**3
MIB = 1024**2
# The heap "auto" gives (spark_driver_memory): never below what Spark's local driver needs to start,
# never above where the JVM loses compressed object pointers.
AUTO_HEAP_BOUNDS = (512 * MIB, 30 * GIB)
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def memory_limit(
    cgroup_root: Path = _CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The memory limit of this process's container (cgroup v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``, of its own group or the mount's root), or None when none is set.
    "max" and v1's unlimited (~2^63) read as none; the smallest limit found wins."""
    groups = {"v2": "/", "v1": "/"}
    try:
        for line in proc_cgroup.read_text().splitlines():
            _, controllers, group = line.split(":", 2)
            if controllers == "":
                groups["v2"] = group
            elif "memory" in controllers.split(","):
                groups["v1"] = group
    except (OSError, ValueError):
        pass
    candidates = [
        cgroup_root / groups["v2"].lstrip("/") / "memory.max",
        cgroup_root / "memory.max",
        cgroup_root / "memory" / groups["v1"].lstrip("/") / "memory.limit_in_bytes",
        cgroup_root / "memory" / "memory.limit_in_bytes",
    ]
    limits = []
    for path in candidates:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**62:
            limits.append(int(text))
    return min(limits) if limits else None


def physical_memory() -> int:
    """The machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def auto_heap(limit: int | None, physical: int, most: int = AUTO_HEAP_BOUNDS[1]) -> str:
    """The driver heap for "auto", in megabytes: with a container limit below the machine's
    memory, the limit less a quarter of it (at least 1 GiB: the JVM's code cache, metaspace, class
    archive, threads and GC structures took ~0.6 GB beside a 2 GB heap at 5M items, and the Python
    driver ~0.1 GB); otherwise a quarter of the machine (the JVM's own default share), leaving the
    rest to whatever else runs there. Within :data:`AUTO_HEAP_BOUNDS`, and at most ``most``."""
    if limit is not None and limit < physical:
        heap = limit - max(GIB, limit // 4)
    else:
        heap = physical // 4
    return f"{min(max(heap, AUTO_HEAP_BOUNDS[0]), most) // MIB}m"


# A small batch's heap under "auto" (the size :data:`QUICK_JIT` calls small): a larger one made a
# small batch slower and let the process grow into it (docs/benchmarks.md has the figures).
SMALL_BATCH_HEAP = 2 * GIB


def driver_memory(settings: Settings, size: BatchSize | None = None) -> str:
    """spark.driver.memory: as set, or :func:`auto_heap` for this machine or container, at most
    :data:`SMALL_BATCH_HEAP` for a small batch."""
    if settings.spark_driver_memory != "auto":
        return settings.spark_driver_memory
    most = SMALL_BATCH_HEAP if size is not None and size.small else AUTO_HEAP_BOUNDS[1]
    return auto_heap(memory_limit(), physical_memory(), most)


def s3a_options(settings: Settings) -> dict[str, str]:
    """Hadoop S3A settings. Credentials are not among them: S3A's default chain reads the
    environment, the ECS task role or the instance profile."""
    options = {
        "fs.s3a.endpoint.region": settings.aws_region,
        # Fail over to S3A's own retries quickly on a dead endpoint rather than hang for minutes.
        "fs.s3a.connection.establish.timeout": "5s",
        "fs.s3a.attempts.maximum": "5",
    }
    if settings.s3_endpoint_url:  # MinIO, moto: path-style, maybe plain HTTP
        options["fs.s3a.endpoint"] = settings.s3_endpoint_url
        options["fs.s3a.path.style.access"] = "true"
        options["fs.s3a.connection.ssl.enabled"] = str(settings.s3_endpoint_url.startswith("https")).lower()
    return options


def jars_option(jars: list[str], own_local_jvm: bool) -> tuple[str, str]:
    """The Spark option that hands the pinned ``jars`` to the job.

    A local run whose JVM this process starts (``own_local_jvm``: its tasks run in that JVM) puts
    them on the JVM's class path, where the class archive (:data:`CLASS_ARCHIVE`) holds their
    classes too; ``spark.jars`` would load them through Spark's own class loader, which the
    archive cannot serve, and copy every jar for the tasks. Executors elsewhere (a cluster, or a
    JVM started by ``spark-submit``) fetch them from the driver: ``spark.jars``.
    """
    if own_local_jvm:
        return "spark.driver.extraClassPath", os.pathsep.join(jars)
    return "spark.jars", ",".join(jars)


def build_spark(settings: Settings, app_name: str, size: BatchSize | None = None) -> SparkSession:
    """A SparkSession for a job: Delta, S3A, UTC, ANSI, quiet logs; the batch's ``size`` picks the
    driver's compiler (:func:`quick_jit`) when this process starts the JVM.

    Raises:
        ConfigurationError: the pinned jars are missing.
    """
    # Under spark-submit (or when a session exists) the JVM is already running with its options.
    starts_jvm = SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ
    builder = SparkSession.builder
    master = settings.spark_master or "local"
    local = master.startswith("local")
    if settings.jars_dir:
        jars = [str(j.resolve()) for j in pinned_jars(settings.jars_dir)]
        # local[N] runs the tasks in the driver's JVM (local-cluster starts executor JVMs)
        in_driver = re.fullmatch(r"local(\[[^\]]*\])?", master) is not None
        builder = builder.config(*jars_option(jars, in_driver and starts_jvm))
    if settings.spark_master:
        builder = builder.master(settings.spark_master)
    if local:
        # Keep a local driver on loopback: it must never bind or talk to another interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    for key, value in s3a_options(settings).items():
        builder = builder.config(f"spark.hadoop.{key}", value)
    heap = driver_memory(settings, size)
    spark = (
        builder.appName(app_name)
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        # Delta rebuilds a table's snapshot (a Spark job, every time a table is first read) with 50
        # partitions by default: far too many tasks for logs of a few thousand actions.
        .config("spark.databricks.delta.snapshotPartitions", str(settings.spark_snapshot_partitions))
        .config("spark.driver.memory", heap)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.autoBroadcastJoinThreshold", _threshold(settings.spark_broadcast_mb))
        .config("spark.sql.adaptive.autoBroadcastJoinThreshold", _threshold(settings.spark_broadcast_mb))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", driver_java_options(settings, size))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    if starts_jvm:
        log.info(
            "driver JVM: heap %s%s, compiler %s",
            heap,
            " (auto)" if settings.spark_driver_memory == "auto" else "",
            "quick (client only)" if quick_jit(settings, size) else "full (tiered)",
        )
    jvm = spark.sparkContext._jvm  # py4j view of the driver JVM
    if jvm is not None and not jvm.org.apache.spark.util.Utils.classIsLoadable(DELTA_EXTENSION):
        raise ConfigurationError(
            "Delta Lake is not on the driver's classpath. The JVM was started before the job could add "
            "the pinned jars (spark-submit): run `spark-submit --properties-file .jars/spark-defaults.conf "
            "...` (written by `make install`), or pass the jars with --jars"
        )
    return spark


def stop_spark(spark: SparkSession) -> None:
    """Stop a session this process built, as its last Spark call (the process then exits).

    ``SparkSession.stop`` stops the JVM's context (~0.1 s) and then shuts pyspark's accumulator
    server down, waiting for its request handler, which polls in 1-second steps: 0.83-0.86 s of
    every job spent waiting (measured three times, 27k-item transform). The jobs use no
    accumulators, so the server is only told to end: its daemon thread ends with the process.
    """
    context = spark.sparkContext
    server = getattr(context, "_accumulatorServer", None)
    if server is not None:
        context._accumulatorServer = None  # type: ignore[assignment]
        server.server_shutdown = True  # the handler's poll loop ends at its next turn
    spark.stop()
