"""The lake's writer lease against moto's DynamoDB: one holder at a time, takeover of an abandoned
lease, and a job that lost its lease stops before committing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.io.lease import LakeBusyError, LakeLease, LeaseLostError
from tests.aws_stack import create_lock_table

TABLE, LAKE = "locks", "s3://bucket/lake"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_lock_table(client, TABLE)
        yield client


def lease(ddb: Any, clock: Clock, job: str = "validate") -> LakeLease:
    return LakeLease(ddb, TABLE, LAKE, job, ttl_seconds=60, clock=clock)


def test_a_second_job_is_refused_while_the_first_holds_the_lake(ddb: Any) -> None:
    clock = Clock()
    first, second = lease(ddb, clock), lease(ddb, clock, "transform")
    first.acquire(wait_seconds=0)
    try:
        with pytest.raises(
            LakeBusyError, match=f"the lake {LAKE} is being written by validate run {first.owner}"
        ):
            second.acquire(wait_seconds=0)
    finally:
        first.release()
    second.acquire(wait_seconds=0)  # released: free again
    second.release()


def test_an_abandoned_lease_is_taken_over_and_its_holder_must_not_commit(ddb: Any) -> None:
    clock = Clock()
    killed, next_job = lease(ddb, clock), lease(ddb, clock)
    killed.acquire(wait_seconds=0)
    killed._stop.set()  # its renewals stop, as when the task is killed
    clock.now += 61  # past the ttl
    next_job.acquire(wait_seconds=0)
    assert not killed.renew()  # the new holder's lease is not overwritten
    with pytest.raises(LeaseLostError, match="stopped before committing"):
        killed.check()
    killed.release()  # deletes nothing of the new holder's
    holder = next_job.holder()
    assert holder is not None and holder.owner == next_job.owner
    next_job.check()
    next_job.release()
    assert next_job.holder() is None
