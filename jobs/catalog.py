"""The lake's tables for SQL users: ``python -m jobs.catalog --ddl`` prints the Athena DDL of every
validated, quarantine and KPI table (``--dialect spark`` the Spark SQL DDL with full schemas);
``--register`` creates or updates them in the Glue database ``--glue-database``. Other flags are the
jobs' settings (``--lake-root s3://bucket/lake``, ``--contracts-dir``, ``--aws-region``).

Exit codes: 0 done; 1 Glue refused a call; 2 bad arguments or an invalid contract.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from common.contracts import load_contracts
from common.errors import CatalogError, ConfigurationError
from common.io.lake import Lake
from common.logs import configure_logging
from common.settings import load_settings
from common.usecases.catalog import DEFAULT_DATABASE, lake_tables, register, render_ddl
from jobs.exit_codes import ExitCode

log = logging.getLogger("jobs.catalog")


def build_parser() -> argparse.ArgumentParser:
    """The command's own flags; the rest of the line is the settings' (:func:`load_settings`)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.catalog", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--ddl", action="store_true", help="print the DDL of every table")
    action.add_argument("--register", action="store_true", help="create or update every table in Glue")
    parser.add_argument("--dialect", choices=["athena", "spark"], default="athena")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(rest, prog="python -m jobs.catalog")
        contracts = load_contracts(Path(settings.contracts_dir) if settings.contracts_dir else None)
        if args.register and not settings.glue_database:
            raise ConfigurationError("--register needs --glue-database (or ECOM_GLUE_DATABASE)")
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log_format, settings.log_level)
    found = lake_tables(Lake(settings.lake_root), contracts)
    if args.ddl:
        print(render_ddl(found, settings.glue_database or DEFAULT_DATABASE, args.dialect), end="")
        return ExitCode.OK
    try:
        done = register(settings, found)
    except CatalogError as exc:
        log.error("%s", exc)
        return ExitCode.FAILED
    for name, what in done.items():
        print(f"{settings.glue_database}.{name}: {what}")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
