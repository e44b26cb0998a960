"""Batching Lambda (scheduled every minute): turn quiet groups of files into batch chunks.

A group is ready when no file arrived for the debounce window (or its oldest file waited
``max_wait_seconds``). A pass cuts at one instant, the newest arrival among the ready groups, and
takes every pending file that arrived by then, of any group: files of a group still arriving that
came before the cut go with it. So batches never overlap in arrival time, and a batch id (its newest
arrival) orders every file of one batch before every file of a later one, which is what "the later
batch wins" needs (two groups cut apart would overlap: a trickling group cut by max-wait holds files
older than a quiet group's batch that sorts before it). The cut files, oldest first, become one or
more chunks within the file/byte limits. Each chunk is written in ONE DynamoDB transaction together
with the "processed" mark of each of its files, conditioned on those files still being unbatched: a
crash at any point, or two batchers racing, can neither lose a file nor put it in two batches.
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

TTL_ATTRIBUTE = "expires_at"  # the ingestion table's TTL attribute (infra/template.yaml)

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
    for item in sorted(files, key=lambda f: (arrival_ms(f), f["file_id"])):
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


def arrival_ms(item: dict[str, Any]) -> int:
    """When S3 created the file (records written before ``arrival_ms`` existed: whole seconds)."""
    return int(item["arrival_ms"]) if "arrival_ms" in item else int(item["arrival_ts"]) * 1000


def batch_id_for(group: str, files: list[dict[str, Any]], ordinal: int = 0) -> str:
    """``<newest arrival, ms, UTC>-<ordinal>-<digest>``: batch ids sort by when their newest file
    arrived in S3 (S3's event time, not a batcher's clock), so "the later batch wins" means "the
    batch holding the later file wins" however late, or on whichever clock, a batcher runs (batches
    do not overlap in arrival: see :func:`files_to_cut`).

    ``ordinal`` orders the chunks of one cut (they can share a newest
    millisecond); the digest of the group and the files makes the id unique: two batchers cutting
    the same files compute the same id (the chunk's conditional write keeps one), different files
    give different ids.
    """
    digest = hashlib.sha1("\n".join([group, *sorted(f["file_id"] for f in files)]).encode()).hexdigest()[:10]
    newest = max(arrival_ms(f) for f in files)
    moment = dt.datetime.fromtimestamp(newest / 1000, dt.UTC)
    return f"{moment:%Y%m%dT%H%M%S}{newest % 1000:03d}Z-{ordinal:02d}-{digest}"


def file_versions(files: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each file's content as it arrived, by path: its ETag and (versioned bucket) version id, as
    ingestion recorded them (records older than that field: none)."""
    versions = {}
    for f in files:
        pin = {name: str(f[name]) for name in ("version_id", "etag") if f.get(name)}
        if pin:
            versions[f["s3_path"]] = pin
    return versions


def group_is_ready(files: list[dict[str, Any]], config: Config, now: float) -> bool:
    quiet = now >= max(int(f["debounce_deadline"]) for f in files)
    waited_too_long = now - min(int(f["arrival_ts"]) for f in files) >= config.max_wait_seconds
    return quiet or waited_too_long


def create_chunk(
    client: Any, config: Config, group: str, files: list[dict[str, Any]], now: float, ordinal: int = 0
) -> str | None:
    """Write the chunk and mark its files in one transaction; None when another writer won.

    Each file's record gets its TTL (``expires_at``) only now, a retention period after it was
    batched: a record can never expire before it is in a batch, however late the batcher runs.
    """
    batch_id = batch_id_for(group, files, ordinal)
    chunk = {
        "batch_id": batch_id,
        "group_key": group,
        "files": [f["s3_path"] for f in files],
        "versions": file_versions(files),
        "total_bytes": sum(int(f.get("size", 0)) for f in files),
        "status": "pending",
        "attempt": 0,
        "newest_arrival_ms": max(arrival_ms(f) for f in files),
        "created_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
    }
    expires_at = int(now) + config.record_retention_days * 86400
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
                "UpdateExpression": "SET #done = :t, #batch = :b, #ttl = :e REMOVE #pending",
                "ConditionExpression": "attribute_exists(#pending)",
                "ExpressionAttributeNames": {
                    "#done": "processed",
                    "#batch": "batch_id",
                    "#pending": "pending",
                    "#ttl": TTL_ATTRIBUTE,
                },
                "ExpressionAttributeValues": {":t": True, ":b": batch_id, ":e": expires_at},
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


def files_to_cut(groups: dict[str, list[dict[str, Any]]], config: Config, now: float) -> list[dict[str, Any]]:
    """Every pending file that arrived by the newest arrival of a ready group (none if no group is
    ready): the ready groups whole, and the part of each other group that came before the cut."""
    ready = [files for files in groups.values() if group_is_ready(files, config, now)]
    if not ready:
        return []
    return arrived_by(groups, max(arrival_ms(f) for files in ready for f in files))


def arrived_by(groups: dict[str, list[dict[str, Any]]], cut_ms: int) -> list[dict[str, Any]]:
    """The pending files, of every group, that arrived at or before ``cut_ms``."""
    return [f for files in groups.values() for f in files if arrival_ms(f) <= cut_ms]


def group_label(files: list[dict[str, Any]]) -> str:
    """The chunk's ``group_key``: its group, or its groups joined by ``+`` (sorted)."""
    return "+".join(sorted({str(f["group_key"]) for f in files}))


def run(resource: Any, config: Config, now: float) -> list[str]:
    """One batching pass; returns the batch ids it created.

    A chunk another batcher took first ends the pass: the later chunks of this cut wait for the
    next pass, which cuts again from what is still pending (so no chunk is created beside a gap).
    """
    table = resource.Table(config.ingestion_table)
    created = []
    for ordinal, chunk in enumerate(split_chunks(files_to_cut(pending_files(table), config, now), config)):
        batch_id = create_chunk(resource.meta.client, config, group_label(chunk), chunk, now, ordinal)
        if batch_id is None:
            break
        created.append(batch_id)
    return created


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return {"created": run(boto3.resource("dynamodb"), Config.from_env(), time.time())}
