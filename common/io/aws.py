"""The jobs' AWS clients: built once per settings object (one job run) and shared by every adapter
and thread of it, each service with one retry policy, stated here.

- S3: 9 attempts in all, adaptive (client-side rate limiting): the jobs put and get many small
  objects in bursts (results, reports, pinned copies), and S3 answers a burst on one prefix with
  503 SlowDown.
- DynamoDB (the KPI tables, the lake's lease): 6 attempts in all, standard (throttling and 5xx);
  the KPI writer also retries unprocessed items itself.
- Glue (the catalog): 6 attempts in all, standard.

Spark's own S3 traffic goes through S3A, configured in :mod:`common.io.spark`.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import boto3
from botocore.config import Config

from common.settings import Settings

Service = Literal["s3", "dynamodb", "glue"]

POLICIES: dict[str, Config] = {
    "s3": Config(retries={"total_max_attempts": 9, "mode": "adaptive"}, s3={"addressing_style": "path"}),
    "dynamodb": Config(retries={"total_max_attempts": 6, "mode": "standard"}),
    "glue": Config(retries={"total_max_attempts": 6, "mode": "standard"}),
}

# boto3's default session is not safe to build clients from in several threads at once
_building = threading.Lock()


def _endpoint(settings: Settings, service: Service) -> str | None:
    if service == "s3":
        return settings.s3_endpoint_url
    if service == "dynamodb":
        return settings.dynamodb_endpoint_url
    return settings.glue_endpoint_url


def client(settings: Settings, service: Service) -> Any:
    """The ``service`` client of this settings object's run: built on first use, then the same
    one (a client is safe to share between threads)."""
    endpoint = _endpoint(settings, service)
    key = (service, endpoint, settings.aws_region)  # a copy of the settings may point elsewhere
    clients = settings.clients()
    with _building:
        if key not in clients:
            clients[key] = boto3.client(
                service, endpoint_url=endpoint, region_name=settings.aws_region, config=POLICIES[service]
            )
        return clients[key]
