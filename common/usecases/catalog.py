"""The lake's tables as a catalog sees them: each validated, quarantine and KPI table with its
location and schema (from the contracts and the KPI definitions), printed as DDL or registered in
the Glue Data Catalog."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pyspark.sql import types as T

from common.contracts import Contract
from common.engine import kpis, tables
from common.io import glue
from common.io.lake import Lake
from common.io.storage import catalog_uri

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["validated", "quarantine", "kpi"]
Dialect = Literal["athena", "spark"]
DEFAULT_DATABASE = "ecom_lake"


@dataclass(frozen=True)
class LakeTable:
    kind: Kind
    source: str  # the dataset (validated, quarantine) or the KPI table's own name
    location: str  # as a catalog records it (s3://...)
    schema: T.StructType
    description: str
    column_comments: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.source}"

    def columns(self) -> list[tuple[str, str]]:
        """``(name, Hive/Spark SQL type)`` pairs, as Glue stores them."""
        return [(f.name, f.dataType.simpleString()) for f in self.schema.fields]


def lake_tables(lake: Lake, contracts: dict[str, Contract]) -> list[LakeTable]:
    """Every table the jobs write, in the order they are written."""
    return dataset_tables(lake, contracts) + kpi_tables(lake)


def dataset_tables(lake: Lake, contracts: dict[str, Contract]) -> list[LakeTable]:
    """The validated and quarantine table of each dataset, from its contract."""
    out: list[LakeTable] = []
    for name, contract in contracts.items():
        comments = {c: spec.description for c, spec in contract.columns.items() if spec.description}
        about = (contract.description or name).rstrip(".")
        out.append(
            LakeTable(
                "validated",
                name,
                catalog_uri(lake.validated(name)),
                tables.validated_schema(contract),
                f"{about}. Valid rows, one per {', '.join(contract.primary_key)} (merged batch by batch).",
                comments,
            )
        )
        out.append(
            LakeTable(
                "quarantine",
                name,
                catalog_uri(lake.quarantine(name)),
                tables.quarantine_schema(contract),
                f"{about}. Quarantined rows as received (text), with reason codes; one slice per batch.",
                {},
            )
        )
    return out


def kpi_tables(lake: Lake) -> list[LakeTable]:
    """The KPI tables transform writes."""
    return [
        LakeTable("kpi", t.name, catalog_uri(lake.kpi(t.name)), t.schema, t.description, {})
        for t in kpis.KPI_TABLES
    ]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _athena(table: LakeTable, database: str) -> str:
    width = max(len(c) for c, _ in table.columns())
    listed = "\n".join(f"--   {c.ljust(width)}  {kind}" for c, kind in table.columns())
    return (
        f"-- {table.name}: {table.description}\n"
        "-- Athena reads a Delta table's columns from its log; they are, from the contract:\n"
        f"{listed}\n"
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table.name}`\n"
        f"LOCATION {_quote(table.location)}\n"
        "TBLPROPERTIES ('table_type' = 'DELTA');\n"
    )


def _spark(table: LakeTable, database: str) -> str:
    lines = []
    for column, kind in table.columns():
        comment = table.column_comments.get(column)
        required = "" if table.schema[column].nullable else " NOT NULL"
        described = f" COMMENT {_quote(comment)}" if comment else ""
        lines.append(f"  `{column}` {kind.upper()}{required}{described}")
    body = ",\n".join(lines)
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table.name}` (\n{body}\n)\n"
        f"USING DELTA\nLOCATION {_quote(table.location)}\nCOMMENT {_quote(table.description)};\n"
    )


def render_ddl(lake_tables: Iterable[LakeTable], database: str, dialect: Dialect) -> str:
    """The DDL that creates every table in ``database`` (Athena: Delta tables read from their log;
    Spark SQL: ``USING DELTA`` with the full schema, e.g. for Spark on EMR with the Glue catalog)."""
    render = _athena if dialect == "athena" else _spark
    return "\n".join(render(t, database) for t in lake_tables)


def register(settings: Settings, lake_tables: Iterable[LakeTable]) -> dict[str, str]:
    """Register (create or update) each table in the configured Glue database; nothing when none is
    configured. Returns ``{table: created|updated|unchanged}``.

    Raises:
        CatalogError: Glue refused a call.
    """
    database = settings.glue_database
    if not database:
        return {}
    client = glue.glue_client(settings)
    done = {
        t.name: glue.register_table(client, database, t.name, t.location, t.columns(), t.description)
        for t in lake_tables
    }
    changed = {name: action for name, action in done.items() if action != "unchanged"}
    log.info("Glue database %s: %s", database, changed or "every table already registered as is")
    return done
