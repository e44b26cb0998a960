"""One writing job per lake: a lease held in DynamoDB for the whole run.

Delta's default log store for S3 assumes a single driver: two jobs committing to the same table at
once can overwrite each other's commit file (a lost commit). A manual re-run started beside the
pipeline is exactly that case. Before it reads or writes the lake, a job takes the lake's lease with
a conditional put (DynamoDB's conditional writes are atomic); it renews the lease while it runs and
deletes it when done. A second job finds the lease held and waits up to
``lake_lock_wait_seconds``, then fails with a message naming the holder. A lease that is not
renewed for ``lake_lock_ttl_seconds`` (a killed job) is taken over by the next job.

Local lakes need no lease: Delta commits there through an atomic create-if-absent rename.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from common.errors import PipelineError
from common.io.dynamo import dynamodb_client
from common.io.storage import is_s3

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)


class LakeBusyError(PipelineError):
    """Another job holds the lake's lease."""


class LeaseLostError(PipelineError):
    """This job's lease expired or was taken over before it finished writing."""


@dataclass(frozen=True)
class Holder:
    owner: str
    job: str
    expires_at: float


class LakeLease:
    """The lease on one lake root, held by one job run."""

    def __init__(
        self,
        client: Any,
        table: str,
        lake_root: str,
        job: str,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.table, self.lake_root, self.job = client, table, lake_root, job
        self.ttl = ttl_seconds
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: threading.Thread | None = None

    def _put(self) -> None:
        now = self.clock()
        self.client.put_item(
            TableName=self.table,
            Item={
                "lake": {"S": self.lake_root},
                "owner": {"S": self.owner},
                "job": {"S": self.job},
                "expires_at": {"N": str(int(now + self.ttl))},
            },
            ConditionExpression="attribute_not_exists(lake) OR expires_at < :now OR #owner = :me",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":now": {"N": str(int(now))}, ":me": {"S": self.owner}},
        )

    def holder(self) -> Holder | None:
        item = self.client.get_item(
            TableName=self.table, Key={"lake": {"S": self.lake_root}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return Holder(item["owner"]["S"], item.get("job", {}).get("S", "?"), float(item["expires_at"]["N"]))

    def acquire(self, wait_seconds: float, poll_seconds: float = 2.0) -> None:
        """Take the lease, waiting up to ``wait_seconds`` for the current holder.

        Raises:
            LakeBusyError: another job still holds it after the wait.
            PipelineError: DynamoDB cannot be reached.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self._put()
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise PipelineError(f"cannot take the lake lease in {self.table}: {exc}") from exc
            except BotoCoreError as exc:
                raise PipelineError(f"cannot take the lake lease in {self.table}: {exc}") from exc
            if time.monotonic() >= deadline:
                current = self.holder()
                who = "another job" if current is None else f"{current.job} run {current.owner}"
                until = "" if current is None else f" (lease renewed until {int(current.expires_at)})"
                raise LakeBusyError(
                    f"the lake {self.lake_root} is being written by {who}{until}; nothing was written. "
                    "Re-run this job when that one has finished (or raise ECOM_LAKE_LOCK_WAIT_SECONDS)"
                )
            time.sleep(poll_seconds)
        log.info("lake lease taken on %s by %s", self.lake_root, self.owner)
        self._renewer = threading.Thread(target=self._renew_loop, name="lake-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3) and self.renew():
            pass

    def renew(self) -> bool:
        """Extend the lease; on failure mark it lost (every later :meth:`check` raises)."""
        try:
            self._put()
        except (ClientError, BotoCoreError) as exc:
            log.error("lake lease on %s could not be renewed: %s", self.lake_root, exc)
            self._lost.set()
            return False
        return True

    def check(self) -> None:
        """Raise when the lease was lost: the caller must not commit.

        Raises:
            LeaseLostError: renewing failed (expired, taken over, or DynamoDB unreachable).
        """
        if self._lost.is_set():
            raise LeaseLostError(
                f"this job lost its lease on {self.lake_root} (not renewed within {self.ttl}s); "
                "stopped before committing: re-run the batch"
            )

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"lake": {"S": self.lake_root}},
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except (ClientError, BotoCoreError) as exc:  # expired or taken over: nothing of ours to delete
            log.warning("lake lease on %s was not released: %s", self.lake_root, exc)


class LeaseCheck(Protocol):
    def check(self) -> None: ...


class _NoLease:
    def check(self) -> None:
        return None


@contextmanager
def lake_lease(settings: Settings, job: str) -> Iterator[LeaseCheck]:
    """Hold the lake's lease for the block (or nothing, when no lock table is configured).

    Raises:
        LakeBusyError: another job holds the lease.
    """
    if not settings.lake_lock_table:
        if is_s3(settings.lake_root):
            log.warning(
                "no ECOM_LAKE_LOCK_TABLE: nothing stops another job writing %s at the same time",
                settings.lake_root,
            )
        yield _NoLease()
        return
    client = dynamodb_client(settings)
    lease = LakeLease(
        client, settings.lake_lock_table, settings.lake_root, job, settings.lake_lock_ttl_seconds
    )
    lease.acquire(settings.lake_lock_wait_seconds)
    try:
        yield lease
    finally:
        lease.release()
