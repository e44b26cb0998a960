"""Validate then transform one batch in one process: ``python -m jobs.run --manifest m.json``.

One JVM and one SparkSession for both jobs, for laptops and small batches, where each job's fixed
start-up cost is most of its time. Same flags and ``ECOM_*`` environment as ``jobs.validate`` (and
the transform's). The state machine runs it in its one-task layout (template parameter
``JobLayout=one-task``); its default two-task layout keeps separate retries, timeouts and sizes.

Exit codes: 0 validated and KPIs written; 1 internal error; 2 bad arguments or configuration;
4 the batch FAILED validation (its result is written; nothing was published or transformed).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.errors import ConfigurationError, PipelineError
from common.io.lake import Lake
from common.io.manifest import input_bytes, resolve_batch
from common.io.results import BatchStatus, read_result
from common.io.spark import BatchSize, build_spark, stop_spark
from common.logs import configure_logging
from common.settings import load_settings
from jobs import transform, validate
from jobs.exit_codes import ExitCode

log = logging.getLogger("jobs.run")


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run validate, then (if the batch SUCCEEDED) transform; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(args, prog="python -m jobs.run")
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log_format, settings.log_level)
    try:
        batch = resolve_batch(settings)
        batch_id = batch.batch_id
        # one JVM for both jobs: its compiler is chosen by the raw input, as validate's is
        session = spark or build_spark(
            settings, "ecom-run", BatchSize(input_bytes=input_bytes(batch, settings))
        )
    except ConfigurationError as exc:  # incl. an unreadable manifest: validate would say the same
        log.error("%s", exc)
        return ExitCode.CONFIG
    try:
        code = validate.main(args, spark=session)
        if code != ExitCode.OK:
            return code
        result_uri = settings.result_uri or Lake(settings.lake_root).result(batch_id, "validate")
        try:
            status = read_result(result_uri, settings).status
        except PipelineError as exc:
            log.error("cannot read the validation result %s: %s", result_uri, exc)
            return ExitCode.FAILED
        if status is not BatchStatus.SUCCEEDED:
            log.error("batch %s %s validation: not transformed (see %s)", batch_id, status.value, result_uri)
            return ExitCode.BATCH_FAILED
        more = ["--batch-id", batch_id, "--validation-result", result_uri]
        return transform.main([*args, *more], spark=session)
    finally:
        if spark is None:  # only a session this call built
            stop_spark(session)


if __name__ == "__main__":
    sys.exit(main())
