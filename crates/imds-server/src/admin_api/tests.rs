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
    assert_eq!(paths.len(), 17);
    for (template, item) in paths {
        let path = template
            .replace("{instance_id}", "i-0123456789abcdef0")
            .replace("{event_id}", "spot-interruption")
            .replace("{role_name}", "app")
            .replace("{scenario_id}", "scenario-1");
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
