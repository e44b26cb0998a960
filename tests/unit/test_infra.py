"""infra/template.yaml: linted (cfn-lint, checkov) and checked against the code it deploys."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from common.settings import Settings
from orchestration import batcher, dispatch
from orchestration.config import Config
from tests.aws_stack import RESOURCES, TEMPLATE
from tests.sfn_harness import fargate_size_exists

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
ASL = (ROOT / "infra" / "statemachine.asl.json").read_text()
BIN = Path(sys.executable).parent


def _of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


LAYOUTS = ("two-tasks", "one-task")


def _in_layout(items: list[Any], layout: str) -> list[Any]:
    """A template list with its ``!If [OneTask, x, AWS::NoValue]`` items resolved for ``layout``."""
    out = []
    for item in items:
        if isinstance(item, dict) and "Fn::If" in item:
            condition, then, otherwise = item["Fn::If"]
            assert condition == "OneTask", condition
            item = then if layout == "one-task" else otherwise
            if item == {"Ref": "AWS::NoValue"}:
                continue
        out.append(item)
    return out


def _environment(task: str, layout: str = "two-tasks") -> dict[str, Any]:
    """A task definition's container environment, as deployed in ``layout``."""
    [container] = RESOURCES[task]["Properties"]["ContainerDefinitions"]
    return {e["Name"]: e["Value"] for e in _in_layout(container["Environment"], layout)}


def test_cfn_lint_passes() -> None:
    done = subprocess.run(
        [str(BIN / "cfn-lint"), str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_with_only_the_documented_skips() -> None:
    checkov = ROOT / ".venv-tools" / "bin" / "checkov"
    assert checkov.exists(), "run `make tools` (make test does)"
    done = subprocess.run(
        [str(checkov), "-f", str(TEMPLATE_PATH), "--config-file", str(ROOT / "infra" / "checkov.yaml")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout
    assert "prismacloud" not in done.stderr  # --skip-download: no calls to the vendor's API


def test_every_placeholder_in_the_state_machine_is_substituted_and_no_more() -> None:
    placeholders = set(re.findall(r"\$\{([A-Za-z]+)\}", ASL))
    substitutions = set(RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert placeholders == substitutions


def test_state_machine_container_name_matches_the_task_definitions() -> None:
    name = RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"]["ContainerName"]
    for task in _of_type("AWS::ECS::TaskDefinition").values():
        props = task["Properties"]
        assert [c["Name"] for c in props["ContainerDefinitions"]] == [name]
        assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"


def test_task_definition_environment_names_are_settings_the_jobs_read() -> None:
    known = {f"ECOM_{field.upper()}" for field in Settings.model_fields}
    for name, task in _of_type("AWS::ECS::TaskDefinition").items():
        for layout in LAYOUTS:
            names = set(_environment(name, layout))
            assert names <= known, f"{name}: {names - known}"
        assert task["Properties"]["ContainerDefinitions"][0]["Command"][0] in {
            "validate",
            "transform",
            "maintain",
        }
    overrides = re.findall(r'"Name": "(ECOM_[A-Z_]+)"', ASL)
    assert overrides and set(overrides) <= known


def test_a_retried_job_outwaits_the_lease_of_the_killed_one() -> None:
    """A killed task keeps the lake's lease until its TTL lapses; the retry (after the backoff) must
    wait longer than that, or it fails as "lake busy" through every attempt (see the kill drills)."""
    backoff = int(TEMPLATE["Parameters"]["RetryIntervalSeconds"]["MinValue"])
    for name in _of_type("AWS::ECS::TaskDefinition"):
        env = _environment(name)
        ttl = int(env["ECOM_LAKE_LOCK_TTL_SECONDS"])
        assert backoff + int(env["ECOM_LAKE_LOCK_WAIT_SECONDS"]) > ttl, name


def test_lambda_environment_names_are_read_by_the_lambda_config() -> None:
    source = (ROOT / "infra" / "lambdas" / "orchestration" / "config.py").read_text()
    read = set(re.findall(r'env(?:\.get)?[\[(]"(ECOM_[A-Z_]+)"', source))
    for name, function in _of_type("AWS::Lambda::Function").items():
        variables = set(function["Properties"]["Environment"]["Variables"])
        assert variables <= read, f"{name}: {variables - read}"
        module, handler = function["Properties"]["Handler"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), handler))
        assert function["Properties"]["Code"] == "lambdas/"


def test_tables_have_the_keys_ttl_and_stream_the_code_expects() -> None:
    ingestion = RESOURCES["IngestionTable"]["Properties"]
    assert [k["AttributeName"] for k in ingestion["KeySchema"]] == ["group_key", "file_id"]
    assert ingestion["TimeToLiveSpecification"] == {"AttributeName": batcher.TTL_ATTRIBUTE, "Enabled": True}
    assert [i["IndexName"] for i in ingestion["GlobalSecondaryIndexes"]] == ["pending-index"]
    chunks = RESOURCES["ChunksTable"]["Properties"]
    assert chunks["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert [i["IndexName"] for i in chunks["GlobalSecondaryIndexes"]] == ["status-index"]
    assert [k["AttributeName"] for k in RESOURCES["CategoryKpiTable"]["Properties"]["KeySchema"]] == [
        "category",
        "order_date",
    ]


def test_bucket_is_encrypted_and_private() -> None:
    bucket = RESOURCES["DataBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statement = RESOURCES["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_nothing_account_or_region_specific_is_hard_coded() -> None:
    text = TEMPLATE_PATH.read_text()
    assert not re.search(r"\b\d{12}\b", text)
    assert not re.search(
        r"\b(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central|northeast|southeast)-\d\b", text
    )
    assert "YOUR_" not in text and "TODO" not in text


def _statements(layout: str = "one-task") -> list[tuple[str, dict[str, Any]]]:
    """(role, statement) for every role's inline policies and every policy attached to a role
    (those conditional on the layout included when deployed in ``layout``)."""
    out = []
    for name, role in _of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            out += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
    for resource in _of_type("AWS::IAM::Policy").values():
        if resource.get("Condition") == "OneTask" and layout != "one-task":
            continue
        for role in resource["Properties"]["Roles"]:
            out += [(role["Ref"], s) for s in resource["Properties"]["PolicyDocument"]["Statement"]]
    return out


def test_iam_is_least_privilege() -> None:
    for role, statement in _statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a != "*" and not a.endswith(":*") for a in actions), (role, actions)
        if statement.get("Resource") == "*":
            if actions == ["cloudwatch:PutMetricData"]:  # no resource type: narrowed to our namespace
                namespace = statement["Condition"]["StringEquals"]["cloudwatch:namespace"]
                assert namespace == dispatch.METRICS_NAMESPACE, role
                continue
            # only CloudWatch Logs delivery, X-Ray and the registry token, which AWS defines on "*"
            assert all(
                a.startswith(("logs:", "xray:")) or a == "ecr:GetAuthorizationToken" for a in actions
            ), (role, actions)
        for resource in (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        ):
            assert ":key/*" not in json.dumps(resource), (role, "a KMS grant names the stack's key")
    for name, role in _of_type("AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{name}: AWS-managed policies grant on *"


def _evaluate(node: Any, parameters: dict[str, str]) -> Any:
    """The few intrinsic functions the image policy uses (Ref to a parameter, Split, Select, Sub
    with a variable map), evaluated as CloudFormation would."""
    if not isinstance(node, dict):
        return node
    ((function, args),) = node.items()
    if function == "Ref":
        return parameters[args]
    if function == "Fn::Split":
        return str(_evaluate(args[1], parameters)).split(args[0])
    if function == "Fn::Select":
        return _evaluate(args[1], parameters)[args[0]]
    if function == "Fn::Sub":
        text, variables = args
        values = {"AWS::Partition": "aws", **{k: _evaluate(v, parameters) for k, v in variables.items()}}
        return re.sub(r"\$\{([\w:]+)\}", lambda m: str(values[m.group(1)]), text)
    raise AssertionError(f"no evaluation of {function}")


@pytest.mark.parametrize(
    ("uri", "repository"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecom-pipeline:1.4", "ecom-pipeline"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/data/ecom-pipeline:latest", "data/ecom-pipeline"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecom-pipeline@sha256:" + "a" * 64, "ecom-pipeline"),
    ],
)
def test_the_task_execution_role_pulls_only_the_jobs_images_and_writes_their_logs(
    uri: str, repository: str
) -> None:
    (pull,) = [
        s for r, s in _statements() if r == "TaskExecutionRole" and s.get("Sid") == "PullTheJobsImages"
    ]
    arns = {_evaluate(r, {"ValidateImageUri": uri, "TransformImageUri": uri}) for r in pull["Resource"]}
    assert arns == {f"arn:aws:ecr:eu-west-1:123456789012:repository/{repository}"}
    pattern = TEMPLATE["Parameters"]["ValidateImageUri"]["AllowedPattern"]
    assert re.fullmatch(pattern, uri) and not re.fullmatch(pattern, "ecom-pipeline:local")
    (logs,) = [s for r, s in _statements() if r == "TaskExecutionRole" and s.get("Sid") == "WriteTheJobsLogs"]
    groups = {r["Fn::Sub"] for r in logs["Resource"]}
    assert groups == {"${ValidateLogGroup.Arn}", "${TransformLogGroup.Arn}", "${MaintainLogGroup.Arn}"}
    used = {
        task["Properties"]["ContainerDefinitions"][0]["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
        for task in _of_type("AWS::ECS::TaskDefinition").values()
    }
    assert used == {"ValidateLogGroup", "TransformLogGroup", "MaintainLogGroup"}


SIZED = {"ECOM_SPARK_DRIVER_MEMORY", "ECOM_SPARK_SHUFFLE_PARTITIONS"}  # by SizeTasks, for either job


@pytest.mark.parametrize(
    ("job", "command", "names"),
    [
        # the validate task runs jobs.validate, or jobs.run (both jobs) in the one-task layout
        ("Validate", ["${ValidateCommand}"], {"ECOM_BATCH_ID", "ECOM_MANIFEST", "ECOM_RESULT_URI", *SIZED}),
        ("Transform", ["transform"], {"ECOM_BATCH_ID", "ECOM_VALIDATION_RESULT", *SIZED}),
    ],
)
def test_the_state_machine_passes_each_job_what_it_needs(
    job: str, command: list[str], names: set[str]
) -> None:
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    state = definition["States"][job]
    override = state["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert override["Command"] == command
    assert {e["Name"] for e in override["Environment"]} == names
    sized = {k: v for k, v in state["Parameters"]["Overrides"].items() if k != "ContainerOverrides"}
    assert sized == {
        "Cpu.$": f"$.task_size.{job.lower()}.cpu",
        "Memory.$": f"$.task_size.{job.lower()}.memory",
    }
    assert state["Catch"][0]["ResultPath"] == "$.error" and state["TimeoutSeconds"] == 1


def test_every_catch_keeps_the_input_and_every_task_has_a_timeout() -> None:
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    for name, state in definition["States"].items():
        for catch in state.get("Catch", []):
            assert catch.get("ResultPath", "").startswith("$."), name
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state, name


def test_lambda_config_reads_what_the_template_sets() -> None:
    variables = RESOURCES["BatcherFunction"]["Properties"]["Environment"]["Variables"]
    env = {k: "60" if isinstance(v, dict) else v for k, v in variables.items()}
    env.update(ECOM_INGESTION_TABLE="t1", ECOM_CHUNKS_TABLE="t2", ECOM_BUCKET="b")
    assert Config.from_env(env).debounce_seconds == 60


def test_deterministic_exits_are_not_retried_and_executions_are_bounded() -> None:
    params = TEMPLATE["Parameters"]
    substitutions = RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["ExecutionTimeoutSeconds"] == {"Ref": "ExecutionTimeoutSeconds"}
    assert params["ExecutionTimeoutSeconds"]["Default"] >= 2 * params["JobTimeoutSeconds"]["Default"]
    assert params["StuckBatchAlarmSeconds"]["Default"] > params["ExecutionTimeoutSeconds"]["Default"]
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    assert definition["TimeoutSeconds"] == 1  # an execution-level timeout exists
    for job, rejected in (("Validate", [2, 3]), ("Transform", [2, 3, 4])):
        retried = {e for r in definition["States"][job].get("Retry", []) for e in r["ErrorEquals"]}
        assert not retried & {"States.TaskFailed", "States.ALL", "States.Timeout"}, retried
        choice = definition["States"][f"{job}ExitCode"]["Choices"][1]
        assert sorted(c["NumericEquals"] for c in choice["Or"]) == rejected
        assert choice["Next"] == f"{job}Rejected"
        assert definition["States"][f"{job}Rejected"]["Next"] == f"{job}Failed"
    # jobs.run's exit 4 (one-task layout: the batch FAILED its checks) is not retried either: its
    # written result is read, and the alert carries its summary
    exit_4 = definition["States"]["ValidateExitCode"]["Choices"][2]
    assert (exit_4["NumericEquals"], exit_4["Next"]) == (4, "ReadValidationResult")


def test_the_one_task_layout_runs_both_jobs_in_the_validate_task_with_the_transforms_grants() -> None:
    substitutions = RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["ValidateCommand"] == {"Fn::If": ["OneTask", "run", "validate"]}
    assert substitutions["JobLayout"] == {"Ref": "JobLayout"}
    assert TEMPLATE["Conditions"]["OneTask"] == {"Fn::Equals": [{"Ref": "JobLayout"}, "one-task"]}
    assert TEMPLATE["Parameters"]["JobLayout"]["Default"] == "two-tasks"
    kpi_tables = {"ECOM_DYNAMODB_ORDER_TABLE", "ECOM_DYNAMODB_CATEGORY_TABLE"}
    assert not kpi_tables & set(_environment("ValidateTaskDefinition", "two-tasks"))
    one_task = _environment("ValidateTaskDefinition", "one-task")
    assert {k: one_task[k] for k in kpi_tables} == {
        k: _environment("TransformTaskDefinition")[k] for k in kpi_tables
    }

    def grants(role: str, layout: str) -> list[str]:
        return sorted(json.dumps(s, sort_keys=True) for n, s in _statements(layout) if n == role)

    transform_only = {
        json.dumps(s, sort_keys=True)
        for n, s in _statements()
        if n == "TransformTaskRole" and s["Sid"] in {"WriteKpis", "RegisterTables"}
    }
    added = set(grants("ValidateTaskRole", "one-task")) - set(grants("ValidateTaskRole", "two-tasks"))
    assert added == transform_only


def test_outcome_writes_are_idempotent_and_only_for_the_current_attempt() -> None:
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    for name in ("MarkCompleted", "MarkFailed"):
        params = definition["States"][name]["Parameters"]
        assert params["ConditionExpression"].startswith("execution_arn = :me AND #s IN (:processing, ")
        assert params["ExpressionAttributeValues"][":me"] == {"S.$": "$$.Execution.Id"}
    read = definition["States"]["ReadValidationResult"]["Parameters"]
    assert read["Key.$"] == "$.summary_key"  # the small summary, never the whole result


def _alarms() -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in _of_type("AWS::CloudWatch::Alarm").items()}


def test_every_silent_failure_has_an_alarm_that_alerts() -> None:
    alarms = _alarms()
    watched = {
        (p["Namespace"], p["MetricName"], json.dumps(p["Dimensions"][0]["Value"], sort_keys=True))
        for p in alarms.values()
    }
    for function in ("IngestFunction", "BatcherFunction", "DispatchFunction"):
        assert ("AWS/Lambda", "Errors", json.dumps({"Ref": function})) in watched, function
    assert ("AWS/Lambda", "IteratorAge", json.dumps({"Ref": "DispatchFunction"})) in watched
    # an execution that failed, timed out or was stopped, even when its own alert could not be sent
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
        assert ("AWS/States", metric, json.dumps({"Ref": "StateMachine"})) in watched, metric
    topic = json.dumps({"Fn::GetAtt": "AlertTopic.TopicName"})
    assert ("AWS/SNS", "NumberOfNotificationsFailed", topic) in watched  # an alert not delivered
    dlq = json.dumps({"Fn::GetAtt": "IngestDeadLetterQueue.QueueName"}, sort_keys=True)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq) in watched
    own = {p["MetricName"] for p in alarms.values() if p["Namespace"] == dispatch.METRICS_NAMESPACE}
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    recorded = definition["States"]["RecordPark"]["Parameters"]
    assert recorded["Namespace"] == dispatch.METRICS_NAMESPACE
    park = {m["MetricName"] for m in recorded["MetricData"]}  # emitted by the state machine
    assert park == {"ParkedRowsExpired", "OldestParkedDays"}
    # by the dispatcher (dispatch.queue_metrics, and its sweep's count), and by ingest (by bucket)
    assert own == {"InFlightSeconds", "OldestPendingSeconds", "UnlockedInFlight", "UnknownRawFiles"} | park
    unknown = alarms["UnknownRawFilesAlarm"]
    assert unknown["Dimensions"] == [{"Name": "Bucket", "Value": {"Ref": "DataBucket"}}]
    assert unknown["Statistic"] == "Sum" and unknown["Threshold"] == 1
    for name, props in alarms.items():
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}], name


def test_alarms_can_publish_to_the_encrypted_topic() -> None:
    topic = RESOURCES["AlertTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlertKey"}  # not the AWS-managed key alarms cannot use
    key_statements = RESOURCES["AlertKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in key_statements)
    policy = RESOURCES["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in policy)


def _delivered(pattern: dict[str, Any], entries: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The events EventBridge (moto) delivers, of ``entries``, to a rule with ``pattern`` (its
    target a stand-in queue)."""
    from moto import mock_aws

    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="target-stand-in")["QueueUrl"]
        queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="rule", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="rule", Targets=[{"Id": "target", "Arn": queue}])
        events.put_events(Entries=entries)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in received]


def test_an_execution_that_ends_reaches_the_dispatcher() -> None:
    """The rule's pattern, evaluated by EventBridge (moto), against the event Step Functions sends."""

    rule = RESOURCES["ExecutionEndedRule"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": "DispatchFunction.Arn"}
    permission = RESOURCES["ExecutionEndedInvokePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:ecom-pipeline"
    pattern = json.loads(
        json.dumps(rule["EventPattern"]).replace(json.dumps({"Ref": "StateMachine"}), f'"{arn}"')
    )

    def entry(status: str, machine: str = arn) -> dict[str, str]:
        detail = {"stateMachineArn": machine, "status": status, "name": f"b-{status}"}
        return {
            "Source": "aws.states",
            "DetailType": "Step Functions Execution Status Change",
            "Detail": json.dumps(detail),
        }

    statuses = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
    received = _delivered(pattern, [entry(s) for s in statuses] + [entry("FAILED", arn + "-other")])
    delivered = sorted(e["detail"]["name"] for e in received)
    assert delivered == ["b-ABORTED", "b-FAILED", "b-SUCCEEDED", "b-TIMED_OUT"]


def test_data_resources_survive_a_stack_deletion() -> None:
    data = ("DataBucket", "IngestionTable", "ChunksTable", "OrderKpiTable", "CategoryKpiTable")
    for name in (*data, "IngestDeadLetterQueue"):  # the DLQ holds files not yet recorded
        assert RESOURCES[name]["DeletionPolicy"] == "Retain", name
        assert RESOURCES[name]["UpdateReplacePolicy"] == "Retain", name


def _role_actions(role: str) -> set[str]:
    actions: set[str] = set()
    for name, statement in _statements():
        if name == role:
            value = statement["Action"]
            actions |= set(value if isinstance(value, list) else [value])
    return actions


def test_roles_hold_only_the_actions_their_code_calls() -> None:
    assert "xray:PutTraceSegments" in _role_actions("StateMachineRole")  # tracing is on
    assert RESOURCES["StateMachine"]["Properties"]["TracingConfiguration"]["Enabled"] is True
    kpi = [s for n, s in _statements() if n == "TransformTaskRole" and s.get("Sid") == "WriteKpis"]
    assert [s["Action"] for s in kpi] == ["dynamodb:BatchWriteItem"]  # common/io/dynamo.py
    lock = [s for n, s in _statements() if n == "DispatchRole" and s.get("Sid") == "TakeAndReleaseTheLock"]
    assert lock[0]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] == [dispatch.LOCK_ID]
    for role in ("ValidateTaskRole", "TransformTaskRole"):
        [listing] = [s for n, s in _statements() if n == role and s.get("Sid") == "ListBucket"]
        assert "Condition" not in listing, role  # else a missing object reads as 403


def test_each_job_registers_its_own_tables_in_the_stacks_glue_database() -> None:
    for job, prefixes in (("Validate", ["validated_*", "quarantine_*"]), ("Transform", ["kpi_*"])):
        environment = _environment(f"{job}TaskDefinition")
        assert environment["ECOM_GLUE_DATABASE"] == {"Ref": "LakeDatabase"}, job
        [grant] = [
            s
            for n, s in _statements("two-tasks")
            if n == f"{job}TaskRole" and s.get("Sid") == "RegisterTables"
        ]
        assert grant["Action"] == ["glue:GetTable", "glue:CreateTable", "glue:UpdateTable"]  # io/glue.py
        tables = [r["Fn::Sub"].rsplit("/", 1)[1] for r in grant["Resource"] if "table/" in r["Fn::Sub"]]
        assert tables == prefixes, job
    assert RESOURCES["LakeDatabase"]["Type"] == "AWS::Glue::Database"


def test_a_failed_maintenance_task_alerts() -> None:
    """The maintenance rule's pattern, evaluated by EventBridge (moto), against ECS's events.

    moto does not match a pattern into a list of objects (ECS's ``containers``), which EventBridge
    does (any element): the exit-code clause is checked as written, the rest evaluated."""

    rule = RESOURCES["MaintainFailedRule"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "AlertTopic"}
    publishers = RESOURCES["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Principal"] == {"Service": "events.amazonaws.com"} for s in publishers)
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/ecom"
    family = "arn:aws:ecs:us-east-1:123456789012:task-definition/ecom-maintain:"
    text = json.dumps(rule["EventPattern"]).replace(json.dumps({"Fn::GetAtt": "Cluster.Arn"}), f'"{cluster}"')
    pattern = json.loads(re.sub(r'\{"Fn::Sub": "[^"]*-maintain:"\}', f'"{family}"', text))
    assert pattern["detail"].pop("containers") == {"exitCode": [{"anything-but": 0}]}

    def entry(
        name: str, status: str, exit_code: int | None, definition: str = family + "3"
    ) -> dict[str, str]:
        container: dict[str, Any] = {"name": "job"}
        if exit_code is not None:
            container["exitCode"] = exit_code
        detail = {
            "clusterArn": cluster,
            "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/ecom/{name}",
            "taskDefinitionArn": definition,
            "lastStatus": status,
            "containers": [container],
        }
        return {"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json.dumps(detail)}

    received = _delivered(
        pattern,
        [
            entry("failed", "STOPPED", 1),
            entry("oom-killed", "STOPPED", 137),
            entry("running", "RUNNING", None),
            entry("a-batch-job", "STOPPED", 1, definition=family.replace("maintain", "validate") + "1"),
        ],
    )
    delivered = sorted(e["detail"]["taskArn"].rsplit("/", 1)[1] for e in received)
    assert delivered == ["failed", "oom-killed"]


def test_the_maintenance_schedule_runs_the_maintenance_task_on_the_cluster() -> None:
    target = RESOURCES["MaintainScheduleEntry"]["Properties"]["Target"]
    assert target["Arn"] == {"Fn::GetAtt": "Cluster.Arn"}
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "MaintainTaskDefinition"}
    container = RESOURCES["MaintainTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["Command"] == ["maintain"]
    [run] = [s for n, s in _statements() if n == "MaintainSchedulerRole" and s["Action"] == "ecs:RunTask"]
    assert run["Resource"] == {"Ref": "MaintainTaskDefinition"}
    # the maintenance role can rewrite the lake, and nothing else
    assert _role_actions("MaintainTaskRole") == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    }


def test_make_deploy_asks_for_the_alert_address() -> None:
    """A stack whose alerts reach no one must be a choice (ALERT_EMAIL=none), not a default."""

    def deploy(*extra: str) -> subprocess.CompletedProcess[str]:
        given = ["ARTIFACT_BUCKET=b", "IMAGE_URI=i", "SUBNETS=s", "SECURITY_GROUPS=g", *extra]
        return subprocess.run(
            ["make", "-n", "deploy", *given], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    refused = deploy()
    assert refused.returncode != 0 and "ALERT_EMAIL is needed" in refused.stderr
    assert "aws cloudformation" not in refused.stdout
    assert "AlertEmail=team@example.com " in deploy("ALERT_EMAIL=team@example.com").stdout
    assert "AlertEmail= " in deploy("ALERT_EMAIL=none").stdout  # no subscription


def test_make_ops_runs_in_a_small_environment_of_what_the_lambdas_import() -> None:
    """The operator CLI needs boto3 alone: `make ops` installs and uses a venv of boto3 (seconds),
    not the project's (Spark and every dev tool), and the CLI imports nothing else."""
    dry = subprocess.run(
        ["make", "-n", "ops", "CMD=list"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    (run,) = [line for line in dry.splitlines() if "orchestration.ops" in line]
    assert run.startswith("PYTHONPATH=infra/lambdas .venv-ops/bin/python -m orchestration.ops")
    recipe = (
        (ROOT / "Makefile").read_text().split("$(OPS_STAMP): constraints.txt\n", 1)[1].split("\n\n", 1)[0]
    )
    assert "pip install --quiet -c constraints.txt boto3\n" in recipe + "\n"
    probe = (
        "import sys; sys.path.insert(0, 'infra/lambdas'); import orchestration.ops; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    # less the standard library, the interpreter's start-up hooks (__main__, .pth finders: "_...")
    third_party = (
        {m for m in loaded if not m.startswith("_")} - set(sys.stdlib_module_names) - {"orchestration"}
    )
    boto3_and_its_own = {
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "dateutil",
        "urllib3",
        "six",
        "certifi",
    }
    assert third_party <= boto3_and_its_own, sorted(third_party - boto3_and_its_own)


def test_the_template_s_task_sizes_are_sizes_fargate_has() -> None:
    """Each job's size, and the large batches' size, as the template defaults them: a pair Fargate
    has no size for is refused by RunTask (ClientException), as the harness refuses it."""
    parameters = TEMPLATE["Parameters"]
    for cpu, memory in (
        ("ValidateCpu", "ValidateMemory"),
        ("TransformCpu", "TransformMemory"),
        ("LargeTaskCpu", "LargeTaskMemory"),
    ):
        size = (int(parameters[cpu]["Default"]), int(parameters[memory]["Default"]))
        assert fargate_size_exists(*size), (cpu, memory, size)
    assert int(parameters["LargeTaskCpu"]["Default"]) > int(parameters["ValidateCpu"]["Default"])
