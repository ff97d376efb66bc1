//! ECS tasks from `[[tasks]]` on the container listener (issue #12): the task metadata endpoint
//! v4 and v3 in each launch type's and network mode's shape, the agent's error bodies, the ECS
//! credentials endpoint, callers told apart by source address, and generated values that survive
//! a restart. Real HTTP on real sockets.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::support::{connect_from, read_response, send_raw, server, Response, Server};

const TASK_ID: &str = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e";

/// An EC2 bridge task with two containers and a role, a Fargate task, an EC2 awsvpc task and an
/// EC2 host task.
const TASKS: &str = r#"
[[tasks]]
task-id = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
cluster = "shop"
family = "shop"
revision = 7
region = "eu-west-1"
account-id = "123456789012"
role = "shop-task"
role-arn = "arn:aws:iam::123456789012:role/shop-task"
credentials-id = "shop-credentials"
service-name = "shop-web"
tags = { team = "web" }
container-instance-tags = { fleet = "blue" }

[[tasks.containers]]
name = "web"
endpoint-id = "web-endpoint"
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:1.4"
cpu = 256
memory = 512
ports = [{ container-port = 8080 }]
log-driver = "awslogs"
log-options = { "awslogs-group" = "/ecs/shop", "awslogs-region" = "eu-west-1" }

[[tasks.containers]]
name = "sidecar"
endpoint-id = "sidecar-endpoint"

[[tasks]]
launch-type = "FARGATE"
cluster = "batch"
family = "job"
region = "us-west-2"
account-id = "210987654321"

[[tasks.containers]]
name = "worker"
endpoint-id = "worker-endpoint"

[[tasks]]
network-mode = "awsvpc"
family = "vpc"

[[tasks.containers]]
name = "app"
endpoint-id = "app-endpoint"

[[tasks]]
network-mode = "host"
family = "hosted"

[[tasks.containers]]
name = "daemon"
endpoint-id = "daemon-endpoint"
"#;

fn start(config: &str) -> Server {
    server()
        .config(config)
        .args(&["--container-listen", "127.0.0.1:0"])
        .start()
}

fn get(server: &Server, path: &str) -> Response {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n");
    send_raw(server.container_address.unwrap(), request.as_bytes())
}

fn get_from(server: &Server, source: &str, path: &str) -> Response {
    let source: IpAddr = source.parse().unwrap();
    let address: SocketAddr = server.container_address.unwrap();
    let mut stream = connect_from(source, address);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    read_response(&mut stream).expect("a response")
}

/// The JSON document of a `200` answer, checked to be the agent's compact `application/json`.
#[track_caller]
fn document(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert!(!response.text().ends_with('\n'), "no trailing newline");
    serde_json::from_slice(&response.body).unwrap()
}

#[track_caller]
fn assert_hex(text: &str, digits: usize) {
    assert_eq!(text.len(), digits, "{text}");
    assert!(
        text.bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)),
        "{text}"
    );
}

#[track_caller]
fn assert_keys(object: &Value, present: &[&str], absent: &[&str]) {
    for key in present {
        assert!(object.get(key).is_some(), "{key} missing from {object}");
    }
    for key in absent {
        assert!(
            object.get(key).is_none(),
            "{key} should be absent from {object}"
        );
    }
}

#[test]
fn an_ec2_bridge_task_is_served_in_the_v4_and_v3_shapes() {
    let server = start(TASKS);
    let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/shop/{TASK_ID}");

    let web = document(&get(&server, "/v4/web-endpoint"));
    assert_hex(web["DockerId"].as_str().unwrap(), 64);
    assert_eq!(web["Name"], "web");
    assert!(web["DockerName"]
        .as_str()
        .unwrap()
        .starts_with("ecs-shop-7-web-"));
    assert_eq!(
        web["Image"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:1.4"
    );
    assert!(web["ImageID"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(web["Type"], "NORMAL");
    assert_eq!(web["KnownStatus"], "RUNNING");
    assert_eq!(web["Limits"]["CPU"], 256);
    assert_eq!(web["Limits"]["Memory"], 512);
    assert_eq!(web["Labels"]["com.amazonaws.ecs.task-arn"], arn.as_str());
    assert_eq!(web["Labels"]["com.amazonaws.ecs.cluster"], "shop");
    assert_eq!(web["LogDriver"], "awslogs");
    assert_eq!(web["LogOptions"]["awslogs-group"], "/ecs/shop");
    let container_arn = web["ContainerARN"].as_str().unwrap();
    assert!(
        container_arn.starts_with(&format!(
            "arn:aws:ecs:eu-west-1:123456789012:container/shop/{TASK_ID}/"
        )),
        "{container_arn}"
    );
    let port = &web["Ports"][0];
    assert_eq!(port["ContainerPort"], 8080);
    assert_eq!(port["Protocol"], "tcp");
    assert!(port["HostPort"].as_u64().unwrap() >= 32768);
    assert_eq!(port["HostIp"], "0.0.0.0");
    let network = &web["Networks"][0];
    assert_eq!(network["NetworkMode"], "bridge");
    let address: std::net::Ipv4Addr = network["IPv4Addresses"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(address.octets()[..2], [172, 17]);
    for key in ["CreatedAt", "StartedAt"] {
        let text = web[key].as_str().unwrap();
        assert!(text.ends_with('Z'), "{text}");
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    }

    let task = document(&get(&server, "/v4/web-endpoint/task"));
    assert_eq!(task["Cluster"], "shop");
    assert_eq!(task["TaskARN"], arn.as_str());
    assert_eq!(task["Family"], "shop");
    assert_eq!(task["Revision"], "7");
    assert_eq!(task["LaunchType"], "EC2");
    assert_eq!(task["ServiceName"], "shop-web");
    assert_eq!(task["FaultInjectionEnabled"], false);
    assert_eq!(task["AvailabilityZone"], "eu-west-1a");
    assert!(task["VPCID"].as_str().unwrap().starts_with("vpc-"));
    assert_keys(
        &task,
        &["PullStartedAt", "PullStoppedAt", "Containers"],
        &["TaskTags", "ClockDrift"],
    );
    let names: Vec<&str> = task["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|container| container["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "sidecar"]);
    assert_eq!(task["Containers"][0], web);
    // Either container's id reads the same task.
    assert_eq!(document(&get(&server, "/v4/sidecar-endpoint/task")), task);

    let tagged = document(&get(&server, "/v4/web-endpoint/taskWithTags"));
    assert_eq!(tagged["TaskTags"]["team"], "web");
    assert_eq!(tagged["ContainerInstanceTags"]["fleet"], "blue");

    // v3: the same documents without what v4 added.
    let web3 = document(&get(&server, "/v3/web-endpoint"));
    assert_eq!(web3["DockerId"], web["DockerId"]);
    assert_keys(
        &web3,
        &["Networks", "Limits", "Ports"],
        &["ContainerARN", "LogDriver", "LogOptions"],
    );
    assert_keys(&web3["Ports"][0], &["HostPort"], &["HostIp"]);
    let task3 = document(&get(&server, "/v3/web-endpoint/task"));
    assert_eq!(task3["TaskARN"], arn.as_str());
    assert_keys(
        &task3,
        &["Containers"],
        &[
            "LaunchType",
            "VPCID",
            "ServiceName",
            "FaultInjectionEnabled",
        ],
    );
}

#[test]
fn each_launch_type_and_network_mode_has_its_shape() {
    let server = start(TASKS);

    // Fargate: the cluster's ARN, `<task id>-<10 digits>`, DockerName = Name, clock and storage.
    let task = document(&get(&server, "/v4/worker-endpoint/task"));
    let arn = task["TaskARN"].as_str().unwrap();
    let task_id = arn
        .strip_prefix("arn:aws:ecs:us-west-2:210987654321:task/batch/")
        .unwrap();
    assert_hex(task_id, 32);
    assert_eq!(
        task["Cluster"],
        "arn:aws:ecs:us-west-2:210987654321:cluster/batch"
    );
    assert_eq!(task["LaunchType"], "FARGATE");
    assert_eq!(
        task["ClockDrift"]["ClockSynchronizationStatus"],
        "SYNCHRONIZED"
    );
    assert!(task["EphemeralStorageMetrics"]["Reserved"].is_u64());
    assert_keys(&task, &["Limits", "AvailabilityZone"], &["VPCID"]);
    assert_eq!(
        task["Containers"].as_array().unwrap().len(),
        1,
        "no pause container"
    );
    let worker = &task["Containers"][0];
    let docker_id = worker["DockerId"].as_str().unwrap();
    let (prefix, digits) = docker_id.split_once('-').unwrap();
    assert_eq!(prefix, task_id);
    assert_eq!(digits.len(), 10);
    assert!(digits.bytes().all(|byte| byte.is_ascii_digit()));
    assert_eq!(worker["DockerName"], "worker");
    let network = &worker["Networks"][0];
    assert_eq!(network["NetworkMode"], "awsvpc");
    assert_keys(
        network,
        &[
            "IPv4Addresses",
            "AttachmentIndex",
            "MACAddress",
            "IPv4SubnetCIDRBlock",
            "PrivateDNSName",
            "SubnetGatewayIpv4Address",
        ],
        &[],
    );
    assert!(network["SubnetGatewayIpv4Address"]
        .as_str()
        .unwrap()
        .contains('/'));

    // EC2 awsvpc: the pause container last, sharing the interface.
    let task = document(&get(&server, "/v4/app-endpoint/task"));
    let containers = task["Containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[1]["Type"], "CNI_PAUSE");
    assert_eq!(containers[1]["Name"], "~internal~ecs~pause");
    assert_eq!(
        containers[0]["Networks"][0]["IPv4Addresses"],
        containers[1]["Networks"][0]["IPv4Addresses"]
    );
    assert_eq!(containers[0]["Networks"][0]["NetworkMode"], "awsvpc");
    assert_hex(containers[0]["DockerId"].as_str().unwrap(), 64);
    // v3 has no interface details.
    let app3 = document(&get(&server, "/v3/app-endpoint"));
    assert_keys(
        &app3["Networks"][0],
        &["NetworkMode", "IPv4Addresses"],
        &["MACAddress", "PrivateDNSName"],
    );

    // host: Docker reports no address.
    let daemon = document(&get(&server, "/v4/daemon-endpoint"));
    assert_eq!(daemon["Networks"][0]["NetworkMode"], "host");
    assert_eq!(
        daemon["Networks"][0]["IPv4Addresses"],
        serde_json::json!([""])
    );
}

#[test]
fn unknown_ids_and_paths_get_the_agents_answers() {
    let server = start(TASKS);
    let check = |path: &str, status: u16, body: &str| {
        let response = get(&server, path);
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(response.text(), body, "{path}");
    };
    check(
        "/v4/nope",
        404,
        "\"V4 container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: nope\"",
    );
    check(
        "/v4/nope/task",
        404,
        "\"V4 task metadata handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: nope\"",
    );
    check(
        "/v4/nope/taskWithTags",
        404,
        "\"V4 task metadata handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: nope\"",
    );
    check(
        "/v3/nope",
        500,
        "\"V3 container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: nope\"",
    );
    check(
        "/v4/",
        404,
        "\"V4 container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: \"",
    );
    check(
        "/v2/credentials/",
        400,
        r#"{"code":"NoIdInRequest","message":"CredentialsV2Request: No Credential ID in the request","HTTPErrorCode":400}"#,
    );
    check(
        "/v1/credentials",
        400,
        r#"{"code":"NoIdInRequest","message":"CredentialsV1Request: No Credential ID in the request","HTTPErrorCode":400}"#,
    );
    check(
        "/v2/credentials/nope",
        400,
        r#"{"code":"InvalidIdInRequest","message":"CredentialsV2Request: Credentials not found","HTTPErrorCode":400}"#,
    );
    check(
        "/v1/credentials?id=nope",
        400,
        r#"{"code":"InvalidIdInRequest","message":"CredentialsV1Request: Credentials not found","HTTPErrorCode":400}"#,
    );
    // Other paths are the container endpoint's own 404.
    let response = get(&server, "/v4/web-endpoint/bogus");
    assert_eq!(response.status, 404);
    assert!(response.text().contains("NotFound"), "{}", response.text());
}

#[test]
fn the_task_role_has_ecs_credentials() {
    let server = start(TASKS);
    for path in [
        "/v2/credentials/shop-credentials",
        "/v1/credentials?id=shop-credentials",
    ] {
        let response = get(&server, path);
        let body = document(&response);
        let text = response.text();
        assert!(
            text.starts_with(
                r#"{"RoleArn":"arn:aws:iam::123456789012:role/shop-task","AccessKeyId":""#
            ),
            "{text}"
        );
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "AccessKeyId",
                "Expiration",
                "RoleArn",
                "SecretAccessKey",
                "Token"
            ]
        );
        let expiration = body["Expiration"].as_str().unwrap();
        // Whole seconds, UTC, as ECS sends them.
        assert_eq!(
            expiration.len(),
            "2026-01-01T00:00:00Z".len(),
            "{expiration}"
        );
        assert!(expiration.ends_with('Z'));
        assert!(body["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    }
    // The Fargate task has no role: its credentials id does not exist.
    let response = get(&server, "/v2/credentials/worker-endpoint");
    assert_eq!(response.status, 400);
}

#[test]
fn a_caller_registered_for_a_task_reads_only_that_task() {
    let config = r#"
[[tasks]]
family = "one"
role = "one"
credentials-id = "one-credentials"
addresses = ["127.0.0.2"]
[[tasks.containers]]
name = "a"
endpoint-id = "one-a"

[[tasks]]
family = "two"
role = "two"
credentials-id = "two-credentials"
addresses = ["127.0.0.3"]
[[tasks.containers]]
name = "b"
endpoint-id = "two-b"
"#;
    let server = start(config);
    assert_eq!(
        document(&get_from(&server, "127.0.0.2", "/v4/one-a"))["Name"],
        "a"
    );
    assert_eq!(get_from(&server, "127.0.0.2", "/v4/two-b").status, 404);
    assert_eq!(get_from(&server, "127.0.0.2", "/v4/two-b/task").status, 404);
    assert_eq!(
        document(&get_from(&server, "127.0.0.3", "/v4/two-b"))["Name"],
        "b"
    );
    assert_eq!(
        get_from(&server, "127.0.0.2", "/v2/credentials/two-credentials").status,
        400
    );
    document(&get_from(
        &server,
        "127.0.0.2",
        "/v2/credentials/one-credentials",
    ));
    // A caller no task claims reads any task by its id.
    assert_eq!(
        document(&get_from(&server, "127.0.0.1", "/v4/two-b"))["Name"],
        "b"
    );
    assert_eq!(
        document(&get_from(&server, "127.0.0.1", "/v4/one-a"))["Name"],
        "a"
    );
}

#[test]
fn generated_values_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let config = |family: &str| {
        format!(
            "[[tasks]]\nfamily = \"{family}\"\n[[tasks.containers]]\nname = \"web\"\nendpoint-id = \"web-endpoint\"\n"
        )
    };
    let start_with = |config: &str| {
        server()
            .state_dir(state.path())
            .config(config)
            .args(&["--container-listen", "127.0.0.1:0"])
            .start()
    };
    let first = start_with(&config("shop"));
    let before = document(&get(&first, "/v4/web-endpoint/task"));
    first.stop();

    let second = start_with(&config("shop"));
    let after = document(&get(&second, "/v4/web-endpoint/task"));
    assert_eq!(after, before, "the same task after a restart");
    second.stop();

    // A changed description without a task-id is a new task, with new values.
    let third = start_with(&config("other"));
    let changed = document(&get(&third, "/v4/web-endpoint/task"));
    assert_eq!(changed["Family"], "other");
    assert_ne!(changed["TaskARN"], before["TaskARN"]);
    assert_ne!(
        changed["Containers"][0]["DockerId"],
        before["Containers"][0]["DockerId"]
    );
}

#[test]
fn stats_have_dockers_shape_and_move() {
    let server = start(TASKS);
    let first = document(&get(&server, "/v4/web-endpoint/stats"));
    let web = document(&get(&server, "/v4/web-endpoint"));
    assert_eq!(first["id"], web["DockerId"]);
    assert_eq!(
        first["name"],
        format!("/{}", web["DockerName"].as_str().unwrap())
    );
    let parse = |value: &Value| {
        time::OffsetDateTime::parse(
            value.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        parse(&first["read"]) - parse(&first["preread"]),
        time::Duration::SECOND
    );
    let total = |stats: &Value, key: &str| stats[key]["cpu_usage"]["total_usage"].as_u64().unwrap();
    assert!(total(&first, "cpu_stats") > total(&first, "precpu_stats"));
    assert_keys(
        &first["cpu_stats"]["cpu_usage"],
        &["usage_in_kernelmode", "usage_in_usermode"],
        &["percpu_usage"],
    );
    assert_keys(
        &first["memory_stats"],
        &["usage", "limit", "stats"],
        &["max_usage"],
    );
    assert_eq!(first["memory_stats"]["limit"], 512 * 1024 * 1024);
    assert_eq!(
        first["blkio_stats"]["io_service_bytes_recursive"][0]["op"],
        "read"
    );
    assert!(first["networks"]["eth0"]["rx_bytes"].is_u64());
    assert!(first["network_rate_stats"]["rx_bytes_per_sec"].is_number());

    // The counters only grow: ask until the next sample is later.
    let later = loop {
        let later = document(&get(&server, "/v4/web-endpoint/stats"));
        if parse(&later["read"]) > parse(&first["read"]) {
            break later;
        }
    };
    assert!(total(&later, "cpu_stats") >= total(&first, "cpu_stats"));
    assert!(
        later["networks"]["eth0"]["rx_bytes"].as_u64()
            >= first["networks"]["eth0"]["rx_bytes"].as_u64()
    );

    // Task stats: every container by Docker id.
    let task = document(&get(&server, "/v4/web-endpoint/task"));
    let all = document(&get(&server, "/v4/web-endpoint/task/stats"));
    let mut ids: Vec<&str> = all
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    ids.sort();
    let mut expected: Vec<&str> = task["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|container| container["DockerId"].as_str().unwrap())
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    // v3 has no rates; host-mode containers have no networks.
    assert_keys(
        &document(&get(&server, "/v3/web-endpoint/stats")),
        &["networks"],
        &["network_rate_stats"],
    );
    assert_keys(
        &document(&get(&server, "/v4/daemon-endpoint/stats")),
        &["cpu_stats"],
        &["networks"],
    );
    // Unknown ids.
    let response = get(&server, "/v4/nope/stats");
    assert_eq!(response.status, 404);
    assert_eq!(
        response.text(),
        "\"V4 container stats handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: nope\""
    );
    let response = get(&server, "/v4/nope/task/stats");
    assert_eq!(response.status, 404);
    assert!(response.text().starts_with("\"V4 task stats handler:"));
    assert_eq!(get(&server, "/v3/nope/stats").status, 400);
}

#[test]
fn callers_are_limited_per_path_as_the_agent_limits_them() {
    let server = server()
        .config(TASKS)
        .args(&[
            "--container-listen",
            "127.0.0.1:0",
            "--task-metadata-rate",
            "1",
            "--task-metadata-burst",
            "3",
        ])
        .start();
    // The burst is served; then, at one request a second, a refusal comes within a few more.
    for _ in 0..3 {
        document(&get(&server, "/v4/web-endpoint"));
    }
    let refused = (0..100)
        .map(|_| get(&server, "/v4/web-endpoint"))
        .find(|response| response.status != 200)
        .expect("a request over the limit");
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(refused.text(), "You have reached maximum request limit.");
    // Each path has its own allowance, and so has each caller.
    document(&get(&server, "/v4/web-endpoint/task"));
    document(&get_from(&server, "127.0.0.2", "/v4/web-endpoint"));
}

#[test]
fn stats_of_a_given_process_come_from_its_cgroup() {
    let pid = std::process::id();
    let config = format!(
        r#"
[[tasks]]
family = "real"
[[tasks.containers]]
name = "measured"
endpoint-id = "measured-endpoint"
pid = {pid}
[[tasks.containers]]
name = "other"
endpoint-id = "other-endpoint"

[[tasks]]
family = "gone"
[[tasks.containers]]
name = "missing"
endpoint-id = "missing-endpoint"
cgroup = "/imds-test-no-such-cgroup"
"#
    );
    let server = start(&config);
    let first = document(&get(&server, "/v4/measured-endpoint/stats"));
    // The first sample has no previous one, as Docker's one-shot stats.
    assert_eq!(first["preread"], "0001-01-01T00:00:00Z");
    assert_eq!(first["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    let total = |stats: &Value| {
        stats["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap()
    };
    assert!(total(&first) > 0, "{first}");
    assert!(first["memory_stats"]["usage"].as_u64().unwrap() > 0);
    assert!(first["memory_stats"]["limit"].as_u64().unwrap() > 0);
    // Burn some CPU in this process: the cgroup's counter moves.
    let started = std::time::Instant::now();
    let mut spin = 0u64;
    while started.elapsed() < std::time::Duration::from_millis(200) {
        spin = spin.wrapping_add(std::hint::black_box(1));
    }
    assert!(spin > 0);
    let second = document(&get(&server, "/v4/measured-endpoint/stats"));
    assert!(total(&second) > total(&first), "{first} then {second}");
    assert_eq!(second["precpu_stats"], first["cpu_stats"]);
    assert_eq!(second["preread"], first["read"]);
    assert!(
        second["system_cpu_usage"].is_null()
            && second["cpu_stats"]["system_cpu_usage"].as_u64().unwrap()
                >= first["cpu_stats"]["system_cpu_usage"].as_u64().unwrap()
    );
    // Its neighbour keeps made-up numbers; the task's stats hold both.
    let all = document(&get(&server, "/v4/other-endpoint/task/stats"));
    assert_eq!(all.as_object().unwrap().len(), 2);

    // A cgroup that cannot be read: the agent's stats fetch failure.
    let missing = document(&get(&server, "/v4/missing-endpoint"));
    let response = get(&server, "/v4/missing-endpoint/stats");
    assert_eq!(response.status, 500, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.text(),
        format!(
            "\"Unable to get container stats for: {}\"",
            missing["DockerId"].as_str().unwrap()
        )
    );
    // In the task's stats, such a container is `{}`, as the agent writes it.
    let all = document(&get(&server, "/v4/missing-endpoint/task/stats"));
    assert_eq!(
        all[missing["DockerId"].as_str().unwrap()],
        serde_json::json!({})
    );
}

/// The audit log's lines, once the server has stopped (and written them all).
fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_task_registered_through_ctl_is_served_at_once_kept_across_restarts_and_dropped_when_deregistered(
) {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let audit = files.path().join("audit.log");
    let configured = "[[tasks]]\nfamily = \"configured\"\naddresses = [\"127.0.0.5\"]\n\
                      [[tasks.containers]]\nname = \"c\"\nendpoint-id = \"configured-endpoint\"\n";
    let start_with = || {
        server()
            .state_dir(state.path())
            .config(configured)
            .args(&[
                "--container-listen",
                "127.0.0.1:0",
                "--audit-log",
                audit.to_str().unwrap(),
            ])
            .start()
    };
    let task_file = files.path().join("task.toml");
    std::fs::write(
        &task_file,
        "family = \"api\"\nrole = \"api-task\"\ncredentials-id = \"api-credentials\"\n\
         addresses = [\"127.0.0.6\"]\n[[containers]]\nname = \"web\"\nendpoint-id = \"api-endpoint\"\n",
    )
    .unwrap();

    let server = start_with();
    assert_eq!(get(&server, "/v4/api-endpoint").status, 404);
    let registered: Value = serde_json::from_str(&server.ctl_ok(&[
        "--output",
        "json",
        "register-task",
        "--file",
        task_file.to_str().unwrap(),
    ]))
    .unwrap();
    let task_id = registered["TaskId"].as_str().unwrap().to_owned();
    assert_hex(&task_id, 32);
    assert_eq!(registered["Origin"], "api");
    assert_eq!(
        registered["Role"]["CredentialsRelativeUri"],
        "/v2/credentials/api-credentials"
    );
    assert_eq!(
        registered["Containers"][0]["MetadataUriV4Path"],
        "/v4/api-endpoint"
    );

    // Served at once: its metadata, and its role's credentials.
    let before = document(&get(&server, "/v4/api-endpoint/task"));
    assert_eq!(before["TaskARN"], registered["TaskARN"]);
    assert_eq!(before["Family"], "api");
    let credentials = get(&server, "/v2/credentials/api-credentials");
    let body = document(&credentials);
    assert!(
        body["RoleArn"]
            .as_str()
            .unwrap()
            .ends_with(":role/api-task"),
        "{body}"
    );
    assert!(body["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    // From its own address it is that task, and reads only its own containers.
    assert_eq!(
        document(&get_from(&server, "127.0.0.6", "/v4/api-endpoint"))["Name"],
        "web"
    );
    assert_eq!(
        get_from(&server, "127.0.0.6", "/v4/configured-endpoint").status,
        404
    );

    // Another task's address: 409, through ctl and the API.
    let duplicate = files.path().join("duplicate.json");
    std::fs::write(
        &duplicate,
        r#"{"family": "dup", "addresses": ["127.0.0.5"], "containers": [{"name": "x"}]}"#,
    )
    .unwrap();
    let output = server.ctl(&["register-task", "--file", duplicate.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Conflict"), "{stderr}");
    assert!(stderr.contains("127.0.0.5"), "{stderr}");
    let response = server.admin(
        "POST",
        "/v1/tasks",
        Some(r#"{"addresses": ["127.0.0.6"], "containers": [{"name": "x"}]}"#),
    );
    assert_eq!(response.status, 409, "{}", response.text());
    // Bad input: 400 naming the key; a file that is no task description: a usage error.
    let response = server.admin(
        "POST",
        "/v1/tasks",
        Some(r#"{"launch-type": "LAMBDA", "containers": [{"name": "x"}]}"#),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    let error: Value = serde_json::from_str(&response.text()).unwrap();
    assert_eq!(error["Code"], "InvalidParameterValue");
    assert!(
        error["Message"].as_str().unwrap().contains("launch-type"),
        "{error}"
    );
    let bad = files.path().join("bad.toml");
    std::fs::write(&bad, "famly = \"x\"\n").unwrap();
    let output = server.ctl(&["register-task", "--file", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("famly"), "{stderr}");

    let listed = server.ctl_ok(&["describe-tasks"]);
    assert!(listed.contains(&task_id), "{listed}");
    assert!(listed.contains("configured"), "{listed}");
    server.stop();

    // A restart keeps it, with the same values, beside the configured task.
    let server = start_with();
    let after = document(&get(&server, "/v4/api-endpoint/task"));
    assert_eq!(after, before, "the same task after a restart");
    document(&get(&server, "/v2/credentials/api-credentials"));
    document(&get(&server, "/v4/configured-endpoint"));

    // Deregistered: no longer served, its credentials id unknown as ECS answers it.
    let output = server.ctl_ok(&["deregister-task", "--task-id", &task_id]);
    assert!(output.contains("deregistered"), "{output}");
    let response = get(&server, "/v2/credentials/api-credentials");
    assert_eq!(response.status, 400);
    assert!(
        response.text().contains("InvalidIdInRequest"),
        "{}",
        response.text()
    );
    assert_eq!(get(&server, "/v4/api-endpoint").status, 404);
    let output = server.ctl(&["describe-tasks", "--task-id", &task_id]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("InvalidTaskID.NotFound"), "{stderr}");
    server.stop();

    // And it stays deregistered.
    let server = start_with();
    assert_eq!(get(&server, "/v4/api-endpoint").status, 404);
    document(&get(&server, "/v4/configured-endpoint"));
    server.stop();

    let lines = audit_lines(&audit);
    let calls: Vec<(&str, u64)> = lines
        .iter()
        .filter(|line| line["event"] == "control-api-call")
        .map(|line| {
            (
                line["operation"].as_str().unwrap(),
                line["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(calls.contains(&("RegisterTask", 201)), "{calls:?}");
    assert!(calls.contains(&("RegisterTask", 409)), "{calls:?}");
    assert!(calls.contains(&("RegisterTask", 400)), "{calls:?}");
    let deregistered = lines
        .iter()
        .find(|line| line["operation"] == "DeregisterTask")
        .expect("the deregistration is audited");
    assert_eq!(deregistered["task_id"], task_id.as_str());
    assert_eq!(deregistered["status"], 204);
}

/// `imds ctl update-task` (`PATCH /v1/tasks/{id}`): the keys a file gives replace the task's,
/// served at once and kept across a restart; its generated values stay, a container added gets
/// its own; a change that would take another task's address is refused and changes nothing.
#[test]
fn a_task_changed_through_ctl_is_served_at_once_with_its_generated_values_kept() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let configured = "[[tasks]]\nfamily = \"configured\"\naddresses = [\"127.0.0.5\"]\n\
                      [[tasks.containers]]\nname = \"c\"\nendpoint-id = \"configured-endpoint\"\n";
    let start_with = || {
        server()
            .state_dir(state.path())
            .config(configured)
            .args(&["--container-listen", "127.0.0.1:0"])
            .start()
    };
    let task_file = files.path().join("task.toml");
    std::fs::write(
        &task_file,
        "family = \"api\"\nrevision = 1\naddresses = [\"127.0.0.6\"]\n\
         [[containers]]\nname = \"web\"\nendpoint-id = \"web-endpoint\"\n",
    )
    .unwrap();
    let server = start_with();
    let registered = ctl_json(
        &server,
        &["register-task", "--file", task_file.to_str().unwrap()],
    );
    let task_id = registered["TaskId"].as_str().unwrap().to_owned();
    let web_docker_id = registered["Containers"][0]["DockerId"].clone();
    assert!(web_docker_id.is_string(), "{registered}");

    // A TOML patch: a new revision, and a second container beside the first.
    let patch = files.path().join("patch.toml");
    std::fs::write(
        &patch,
        "revision = 2\n[[containers]]\nname = \"web\"\nendpoint-id = \"web-endpoint\"\n\
         [[containers]]\nname = \"sidecar\"\nendpoint-id = \"sidecar-endpoint\"\n",
    )
    .unwrap();
    let changed = ctl_json(
        &server,
        &[
            "update-task",
            "--task-id",
            &task_id,
            "--file",
            patch.to_str().unwrap(),
        ],
    );
    assert_eq!(changed["TaskId"], task_id.as_str());
    assert_eq!(changed["TaskARN"], registered["TaskARN"]);
    assert_eq!(changed["Revision"], 2);
    assert_eq!(changed["Family"], "api");
    assert_eq!(changed["Containers"][0]["DockerId"], web_docker_id);
    assert_eq!(changed["Containers"].as_array().unwrap().len(), 2);
    let task = document(&get(&server, "/v4/sidecar-endpoint/task"));
    assert_eq!(task["Revision"], "2");
    assert_eq!(task["Containers"].as_array().unwrap().len(), 2);

    // JSON: null removes a key (the addresses), and another task's address is refused.
    let taken = files.path().join("taken.json");
    std::fs::write(&taken, r#"{"addresses": ["127.0.0.5"]}"#).unwrap();
    let output = server.ctl(&[
        "update-task",
        "--task-id",
        &task_id,
        "--file",
        taken.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("127.0.0.5"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        document(&get_from(&server, "127.0.0.6", "/v4/web-endpoint"))["Name"],
        "web"
    );
    let unknown = server.ctl(&[
        "update-task",
        "--task-id",
        "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        "--file",
        taken.to_str().unwrap(),
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("InvalidTaskID.NotFound"));
    let removed = files.path().join("removed.json");
    std::fs::write(&removed, r#"{"addresses": null}"#).unwrap();
    let changed = ctl_json(
        &server,
        &[
            "update-task",
            "--task-id",
            &task_id,
            "--file",
            removed.to_str().unwrap(),
        ],
    );
    assert_eq!(changed["Addresses"], serde_json::json!([]));
    drop(server);

    // Kept across a restart.
    let server = start_with();
    let task = document(&get(&server, "/v4/sidecar-endpoint/task"));
    assert_eq!(task["Revision"], "2");
    assert_eq!(task["TaskARN"], registered["TaskARN"]);
}

/// `imds ctl --output json ARGS...`, its answer parsed.
#[track_caller]
fn ctl_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&server.ctl_ok(&all)).unwrap()
}
