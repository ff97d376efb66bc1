//! The control API against its own document (`docs/admin-api.openapi.json`): every operation is
//! called on a running server until it has given each answer the document lists (but those only
//! a failing store or a concurrent change can cause), and every answer's status is documented
//! for its operation and its body validates against the documented schema.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{server, Response, Server};

const DOCUMENT: &str = include_str!("../../../../docs/admin-api.openapi.json");

/// Answers no request of this test can cause, with why.
const NOT_CAUSED: &[(&str, &str, &str, &str)] = &[
    ("*", "*", "500", "the store or the server failing"),
    (
        "*",
        "*",
        "503",
        "the store unreachable (the fleet tests stop PostgreSQL)",
    ),
    (
        "put",
        "/v1/instances/{instance_id}/metadata-options",
        "409",
        "another write to the instance between its read and its write",
    ),
    (
        "post",
        "/v1/instances/{instance_id}/events",
        "409",
        "another write to the instance between its read and its write",
    ),
];

/// Calls the server and checks each answer against the document.
struct Checker<'a> {
    server: &'a Server,
    document: Value,
    /// `(method, template, status)` of every answer seen.
    seen: BTreeSet<(String, String, String)>,
}

impl<'a> Checker<'a> {
    fn new(server: &'a Server) -> Checker<'a> {
        Checker {
            server,
            document: serde_json::from_str(DOCUMENT).unwrap(),
            seen: BTreeSet::new(),
        }
    }

    /// `method path` (an instance of `template`) with the right token and `body`; checks the
    /// answer and returns it.
    #[track_caller]
    fn call(&mut self, method: &str, template: &str, path: &str, body: Option<Value>) -> Response {
        let body = body.map(|body| body.to_string());
        let response = self
            .server
            .admin(&method.to_uppercase(), path, body.as_deref());
        self.check(method, template, &response);
        response
    }

    /// `response` is documented for `method template` and its body is of the documented schema.
    #[track_caller]
    fn check(&mut self, method: &str, template: &str, response: &Response) {
        let status = response.status.to_string();
        let operation = &self.document["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let documented = &operation["responses"][&status];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which is not documented for it: {}",
            String::from_utf8_lossy(&response.body)
        );
        self.seen
            .insert((method.to_owned(), template.to_owned(), status.clone()));
        let Some(content) = documented["content"].as_object() else {
            assert!(
                response.body.is_empty(),
                "{method} {template} {status} is documented without a body"
            );
            return;
        };
        let content_type = response.header("content-type").unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap().trim();
        let Some(media) = content.get(media_type) else {
            panic!("{method} {template} {status}: {content_type} is not a documented content type");
        };
        if media_type != "application/json" {
            return;
        }
        let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|error| {
            panic!("{method} {template} {status}: the body is not JSON: {error}")
        });
        let mut schema = media["schema"].clone();
        schema["components"] = self.document["components"].clone();
        let validator = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|error| panic!("{method} {template} {status}: bad schema: {error}"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: the body does not match its schema:\n{}\n{body:#}",
            errors.join("\n")
        );
    }

    /// The errors of `value` against the component schema `name`.
    fn errors(&self, name: &str, value: &Value) -> usize {
        let schema = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": self.document["components"],
        });
        jsonschema::draft202012::new(&schema)
            .unwrap()
            .iter_errors(value)
            .count()
    }

    /// Every documented answer was seen, but those `NOT_CAUSED` lists.
    fn assert_every_answer_seen(&self) {
        let mut missing = Vec::new();
        for (template, item) in self.document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for status in operation["responses"].as_object().unwrap().keys() {
                    let excused = NOT_CAUSED.iter().any(|(m, t, s, _)| {
                        (*m == "*" || m == method) && (*t == "*" || t == template) && s == status
                    });
                    let key = (method.clone(), template.clone(), status.clone());
                    if !excused && !self.seen.contains(&key) {
                        missing.push(format!("{method} {template} {status}"));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "documented answers this test never saw:\n{}",
            missing.join("\n")
        );
    }
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn every_answer_is_documented_and_of_its_schema() {
    let tokens = tempfile::tempdir().unwrap();
    std::fs::write(tokens.path().join("viewer.read-only"), "viewer-token").unwrap();
    let server = server()
        .args(&["--admin-tokens-dir", tokens.path().to_str().unwrap()])
        .start();
    let mut api = Checker::new(&server);
    // The schemas refuse what the server must not answer.
    let options = json!({"State": "applied", "HttpTokens": "required",
        "HttpPutResponseHopLimit": 64, "HttpEndpoint": "enabled", "HttpProtocolIpv6": "disabled",
        "InstanceMetadataTags": "disabled"});
    assert_eq!(api.errors("InstanceMetadataOptions", &options), 0);
    for (key, wrong) in [
        ("HttpPutResponseHopLimit", json!(65)),
        ("HttpTokens", json!("always")),
        ("State", json!("done")),
    ] {
        let mut wrong_options = options.clone();
        wrong_options[key] = wrong;
        assert_eq!(
            api.errors("InstanceMetadataOptions", &wrong_options),
            1,
            "{key}"
        );
    }
    let mut missing = options.clone();
    missing.as_object_mut().unwrap().remove("State");
    assert_eq!(api.errors("InstanceMetadataOptions", &missing), 1);
    const A: &str = "i-0aaaaaaaaaaaaaaa1";
    let a = format!("/v1/instances/{A}");
    let instances = "/v1/instances";
    let instance = "/v1/instances/{instance_id}";
    let options = "/v1/instances/{instance_id}/metadata-options";
    let events = "/v1/instances/{instance_id}/events";
    let cancel = "/v1/instances/{instance_id}/events/{event_id}/cancel";
    let complete = "/v1/instances/{instance_id}/events/{event_id}/complete";
    let roles = "/v1/roles";
    let role = "/v1/roles/{role_name}";
    let credentials = "/v1/instances/{instance_id}/roles/{role_name}/credentials";
    let faults = "/v1/instances/{instance_id}/faults";
    let fault = "/v1/instances/{instance_id}/faults/{fault_id}";

    // No token: 401 on every authenticated operation; /healthz needs none.
    let document = api.document.clone();
    for (template, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = template
                .replace("{instance_id}", A)
                .replace("{event_id}", "spot-interruption")
                .replace("{fault_id}", "fault-1")
                .replace("{role_name}", "app")
                .replace("{scenario_id}", "scenario-1")
                .replace("{task_id}", "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e");
            let response = server.admin_with(&method.to_uppercase(), &path, Some("{}"), None);
            api.check(method, template, &response);
            // A read-only token: 403 on every operation that needs the admin scope.
            if item[method]["responses"].get("403").is_some() {
                let response = server.admin_with(
                    &method.to_uppercase(),
                    &path,
                    Some("{}"),
                    Some("viewer-token"),
                );
                assert_eq!(response.status, 403, "{method} {template}");
                api.check(method, template, &response);
            }
        }
    }
    api.call("get", "/metrics", "/metrics", None);

    // Instances.
    let registered = api.call(
        "post",
        instances,
        instances,
        Some(json!({
            "instance-id": A, "addresses": ["127.0.0.2"], "iam": {"role-name": "app"},
            "tags": {"Name": "a"}, "metadata-options": {"http-tokens": "required"},
        })),
    );
    assert_eq!(registered.status, 201, "{registered:?}");
    api.call("post", instances, instances, Some(json!({"addresses": []})));
    api.call(
        "post",
        instances,
        instances,
        Some(json!({"addresses": ["127.0.0.2"]})),
    );
    api.call(
        "post",
        instances,
        "/v1/instances?host-id=elsewhere",
        Some(json!({"addresses": ["127.0.0.3"]})),
    );
    api.call("get", instances, instances, None);
    api.call("get", instance, &a, None);
    api.call("get", instance, "/v1/instances/i-0000000000000000f", None);
    api.call(
        "patch",
        instance,
        &a,
        Some(json!({"instance-type": "m5.large", "tags": null})),
    );
    api.call("patch", instance, &a, Some(json!(["not", "an", "object"])));
    api.call(
        "patch",
        instance,
        "/v1/instances/i-0000000000000000f",
        Some(json!({})),
    );
    let b = api.call(
        "post",
        instances,
        instances,
        Some(json!({"addresses": ["127.0.0.4"]})),
    );
    let b_id = json_of(&b)["InstanceId"].as_str().unwrap().to_owned();
    api.call(
        "patch",
        instance,
        &format!("/v1/instances/{b_id}"),
        Some(json!({"addresses": ["127.0.0.2"]})),
    );

    // Metadata options.
    let a_options = format!("{a}/metadata-options");
    api.call("get", options, &a_options, None);
    api.call(
        "get",
        options,
        "/v1/instances/i-0000000000000000f/metadata-options",
        None,
    );
    api.call(
        "put",
        options,
        &a_options,
        Some(json!({"HttpPutResponseHopLimit": 3, "InstanceMetadataTags": "enabled"})),
    );
    api.call("put", options, &a_options, Some(json!({})));
    api.call(
        "put",
        options,
        &a_options,
        Some(json!({"HttpPutResponseHopLimit": 65})),
    );
    api.call(
        "put",
        options,
        "/v1/instances/i-0000000000000000f/metadata-options",
        Some(json!({"HttpTokens": "optional"})),
    );

    // Events of every kind, listed, ended.
    let a_events = format!("{a}/events");
    for event in [
        json!({"Type": "spot-interruption", "Action": "stop", "In": 3600}),
        json!({"Type": "rebalance-recommendation", "In": "1h"}),
        json!({"Type": "target-lifecycle-state", "State": "InService"}),
        json!({"Type": "scheduled-maintenance", "Code": "instance-stop", "Description": "x"}),
    ] {
        let posted = api.call("post", events, &a_events, Some(event));
        assert_eq!(posted.status, 201, "{posted:?}");
    }
    let maintenance = api.call(
        "post",
        events,
        &a_events,
        Some(json!({"Type": "scheduled-maintenance", "Code": "system-reboot"})),
    );
    let maintenance_id = json_of(&maintenance)["EventId"]
        .as_str()
        .unwrap()
        .to_owned();
    api.call(
        "post",
        events,
        &a_events,
        Some(json!({"Type": "scheduled-maintenance"})),
    );
    api.call(
        "post",
        events,
        "/v1/instances/i-0000000000000000f/events",
        Some(json!({"Type": "rebalance-recommendation"})),
    );
    let listed = api.call("get", events, &a_events, None);
    assert_eq!(json_of(&listed)["Events"].as_array().unwrap().len(), 5);
    api.call(
        "get",
        events,
        "/v1/instances/i-0000000000000000f/events",
        None,
    );
    let end = |id: &str, how: &str| format!("{a}/events/{id}/{how}");
    api.call("post", complete, &end(&maintenance_id, "complete"), None);
    api.call("post", complete, &end(&maintenance_id, "complete"), None);
    api.call("post", cancel, &end(&maintenance_id, "cancel"), None);
    api.call(
        "post",
        complete,
        &end("spot-interruption", "complete"),
        None,
    );
    api.call("post", cancel, &end("spot-interruption", "cancel"), None);
    api.call("post", cancel, &end("spot-interruption", "cancel"), None);
    api.call("post", complete, &end("instance-event-0", "complete"), None);
    // The ended event is listed with its final status.
    api.call("get", events, &a_events, None);

    // Roles, and a role's credentials.
    let app = "/v1/roles/app";
    api.call("get", roles, roles, None);
    api.call("get", role, app, None);
    api.call(
        "put",
        role,
        app,
        Some(json!({"provider": "static", "access-key-id": "AKIAEXAMPLE",
                    "secret-access-key": "secret-of-the-test", "lifetime-seconds": 3600})),
    );
    api.call("put", role, app, Some(json!({"provider": "sts"})));
    api.call("put", role, "/v1/roles/not%20a%20role", Some(json!({})));
    api.call("get", roles, roles, None);
    let described = api.call("get", role, app, None);
    assert!(!String::from_utf8_lossy(&described.body).contains("secret-of-the-test"));
    let served = api.call(
        "get",
        credentials,
        &format!("{a}/roles/app/credentials"),
        None,
    );
    assert_eq!(json_of(&served)["AccessKeyId"], "AKIAEXAMPLE");
    api.call(
        "get",
        credentials,
        "/v1/instances/i-0000000000000000f/roles/app/credentials",
        None,
    );
    api.call(
        "get",
        credentials,
        &format!("{a}/roles/not%20a%20role/credentials"),
        None,
    );
    // A role whose STS refuses connections has no credentials to give.
    api.call(
        "put",
        role,
        "/v1/roles/unreachable",
        Some(
            json!({"provider": "sts", "role-arn": "arn:aws:iam::123456789012:role/unreachable",
                    "endpoint-url": "http://127.0.0.1:9", "region": "us-east-1"}),
        ),
    );
    api.call(
        "get",
        credentials,
        &format!("{a}/roles/unreachable/credentials"),
        None,
    );
    api.call("delete", role, app, None);
    api.call("delete", role, app, None);

    // Faults: injected, refused, listed, removed one by one and all at once.
    let a_faults = format!("{a}/faults");
    let unknown_faults = "/v1/instances/i-0000000000000000f/faults";
    let injected = api.call(
        "post",
        faults,
        &a_faults,
        Some(
            json!({"Kind": "status", "Status": 503, "Path": "meta-data/ami-id",
                    "FaultId": "busy", "Duration": "1h"}),
        ),
    );
    assert_eq!(injected.status, 201, "{injected:?}");
    let injected = api.call(
        "post",
        faults,
        &a_faults,
        Some(json!({"Kind": "latency", "LatencyMs": 1, "Count": 3})),
    );
    assert_eq!(injected.status, 201, "{injected:?}");
    api.call(
        "post",
        faults,
        &a_faults,
        Some(json!({"Kind": "close", "FaultId": "busy"})),
    );
    api.call("post", faults, &a_faults, Some(json!({"Kind": "status"})));
    api.call(
        "post",
        faults,
        unknown_faults,
        Some(json!({"Kind": "close"})),
    );
    let listed = api.call("get", faults, &a_faults, None);
    assert_eq!(json_of(&listed)["Faults"].as_array().unwrap().len(), 2);
    api.call("get", faults, unknown_faults, None);
    api.call("delete", fault, &format!("{a_faults}/busy"), None);
    api.call("delete", fault, &format!("{a_faults}/nothing"), None);
    api.call(
        "delete",
        fault,
        "/v1/instances/i-0000000000000000f/faults/busy",
        None,
    );
    let cleared = api.call("delete", faults, &a_faults, None);
    assert_eq!(json_of(&cleared)["Removed"], 1);
    api.call("delete", faults, unknown_faults, None);

    // EC2 Instance Connect: a key sent, one refused, an unknown instance.
    let ssh_keys = "/v1/instances/{instance_id}/ssh-public-keys";
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host";
    let sent = api.call(
        "post",
        ssh_keys,
        &format!("{a}/ssh-public-keys"),
        Some(json!({"InstanceOSUser": "ec2-user", "SSHPublicKey": key})),
    );
    assert_eq!(sent.status, 200, "{sent:?}");
    api.call(
        "post",
        ssh_keys,
        &format!("{a}/ssh-public-keys"),
        Some(json!({"InstanceOSUser": "not a user", "SSHPublicKey": key})),
    );
    api.call(
        "post",
        ssh_keys,
        "/v1/instances/i-0000000000000000f/ssh-public-keys",
        Some(json!({"InstanceOSUser": "ec2-user", "SSHPublicKey": key})),
    );

    // Scenarios: one started, listed, described and stopped; one refused; one unknown.
    let scenarios = "/v1/scenarios";
    let scenario = "/v1/scenarios/{scenario_id}";
    let started = api.call(
        "post",
        scenarios,
        scenarios,
        Some(json!({"name": "document", "instance-id": A, "steps": [
            {"at": 0, "post-event": {"Type": "rebalance-recommendation"}},
            {"at": "1h", "clear-faults": true},
        ]})),
    );
    assert_eq!(started.status, 201, "{started:?}");
    let scenario_path = format!(
        "/v1/scenarios/{}",
        json_of(&started)["ScenarioId"].as_str().unwrap()
    );
    api.call(
        "post",
        scenarios,
        scenarios,
        Some(json!({"name": "document", "steps": [{"at": 0}]})),
    );
    api.call("get", scenarios, scenarios, None);
    api.call("get", scenario, &scenario_path, None);
    let stop = "/v1/scenarios/{scenario_id}/stop";
    let stopped = api.call("post", stop, &format!("{scenario_path}/stop"), None);
    assert_eq!(json_of(&stopped)["State"], "stopped");
    api.call("get", scenario, "/v1/scenarios/scenario-99", None);
    api.call("post", stop, "/v1/scenarios/scenario-99/stop", None);
    // Stopped, it is still described.
    let described = api.call("get", scenario, &scenario_path, None);
    assert_eq!(json_of(&described)["State"], "stopped");

    // ECS tasks: one registered, listed, described and deregistered; refusals.
    let tasks = "/v1/tasks";
    let task = "/v1/tasks/{task_id}";
    let registered = api.call(
        "post",
        tasks,
        tasks,
        Some(json!({
            "family": "document", "role": "app", "addresses": ["127.0.0.7"],
            "tags": {"team": "web"},
            "containers": [{"name": "web", "ports": [{"container-port": 8080}]}],
        })),
    );
    assert_eq!(registered.status, 201, "{registered:?}");
    let task_path = format!(
        "/v1/tasks/{}",
        json_of(&registered)["TaskId"].as_str().unwrap()
    );
    api.call(
        "post",
        tasks,
        tasks,
        Some(json!({"addresses": ["127.0.0.7"], "containers": [{"name": "x"}]})),
    );
    let refused = api.call("post", tasks, tasks, Some(json!({"family": "document"})));
    assert_eq!(refused.status, 400, "{refused:?}");
    api.call("get", tasks, tasks, None);
    api.call("get", task, &task_path, None);
    // Changed: a merge patch; a bad one, another task's address, an unknown task.
    let changed = api.call("patch", task, &task_path, Some(json!({"revision": 2})));
    assert_eq!(changed.status, 200, "{changed:?}");
    let other = api.call(
        "post",
        tasks,
        tasks,
        Some(json!({"addresses": ["127.0.0.8"], "containers": [{"name": "y"}]})),
    );
    assert_eq!(other.status, 201, "{other:?}");
    let refused = api.call("patch", task, &task_path, Some(json!({"revision": "two"})));
    assert_eq!(refused.status, 400, "{refused:?}");
    let refused = api.call(
        "patch",
        task,
        &task_path,
        Some(json!({"addresses": ["127.0.0.8"]})),
    );
    assert_eq!(refused.status, 409, "{refused:?}");
    let unknown = api.call(
        "patch",
        task,
        "/v1/tasks/0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        Some(json!({"revision": 3})),
    );
    assert_eq!(unknown.status, 404, "{unknown:?}");
    api.call("delete", task, &task_path, None);
    api.call("get", task, &task_path, None);
    api.call("delete", task, &task_path, None);

    // EKS Pod Identity associations: one created, listed, described, changed and deleted;
    // refusals.
    let associations = "/v1/pod-identity/associations";
    let association = "/v1/pod-identity/associations/{association_id}";
    let created = api.call(
        "post",
        associations,
        associations,
        Some(json!({"Namespace": "shop", "ServiceAccount": "cart", "Role": "app"})),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let association_path = format!(
        "/v1/pod-identity/associations/{}",
        json_of(&created)["AssociationId"].as_str().unwrap()
    );
    let taken = api.call(
        "post",
        associations,
        associations,
        Some(json!({"Namespace": "shop", "ServiceAccount": "cart", "Role": "other"})),
    );
    assert_eq!(taken.status, 409, "{taken:?}");
    let refused = api.call(
        "post",
        associations,
        associations,
        Some(json!({"Namespace": "shop", "ServiceAccount": "cart", "Role": "no role"})),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    api.call("get", associations, associations, None);
    api.call("get", association, &association_path, None);
    let changed = api.call(
        "patch",
        association,
        &association_path,
        Some(json!({"Role": "other"})),
    );
    assert_eq!(json_of(&changed)["Role"], "other");
    let refused = api.call(
        "patch",
        association,
        &association_path,
        Some(json!({"Role": ""})),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    api.call("delete", association, &association_path, None);
    api.call("get", association, &association_path, None);
    api.call("delete", association, &association_path, None);
    api.call(
        "patch",
        association,
        &association_path,
        Some(json!({"Role": "app"})),
    );

    api.call("delete", instance, &a, None);
    api.call("delete", instance, &a, None);
    api.call("get", "/healthz", "/healthz", None);

    // Service-account tokens: none without a Pod Identity key (this server), minted by one
    // that has its state directory's key.
    let mint = "/v1/pod-identity/service-account-tokens";
    let account = json!({"Namespace": "shop", "ServiceAccount": "cart"});
    let refused = api.call("post", mint, mint, Some(account.clone()));
    assert_eq!(refused.status, 409, "{refused:?}");
    let pod_identity = crate::support::server()
        .args(&["--pod-identity-listen", "127.0.0.1:0"])
        .start();
    let mut minting = Checker::new(&pod_identity);
    let minted = minting.call("post", mint, mint, Some(account));
    assert_eq!(minted.status, 201, "{minted:?}");
    let refused = minting.call(
        "post",
        mint,
        mint,
        Some(json!({"Namespace": "Shop", "ServiceAccount": "cart"})),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    api.seen.extend(minting.seen);
    api.assert_every_answer_seen();
    assert!(
        api.seen
            .contains(&("get".to_owned(), credentials.to_owned(), "503".to_owned())),
        "a role without credentials answers 503"
    );
}
