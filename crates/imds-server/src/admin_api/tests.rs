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
    assert_eq!(paths.len(), 13);
    for (template, item) in paths {
        let path = template
            .replace("{instance_id}", "i-0123456789abcdef0")
            .replace("{event_id}", "spot-interruption")
            .replace("{role_name}", "app");
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
