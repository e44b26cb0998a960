"""The operator's commands (README, "Runbook"): ``python -m orchestration.ops <command>``.

Every command goes through the same queue as the pipeline, so the one-in-flight lock, the batch
order and the final status hold for a re-run or a hand-started batch exactly as for any other:

- ``list [--status S]`` / ``show BATCH_ID``: the chunks table, newest first;
- ``rerun BATCH_ID``: put a failed batch back in the queue (the dispatcher starts it as a new
  attempt with its own execution; the failed attempt is kept in the item's ``history``);
- ``submit s3://bucket/raw/<dataset>/[<group>/]file ...``: batch these raw files now instead of
  waiting for the debounce window (files the ingest Lambda has not recorded are recorded first);
  the batch id is ordered by the files' arrival like any other;
- ``drain-dlq``: replay the S3 events in the ingest dead-letter queue, deleting each one recorded.

Settings come from the deployed stack's outputs (``--stack NAME``), or else from the same
``ECOM_*`` variables as the Lambdas.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from orchestration import batcher, ingest
from orchestration.config import Config, ConfigError
from orchestration.dispatch import LOCK_ID, STATUS_INDEX


class OpsError(Exception):
    """The command cannot be carried out as asked (the message says why and what to do)."""


STACK_OUTPUTS = {  # infra/template.yaml output -> the Lambdas' setting
    "IngestionTableName": "ECOM_INGESTION_TABLE",
    "ChunksTableName": "ECOM_CHUNKS_TABLE",
    "DataBucketName": "ECOM_BUCKET",
    "StateMachineArn": "ECOM_STATE_MACHINE_ARN",
    "AlertTopicArn": "ECOM_ALERT_TOPIC_ARN",
}


def config_from_stack(cloudformation: Any, stack: str) -> Config:
    """The settings of a deployed stack, read from its outputs.

    Raises:
        OpsError: no such stack, or it lacks an output this needs.
    """
    try:
        [described] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise OpsError(f"cannot read stack {stack!r}: {exc.response['Error']['Message']}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    env = {variable: outputs[key] for key, variable in STACK_OUTPUTS.items() if key in outputs}
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        raise OpsError(f"stack {stack!r} lacks an output: {exc}") from exc


def requeue(table: Any, batch_id: str, now: float) -> dict[str, Any]:
    """``failed`` -> ``pending``, moving the failed attempt's outcome into ``history``.

    Raises:
        OpsError: no such batch, or it is not failed.
    """
    item = table.get_item(Key={"batch_id": batch_id}, ConsistentRead=True).get("Item")
    if item is None or batch_id == LOCK_ID:
        raise OpsError(f"no batch {batch_id!r} in the chunks table (`list` shows the batches)")
    if item["status"] != "failed":
        raise OpsError(
            f"batch {batch_id} is {item['status']}: only a failed batch can be re-run "
            "(a pending or processing one is already in the queue; a completed one is done)"
        )
    previous = {
        key: item[key]
        for key in ("attempt", "execution_arn", "started_at", "finished_at", "failed_step", "failure")
        if key in item
    }
    requeued = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
    try:
        table.update_item(
            Key={"batch_id": batch_id},
            UpdateExpression=(
                "SET #s = :pending, #h = list_append(if_not_exists(#h, :empty), :previous), "
                "requeued_at = :now REMOVE failed_step, failure, finished_at"
            ),
            ConditionExpression="#s = :failed AND attempt = :attempt",
            ExpressionAttributeNames={"#s": "status", "#h": "history"},
            ExpressionAttributeValues={
                ":pending": "pending",
                ":failed": "failed",
                ":attempt": item.get("attempt", 0),
                ":empty": [],
                ":previous": [previous],
                ":now": requeued,
            },
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise OpsError(f"batch {batch_id} changed while re-queueing it: look again (`show`)") from exc
        raise
    return dict(table.get_item(Key={"batch_id": batch_id}, ConsistentRead=True)["Item"])


def _raw_key(uri: str, config: Config) -> tuple[str, str, str]:
    """s3://bucket/raw/<dataset>/... -> (key, dataset, group); refuses anything else."""
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or parsed.netloc != config.bucket:
        raise OpsError(f"{uri}: expected an object in the pipeline's bucket s3://{config.bucket}/")
    where = ingest.parse_key(key, config)
    if where is None:
        raise OpsError(
            f"{uri}: expected a raw file under s3://{config.bucket}/{config.raw_prefix}<dataset>/ "
            "(orders, order_items or products)"
        )
    return key, where[0], where[1]


def submit(resource: Any, s3: Any, config: Config, uris: Sequence[str], now: float) -> list[str]:
    """Batch these raw files now; returns the new batch ids (one per chunk).

    Like a batcher's pass, it cuts at one instant (the newest of these files' arrivals), so the
    cut also takes every other pending file that arrived by then: batches never overlap in arrival
    time (see ``batcher.files_to_cut``).

    Raises:
        OpsError: a URI is not a raw file of the bucket, does not exist, or is already batched.
    """
    if not uris:
        raise OpsError("name at least one raw file (s3://bucket/raw/<dataset>/...)")
    table = resource.Table(config.ingestion_table)
    submitted: list[dict[str, Any]] = []
    for uri in dict.fromkeys(uris):
        key, _, group = _raw_key(uri, config)
        try:
            head = s3.head_object(Bucket=config.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}:
                raise OpsError(f"{uri} does not exist") from exc
            raise
        etag = head["ETag"].strip('"')
        arrival = int(head["LastModified"].timestamp() * 1000)
        size, version_id = int(head["ContentLength"]), head.get("VersionId")
        ingest.record_file(table, config, config.bucket, key, size, etag, arrival, version_id)
        file_id = ingest.file_id_for(key, etag)
        record = table.get_item(Key={"group_key": group, "file_id": file_id}, ConsistentRead=True)["Item"]
        if record.get("processed"):
            raise OpsError(
                f"{uri} is already in batch {record.get('batch_id')}: re-run that batch instead "
                f"(`rerun {record.get('batch_id')}`)"
            )
        submitted.append(record)
    cut = batcher.arrived_by(batcher.pending_files(table), max(batcher.arrival_ms(f) for f in submitted))
    created = []
    for ordinal, chunk in enumerate(batcher.split_chunks(cut, config)):
        label = batcher.group_label(chunk)
        batch_id = batcher.create_chunk(resource.meta.client, config, label, chunk, now, ordinal)
        if batch_id is None:
            raise OpsError(f"group {label}: the batcher took these files concurrently (`list`)")
        created.append(batch_id)
    return created


def drain_dlq(sqs: Any, queue_url: str, table: Any, config: Config) -> dict[str, int]:
    """Record the files of every S3 event in the ingest DLQ; delete each message once recorded.

    Lambda's dead-letter message body is the original event. A message that still fails stays.
    """
    counts = {"messages": 0, "recorded": 0, "duplicates": 0, "kept": 0}
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        ).get("Messages", [])
        if not messages:
            return counts
        for message in messages:
            counts["messages"] += 1
            try:
                event = json.loads(message["Body"])
                for record in event.get("Records", []):
                    ok = ingest.record_event(table, config, record, time.time())
                    counts["recorded" if ok else "duplicates"] += 1
            except (ValueError, KeyError, ClientError) as exc:
                print(f"kept message {message['MessageId']}: {type(exc).__name__}", file=sys.stderr)
                counts["kept"] += 1
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def list_batches(table: Any, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Batches newest first (by id: ids sort by their files' arrival)."""
    items: list[dict[str, Any]] = []
    if status:
        items = table.query(
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": status},
            ScanIndexForward=False,
            Limit=limit,
        )["Items"]
    else:
        kwargs: dict[str, Any] = {}
        while True:  # every page: the newest batch can be on any of them
            page = table.scan(**kwargs)
            items += [i for i in page["Items"] if i["batch_id"] != LOCK_ID]
            if "LastEvaluatedKey" not in page:
                break
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    return sorted(items, key=lambda i: i["batch_id"], reverse=True)[:limit]


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    """The operator's command line (no AWS call is made to build or parse it)."""
    parser = argparse.ArgumentParser(prog="python -m orchestration.ops", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", help="the deployed stack's name (its outputs give the settings)")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="batches, newest first")
    listing.add_argument("--status", choices=["pending", "processing", "completed", "failed"])
    listing.add_argument("--limit", type=int, default=20)
    sub.add_parser("show", help="one batch, with its attempt history").add_argument("batch_id")
    sub.add_parser("rerun", help="put a failed batch back in the queue").add_argument("batch_id")
    sub.add_parser("submit", help="batch these raw files now").add_argument("uris", nargs="+")
    drain = sub.add_parser("drain-dlq", help="replay the ingest dead-letter queue")
    drain.add_argument("--queue-url", required=True, help="the stack's IngestDeadLetterQueueUrl output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = (
            config_from_stack(boto3.client("cloudformation"), args.stack) if args.stack else Config.from_env()
        )
    except (ConfigError, OpsError) as exc:
        print(f"error: {exc} (pass --stack NAME, or set the ECOM_* variables)", file=sys.stderr)
        return 2
    resource = boto3.resource("dynamodb")
    chunks = resource.Table(config.chunks_table)
    try:
        if args.command == "list":
            _print(list_batches(chunks, args.status, args.limit))
        elif args.command == "show":
            item = chunks.get_item(Key={"batch_id": args.batch_id}, ConsistentRead=True).get("Item")
            if item is None:
                raise OpsError(f"no batch {args.batch_id!r} in the chunks table")
            _print(item)
        elif args.command == "rerun":
            item = requeue(chunks, args.batch_id, time.time())
            attempt = int(str(item.get("attempt", 0))) + 1
            print(f"batch {args.batch_id} is pending again (attempt {attempt} next)")
        elif args.command == "submit":
            created = submit(resource, boto3.client("s3"), config, args.uris, time.time())
            print("\n".join(f"batch {b} is pending" for b in created))
        else:
            table = resource.Table(config.ingestion_table)
            _print(drain_dlq(boto3.client("sqs"), args.queue_url, table, config))
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
