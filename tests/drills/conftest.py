"""The fault drills' stage and reference, one of each per drill module (the modules run side by side
under ``make drills``, each in a bucket of its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from common.contracts import DATASETS
from common.generator import GeneratorConfig, generate_batch
from tests.conftest import read_s3_with
from tests.drills.stage import BATCH, Reference, Stage
from tests.fault_proxy import fault_proxy
from tests.helpers import upload_batch
from tests.minio_server import Minio
from tests.moto_server import client, moto_server


@pytest.fixture(scope="module")
def stage(
    request: pytest.FixtureRequest,
    minio: Minio,
    spark: SparkSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    bucket = "ecom-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    s3 = minio.client()
    s3.create_bucket(Bucket=bucket)
    read_s3_with(spark, minio.endpoint, bucket, minio.access_key, minio.secret_key)
    local = tmp_path_factory.mktemp("drills")
    truth = generate_batch(
        local / "in", GeneratorConfig(items=1200, parts=2, seed=41, defect_rate=0.02), batch_id=BATCH
    )
    manifest = upload_batch(minio, local / "in", bucket)
    with moto_server() as ddb_url, fault_proxy(minio.endpoint) as s3_proxy, fault_proxy(ddb_url) as ddb_proxy:
        yield Stage(
            minio, s3, client("dynamodb", ddb_url), s3_proxy, ddb_proxy, bucket, manifest, truth, local, spark
        )


@pytest.fixture(scope="module")
def reference(stage: Stage) -> Reference:
    """The uninterrupted run (in the test session); its validated lake is kept as `validated` for
    the transform drills."""
    assert stage.run_here("validate", "ref") == 0
    stage.copy("ref", "validated")
    stage.kpi_tables("ref")
    assert stage.run_here("transform", "ref") == 0
    ref = Reference(stage.tables("ref"), stage.kpis("ref"))
    for name in DATASETS:  # the batch has valid and quarantined rows in every dataset
        assert ref.tables[f"validated/{name}"] and ref.tables[f"quarantine/{name}"], name
    assert all(ref.kpis.values())
    return ref
