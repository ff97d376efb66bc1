//! Router-level tests: `docs/admin-api.openapi.json` is the generated document, and it and the
//! routes agree.

use std::sync::Arc;

use axum::body::Body as AxumBody;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use imds_credentials::generated::GeneratedProvider;
use tower::ServiceExt;

use crate::{admin_api, registry::Settings};

const OPENAPI: &str = include_str!("../../../../docs/admin-api.openapi.json");
const TOKEN: &str = "test-token";

async fn router() -> (axum::Router, tempfile::TempDir) {
    let (registry, directory) = crate::registry::sqlite_tests::on_sqlite(
        Arc::new(GeneratedProvider::default()),
        Settings::default(),
    )
    .await;
    let registry = Arc::new(registry);
    (
        admin_api::router(registry, admin_api::AdminToken::new(TOKEN)),
        directory,
    )
}

async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(AxumBody::from(body.to_owned()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// The committed document is what the code generates; `UPDATE_EXPECT=1 cargo test -p imds-server
/// openapi` rewrites it.
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    expect_test::expect_file!["../../../../docs/admin-api.openapi.json"]
        .assert_eq(&admin_api::openapi_json());
}

#[test]
fn every_authenticated_operation_documents_401_and_an_operation_id() {
    let document: serde_json::Value = serde_json::from_str(&admin_api::openapi_json()).unwrap();
    for (template, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["operationId"].is_string(),
                "{method} {template} has no operationId"
            );
            let public = operation["security"] == serde_json::json!([{}]);
            assert_eq!(
                operation["responses"]["401"].is_object(),
                !public,
                "{method} {template}: 401 is documented exactly when a token is needed"
            );
        }
    }
}

#[tokio::test]
async fn every_documented_route_exists_and_no_other_method_does() {
    let (router, _directory) = router().await;
    let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 22);
    for (template, item) in paths {
        let path = template
            .replace("{instance_id}", "i-0123456789abcdef0")
            .replace("{event_id}", "spot-interruption")
            .replace("{role_name}", "app")
            .replace("{scenario_id}", "scenario-1")
            .replace("{task_id}", "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e")
            .replace("{association_id}", "a-0123456789abcdefg");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let (status, body) = call(&router, method.clone(), &path, "{}").await;
            if documented {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is documented but not routed"
                );
                assert!(
                    !(status == StatusCode::NOT_FOUND && body["Code"] == "NotFound"),
                    "{method} {template} is documented but not routed"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is routed but not documented"
                );
            }
        }
    }
    let (status, body) = call(&router, Method::GET, "/v2/instances", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["Code"], "NotFound");
}

#[tokio::test]
async fn routes_listed_in_the_module_header_are_the_documented_ones() {
    let header = include_str!("mod.rs");
    let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    for (template, item) in document["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| *key != "parameters")
        {
            let line = format!("`{} {template}`", method.to_uppercase());
            assert!(
                header.contains(&line),
                "{line} is missing from the admin_api module header"
            );
        }
    }
}

#[tokio::test]
async fn routes_in_the_module_header_are_documented() {
    let header = include_str!("mod.rs");
    let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let mut listed = 0;
    for line in header
        .lines()
        .filter_map(|line| line.strip_prefix("//! - `"))
    {
        let Some((route, _)) = line.split_once('`') else {
            continue;
        };
        let (method, template) = route.split_once(' ').unwrap();
        assert!(
            document["paths"][template][method.to_lowercase()].is_object(),
            "{method} {template} is in the module header but not documented"
        );
        listed += 1;
    }
    let documented: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| *key != "parameters")
                .count()
        })
        .sum();
    assert_eq!(
        listed, documented,
        "the module header and the document list different routes"
    );
}

/// Polls `GET /v1/scenarios/{id}` until the scenario has ended.
async fn ended(router: &axum::Router, scenario_id: &str) -> serde_json::Value {
    let path = format!("/v1/scenarios/{scenario_id}");
    for _ in 0..400 {
        let (status, run) = call(router, Method::GET, &path, "").await;
        assert_eq!(status, StatusCode::OK, "{run}");
        if run["State"] != "running" {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("scenario {scenario_id} did not end");
}

const SERVED: &str = r#"{"instance-id": "i-0123456789abcdef0", "addresses": ["10.1.0.5"]}"#;

#[tokio::test]
async fn scenario_steps_send_keys_and_register_change_and_remove_tasks_and_associations() {
    let (router, _directory) = router().await;
    let (status, body) = call(&router, Method::POST, "/v1/instances", SERVED).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let task_id = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    let scenario = serde_json::json!({
        "name": "everything else",
        "instance-id": "i-0123456789abcdef0",
        "steps": [
            {"at": 0, "send-ssh-public-key": {"InstanceOSUser": "ec2-user", "SSHPublicKey":
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host"}},
            {"at": 0, "register-task": {"task-id": task_id, "containers": [{"name": "app"}]}},
            {"at": 0, "update-task": {"task-id": task_id, "known-status": "STOPPED"}},
            {"at": 0, "create-pod-identity-association": {"Namespace": "shop",
                "ServiceAccount": "cart", "Role": "app"}},
            {"at": 0, "update-pod-identity-association": {"Namespace": "shop",
                "ServiceAccount": "cart", "Role": "other"}},
            {"at": 0, "deregister-task": task_id},
            {"at": 0, "delete-pod-identity-association": {"Namespace": "shop",
                "ServiceAccount": "cart"}},
            {"at": 0, "deregister-task": task_id},
        ]
    });
    let (status, run) = call(
        &router,
        Method::POST,
        "/v1/scenarios",
        &scenario.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run = ended(&router, "scenario-1").await;
    let steps = run["Steps"].as_array().unwrap();
    let states: Vec<&str> = steps
        .iter()
        .map(|step| step["State"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["done", "done", "done", "done", "done", "done", "done", "failed"],
        "{run}"
    );
    assert_eq!(steps[0]["Answer"]["Success"], true);
    assert_eq!(steps[0]["InstanceId"], "i-0123456789abcdef0");
    assert_eq!(steps[1]["Answer"]["TaskId"], task_id);
    assert_eq!(steps[1]["InstanceId"], serde_json::Value::Null);
    assert_eq!(steps[2]["Answer"]["Description"]["known-status"], "STOPPED");
    let association_id = steps[3]["Answer"]["AssociationId"].as_str().unwrap();
    assert_eq!(steps[4]["Answer"]["AssociationId"], association_id);
    assert_eq!(steps[4]["Answer"]["Role"], "other");
    assert_eq!(steps[4]["InstanceId"], serde_json::Value::Null);
    // The second deregistration fails as the route answers for a task that is not there.
    assert_eq!(steps[7]["Error"]["Code"], "InvalidTaskID.NotFound");
    let (_, tasks) = call(&router, Method::GET, "/v1/tasks", "").await;
    assert_eq!(tasks["Tasks"], serde_json::json!([]));
    let (_, associations) = call(&router, Method::GET, "/v1/pod-identity/associations", "").await;
    assert_eq!(associations["Associations"], serde_json::json!([]));
}

#[tokio::test]
async fn a_scenario_makes_its_calls_in_order_and_records_each_step() {
    let (router, _directory) = router().await;
    let (status, body) = call(&router, Method::POST, "/v1/instances", SERVED).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let scenario = serde_json::json!({
        "name": "outage then spot",
        "instance-id": "i-0123456789abcdef0",
        "steps": [
            {"at": 0, "until": 5, "inject-fault": {"Kind": "status", "Status": 503, "FaultId": "outage"}},
            {"at": "1s", "post-event": {"Type": "spot-interruption"}},
            {"at": "1s", "cancel-event": "instance-event-0000000000000000a"},
            {"at": "1s", "modify-metadata-options": {"HttpTokens": "required"}},
            {"at": "1s", "put-role": {"name": "app", "lifetime-seconds": 900}},
            {"at": "1s", "delete-role": "app"},
        ]
    });
    let (status, run) = call(
        &router,
        Method::POST,
        "/v1/scenarios",
        &scenario.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["ScenarioId"], "scenario-1");
    assert_eq!(run["State"], "running");
    let run = ended(&router, "scenario-1").await;
    assert_eq!(run["State"], "failed", "{run}");
    let steps = run["Steps"].as_array().unwrap();
    let states: Vec<&str> = steps
        .iter()
        .map(|step| step["State"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "done", "failed", "done", "done", "done"]);
    let mut previous = 0;
    for step in steps {
        let elapsed = step["ElapsedMs"].as_u64().unwrap();
        assert!(elapsed >= step["AtMs"].as_u64().unwrap(), "{step}");
        assert!(elapsed >= previous, "{run}");
        previous = elapsed;
    }
    // Each step's answer is its call's: the fault with the Duration `until` gave it, the event.
    assert_eq!(steps[0]["Answer"]["FaultId"], "outage");
    assert_eq!(steps[0]["Step"]["inject-fault"]["Duration"], 5);
    assert_eq!(steps[1]["Answer"]["EventId"], "spot-interruption");
    assert_eq!(steps[2]["Error"]["Code"], "InvalidEventID.NotFound");
    assert_eq!(
        steps[3]["Answer"]["InstanceMetadataOptions"]["HttpTokens"],
        "required"
    );
    assert_eq!(steps[4]["Answer"]["RoleName"], "app");
    assert_eq!(steps[4]["InstanceId"], serde_json::Value::Null);
    assert_eq!(steps[5]["Answer"], serde_json::json!({}));
    let (status, _) = call(&router, Method::GET, "/v1/roles/app", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The calls were the control API's: what they did shows there.
    let (_, faults) = call(
        &router,
        Method::GET,
        "/v1/instances/i-0123456789abcdef0/faults",
        "",
    )
    .await;
    assert_eq!(faults["Faults"][0]["FaultId"], "outage");
    let (_, events) = call(
        &router,
        Method::GET,
        "/v1/instances/i-0123456789abcdef0/events",
        "",
    )
    .await;
    assert_eq!(events["Events"][0]["EventId"], "spot-interruption");
    let (status, list) = call(&router, Method::GET, "/v1/scenarios", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["Scenarios"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_stopped_scenario_skips_the_steps_not_yet_run() {
    let (router, _directory) = router().await;
    let (status, body) = call(&router, Method::POST, "/v1/instances", SERVED).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let scenario = r#"{"name": "long", "instance-id": "i-0123456789abcdef0", "steps": [
        {"at": 0, "clear-faults": true}, {"at": "1h", "clear-faults": true}]}"#;
    let (status, run) = call(&router, Method::POST, "/v1/scenarios", scenario).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["ScenarioId"].as_str().unwrap().to_owned();
    let path = format!("/v1/scenarios/{id}");
    for _ in 0..400 {
        let (_, run) = call(&router, Method::GET, &path, "").await;
        if run["Steps"][0]["State"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, run) = call(&router, Method::POST, &format!("{path}/stop"), "").await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["State"], "stopped");
    assert_eq!(run["Steps"][0]["State"], "done");
    assert_eq!(run["Steps"][1]["State"], "skipped");
    assert!(run["EndedAt"].is_string(), "{run}");
    let (status, body) = call(&router, Method::POST, "/v1/scenarios/scenario-9/stop", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["Code"], "InvalidScenarioID.NotFound");
}

#[tokio::test]
async fn an_invalid_scenario_is_refused_whole_naming_the_key() {
    let (router, _directory) = router().await;
    let (status, body) = call(&router, Method::POST, "/v1/instances", SERVED).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (scenario, expect) in [
        (
            r#"{"name": "x", "steps": [{"at": 0, "clear-faults": true}]}"#,
            "steps[0].instance-id: give the instance",
        ),
        (
            r#"{"name": "x", "instance-id": "i-0000000000000000f", "steps": [{"at": 0, "clear-faults": true}]}"#,
            "steps[0].instance-id: the instance ID 'i-0000000000000000f' is not served here",
        ),
        (
            r#"{"name": "x", "instance-id": "i-0123456789abcdef0", "steps": [{"at": 0, "clear-faults": true}, {"at": "later", "clear-faults": true}]}"#,
            "steps[1].at: \"later\" is not a delay",
        ),
        (
            r#"{"name": "x", "instance-id": "i-0123456789abcdef0", "steps": [{"at": 0, "clear-faults": true, "after": 1}]}"#,
            "unknown field `after`",
        ),
        (
            r#"{"name": "x", "steps": [{"at": 0, "put-role": {"name": "app", "provider": "AAA"}}]}"#,
            "steps[0].put-role.provider: \"AAA\" is not a provider",
        ),
        (
            r#"{"name": "x", "steps": [{"at": 0, "put-role": {"name": "app", "duration-seconds": 900}}]}"#,
            "steps[0].put-role.duration-seconds: not a setting of the \"generated\" provider",
        ),
    ] {
        let (status, body) = call(&router, Method::POST, "/v1/scenarios", scenario).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{scenario}: {body}");
        assert_eq!(body["Code"], "InvalidParameterValue");
        let message = body["Message"].as_str().unwrap();
        assert!(message.contains(expect), "{expect:?} not in {message:?}");
    }
    // Nothing ran: no scenario was started and no step's call was made.
    let (_, list) = call(&router, Method::GET, "/v1/scenarios", "").await;
    assert_eq!(list["Scenarios"].as_array().unwrap().len(), 0);
}

/// The control API and the container listener of one server, sharing its task table; the
/// control API admits `TOKEN` (admin) and `viewer-token` (read-only).
async fn task_server() -> (
    axum::Router,
    axum::Router,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    let (registry, directory) = crate::registry::sqlite_tests::on_sqlite(
        Arc::new(GeneratedProvider::default()),
        Settings::default(),
    )
    .await;
    let tokens = tempfile::tempdir().unwrap();
    std::fs::write(tokens.path().join("viewer.read-only"), "viewer-token").unwrap();
    let state = admin_api::AdminState::new(Arc::new(registry), None);
    let mut endpoint = crate::container_api::tests::app_endpoint();
    endpoint.tasks = state.tasks.clone();
    let admitted = admin_api::Tokens::new(
        Some(admin_api::AdminToken::new(TOKEN)),
        Some(tokens.path().to_owned()),
    );
    (
        admin_api::router_with(state, admitted),
        crate::container_api::router(endpoint),
        directory,
        tokens,
    )
}

async fn container_get(router: &axum::Router, path: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .uri(path)
        .body(AxumBody::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

const TASK: &str = r#"{"family": "shop", "role": "app", "credentials-id": "shop-credentials",
    "addresses": ["10.0.9.1"], "containers": [{"name": "web", "endpoint-id": "web-endpoint"}]}"#;

#[tokio::test]
async fn a_registered_task_is_served_at_once_and_a_deregistered_one_is_refused() {
    let (admin, container, _directory, _tokens) = task_server().await;
    assert_eq!(
        container_get(&container, "/v4/web-endpoint").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, task) = call(&admin, Method::POST, "/v1/tasks", TASK).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let task_id = task["TaskId"].as_str().unwrap().to_owned();
    assert_eq!(task_id.len(), 32);
    assert_eq!(
        task["TaskARN"],
        format!(
            "arn:aws:ecs:us-east-1:{}:task/default/{task_id}",
            task["TaskARN"].as_str().unwrap().split(':').nth(4).unwrap()
        )
    );
    assert_eq!(task["Origin"], "api");
    assert_eq!(task["Addresses"], serde_json::json!(["10.0.9.1"]));
    assert_eq!(
        task["Role"]["CredentialsRelativeUri"],
        "/v2/credentials/shop-credentials"
    );
    assert_eq!(
        task["Containers"][0]["MetadataUriV4Path"],
        "/v4/web-endpoint"
    );
    assert_eq!(task["Description"]["family"], "shop");

    let (status, body) = container_get(&container, "/v4/web-endpoint/task").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["TaskARN"], task["TaskARN"]);
    let (status, body) = container_get(&container, "/v2/credentials/shop-credentials").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"AccessKeyId\""), "{body}");

    let (status, list) = call(&admin, Method::GET, "/v1/tasks", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["Tasks"].as_array().unwrap().len(), 1);
    let (status, one) = call(&admin, Method::GET, &format!("/v1/tasks/{task_id}"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, task);

    let (status, _) = call(&admin, Method::DELETE, &format!("/v1/tasks/{task_id}"), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The last task gone, its ids are answered as the agent answers unknown ones.
    let (status, body) = container_get(&container, "/v2/credentials/shop-credentials").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("InvalidIdInRequest"), "{body}");
    assert_eq!(
        container_get(&container, "/v4/web-endpoint").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = call(&admin, Method::GET, &format!("/v1/tasks/{task_id}"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["Code"], "InvalidTaskID.NotFound");
    let (status, _) = call(&admin, Method::DELETE, &format!("/v1/tasks/{task_id}"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn task_writes_are_refused_naming_the_key_or_the_conflict() {
    let (admin, _container, _directory, _tokens) = task_server().await;
    let (status, _) = call(&admin, Method::POST, "/v1/tasks", TASK).await;
    assert_eq!(status, StatusCode::CREATED);
    for (body, key) in [
        (
            r#"{"family": "no spaces", "containers": [{"name": "a"}]}"#,
            "family",
        ),
        (
            r#"{"famly": "shop", "containers": [{"name": "a"}]}"#,
            "famly",
        ),
        (r#"{"family": "shop"}"#, "containers"),
        (
            r#"{"addresses": ["not-an-address"], "containers": [{"name": "a"}]}"#,
            "addresses",
        ),
        (
            r#"{"revision": "seven", "containers": [{"name": "a"}]}"#,
            "revision",
        ),
    ] {
        let (status, answer) = call(&admin, Method::POST, "/v1/tasks", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["Code"], "InvalidParameterValue", "{body}");
        assert!(
            answer["Message"].as_str().unwrap().contains(key),
            "{body}: {answer}"
        );
    }
    for body in [
        r#"{"addresses": ["10.0.9.1"], "containers": [{"name": "a"}]}"#,
        r#"{"credentials-id": "shop-credentials", "role": "app", "containers": [{"name": "a"}]}"#,
        r#"{"containers": [{"name": "a", "endpoint-id": "web-endpoint"}]}"#,
    ] {
        let (status, answer) = call(&admin, Method::POST, "/v1/tasks", body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {answer}");
        assert_eq!(answer["Code"], "Conflict");
    }
    let (_, list) = call(&admin, Method::GET, "/v1/tasks", "").await;
    let task_id = list["Tasks"][0]["TaskId"].as_str().unwrap().to_owned();
    let (status, answer) = call(
        &admin,
        Method::POST,
        "/v1/tasks",
        &format!(r#"{{"task-id": "{task_id}", "containers": [{{"name": "a"}}]}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // A host to register on, without fleet mode.
    let (status, answer) = call(
        &admin,
        Method::POST,
        "/v1/tasks?host-id=hv-2",
        r#"{"containers": [{"name": "a"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().contains("host-id"),
        "{answer}"
    );
    let (_, list) = call(&admin, Method::GET, "/v1/tasks", "").await;
    assert_eq!(
        list["Tasks"].as_array().unwrap().len(),
        1,
        "nothing else was registered"
    );
}

#[tokio::test]
async fn a_read_only_token_reads_tasks_and_changes_none() {
    let (admin, _container, _directory, _tokens) = task_server().await;
    let (status, task) = call(&admin, Method::POST, "/v1/tasks", TASK).await;
    assert_eq!(status, StatusCode::CREATED);
    let task_id = task["TaskId"].as_str().unwrap();
    let as_viewer = |method: Method, path: String, body: &'static str| {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer viewer-token")
            .header("content-type", "application/json")
            .body(AxumBody::from(body))
            .unwrap();
        admin.clone().oneshot(request)
    };
    let response = as_viewer(Method::GET, "/v1/tasks".to_owned(), "")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = as_viewer(Method::GET, format!("/v1/tasks/{task_id}"), "")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = as_viewer(Method::DELETE, format!("/v1/tasks/{task_id}"), "")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = as_viewer(
        Method::POST,
        "/v1/tasks".to_owned(),
        r#"{"containers": [{"name": "a"}]}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, list) = call(&admin, Method::GET, "/v1/tasks", "").await;
    assert_eq!(list["Tasks"].as_array().unwrap().len(), 1);
}

/// A token's fields are checked as the document states them, lengths in characters; a valid
/// request on a server with no key to mint with is answered 409.
#[tokio::test]
async fn service_account_token_requests_are_checked_as_documented() {
    let (router, _directory) = router().await;
    let mint = "/v1/pod-identity/service-account-tokens";
    let body = |audience: &str| {
        serde_json::json!({"Namespace": "shop", "ServiceAccount": "cart", "Audience": audience})
            .to_string()
    };
    // 255 two-byte characters: 510 bytes, within the documented 255.
    let (status, answer) = call(&router, Method::POST, mint, &body(&"é".repeat(255))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["Code"], "IncorrectState");
    let (status, answer) = call(&router, Method::POST, mint, &body(&"é".repeat(256))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().starts_with("Audience"),
        "{answer}"
    );
    let refused = serde_json::json!({"Namespace": "shop", "ServiceAccount": "cart",
        "ExpirationSeconds": 31_536_001});
    let (status, answer) = call(&router, Method::POST, mint, &refused.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}
