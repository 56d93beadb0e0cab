//! ECS on Fargate: the cluster, each worker service's task definition, roles, security
//! group and service, and its backlog-per-task scaling.

use serde_json::{Value, json};

use topology::{FargateService, camel};

use super::iam::{assume, role_props};
use super::stack::Stack;
use super::values::Attr;
use super::{
    LOG_RETENTION_DAYS, PARAM_ASSIGN_PUBLIC_IP, PARAM_SUBNETS, PARAM_VPC, PARAM_WORKER_IMAGE, Synth,
};

impl Synth<'_> {
    pub(super) fn fargate(&mut self, at: usize, service: &str, f: &FargateService) {
        let c = camel(&f.name);
        let physical = self.names.fargate_service(&f.name);
        let cluster_name = self.names.stack(service);
        let queue_name = self.queue_attr(at, &f.queue, Attr::Name);
        let statements = self.statements(at, &f.permissions);
        let environment: Vec<Value> = f
            .env
            .iter()
            .map(|(k, v)| json!({ "Name": k, "Value": self.value(at, v) }))
            .collect();
        let stack = &mut self.stacks[at];
        stack.uses_workers = true;
        if !stack.has("Cluster") {
            stack.resource(
                "Cluster".into(),
                "AWS::ECS::Cluster",
                json!({
                    "ClusterName": cluster_name,
                    // RunningTaskCount, which the backlog-per-task scaling divides by,
                    // is a Container Insights metric.
                    "ClusterSettings": [ { "Name": "containerInsights", "Value": "enabled" } ],
                }),
            );
        }
        stack.resource(
            format!("{c}LogGroup"),
            "AWS::Logs::LogGroup",
            json!({ "LogGroupName": format!("/ecs/{physical}"), "RetentionInDays": LOG_RETENTION_DAYS }),
        );
        // The execution role (used by ECS to pull the image and ship logs) takes AWS's
        // managed policy: ECR's GetAuthorizationToken cannot be scoped below `*`.
        stack.resource(
            format!("{c}ExecutionRole"),
            "AWS::IAM::Role",
            json!({
                "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                "ManagedPolicyArns": [
                    { "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" }
                ],
            }),
        );
        stack.resource(
            format!("{c}TaskRole"),
            "AWS::IAM::Role",
            role_props("ecs-tasks.amazonaws.com", statements),
        );
        task_definition(stack, &c, &physical, f, environment);
        ecs_service(stack, &c, &physical);
        scaling(stack, &c, &physical, f, queue_name);
    }
}

fn task_definition(
    stack: &mut Stack,
    c: &str,
    physical: &str,
    f: &FargateService,
    environment: Vec<Value>,
) {
    stack.resource(
        format!("{c}TaskDefinition"),
        "AWS::ECS::TaskDefinition",
        json!({
            "Family": physical,
            "Cpu": f.cpu.to_string(),
            "Memory": f.memory_mb.to_string(),
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": { "CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX" },
            "ExecutionRoleArn": { "Fn::GetAtt": [format!("{c}ExecutionRole"), "Arn"] },
            "TaskRoleArn": { "Fn::GetAtt": [format!("{c}TaskRole"), "Arn"] },
            "ContainerDefinitions": [{
                "Name": f.name,
                "Image": { "Ref": PARAM_WORKER_IMAGE },
                "Essential": true,
                "StopTimeout": f.stop_timeout.as_secs(),
                "Environment": environment,
                "LogConfiguration": {
                    "LogDriver": "awslogs",
                    "Options": {
                        "awslogs-group": { "Ref": format!("{c}LogGroup") },
                        "awslogs-region": { "Ref": "AWS::Region" },
                        "awslogs-stream-prefix": f.name,
                    },
                },
            }],
        }),
    );
}

/// The service and its security group, which allows outbound traffic only.
fn ecs_service(stack: &mut Stack, c: &str, physical: &str) {
    stack.resource(
        format!("{c}SecurityGroup"),
        "AWS::EC2::SecurityGroup",
        json!({
            "GroupDescription": format!("{physical} tasks: outbound only"),
            "VpcId": { "Ref": PARAM_VPC },
            "SecurityGroupEgress": [
                { "IpProtocol": "-1", "CidrIp": "0.0.0.0/0", "Description": "AWS APIs and the image registry" }
            ],
        }),
    );
    stack.resource(
        format!("{c}Service"),
        "AWS::ECS::Service",
        json!({
            "ServiceName": physical,
            "Cluster": { "Ref": "Cluster" },
            "TaskDefinition": { "Ref": format!("{c}TaskDefinition") },
            "LaunchType": "FARGATE",
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": { "Ref": PARAM_SUBNETS },
                    "SecurityGroups": [ { "Fn::GetAtt": [format!("{c}SecurityGroup"), "GroupId"] } ],
                    "AssignPublicIp": { "Ref": PARAM_ASSIGN_PUBLIC_IP },
                }
            },
        }),
    );
}

/// Scaling between the service's minimum and maximum task counts on its queue's backlog.
fn scaling(stack: &mut Stack, c: &str, physical: &str, f: &FargateService, queue_name: Value) {
    stack.resource(
        format!("{c}ScalableTarget"),
        "AWS::ApplicationAutoScaling::ScalableTarget",
        json!({
            "MinCapacity": f.scaling.min_tasks,
            "MaxCapacity": f.scaling.max_tasks,
            "ResourceId": { "Fn::Sub": format!("service/${{Cluster}}/${{{c}Service.Name}}") },
            "ScalableDimension": "ecs:service:DesiredCount",
            "ServiceNamespace": "ecs",
        }),
    );
    // Backlog per task: visible messages over running tasks. A missing task count (no
    // task running) counts as one, so the service can scale out from zero.
    stack.resource(
        format!("{c}ScalingPolicy"),
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        json!({
            "PolicyName": format!("{physical}-backlog-per-task"),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": { "Ref": format!("{c}ScalableTarget") },
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": f.scaling.backlog_per_task,
                "ScaleOutCooldown": 30,
                "ScaleInCooldown": 120,
                "CustomizedMetricSpecification": {
                    "Metrics": [
                        {
                            "Id": "visible",
                            "ReturnData": false,
                            "MetricStat": {
                                "Metric": {
                                    "Namespace": "AWS/SQS",
                                    "MetricName": "ApproximateNumberOfMessagesVisible",
                                    "Dimensions": [ { "Name": "QueueName", "Value": queue_name } ],
                                },
                                "Stat": "Sum",
                            },
                        },
                        {
                            "Id": "tasks",
                            "ReturnData": false,
                            "MetricStat": {
                                "Metric": {
                                    "Namespace": "ECS/ContainerInsights",
                                    "MetricName": "RunningTaskCount",
                                    "Dimensions": [
                                        { "Name": "ClusterName", "Value": { "Ref": "Cluster" } },
                                        { "Name": "ServiceName", "Value": { "Fn::GetAtt": [format!("{c}Service"), "Name"] } },
                                    ],
                                },
                                "Stat": "Average",
                            },
                        },
                        {
                            "Id": "backlogpertask",
                            "Label": "Visible messages per running task",
                            "Expression": "visible / IF(FILL(tasks, 1) < 1, 1, FILL(tasks, 1))",
                            "ReturnData": true,
                        },
                    ],
                },
            },
        }),
    );
}
