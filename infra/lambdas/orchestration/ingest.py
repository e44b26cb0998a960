"""Ingestion Lambda: record each raw file that lands under ``raw/<dataset>/`` (S3 ObjectCreated).

Records are keyed by group and ``<key>#<etag>``, written with a condition, so S3's at-least-once
re-delivery of an event never creates a second record. Keys outside the raw prefix are skipped with
a log line; a file under it that names no known dataset (``raw/customers/...``, ``raw/orders.csv``)
is not recorded either, but counted: the ``UnknownRawFiles`` metric (an alarm watches it), since it
is most likely data a person meant the pipeline to read.

A record keeps the object's ETag and, in a versioned bucket, its version id: the batch's manifest
pins each file to the content that arrived, whatever happens to the key afterwards.

A file's arrival is S3's own ``eventTime`` (one clock for every file, whichever Lambda instance
or replay records it): batch ids are ordered by it (see ``batcher.batch_id_for``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

from orchestration import metrics
from orchestration.config import DATASETS, Config

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

PENDING_INDEX = "pending-index"  # sparse GSI: only unbatched files carry `pending`
MAX_SORT_KEY_BYTES = 1024  # DynamoDB's limit for a range key


def file_id_for(key: str, etag: str) -> str:
    """``<key>#<etag>``; a key too long for DynamoDB's sort key is replaced by its SHA-256."""
    file_id = f"{key}#{etag}"
    if len(file_id.encode("utf-8")) <= MAX_SORT_KEY_BYTES:
        return file_id
    return f"sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}#{etag}"


def event_time_ms(record: dict[str, Any], fallback: float) -> int:
    """S3's ``eventTime`` (ISO 8601) in epoch milliseconds; ``fallback`` (seconds) when absent."""
    stamp = record.get("eventTime")
    if stamp:
        try:
            return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            log.warning(json.dumps({"msg": "unparseable eventTime, using the Lambda clock"}))
    return int(fallback * 1000)


def parse_key(key: str, config: Config) -> tuple[str, str] | None:
    """``raw/<dataset>/[<group>/]<file>`` -> (dataset, group); None when it is not a raw file."""
    if not key.startswith(config.raw_prefix) or key.endswith("/"):
        return None
    parts = key[len(config.raw_prefix) :].split("/")
    if len(parts) < 2 or parts[0] not in DATASETS:
        return None
    group = parts[1] if len(parts) > 2 else "default"
    return parts[0], group


def unknown_raw_file(key: str, config: Config) -> bool:
    """A file under the raw prefix that :func:`parse_key` does not take (no known dataset)."""
    return key.startswith(config.raw_prefix) and not key.endswith("/") and parse_key(key, config) is None


def record_file(
    table: Any,
    config: Config,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    arrival_ms: int,
    version_id: str | None = None,
) -> bool:
    """Write one ingestion record; False when it was already there (a re-delivered event).

    ``arrival_ms`` is when S3 created the object (its event time), in epoch milliseconds;
    ``version_id`` the version S3 gave it (None in an unversioned bucket).
    The record carries no TTL until the batcher has put it in a batch (``expires_at``).
    """
    parsed = parse_key(key, config)
    if parsed is None:
        if unknown_raw_file(key, config):
            known = ", ".join(DATASETS)
            message = f"not recorded: a file under {config.raw_prefix} belongs in a folder of {known}"
            log.warning(json.dumps({"msg": message, "key": key}))
        else:
            log.info(json.dumps({"msg": "ignored object outside raw/<dataset>/", "key": key}))
        return False
    dataset, group = parsed
    arrival = arrival_ms // 1000
    item = {
        "group_key": group,
        "file_id": file_id_for(key, etag),
        "s3_path": f"s3://{bucket}/{key}",
        "dataset": dataset,
        "part": key.rsplit("/", 1)[-1],
        "size": size,
        "arrival_ts": arrival,
        "arrival_ms": arrival_ms,
        "debounce_deadline": arrival + config.debounce_seconds,
        "processed": False,
        "pending": group,
        "etag": etag,
    }
    if version_id and version_id != "null":  # "null": the bucket's versioning is suspended or off
        item["version_id"] = version_id
    try:
        table.put_item(Item=item, ConditionExpression="attribute_not_exists(file_id)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            log.info(json.dumps({"msg": "duplicate event ignored", "key": key, "etag": etag}))
            return False
        raise
    return True


def record_event(table: Any, config: Config, record: dict[str, Any], now: float) -> bool:
    """Record the file of one S3 event record (False: ignored or already recorded)."""
    s3 = record.get("s3", {})
    obj = s3.get("object", {})
    key = unquote_plus(obj.get("key", ""))
    etag = obj.get("eTag") or obj.get("sequencer", "")
    bucket = s3.get("bucket", {}).get("name", config.bucket)
    size, arrival = int(obj.get("size", 0)), event_time_ms(record, now)
    return record_file(table, config, bucket, key, size, etag, arrival, obj.get("versionId") or None)


def handler(event: dict[str, Any], context: Any = None, now: float | None = None) -> dict[str, int]:
    """S3 event -> ingestion records; files under raw/ of no known dataset are counted as the
    ``UnknownRawFiles`` metric (by bucket)."""
    config = Config.from_env()
    table = boto3.resource("dynamodb").Table(config.ingestion_table)
    clock = time.time() if now is None else now
    recorded = ignored = unknown = 0
    for record in event.get("Records", []):
        ok = record_event(table, config, record, clock)
        recorded += ok
        ignored += not ok
        key = unquote_plus(record.get("s3", {}).get("object", {}).get("key", ""))
        unknown += unknown_raw_file(key, config)
    if unknown:
        print(metrics.emf_line({"Bucket": config.bucket}, {"UnknownRawFiles": float(unknown)}, clock))
    return {"recorded": recorded, "ignored": ignored, "unknown": unknown}
