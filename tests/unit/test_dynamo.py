"""DynamoDB batch writes against moto, including the unprocessed-items and throttling paths.

Partial acceptance and throttling are injected with botocore's own event hooks on a real client,
so moto still performs every write that DynamoDB would have accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from common.io.dynamo import DynamoWriteError, batch_write

TABLE = "kpi_order_daily"


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "order_date", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "order_date", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield ddb


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {"order_date": f"2025-01-{i:02d}", "total_orders": i, "total_revenue": Decimal(f"{i}.50")}
        for i in range(1, n + 1)
    ]


def _stored(client: Any) -> dict[str, dict[str, Any]]:
    items = client.scan(TableName=TABLE)["Items"]
    return {item["order_date"]["S"]: item for item in items}


def test_writes_every_item_in_batches_of_25(client: Any) -> None:
    stats = batch_write(client, TABLE, _items(31), [], ["order_date"], sleep=lambda _: None)
    stored = _stored(client)
    assert len(stored) == 31 and stats.calls == 2
    assert Decimal(stored["2025-01-07"]["total_revenue"]["N"]) == Decimal("7.50")
    assert Decimal(stored["2025-01-07"]["total_orders"]["N"]) == 7


class _AcceptsOnlyPart:
    """Makes DynamoDB accept only the first ``keep`` requests of each call, the first ``times`` calls."""

    def __init__(self, keep: int, times: int) -> None:
        self.keep, self.times, self.dropped = keep, times, []  # type: ignore[var-annotated]

    def before(self, params: dict[str, Any], **_: Any) -> None:
        if self.times <= 0:
            self.dropped = []
            return
        self.times -= 1
        requests = params["RequestItems"][TABLE]
        params["RequestItems"][TABLE], self.dropped = requests[: self.keep], requests[self.keep :]

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.dropped:
            parsed["UnprocessedItems"] = {TABLE: self.dropped}


def test_unprocessed_items_are_retried_until_written(client: Any) -> None:
    partial = _AcceptsOnlyPart(keep=10, times=2)
    client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", partial.before)
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", partial.after)
    delays: list[float] = []
    stats = batch_write(client, TABLE, _items(25), [], ["order_date"], sleep=delays.append)
    assert sorted(_stored(client)) == [f"2025-01-{i:02d}" for i in range(1, 26)]
    assert stats.retried_items == 15 + 5 and stats.calls == 3
    assert len(delays) == 2 and delays[1] > delays[0] * 0.9  # backoff grows (with jitter)


def test_throttling_is_retried_with_backoff(client: Any) -> None:
    # botocore's standard mode already retries once inside each call (2 HTTP attempts), so four
    # throttled responses make two of our calls fail before the third goes through.
    throttles = {"left": 4, "sent": 0}

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        throttles["sent"] += 1
        if throttles["left"] == 0:
            return None
        throttles["left"] -= 1
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}'
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, _Raw(body))

    fast = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        config=boto3.session.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    fast.meta.events.register("before-send.dynamodb.BatchWriteItem", throttle)
    delays: list[float] = []
    stats = batch_write(fast, TABLE, _items(3), [], ["order_date"], sleep=delays.append)
    assert (stats.throttled_calls, stats.calls, throttles["sent"]) == (2, 3, 5)
    assert len(_stored(client)) == 3 and len(delays) == 2


def test_gives_up_loudly_when_items_stay_unprocessed(client: Any) -> None:
    partial = _AcceptsOnlyPart(keep=1, times=100)  # DynamoDB accepts one item per call
    client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", partial.before)
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", partial.after)
    expected = "6 item\\(s\\) still unprocessed in kpi_order_daily after 4 attempts"
    with pytest.raises(DynamoWriteError, match=expected):
        batch_write(client, TABLE, _items(10), [], ["order_date"], max_attempts=4, sleep=lambda _: None)
    assert len(_stored(client)) == 4  # what was accepted stays written; nothing is silently dropped


def test_deletes_and_refuses_duplicate_keys(client: Any) -> None:
    batch_write(client, TABLE, _items(3), [], ["order_date"])
    batch_write(client, TABLE, [], [{"order_date": "2025-01-02"}], ["order_date"])
    assert sorted(_stored(client)) == ["2025-01-01", "2025-01-03"]
    with pytest.raises(ValueError, match="duplicate keys"):
        batch_write(client, TABLE, _items(2) + _items(1), [], ["order_date"])


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body
