"""The jobs' process exit codes: one set for every entrypoint (docs/jobs.md#exit-codes)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # done; validate's result may still say FAILED (a data-quality outcome)
    FAILED = 1  # an internal error, or S3 / DynamoDB / Glue refused: a re-run may pass
    CONFIG = 2  # bad arguments, settings, manifest or contract: fix them, then run again
    NOT_VALIDATED = 3  # transform: no usable SUCCEEDED validation result for the batch
    BATCH_FAILED = 4  # run: the batch failed its checks, so it was not transformed
