"""The jobs' AWS clients: one per service for a run's settings, shared by its adapters and
threads, each with its stated retry policy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from common.io import dynamo, glue, storage
from common.settings import Settings


def _settings(**values: str) -> Settings:
    return Settings(aws_region="us-east-1", **values)


def test_a_runs_adapters_and_threads_share_one_client_per_service() -> None:
    settings = _settings(s3_endpoint_url="http://127.0.0.1:9")
    with ThreadPoolExecutor(8) as pool:
        built = set(map(id, pool.map(lambda _: storage.s3_client(settings), range(32))))
    assert len(built) == 1
    assert dynamo.dynamodb_client(settings) is dynamo.dynamodb_client(settings)
    assert glue.glue_client(settings) is glue.glue_client(settings)
    assert storage.s3_client(settings) is not dynamo.dynamodb_client(settings)


def test_another_run_or_another_endpoint_gets_its_own_client() -> None:
    first, second = _settings(), _settings()
    assert storage.s3_client(first) is not storage.s3_client(second)
    moved = first.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    assert storage.s3_client(moved).meta.endpoint_url == "http://127.0.0.1:9"
    assert storage.s3_client(first).meta.endpoint_url == "https://s3.amazonaws.com"


def test_each_service_has_its_stated_retry_policy() -> None:
    settings = _settings()
    policies = {
        name: (client.meta.config.retries["total_max_attempts"], client.meta.config.retries["mode"])
        for name, client in (
            ("s3", storage.s3_client(settings)),
            ("dynamodb", dynamo.dynamodb_client(settings)),
            ("glue", glue.glue_client(settings)),
        )
    }
    assert policies == {"s3": (9, "adaptive"), "dynamodb": (6, "standard"), "glue": (6, "standard")}
    assert storage.s3_client(settings).meta.config.s3 == {"addressing_style": "path"}
