"""Batching Lambda (scheduled every minute): turn quiet groups of files into batch chunks.

A group is ready when no file arrived for the debounce window (or its oldest file waited
``max_wait_seconds``). Its files become one or more chunks within the file/byte limits. Each chunk
is written in ONE DynamoDB transaction together with the "processed" mark of each of its files,
conditioned on those files still being unbatched: a crash at any point, or two batchers racing,
can neither lose a file nor put it in two batches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections import defaultdict
from typing import Any

import boto3
from botocore.exceptions import ClientError

from orchestration.config import Config
from orchestration.ingest import PENDING_INDEX

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def pending_files(table: Any) -> dict[str, list[dict[str, Any]]]:
    """Unbatched files by group (the sparse index holds only those)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kwargs: dict[str, Any] = {"IndexName": PENDING_INDEX}
    while True:
        page = table.scan(**kwargs)
        for item in page.get("Items", []):
            groups[item["group_key"]].append(item)
        if "LastEvaluatedKey" not in page:
            return groups
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def split_chunks(files: list[dict[str, Any]], config: Config) -> list[list[dict[str, Any]]]:
    """Oldest first; a new chunk when the next file would break the file or byte limit."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for item in sorted(files, key=lambda f: (int(f["arrival_ts"]), f["file_id"])):
        item_size = int(item.get("size", 0))
        if current and (
            len(current) >= config.max_files_per_chunk or size + item_size > config.max_bytes_per_chunk
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks


def batch_id_for(group: str, files: list[dict[str, Any]], now: float, sequence: int) -> str:
    """Time and sequence first, so batch ids sort in creation order (dispatch order, and the
    validate job's rule that a later batch's record wins, rely on it)."""
    digest = hashlib.sha1("\n".join([group, *sorted(f["file_id"] for f in files)]).encode()).hexdigest()[:10]
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{sequence:04d}-{digest}"


def group_is_ready(files: list[dict[str, Any]], config: Config, now: float) -> bool:
    quiet = now >= max(int(f["debounce_deadline"]) for f in files)
    waited_too_long = now - min(int(f["arrival_ts"]) for f in files) >= config.max_wait_seconds
    return quiet or waited_too_long


def create_chunk(
    client: Any, config: Config, group: str, files: list[dict[str, Any]], now: float, sequence: int
) -> str | None:
    """Write the chunk and mark its files in one transaction; None when another writer won."""
    batch_id = batch_id_for(group, files, now, sequence)
    chunk = {
        "batch_id": batch_id,
        "group_key": group,
        "files": [f["s3_path"] for f in files],
        "total_bytes": sum(int(f.get("size", 0)) for f in files),
        "status": "pending",
        "created_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
    }
    actions: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": config.chunks_table,
                "Item": chunk,
                "ConditionExpression": "attribute_not_exists(batch_id)",
            }
        }
    ]
    actions += [
        {
            "Update": {
                "TableName": config.ingestion_table,
                "Key": {"group_key": f["group_key"], "file_id": f["file_id"]},
                "UpdateExpression": "SET #done = :t, #batch = :b REMOVE #pending",
                "ConditionExpression": "attribute_exists(#pending)",
                "ExpressionAttributeNames": {
                    "#done": "processed",
                    "#batch": "batch_id",
                    "#pending": "pending",
                },
                "ExpressionAttributeValues": {":t": True, ":b": batch_id},
            }
        }
        for f in files
    ]
    try:
        client.transact_write_items(TransactItems=actions)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"TransactionCanceledException", "TransactionConflictException"}:
            log.info(
                json.dumps({"msg": "chunk not created: files taken or changed concurrently", "group": group})
            )
            return None
        raise
    log.info(json.dumps({"msg": "chunk created", "batch_id": batch_id, "files": len(files)}))
    return batch_id


def run(resource: Any, config: Config, now: float) -> list[str]:
    """One batching pass; returns the batch ids it created."""
    table = resource.Table(config.ingestion_table)
    created = []
    sequence = 0
    for group, files in sorted(pending_files(table).items()):
        if not group_is_ready(files, config, now):
            continue
        for chunk in split_chunks(files, config):
            batch_id = create_chunk(resource.meta.client, config, group, chunk, now, sequence)
            sequence += 1
            if batch_id:
                created.append(batch_id)
    return created


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return {"created": run(boto3.resource("dynamodb"), Config.from_env(), time.time())}
