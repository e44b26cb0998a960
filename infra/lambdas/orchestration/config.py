"""Settings of the orchestration Lambdas, from their environment (set by infra/template.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# The jobs' datasets (common.contracts.DATASETS, in its order; the Lambdas are packaged without
# common/, so a test ties the two): a file under raw/ of any other name is not recorded.
DATASETS = ("products", "orders", "order_items")


class ConfigError(Exception):
    """A required environment variable is missing or malformed."""


@dataclass(frozen=True)
class Config:
    ingestion_table: str
    chunks_table: str
    bucket: str
    state_machine_arn: str = ""
    alert_topic_arn: str = ""
    raw_prefix: str = "raw/"
    manifest_prefix: str = "manifests/"
    results_prefix: str = "results/"
    debounce_seconds: int = 120
    max_wait_seconds: int = 900
    max_files_per_chunk: int = 50
    max_bytes_per_chunk: int = 5 * 1024**3
    record_retention_days: int = 30  # a batched file's record is kept this long (then TTL deletes it)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read ``ECOM_*`` variables.

        Raises:
            ConfigError: a required variable is missing or a number is malformed.
        """
        env = os.environ if env is None else env
        try:
            config = cls(
                ingestion_table=env["ECOM_INGESTION_TABLE"],
                chunks_table=env["ECOM_CHUNKS_TABLE"],
                bucket=env["ECOM_BUCKET"],
                state_machine_arn=env.get("ECOM_STATE_MACHINE_ARN", ""),
                alert_topic_arn=env.get("ECOM_ALERT_TOPIC_ARN", ""),
                raw_prefix=env.get("ECOM_RAW_PREFIX", "raw/"),
                manifest_prefix=env.get("ECOM_MANIFEST_PREFIX", "manifests/"),
                results_prefix=env.get("ECOM_RESULTS_PREFIX", "results/"),
                debounce_seconds=int(env.get("ECOM_DEBOUNCE_SECONDS", "120")),
                max_wait_seconds=int(env.get("ECOM_MAX_WAIT_SECONDS", "900")),
                max_files_per_chunk=int(env.get("ECOM_MAX_FILES_PER_CHUNK", "50")),
                max_bytes_per_chunk=int(env.get("ECOM_MAX_BYTES_PER_CHUNK", str(5 * 1024**3))),
                record_retention_days=int(env.get("ECOM_RECORD_RETENTION_DAYS", "30")),
            )
        except KeyError as exc:
            raise ConfigError(f"missing environment variable {exc.args[0]}") from exc
        except ValueError as exc:
            raise ConfigError(f"malformed number in the environment: {exc}") from exc
        if not 1 <= config.max_files_per_chunk <= 99:
            # one DynamoDB transaction holds the chunk and its files: at most 100 items
            raise ConfigError("ECOM_MAX_FILES_PER_CHUNK must be between 1 and 99")
        if config.record_retention_days < 1:
            raise ConfigError("ECOM_RECORD_RETENTION_DAYS must be at least 1")
        return config
