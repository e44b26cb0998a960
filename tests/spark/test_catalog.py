"""The catalog: Athena/Spark DDL from the contracts (golden files), and registration in Glue
(moto) that equals what the jobs write, following a contract's new column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from common.contracts import DATASETS
from common.generator import GeneratorConfig, generate_batch
from jobs import catalog, transform
from tests.conftest import write_csv
from tests.helpers import add_channel, edited_contracts, run_validate

GOLDEN = Path(__file__).parents[1] / "golden"
DATABASE = "ecom_lake"
TABLES = [f"{kind}_{name}" for name in DATASETS for kind in ("validated", "quarantine")] + [
    "kpi_order_daily",
    "kpi_category_daily",
]


def _path(lake: Path, table: str) -> Path:
    kind, _, name = table.partition("_")
    return lake / kind / name


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A batch validated and transformed with a Glue database configured: every table of the lake
    written once, and what the jobs registered (the Glue tables, read back)."""
    root = tmp_path_factory.mktemp("catalog")
    generate_batch(root / "in", GeneratorConfig(items=600, parts=1, seed=5, defect_rate=0.02))
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": DATABASE})
        manifest = str(root / "in" / "manifest.json")
        glue_args = ("--glue-database", DATABASE, "--quarantine-threshold", "0.5")
        code, _ = run_validate(spark, root / "lake", "--manifest", manifest, *glue_args)
        assert code == 0
        argv = ["--lake-root", str(root / "lake"), "--batch-id", "demo-0001", "--glue-database", DATABASE]
        assert transform.main([*argv, "--spark-shuffle-partitions", "2"], spark=spark) == 0
        registered = {t["Name"]: t for t in client.get_tables(DatabaseName=DATABASE)["TableList"]}
    return root / "lake", registered


@pytest.fixture
def glue() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": DATABASE})
        yield client


@pytest.mark.parametrize("dialect", ["athena", "spark"])
def test_the_ddl_printed_from_the_contracts_equals_the_golden_file(
    dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--ddl", "--dialect", dialect, "--lake-root", "s3a://example-bucket/lake"]
    assert catalog.main(argv) == 0
    assert capsys.readouterr().out == (GOLDEN / f"catalog_{dialect}.sql").read_text()


@pytest.mark.slow  # a batch through both jobs first (~20 s): `make drills`
def test_the_spark_ddl_declares_exactly_the_tables_the_jobs_wrote(
    spark: SparkSession, lake: tuple[Path, dict[str, Any]]
) -> None:
    """Delta refuses CREATE TABLE ... LOCATION over an existing table whose schema differs, so each
    statement succeeding proves its columns and types are the written table's."""
    root, _ = lake
    ddl = catalog.render_ddl(catalog.lake_tables(catalog.Lake(str(root)), _contracts()), DATABASE, "spark")
    statements = [s for s in ddl.split(";\n") if s.strip()]
    assert len(statements) == len(TABLES)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE} LOCATION '{root.parent / 'warehouse'}'")
    try:
        wrong = statements[0].replace("`sku` STRING", "`sku` BIGINT")
        with pytest.raises(AnalysisException, match="schema"):  # the check this test relies on
            spark.sql(wrong)
        for statement in statements:
            spark.sql(statement)
        created = {row["tableName"] for row in spark.sql(f"SHOW TABLES IN {DATABASE}").collect()}
        assert created == set(TABLES)
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {DATABASE} CASCADE")


def _contracts() -> Any:
    from common.contracts import load_contracts

    return load_contracts()


def _glue_columns(glue: Any, table: str) -> list[tuple[str, str]]:
    described = glue.get_table(DatabaseName=DATABASE, Name=table)["Table"]
    return [(c["Name"], c["Type"]) for c in described["StorageDescriptor"]["Columns"]]


def _written_columns(spark: SparkSession, path: Path) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in spark.read.format("delta").load(str(path)).schema]


def test_the_jobs_register_every_table_they_write_as_written(
    spark: SparkSession, lake: tuple[Path, dict[str, Any]]
) -> None:
    root, registered = lake
    assert set(registered) == set(TABLES)
    for table, described in registered.items():
        assert described["Parameters"]["table_type"] == "DELTA", table
        assert described["StorageDescriptor"]["Location"] == _path(root, table).resolve().as_uri()
        columns = [(c["Name"], c["Type"]) for c in described["StorageDescriptor"]["Columns"]]
        assert columns == _written_columns(spark, _path(root, table)), table


def test_the_register_command_creates_then_leaves_alone(
    lake: tuple[Path, dict[str, Any]], glue: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, registered = lake
    argv = ["--register", "--lake-root", str(root), "--glue-database", DATABASE]
    assert catalog.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [f"{DATABASE}.{t}: created" for t in TABLES]
    for table in TABLES:
        assert _glue_columns(glue, table) == [
            (c["Name"], c["Type"]) for c in registered[table]["StorageDescriptor"]["Columns"]
        ]
    assert catalog.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [f"{DATABASE}.{t}: unchanged" for t in TABLES]


def test_register_needs_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert catalog.main(["--register"]) == 2
    assert "--register needs --glue-database" in capsys.readouterr().err


def test_the_jobs_register_their_tables_and_a_new_column_reaches_the_catalog(
    spark: SparkSession, tmp_path: Path, glue: Any
) -> None:
    lake = tmp_path / "lake"
    header = "order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n"
    first = write_csv(tmp_path / "o1.csv", header + "1,10,processing,2025-01-01,,,,1\n")
    code, result = run_validate(
        spark, lake, "--batch-id", "b1", "--orders", first, "--glue-database", DATABASE
    )
    assert code == 0 and result is not None
    assert result["catalog"] == {"validated_orders": "created", "quarantine_orders": "created"}
    assert {t["Name"] for t in glue.get_tables(DatabaseName=DATABASE)["TableList"]} == {
        "validated_orders",
        "quarantine_orders",
    }

    contracts = edited_contracts(tmp_path, add_channel)
    second = write_csv(
        tmp_path / "o2.csv", header.replace("\n", ",channel\n") + "2,11,processing,2025-01-02,,,,1,web\n"
    )
    code, result = run_validate(
        spark,
        lake,
        "--batch-id",
        "b2",
        "--orders",
        second,
        "--glue-database",
        DATABASE,
        "--contracts-dir",
        str(contracts),
    )
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
    assert result["catalog"] == {"validated_orders": "updated", "quarantine_orders": "updated"}
    for table in ("validated_orders", "quarantine_orders"):
        columns = _glue_columns(glue, table)
        assert ("channel", "string") in columns
        assert columns == _written_columns(spark, _path(lake, table)), table
