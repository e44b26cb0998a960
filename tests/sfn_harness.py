"""Run the real state machine definition on moto, with a stand-in for Fargate that runs the real jobs.

moto executes ASL (``execute_state_machine``) and polls ``DescribeTasks`` for ``ecs:runTask.sync``,
but nothing ever runs or stops a task, and its ECS integration falls short of Step Functions'.
Two pieces fill those gaps:

- :class:`Fargate`, a thread that runs each task Step Functions starts: the job in-process with
  exactly the command and environment the container would get (task definition environment +
  the state machine's overrides), recording its exit code;
- :func:`emulate_ecs_run_task_sync` and :func:`read_sdk_streams`, which make moto's ECS and
  ``aws-sdk`` S3 integrations follow the documented contract (their docstrings say what moto
  gets wrong);
- :class:`Kubernetes` and :func:`emulate_eks_run_job_sync`: the EKS cluster's Jobs, which moto
  does not execute (``eks:runJob.sync``), run the same way.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_callback
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"


def render_definition(substitutions: dict[str, str]) -> str:
    """Apply CloudFormation-style ``${Name}`` substitutions to the ASL file, as the stack does."""
    text = (ROOT / "infra" / "statemachine.asl.json").read_text()
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, "unsubstituted placeholder left in the definition"
    json.loads(text)
    return text


def _camel(value: Any) -> Any:
    """Step Functions' PascalCase API parameters -> boto's camelCase (keys only, recursively)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _pascal(value: Any) -> Any:
    """boto's camelCase response -> the PascalCase output Step Functions gives a state."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: _pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    return value


# Fargate's task sizes: vCPU units -> (least, most, step) memory in MiB (AWS's table)
FARGATE_SIZES = {
    256: (512, 2048, 512),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


def fargate_size_exists(cpu: int, memory: int) -> bool:
    if cpu not in FARGATE_SIZES:
        return False
    least, most, step = FARGATE_SIZES[cpu]
    return least <= memory <= most and (memory - least) % step == 0


def _fresh_task_endpoint(env: Any) -> None:
    """moto reuses the task-token endpoint it interrupted after a failed attempt, so a retried
    .sync task would time out at once (States.Timeout): give each attempt a fresh endpoint."""
    token = env.states.context_object.context_object_data["Task"]["Token"]
    env.callback_pool_manager._pool.pop(token, None)
    env.callback_pool_manager.add(token)


class Fargate:
    """Stand-in for Fargate: runs each submitted task's container command in-process, in order,
    with the environment the container would get (task definition + the state machine's overrides).
    """

    def __init__(self, ecs: Any, run_job: Callable[[str, list[str], dict[str, str]], int]) -> None:
        self.ecs, self.run_job = ecs, run_job
        self.runs: list[dict[str, Any]] = []
        # ECS API errors the next RunTask calls fail with, one per call (e.g. "ThrottlingException")
        self.refuse: list[str] = []
        self.refused: list[str] = []
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._exit_codes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def submit(self, task_definition: str, overrides: dict[str, Any]) -> str:
        task_arn = f"arn:aws:ecs:{REGION}:{DEFAULT_ACCOUNT_ID}:task/ecom-cluster/{uuid.uuid4().hex}"
        self._queue.put((task_arn, {"taskDefinition": task_definition, "overrides": overrides}))
        return task_arn

    def exit_code(self, task_arn: str) -> int | None:
        return self._exit_codes.get(task_arn)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                task_arn, task = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            definition = self.ecs.describe_task_definition(taskDefinition=task["taskDefinition"])[
                "taskDefinition"
            ]
            container = definition["containerDefinitions"][0]
            [override] = [
                o for o in task["overrides"]["containerOverrides"] if o["name"] == container["name"]
            ]
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            env.update({e["name"]: e["value"] for e in override.get("environment", [])})
            command = override.get("command") or container.get("command", [])
            code = self.run_job(command[0], command[1:], env)
            size = {k: task["overrides"].get(k, definition.get(k)) for k in ("cpu", "memory")}
            self.runs.append({"job": command[0], "env": env, "exit_code": code, **size})
            self._exit_codes[task_arn] = code

    def __enter__(self) -> Fargate:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def emulate_ecs_run_task_sync(monkeypatch: pytest.MonkeyPatch, fargate: Fargate) -> None:
    """Make ``ecs:runTask.sync`` follow Step Functions' documented contract, on ``fargate``.

    moto ships this integration but passes the PascalCase parameters to boto unconverted
    (``KeyError: 'Cluster'``), cannot attach an awsvpc network interface, has no Fargate capacity,
    never fails the state on a container's exit code, and times a retried task out at once.
    Here moto's own polling loop is kept;
    the call checks what AWS would reject (unknown cluster, task definition, subnet or security
    group; a launch type other than FARGATE; a cpu/memory pair Fargate has no size for) against
    moto, hands the task to ``fargate``, and the
    completion check fails the state with ``States.TaskFailed`` when the container exited
    non-zero (as moto's own Batch integration does for a failed job).
    """

    def eval_service_task(
        self: StateTaskServiceEcs,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        region, creds = resource_runtime_part.region, state_credentials
        ecs = boto_client_for(region=region, service="ecs", state_credentials=creds)
        ec2 = boto_client_for(region=region, service="ec2", state_credentials=creds)
        parameters = _camel(normalised_parameters)
        assert parameters["launchType"] == "FARGATE", parameters["launchType"]
        [cluster] = ecs.describe_clusters(clusters=[parameters["cluster"]])["clusters"]
        network = parameters["networkConfiguration"]["awsvpcConfiguration"]
        ec2.describe_subnets(SubnetIds=network["subnets"])
        ec2.describe_security_groups(GroupIds=network["securityGroups"])
        assert network["assignPublicIp"] in {"ENABLED", "DISABLED"}
        definition = ecs.describe_task_definition(taskDefinition=parameters["taskDefinition"])[
            "taskDefinition"
        ]
        overrides = parameters["overrides"]
        size = (
            int(overrides.get("cpu", definition["cpu"])),
            int(overrides.get("memory", definition["memory"])),
        )
        if not fargate_size_exists(*size):  # "No Fargate configuration exists for given values"
            fargate.refused.append("ClientException")
            raise FailureEventException(_api_error(self, env, "ClientException"))
        if fargate.refuse:  # ECS refused the call: the state fails with ECS.<code>, as on AWS
            fargate.refused.append(fargate.refuse.pop(0))
            raise FailureEventException(_api_error(self, env, fargate.refused[-1]))
        _fresh_task_endpoint(env)
        task_arn = fargate.submit(parameters["taskDefinition"], parameters["overrides"])
        env.stack.append({"taskArn": task_arn, "clusterArn": cluster["clusterArn"]})

    def build_sync_resolver(
        self: StateTaskServiceEcs,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> Callable[[], Any]:
        started = env.stack.pop()

        def resolve() -> Any:
            code = fargate.exit_code(started["taskArn"])
            if code is None:
                return None
            task = {
                **started,
                "lastStatus": "STOPPED",
                "stopCode": "EssentialContainerExited",
                "stoppedReason": "Essential container in task exited",
                "containers": [{"name": "job", "lastStatus": "STOPPED", "exitCode": code}],
            }
            if code != 0:
                # Step Functions fails the state with States.TaskFailed; the cause is the stopped
                # task's description (DescribeTasks, PascalCase), holding each container's exit code.
                raise FailureEventException(_failure(self, env, _pascal(task)))
            return _pascal(task)

        return resolve

    monkeypatch.setattr(StateTaskServiceEcs, "_eval_service_task", eval_service_task)
    monkeypatch.setattr(StateTaskServiceEcs, "_build_sync_resolver", build_sync_resolver)


# A Kubernetes object name (RFC 1123 label): what the API server accepts as a Job's name
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class Kubernetes:
    """Stand-in for the EKS cluster: runs each Job's container (its driver) in-process, with its
    ``args`` as the job's command and its literal ``env`` values (not the downward API's, which
    only a pod has), recording the Job as submitted."""

    def __init__(self, run_job: Callable[[str, list[str], dict[str, str]], int]) -> None:
        self.run_job = run_job
        self.runs: list[dict[str, Any]] = []
        self._exit_codes: dict[str, int] = {}
        self._lock = threading.Lock()

    def submit(self, namespace: str, job: dict[str, Any]) -> str:
        name = job["metadata"]["name"]
        [container] = job["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}

        def run() -> None:
            code = self.run_job(container["args"][0], container["args"][1:], env)
            with self._lock:
                self.runs.append(
                    {"job": container["args"][0], "namespace": namespace, "manifest": job, "env": env}
                )
                self._exit_codes[name] = code

        threading.Thread(target=run, daemon=True).start()
        return str(name)

    def exit_code(self, name: str) -> int | None:
        with self._lock:
            return self._exit_codes.get(name)


class _StateTaskServiceEks(state_task_service_callback.StateTaskServiceCallback):
    """``eks:runJob.sync`` as Step Functions documents it: the Job (batch/v1) is created in the
    cluster's namespace and the state waits for it; a failed Job fails the state with
    ``States.TaskFailed`` (its status as the cause)."""

    def __init__(self, kubernetes: Kubernetes) -> None:
        # moto waits on a task token's endpoint for every .sync task (Step Functions' own ones
        # support both patterns)
        super().__init__(
            supported_integration_patterns={ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}
        )
        self.kubernetes = kubernetes

    def _validate_service_integration_is_supported(self) -> None:
        if self.resource.api_action != "runJob":  # of the Kubernetes integration, only what we use
            raise ValueError(f"the stand-in runs eks:runJob.sync only, not {self.resource.resource_arn}")

    def _eval_service_task(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        parameters = normalised_parameters
        missing = {"ClusterName", "CertificateAuthority", "Endpoint", "Job"} - set(parameters)
        assert not missing, f"eks:runJob needs {sorted(missing)}"
        job = parameters["Job"] if isinstance(parameters["Job"], dict) else json.loads(parameters["Job"])
        assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job"), "eks:runJob runs batch/v1 Jobs only"
        assert _K8S_NAME.match(job["metadata"]["name"]), job["metadata"]["name"]
        _fresh_task_endpoint(env)
        name = self.kubernetes.submit(parameters.get("Namespace", "default"), job)
        env.stack.append({"metadata": {"name": name}})

    def _build_sync_resolver(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> Callable[[], Any]:
        started = env.stack.pop()

        def resolve() -> Any:
            code = self.kubernetes.exit_code(started["metadata"]["name"])
            if code is None:
                return None
            if code != 0:
                failed = {**started, "status": {"failed": 1, "conditions": [{"type": "Failed"}]}}
                raise FailureEventException(_failure(self, env, failed))
            return {**started, "status": {"succeeded": 1, "conditions": [{"type": "Complete"}]}}

        return resolve


def emulate_eks_run_job_sync(monkeypatch: pytest.MonkeyPatch, kubernetes: Kubernetes) -> None:
    """Run ``eks:runJob.sync`` states on ``kubernetes`` (moto forwards an EKS task to nothing)."""
    original = state_task_factory.state_task_service_for

    def service_for(service_name: str) -> StateTaskService:
        return _StateTaskServiceEks(kubernetes) if service_name == "eks" else original(service_name)

    monkeypatch.setattr(state_task_factory, "state_task_service_for", service_for)


def read_sdk_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's ``aws-sdk`` integration leaves ``s3:getObject``'s ``Body`` as a stream; Step Functions
    returns it as text (which is what ``States.StringToJson($.Body)`` needs)."""
    original = StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(self: StateTaskServiceAwsSdk, env: Any, *args: Any, **kwargs: Any) -> None:
        original(self, env, *args, **kwargs)
        output = env.stack[-1]
        if isinstance(output, dict):
            for key, value in list(output.items()):
                if hasattr(value, "read"):
                    output[key] = value.read().decode("utf-8")

    monkeypatch.setattr(StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task)


def _failure(
    service: state_task_service_callback.StateTaskServiceCallback, env: Any, cause: Any
) -> FailureEvent:
    return FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
        event_type=HistoryEventType.TaskFailed,
        event_details=EventDetails(
            taskFailedEventDetails=TaskFailedEventDetails(
                resource=service._get_sfn_resource(),
                resourceType=service._get_sfn_resource_type(),
                error=StatesErrorNameType.StatesTaskFailed.to_name(),
                cause=json.dumps(cause),
            )
        ),
    )


def _api_error(service: StateTaskServiceEcs, env: Any, code: str) -> FailureEvent:
    """What Step Functions' ECS integration fails a state with when the RunTask call itself is
    refused: the error ``ECS.<code>`` (the names the state machine's Retry lists)."""
    return FailureEvent(
        env=env,
        error_name=CustomErrorName(f"ECS.{code}"),
        event_type=HistoryEventType.TaskFailed,
        event_details=EventDetails(
            taskFailedEventDetails=TaskFailedEventDetails(
                resource=service._get_sfn_resource(),
                resourceType=service._get_sfn_resource_type(),
                error=f"ECS.{code}",
                cause=f"{code}: Rate exceeded (Service: AmazonECS; Status Code: 400)",
            )
        ),
    )


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The container's environment for an in-process job run (restored afterwards)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("ECOM_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("ECOM_")]:
            del os.environ[key]
        os.environ.update(saved)


def wait_for_execution(sfn: Any, arn: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.2)
    raise AssertionError(f"execution {arn} still RUNNING after {timeout}s")


def states_entered(sfn: Any, arn: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
