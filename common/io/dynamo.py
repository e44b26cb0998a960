"""DynamoDB batch writes that lose nothing: unprocessed items and throttling are retried with
exponential backoff and jitter; a key is never sent twice in one call."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from common.errors import PipelineError
from common.io import aws

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 25  # DynamoDB's limit per BatchWriteItem
RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}
_serializer = TypeSerializer()


class DynamoWriteError(PipelineError):
    """Items could not be written after every retry."""


@dataclass
class WriteStats:
    puts: int = 0
    deletes: int = 0
    calls: int = 0
    retried_items: int = 0
    throttled_calls: int = 0


def dynamodb_client(settings: Settings) -> Any:
    """The run's DynamoDB client (the KPI tables and the lake's lease): its retry policy is
    :mod:`common.io.aws`'s; :func:`batch_write` then retries the unprocessed items itself."""
    return aws.client(settings, "dynamodb")


def _serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def batch_write(
    client: Any,
    table: str,
    puts: Sequence[Mapping[str, Any]],
    deletes: Sequence[Mapping[str, Any]],
    key_names: Sequence[str],
    max_attempts: int = 10,
    base_delay: float = 0.05,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteStats:
    """Put ``puts`` and delete ``deletes`` (key dicts) in batches of 25.

    Raises:
        ValueError: a key appears twice (DynamoDB rejects it, and it would mean a bug upstream).
        DynamoWriteError: items were still unprocessed after ``max_attempts`` tries.
    """
    keys = [tuple(item[k] for k in key_names) for item in [*puts, *deletes]]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys in the write set for {table}")
    requests = [{"PutRequest": {"Item": _serialize(item)}} for item in puts]
    requests += [{"DeleteRequest": {"Key": _serialize(key)}} for key in deletes]
    stats = WriteStats(puts=len(puts), deletes=len(deletes))
    for start in range(0, len(requests), BATCH_SIZE):
        pending = requests[start : start + BATCH_SIZE]
        attempt = 0
        last = "unprocessed items"
        while pending:
            attempt += 1
            if attempt > max_attempts:
                raise DynamoWriteError(
                    f"{len(pending)} item(s) still unprocessed in {table} after {max_attempts} attempts "
                    f"(the last answer: {last}); items written so far stay: re-run the batch"
                )
            if attempt > 1:
                delay = min(max_delay, base_delay * 2 ** (attempt - 2))
                sleep(delay * (0.5 + random.random() / 2))  # jitter spreads retries of parallel writers
            stats.calls += 1
            try:
                response = client.batch_write_item(RequestItems={table: pending})
            except ClientError as exc:
                last = exc.response.get("Error", {}).get("Code", "?")
                if last not in RETRYABLE:
                    raise DynamoWriteError(f"cannot write to DynamoDB table {table}: {exc}") from exc
                stats.throttled_calls += 1
                log.warning("DynamoDB %s throttled (attempt %d): retrying", table, attempt)
                continue
            last = "unprocessed items"
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if pending:
                stats.retried_items += len(pending)
                log.info("DynamoDB %s: %d unprocessed item(s), retrying", table, len(pending))
    return stats
