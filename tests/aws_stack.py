"""The AWS resources of infra/template.yaml, created on moto for tests (same names and keys)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml

from orchestration.config import Config
from orchestration.dispatch import Dispatcher
from tests.sfn_harness import REGION, render_definition

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "infra" / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...) as plain dicts."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)
TEMPLATE: dict[str, Any] = yaml.load(TEMPLATE_PATH.read_text(), Loader=_CfnLoader)
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]

BUCKET = "ecom-data"
CHUNKS_TABLE = "ecom-batch-chunks"
INGESTION_TABLE = "ecom-ingestion"
CLUSTER = "ecom-cluster"
CONTAINER = "job"


@dataclass
class Stack:
    s3: Any
    ddb: Any
    sfn: Any
    ecs: Any
    sqs: Any
    state_machine_arn: str
    alerts_queue_url: str
    env: dict[str, str]  # the Lambdas' environment

    def alerts(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(
            QueueUrl=self.alerts_queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def batch(self, batch_id: str) -> dict[str, Any]:
        return dict(
            boto3.resource("dynamodb", region_name=REGION)
            .Table(CHUNKS_TABLE)
            .get_item(Key={"batch_id": batch_id}, ConsistentRead=True)["Item"]
        )


ORDER_KPI_TABLE, CATEGORY_KPI_TABLE = "kpi-order-daily", "kpi-category-daily"


def create_kpi_tables(ddb: Any, order: str = ORDER_KPI_TABLE, category: str = CATEGORY_KPI_TABLE) -> None:
    """The KPI tables of infra/template.yaml (same keys)."""
    ddb.create_table(
        TableName=order,
        KeySchema=[{"AttributeName": "order_date", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_date", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName=category,
        KeySchema=[
            {"AttributeName": "category", "KeyType": "HASH"},
            {"AttributeName": "order_date", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "category", "AttributeType": "S"},
            {"AttributeName": "order_date", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def create_lock_table(ddb: Any, name: str) -> None:
    """The lake's writer-lease table of infra/template.yaml (same key)."""
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "lake", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lake", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_tables(ddb: Any) -> None:
    ddb.create_table(
        TableName=INGESTION_TABLE,
        KeySchema=[
            {"AttributeName": "group_key", "KeyType": "HASH"},
            {"AttributeName": "file_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "group_key", "AttributeType": "S"},
            {"AttributeName": "file_id", "AttributeType": "S"},
            {"AttributeName": "pending", "AttributeType": "S"},
            {"AttributeName": "arrival_ts", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "pending-index",
                "KeySchema": [
                    {"AttributeName": "pending", "KeyType": "HASH"},
                    {"AttributeName": "arrival_ts", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName=CHUNKS_TABLE,
        KeySchema=[{"AttributeName": "batch_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "batch_id", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "status-index",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "batch_id", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )


LARGE_BATCH_BYTES = 1_000_000  # the test stacks' LargeBatchBytes
CLUSTER_BATCH_BYTES = 50_000_000  # their ClusterBatchBytes, when the stack has an EKS cluster
NO_CLUSTER = "9007199254740991"  # what the template substitutes without a cluster: never reached
EKS = {  # the stack's EKS parameters (a cluster's values, for the manifest: nothing is called)
    "EksClusterName": "ecom-spark",
    "EksEndpoint": "https://0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    "EksCertificateAuthority": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
    "EksNamespace": "ecom-pipeline",
    "EksServiceAccount": "ecom-spark",
    "EksDriverCpu": "4",
    "EksDriverMemory": "16Gi",
    "EksDriverHeap": "12g",
    "EksExecutorInstances": "8",
    "EksExecutorCores": "4",
    "EksExecutorMemory": "24g",
    "ClusterShufflePartitions": "256",
    "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecom-pipeline:test",
    "LakeRoot": "s3://ecom-data/lake",
    "AllowedInputPrefixes": "s3://ecom-data/raw/",
    "Region": "us-east-1",
    "LakeLockTable": "ecom-lake-lock",
    "GlueDatabase": "ecom_lake",
    "OrderKpiTable": "kpi-order-daily",
    "CategoryKpiTable": "kpi-category-daily",
}


def create_stack(
    job_env: dict[str, str],
    retry_interval: int = 1,
    layout: str = "two-tasks",
    validate_timeout: int = 600,
    transform_timeout: int = 600,
    execution_timeout: int = 1800,
    eks: bool = False,
) -> Stack:
    """Call inside ``mock_aws``. ``job_env`` is the task definitions' container environment;
    ``layout`` the template's JobLayout (``one-task``: the validate task runs ``jobs.run``);
    ``validate_timeout`` and ``transform_timeout`` the tasks' TimeoutSeconds; ``execution_timeout``
    the execution's; ``eks``: the stack names an EKS cluster (batches of CLUSTER_BATCH_BYTES and
    more run there)."""
    s3 = boto3.client("s3", region_name=REGION)
    ddb = boto3.client("dynamodb", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    ecs = boto3.client("ecs", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    create_tables(ddb)
    topic = sns.create_topic(Name="ecom-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    cluster = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]  # moto's model only: no traffic
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="ecom-jobs", Description="jobs", VpcId=vpc)["GroupId"]
    environment = [{"name": k, "value": v} for k, v in job_env.items()]
    task_defs = {
        job: ecs.register_task_definition(
            # awsvpc is left out: moto cannot attach its network interface (see sfn_harness)
            family=f"ecom-{job}",
            requiresCompatibilities=["FARGATE"],
            cpu="2048",
            memory="8192",
            containerDefinitions=[
                {
                    "name": CONTAINER,
                    "image": "ecom-pipeline:test",
                    "essential": True,
                    "cpu": 2048,
                    "memory": 8192,
                    "environment": environment,
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        for job in ("validate", "transform")
    }
    definition = render_definition(
        {
            "ClusterArn": cluster,
            "ValidateTaskDefinitionArn": task_defs["validate"],
            "ValidateCommand": "run" if layout == "one-task" else "validate",
            "JobLayout": layout,
            "TransformTaskDefinitionArn": task_defs["transform"],
            "ContainerName": CONTAINER,
            "SubnetIds": subnet,
            "SecurityGroupIds": group,
            "AssignPublicIp": "DISABLED",
            "ChunksTable": CHUNKS_TABLE,
            "AlertTopicArn": topic,
            "RetryIntervalSeconds": str(retry_interval),
            "ValidateTimeoutSeconds": str(validate_timeout),
            "TransformTimeoutSeconds": str(transform_timeout),
            "MaxJobAttempts": "3",
            "ExecutionTimeoutSeconds": str(execution_timeout),
            # the template's defaults, but a small LargeBatchBytes: the tests' batches are bytes
            "ValidateCpu": "2048",
            "ValidateMemory": "8192",
            "ValidateDriverMemory": "6g",
            "TransformCpu": "2048",
            "TransformMemory": "8192",
            "TransformDriverMemory": "6g",
            "LargeBatchBytes": str(LARGE_BATCH_BYTES),
            "LargeTaskCpu": "16384",
            "LargeTaskMemory": "65536",
            "LargeTaskShufflePartitions": "64",
            "ClusterBatchBytes": str(CLUSTER_BATCH_BYTES) if eks else NO_CLUSTER,
            **EKS,
        }
    )
    arn = sfn.create_state_machine(
        name="ecom-pipeline", definition=definition, roleArn="arn:aws:iam::123456789012:role/ecom-sfn"
    )["stateMachineArn"]
    lambda_env = {
        "ECOM_INGESTION_TABLE": INGESTION_TABLE,
        "ECOM_CHUNKS_TABLE": CHUNKS_TABLE,
        "ECOM_BUCKET": BUCKET,
        "ECOM_STATE_MACHINE_ARN": arn,
    }
    return Stack(s3, ddb, sfn, ecs, sqs, arn, queue_url, lambda_env)


# The states a batch whose data failed its checks ends with, in either layout.
DATA_QUALITY_FAILED = [
    "DataQualityFailed",
    "ValidateResultFailed",
    "DescribeFailure",
    "MarkFailed",
    "NotifyFailure",
    "Failed",
]


def lambda_config(stack: Stack) -> Config:
    return Config(
        ingestion_table="unused",
        chunks_table=CHUNKS_TABLE,
        bucket=BUCKET,
        state_machine_arn=stack.state_machine_arn,
    )


def dispatch_tick(stack: Stack) -> str:
    """One dispatcher tick (as the Lambda runs it); returns the in-flight batch's execution ARN."""
    config = lambda_config(stack)
    dispatcher = Dispatcher(boto3.resource("dynamodb", region_name=REGION), stack.sfn, stack.s3, config)
    batch_id = dispatcher.tick()
    assert batch_id is not None
    return str(stack.batch(batch_id)["execution_arn"])
