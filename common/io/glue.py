"""The Glue Data Catalog: register a Delta table (location + columns) so Athena and Spark on
EMR/Glue can query it by name. Athena reads a Delta table's schema from its log; the columns are
stored too, for the catalog's readers that do not (the console, other engines)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from common.errors import CatalogError
from common.io import aws

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

# What makes a Glue table a Delta table: Athena's native Delta reader keys on `table_type`;
# Spark with the Glue catalog on `spark.sql.sources.provider`.
DELTA_PARAMETERS = {"table_type": "DELTA", "EXTERNAL": "TRUE", "spark.sql.sources.provider": "delta"}


def glue_client(settings: Settings) -> Any:
    return aws.client(settings, "glue")


def table_input(name: str, location: str, columns: list[tuple[str, str]], description: str) -> dict[str, Any]:
    """The Glue ``TableInput`` of a Delta table."""
    return {
        "Name": name,
        "Description": description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": dict(DELTA_PARAMETERS),
        "StorageDescriptor": {
            "Columns": [{"Name": column, "Type": kind} for column, kind in columns],
            "Location": location,
        },
    }


def register_table(
    client: Any, database: str, name: str, location: str, columns: list[tuple[str, str]], description: str
) -> str:
    """Create the table, or update it when its location, columns or description differ.

    Returns ``created``, ``updated`` or ``unchanged``.

    Raises:
        CatalogError: Glue refused the call (missing database, permissions, throttling beyond retries).
    """
    wanted = table_input(name, location, columns, description)
    try:
        try:
            current = client.get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
                raise
            client.create_table(DatabaseName=database, TableInput=wanted)
            return "created"
        descriptor = current.get("StorageDescriptor", {})
        same = (
            descriptor.get("Location") == location
            and [(c["Name"], c["Type"]) for c in descriptor.get("Columns", [])] == columns
            and current.get("Description") == description
            and all(current.get("Parameters", {}).get(k) == v for k, v in DELTA_PARAMETERS.items())
        )
        if same:
            return "unchanged"
        client.update_table(DatabaseName=database, TableInput=wanted)
        return "updated"
    except (ClientError, BotoCoreError) as exc:
        raise CatalogError(
            f"cannot register table {database}.{name} in the Glue Data Catalog: {exc}"
        ) from exc
