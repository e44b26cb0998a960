"""The jobs' process exit codes, one set for every entrypoint (docs/jobs.md#exit-codes), and what
every batch entrypoint does: parse the settings, call its use case, map the outcome to the code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from enum import IntEnum

from pyspark.sql import SparkSession

from common.errors import ConfigurationError
from common.logs import configure_logging
from common.settings import Settings, load_settings
from common.usecases.lifecycle import Finished, Outcome


class ExitCode(IntEnum):
    OK = 0  # done; validate's result may still say FAILED (a data-quality outcome)
    FAILED = 1  # an internal error, or S3 / DynamoDB / Glue refused: a re-run may pass
    CONFIG = 2  # bad arguments, settings, manifest or contract: fix them, then run again
    NOT_VALIDATED = 3  # transform: no usable SUCCEEDED validation result for the batch
    BATCH_FAILED = 4  # run: the batch failed its checks, so it was not transformed


EXIT_CODES = {
    Outcome.DONE: ExitCode.OK,
    Outcome.FAILED: ExitCode.FAILED,
    Outcome.CONFIG: ExitCode.CONFIG,
    Outcome.NOT_VALIDATED: ExitCode.NOT_VALIDATED,
    Outcome.BATCH_FAILED: ExitCode.BATCH_FAILED,
}


def settings_or_exit(argv: Sequence[str] | None, prog: str) -> Settings | ExitCode:
    """The settings from ``argv`` (the process's when None) and the environment, with logging
    configured from them; bad ones are said on stderr and give :attr:`ExitCode.CONFIG`."""
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, prog=prog)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log_format, settings.log_level)
    return settings


def finish(finished: Finished) -> ExitCode:
    """Print what the job has to say and map its outcome to the exit code."""
    for line in finished.lines:
        print(line)
    return EXIT_CODES[finished.outcome]


def run_job(
    argv: Sequence[str] | None,
    prog: str,
    usecase: Callable[[Settings, SparkSession | None], Finished],
    spark: SparkSession | None = None,
) -> ExitCode:
    """Parse the settings, run ``usecase`` (in ``spark`` when given, which it borrows), print what
    it says and return its exit code."""
    settings = settings_or_exit(argv, prog)
    if isinstance(settings, ExitCode):
        return settings
    return finish(usecase(settings, spark))
