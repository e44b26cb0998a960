"""Ingestion Lambda: record each raw file that lands under ``raw/<dataset>/`` (S3 ObjectCreated).

Records are keyed by group and ``<key>#<etag>``, written with a condition, so S3's at-least-once
re-delivery of an event never creates a second record. Keys outside the raw prefix or for an
unknown dataset are skipped with a log line.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

from orchestration.config import DATASETS, Config

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

PENDING_INDEX = "pending-index"  # sparse GSI: only unbatched files carry `pending`


def parse_key(key: str, config: Config) -> tuple[str, str] | None:
    """``raw/<dataset>/[<group>/]<file>`` -> (dataset, group); None when it is not a raw file."""
    if not key.startswith(config.raw_prefix) or key.endswith("/"):
        return None
    parts = key[len(config.raw_prefix) :].split("/")
    if len(parts) < 2 or parts[0] not in DATASETS:
        return None
    group = parts[1] if len(parts) > 2 else "default"
    return parts[0], group


def record_file(table: Any, config: Config, bucket: str, key: str, size: int, etag: str, now: float) -> bool:
    """Write one ingestion record; False when it was already there (a re-delivered event)."""
    parsed = parse_key(key, config)
    if parsed is None:
        log.info(json.dumps({"msg": "ignored object outside raw/<dataset>/", "key": key}))
        return False
    dataset, group = parsed
    arrival = int(now)
    item = {
        "group_key": group,
        "file_id": f"{key}#{etag}",
        "s3_path": f"s3://{bucket}/{key}",
        "dataset": dataset,
        "part": key.rsplit("/", 1)[-1],
        "size": size,
        "arrival_ts": arrival,
        "debounce_deadline": arrival + config.debounce_seconds,  # also the table's TTL attribute
        "processed": False,
        "pending": group,
    }
    try:
        table.put_item(Item=item, ConditionExpression="attribute_not_exists(file_id)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            log.info(json.dumps({"msg": "duplicate event ignored", "key": key, "etag": etag}))
            return False
        raise
    return True


def handler(event: dict[str, Any], context: Any = None, now: float | None = None) -> dict[str, int]:
    """S3 event -> ingestion records."""
    config = Config.from_env()
    table = boto3.resource("dynamodb").Table(config.ingestion_table)
    recorded = ignored = 0
    for record in event.get("Records", []):
        s3 = record.get("s3", {})
        key = unquote_plus(s3.get("object", {}).get("key", ""))
        etag = s3.get("object", {}).get("eTag") or s3.get("object", {}).get("sequencer", "")
        ok = record_file(
            table,
            config,
            s3.get("bucket", {}).get("name", config.bucket),
            key,
            int(s3.get("object", {}).get("size", 0)),
            etag,
            time.time() if now is None else now,
        )
        recorded += ok
        ignored += not ok
    return {"recorded": recorded, "ignored": ignored}
