"""Dispatch Lambda (chunks-table stream, NEW_IMAGE, plus a scheduled controller tick).

At most one batch is in flight. A lock item in the chunks table names it; taking the lock is a
conditional write, so concurrent invocations (duplicate stream records, controller ticks) cannot
start two batches. Starting a batch writes its manifest (paths split by dataset), records the
attempt (``pending`` -> ``processing`` with the execution's ARN, decided before the call), then
starts the state machine with an execution name of batch id + attempt: a repeated start of the
same attempt is harmless, and a re-queued batch (``python -m orchestration.ops rerun``) gets a
new execution. A crash between recording and starting is repaired by the next tick (the recorded
execution does not exist yet, so it is started). When the in-flight batch has ended, the lock is
released and the oldest pending batch starts; a batch still marked ``processing`` whose
execution already ended is marked ``failed``.

The lock names the batch and the attempt it was taken for, and every write that frees or starts
is conditional on what was read: a dispatcher that stalls while the attempt ends and the batch is
re-run frees nothing and starts nothing. Each invocation also sweeps the ``processing`` batches
that do not hold the lock (none should), settling those whose execution ended and counting those
still running (``UnlockedInFlight``, alarmed).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from orchestration import metrics
from orchestration.config import DATASETS, Config

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

LOCK_ID = "__in_flight__"
STATUS_INDEX = "status-index"
ENDED = {"FAILED", "TIMED_OUT", "ABORTED"}


def execution_name(batch_id: str, attempt: int = 1) -> str:
    """``<batch id>-a<attempt>``: Step Functions execution names are 1-80 chars of [A-Za-z0-9-_]
    and unique per state machine for 90 days, so each attempt needs its own."""
    suffix = f"-a{attempt}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", batch_id)[: 80 - len(suffix)] + suffix


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives an execution of ``state_machine_arn`` named ``name``."""
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def build_manifest(batch: dict[str, Any], config: Config) -> dict[str, Any]:
    """Split the chunk's paths into datasets by their ``raw/<dataset>/`` prefix; each file's
    recorded version (``versions``) pins it to the content that arrived."""
    files: dict[str, list[str]] = {name: [] for name in DATASETS}
    prefix = f"s3://{config.bucket}/{config.raw_prefix}"
    for path in batch["files"]:
        dataset = path[len(prefix) :].split("/", 1)[0] if path.startswith(prefix) else ""
        if dataset in files:
            files[dataset].append(path)
    listed = {path for paths in files.values() for path in paths}
    versions = {path: dict(pin) for path, pin in batch.get("versions", {}).items() if path in listed}
    manifest: dict[str, Any] = {"batch_id": batch["batch_id"], "files": {k: v for k, v in files.items() if v}}
    if versions:
        manifest["versions"] = versions
    return manifest


def execution_input(batch_id: str, config: Config, total_bytes: int = 0) -> dict[str, Any]:
    """What the state machine receives; it hands these to the containers (see the contract test).
    ``total_bytes`` (the batch's raw bytes, as ingestion recorded them) sizes the tasks."""
    manifest_key = f"{config.manifest_prefix}{batch_id}.json"
    results = f"{config.results_prefix}{batch_id}/"  # the job writes its result, summary and report here
    result_key = f"{results}validate.json"
    return {
        "batch_id": batch_id,
        "manifest_uri": f"s3://{config.bucket}/{manifest_key}",
        "result_uri": f"s3://{config.bucket}/{result_key}",
        "result_bucket": config.bucket,
        "result_key": result_key,
        # the small, bounded summary the job writes beside its result (all the state machine reads)
        "summary_key": f"{results}validate.summary.json",
        # the batch's HTML report, beside the result (named in alerts)
        "report_uri": f"s3://{config.bucket}/{results}report.html",
        "total_bytes": total_bytes,
    }


class Dispatcher:
    def __init__(self, resource: Any, sfn: Any, s3: Any, config: Config, sns: Any = None) -> None:
        self.table = resource.Table(config.chunks_table)
        self.sfn, self.s3, self.sns, self.config = sfn, s3, sns, config

    # -- lock ---------------------------------------------------------------------------------
    # The lock names a batch and the attempt it is for: a dispatcher that stalls while that attempt
    # ends and the batch is re-run can only free the lock it took, never the next attempt's.
    def _holder(self) -> tuple[str, int | None] | None:
        item = self.table.get_item(Key={"batch_id": LOCK_ID}, ConsistentRead=True).get("Item")
        if not item:
            return None
        attempt = item.get("attempt")  # absent on a lock written before attempts were recorded
        return str(item["holder"]), None if attempt is None else int(attempt)

    def _acquire(self, batch_id: str, attempt: int) -> bool:
        try:
            self.table.put_item(
                Item={"batch_id": LOCK_ID, "holder": batch_id, "attempt": attempt},
                ConditionExpression="attribute_not_exists(batch_id)",
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def _lock_condition(self, batch_id: str, attempt: int | None) -> dict[str, Any]:
        values: dict[str, Any] = {":b": batch_id}
        condition = "holder = :b AND "
        if attempt is None:
            condition += "attribute_not_exists(attempt)"
        else:
            condition += "attempt = :a"
            values[":a"] = attempt
        return {"ConditionExpression": condition, "ExpressionAttributeValues": values}

    def _release(self, batch_id: str, attempt: int | None) -> None:
        try:
            self.table.delete_item(Key={"batch_id": LOCK_ID}, **self._lock_condition(batch_id, attempt))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def _adopt(self, batch_id: str, held: int | None, attempt: int) -> None:
        """Make the lock held for ``attempt`` name it (a batch in flight always holds the lock)."""
        condition = self._lock_condition(batch_id, held)
        condition["ExpressionAttributeValues"][":n"] = attempt
        try:
            self.table.update_item(
                Key={"batch_id": LOCK_ID}, UpdateExpression="SET attempt = :n", **condition
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # -- batches ------------------------------------------------------------------------------
    def _batch(self, batch_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"batch_id": batch_id}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    @staticmethod
    def _status_query(status: str, **more: Any) -> dict[str, Any]:
        """A query of the status index for the batches with ``status`` (eventually consistent:
        re-read a batch before acting on it)."""
        return {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :p",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":p": status},
            **more,
        }

    def _oldest_pending(self) -> dict[str, Any] | None:
        page = self.table.query(**self._status_query("pending", ScanIndexForward=True, Limit=1))
        items = page.get("Items", [])
        return items[0] if items else None

    def _with_status(self, status: str) -> list[dict[str, Any]]:
        """Every batch the status index shows with ``status``."""
        query = self._status_query(status)
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**query)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _set_status(
        self,
        batch_id: str,
        new: str,
        expected: str,
        arn: str | None = None,
        previous_attempt: int | None = None,
        **extra: Any,
    ) -> bool:
        """Conditional status change (``expected`` -> ``new``; and the attempt's execution when
        ``arn`` is given, the recorded attempt when ``previous_attempt`` is); False when the
        condition did not hold."""
        names = {"#s": "status"}
        values: dict[str, Any] = {":n": new, ":e": expected}
        condition = "#s = :e"
        if arn is not None:
            names["#x"] = "execution_arn"
            values[":x"] = arn
            condition += " AND #x = :x"
        if previous_attempt is not None:
            names["#a"] = "attempt"
            values[":a"] = previous_attempt
            condition += " AND #a = :a" if previous_attempt else " AND (attribute_not_exists(#a) OR #a = :a)"
        sets = ["#s = :n"]
        for index, (key, value) in enumerate(extra.items()):
            names[f"#k{index}"] = key
            values[f":v{index}"] = value
            sets.append(f"#k{index} = :v{index}")
        try:
            self.table.update_item(
                Key={"batch_id": batch_id},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def _start(self, batch: dict[str, Any], now: float) -> None:
        """Record the next attempt, then start its execution. The record is conditional on the
        attempt read: a dispatcher that read the batch before an attempt ran starts nothing."""
        batch_id = batch["batch_id"]
        previous = int(batch.get("attempt", 0))
        attempt = previous + 1
        name = execution_name(batch_id, attempt)
        arn = execution_arn(self.config.state_machine_arn, name)
        self.s3.put_object(
            Bucket=self.config.bucket,
            Key=f"{self.config.manifest_prefix}{batch_id}.json",
            Body=json.dumps(build_manifest(batch, self.config)).encode(),
            ContentType="application/json",
        )
        started = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
        if self._set_status(
            batch_id,
            "processing",
            "pending",
            previous_attempt=previous,
            execution_arn=arn,
            started_at=started,
            attempt=attempt,
        ):
            self._launch(batch, name)

    def _launch(self, batch: dict[str, Any], name: str) -> None:
        """Start the recorded execution (a second start of the same name is a no-op)."""
        batch_id = batch["batch_id"]
        payload = execution_input(batch_id, self.config, int(batch.get("total_bytes", 0)))
        try:
            arn = self.sfn.start_execution(
                stateMachineArn=self.config.state_machine_arn,
                name=name,
                input=json.dumps(payload),
            )["executionArn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            arn = execution_arn(self.config.state_machine_arn, name)
        log.info(json.dumps({"msg": "batch started", "batch_id": batch_id, "execution": arn}))

    def _settle(self, batch: dict[str, Any], held: int | None, now: float) -> bool:
        """Deal with the lock holder (the lock taken for attempt ``held``); True when the lock is
        free afterwards."""
        batch_id = batch["batch_id"]
        recorded = int(batch.get("attempt", 0))
        if held is None:  # a lock that names no attempt: the batch's own
            held = recorded + 1 if batch["status"] == "pending" else recorded
        if batch["status"] == "pending":
            if recorded + 1 == held:  # a crash between taking the lock and starting
                self._start(batch, now)
                return False
            # the lock's attempt ran and the batch was queued again since: that lock is over
            self._release(batch_id, held)
            return True
        if batch["status"] == "processing":
            if recorded != held:  # an attempt in flight under an older lock: the lock follows it
                self._adopt(batch_id, held, recorded)
                held = recorded
            if not self._close_if_ended(batch, now):
                return False
        self._release(batch_id, held)
        return True

    def _close_if_ended(self, batch: dict[str, Any], now: float, locked: bool = True) -> bool:
        """A ``processing`` batch: True when its execution has ended (the batch is then marked
        as it ended, unless the state machine did); False while it runs or is being started.
        One whose execution was never started is started when it holds the lock (``locked``),
        else marked failed: without the lock it must not run."""
        batch_id, arn = batch["batch_id"], batch["execution_arn"]
        try:
            status = self.sfn.describe_execution(executionArn=arn)["status"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
                raise
            if locked:  # a crash between recording the attempt and starting it: start it now
                self._launch(batch, arn.rsplit(":", 1)[-1])
                return False
            status = "NEVER_STARTED"
        if status in {"RUNNING", "PENDING_REDRIVE"}:
            return False
        ended = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
        if status in ENDED | {"NEVER_STARTED"}:
            failure = f"execution {status} before the state machine recorded an outcome"
            if self._set_status(
                batch_id,
                "failed",
                "processing",
                arn,
                finished_at=ended,
                failed_step="execution",
                failure=failure,
            ):
                self._alert(batch_id, arn, failure)
        elif status == "SUCCEEDED":
            self._set_status(batch_id, "completed", "processing", arn, finished_at=ended)
        return True

    def sweep(self, now: float) -> int:
        """Settle every ``processing`` batch that does not hold the lock and whose execution has
        ended (the lock never leaves one behind; this repairs it if anything did); returns how
        many such batches are still running (the ``UnlockedInFlight`` metric: 0)."""
        running = 0
        for item in self._with_status("processing"):
            batch = self._batch(str(item["batch_id"]))
            if batch is None or batch["status"] != "processing":
                continue
            # read after the batch: the lock is taken before a batch is marked processing and
            # freed only after it is not, so a holder read now that names another batch is sure
            holder = self._holder()
            if holder is not None and holder[0] == batch["batch_id"]:
                continue
            if not self._close_if_ended(batch, now, locked=False):
                running += 1
        return running

    def tick(self, now: float | None = None) -> str | None:
        """Reconcile once; returns the batch id in flight afterwards (None when idle)."""
        now = time.time() if now is None else now
        for _ in range(4):  # settle a finished batch, then start the next, in one invocation
            holder = self._holder()
            if holder is not None:
                batch = self._batch(holder[0])
                if batch is None:
                    self._release(*holder)
                    continue
                if not self._settle(batch, holder[1], now):
                    return holder[0]
                continue
            candidate = self._oldest_pending()
            if candidate is None:
                return None
            seen = self._batch(candidate["batch_id"])  # the index may lag: the attempt from the table
            if seen is None or seen["status"] != "pending":
                continue
            attempt = int(seen.get("attempt", 0)) + 1
            if not self._acquire(candidate["batch_id"], attempt):
                continue  # someone else took the lock: look again
            fresh = self._batch(candidate["batch_id"])
            if fresh is None:
                self._release(candidate["batch_id"], attempt)
                continue
            # We hold the lock for it now, whatever happened since the query: a racer that saw us as
            # the holder may already have started it (then it is in flight: keep the lock), or it
            # may have ended (then release). Settling decides, as for any holder.
            if not self._settle(fresh, attempt, now):
                return str(candidate["batch_id"])
        holder = self._holder()
        return holder[0] if holder else None

    def _alert(self, batch_id: str, arn: str, failure: str) -> None:
        """The failures the state machine could not report itself (timed out, aborted, failed
        outside its Catch): the alert names the batch and the execution, no data."""
        if self.sns is None or not self.config.alert_topic_arn:
            log.warning(json.dumps({"msg": "no alert topic configured", "batch_id": batch_id}))
            return
        self.sns.publish(
            TopicArn=self.config.alert_topic_arn,
            Subject="ecom-pipeline batch failed",
            Message=(
                f"Batch {batch_id} failed: {failure} (a timeout, an abort, or an error outside the "
                f"state machine's Catch). Execution: {arn}. Runbook: README, 'Runbook'."
            ),
            MessageAttributes={
                "batch_id": {"DataType": "String", "StringValue": batch_id},
                "failed_step": {"DataType": "String", "StringValue": "execution"},
            },
        )

    # -- metrics ------------------------------------------------------------------------------
    def queue_metrics(self, now: float) -> dict[str, float]:
        """Backlog and in-flight age, for the alarms (a stuck batch, a growing backlog)."""
        pending = self.table.query(**self._status_query("pending", Select="COUNT"))["Count"]
        oldest = self._oldest_pending()
        holder = self._holder()
        in_flight = self._batch(holder[0]) if holder else None
        return {
            "PendingBatches": float(pending),
            "OldestPendingSeconds": _age(oldest, "created_at", now),
            "InFlightSeconds": _age(in_flight, "started_at", now),
        }


def _age(item: dict[str, Any] | None, field: str, now: float) -> float:
    if not item or field not in item:
        return 0.0
    return max(0.0, now - dt.datetime.fromisoformat(str(item[field])).timestamp())


METRICS_NAMESPACE = metrics.NAMESPACE


def metrics_line(state_machine_arn: str, values: dict[str, float], now: float) -> str:
    """The dispatcher's metrics as one embedded-metric-format line, by state machine."""
    return metrics.emf_line({"StateMachine": state_machine_arn.rsplit(":", 1)[-1]}, values, now)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Stream records, scheduler ticks and execution-ended events all mean: reconcile now."""
    config = Config.from_env()
    dispatcher = Dispatcher(
        boto3.resource("dynamodb"),
        boto3.client("stepfunctions"),
        boto3.client("s3"),
        config,
        boto3.client("sns"),
    )
    in_flight = dispatcher.tick()
    now = time.time()
    unlocked = dispatcher.sweep(now)
    metrics = {**dispatcher.queue_metrics(now), "UnlockedInFlight": float(unlocked)}
    print(metrics_line(config.state_machine_arn, metrics, now))
    return {"in_flight": in_flight}
