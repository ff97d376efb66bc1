//! Scenarios: started through the control API, `imds ctl run-scenario` and `imds serve
//! --scenario`, their steps run in order at their offsets and show as done; botocore keeps its
//! credentials through a scenario's credentials outage and takes the new set after it; a Spot
//! interruption shows at `spot/instance-action` at its offset; invalid scenarios are refused
//! whole, with the key at fault.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{output_within, serve_command, server, Server};

const INSTANCE: &str = "i-0123456789abcdef0";

fn config() -> &'static str {
    "[instance]\ninstance-id = \"i-0123456789abcdef0\"\n[instance.iam]\nrole-name = \"app\"\n"
}

/// Starts `scenario` (JSON) through the control API; its id.
#[track_caller]
fn start(imds: &Server, scenario: &Value) -> String {
    let response = imds.admin("POST", "/v1/scenarios", Some(&scenario.to_string()));
    assert_eq!(response.status, 201, "{}", response.text());
    let run: Value = serde_json::from_str(&response.text()).unwrap();
    run["ScenarioId"].as_str().unwrap().to_owned()
}

/// The scenario as `GET /v1/scenarios/{id}` shows it.
fn progress(imds: &Server, scenario_id: &str) -> Value {
    let response = imds.admin("GET", &format!("/v1/scenarios/{scenario_id}"), None);
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_str(&response.text()).unwrap()
}

/// Polls the scenario until `done` holds of it (bounded only to catch a hang); the scenario then.
fn wait_for(imds: &Server, scenario_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = progress(imds, scenario_id);
        if done(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "scenario never got there: {run:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn step_done(index: usize) -> impl Fn(&Value) -> bool {
    move |run: &Value| run["Steps"][index]["State"] == "done"
}

fn ended(run: &Value) -> bool {
    run["State"] != "running"
}

/// Each step ran no earlier than its offset, and in order.
#[track_caller]
fn assert_ran_in_order(run: &Value) {
    let mut previous = 0;
    for step in run["Steps"].as_array().unwrap() {
        assert_eq!(step["State"], "done", "{run:#}");
        let elapsed = step["ElapsedMs"].as_u64().unwrap();
        assert!(elapsed >= step["AtMs"].as_u64().unwrap(), "{step:#}");
        assert!(elapsed >= previous, "{run:#}");
        previous = elapsed;
    }
}

#[test]
fn a_scenario_runs_its_steps_in_order_at_their_offsets() {
    let imds = server().config(config()).start();
    let scenario_id = start(
        &imds,
        &serde_json::json!({
            "name": "options then events",
            "steps": [
                {"at": 0, "post-event": {"Type": "rebalance-recommendation"}},
                {"at": "1s", "inject-fault": {"Kind": "latency", "LatencyMs": 1, "FaultId": "slow"}},
                {"at": "2s", "modify-metadata-options": {"HttpTokens": "required"}},
            ]
        }),
    );
    let run = wait_for(&imds, &scenario_id, ended);
    assert_eq!(run["State"], "completed", "{run:#}");
    assert_ran_in_order(&run);
    assert_eq!(
        run["Steps"][0]["Answer"]["EventId"],
        "rebalance-recommendation"
    );
    // The steps acted on the default instance, as the control API's calls would.
    assert_eq!(run["Steps"][1]["InstanceId"], INSTANCE);
    imds.wait_until_applied();
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 401);
    let token = imds.token(60);
    let rebalance =
        imds.get_with_token("/latest/meta-data/events/recommendations/rebalance", &token);
    assert_eq!(rebalance.status, 200);
    assert!(
        rebalance.text().contains("noticeTime"),
        "{}",
        rebalance.text()
    );

    // imds ctl shows the same progress, as text and as the API's JSON.
    let text = imds.ctl_ok(&["describe-scenario", &scenario_id]);
    assert!(
        text.starts_with(&format!("{scenario_id} options then events completed")),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[1].contains("inject-fault") && rows[1].contains("done") && rows[1].contains("slow"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&imds.ctl_ok(&[
        "--output",
        "json",
        "describe-scenario",
        &scenario_id,
    ]))
    .unwrap();
    assert_eq!(json["Steps"][2]["State"], "done");
    let list = imds.ctl_ok(&["describe-scenario"]);
    assert!(
        list.contains(&scenario_id) && list.contains("3/3"),
        "{list}"
    );
}

#[test]
fn imds_ctl_runs_a_scenario_file_and_stops_it() {
    let imds = server().config(config()).start();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("long.toml");
    std::fs::write(
        &path,
        "name = \"long\"\n\
         [[steps]]\nat = 0\ninject-fault = { Kind = \"status\", Status = 503, Path = \"meta-data/ami-id\" }\n\
         [[steps]]\nat = \"1h\"\nclear-faults = true\n",
    )
    .unwrap();
    let started = imds.ctl_ok(&["run-scenario", path.to_str().unwrap()]);
    let scenario_id = started.split_whitespace().next().unwrap().to_owned();
    assert!(started.contains("long running"), "{started}");
    wait_for(&imds, &scenario_id, step_done(0));
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 503);
    let stopped = imds.ctl_ok(&["stop-scenario", &scenario_id]);
    assert!(stopped.contains("long stopped"), "{stopped}");
    let run = progress(&imds, &scenario_id);
    assert_eq!(run["Steps"][1]["State"], "skipped");
    // What the step did stays: the fault is in force until removed.
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 503);
}

/// Reads names on standard input and prints, for each, the access key id of those credentials:
/// `cached` and `eager` (see `Botocore::start`), or `fetch`, a fetch of its own.
const BOTOCORE_HOLDER: &str = r#"
import os, sys
from botocore.credentials import InstanceMetadataProvider, RefreshableCredentials
from botocore.utils import InstanceMetadataFetcher
fetcher = InstanceMetadataFetcher(timeout=5, num_attempts=1, base_url=os.environ['IMDS'])
held = {
    'cached': InstanceMetadataProvider(iam_role_fetcher=fetcher).load(),
    'eager': RefreshableCredentials.create_from_metadata(
        fetcher.retrieve_iam_role_credentials(), method='iam-role',
        refresh_using=fetcher.retrieve_iam_role_credentials,
        advisory_timeout=86400, mandatory_timeout=0),
}
for line in sys.stdin:
    name = line.strip()
    try:
        if name == 'fetch':
            print(fetcher.retrieve_iam_role_credentials().get('access_key', 'none'))
        else:
            print(held[name].get_frozen_credentials().access_key)
    except Exception as error:
        print('error', type(error).__name__)
    sys.stdout.flush()
"#;

/// A Python process holding botocore's IMDS credentials, asked on its standard input.
struct Botocore {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Botocore {
    /// Loads credentials from `imds` twice over: `cached` as botocore's `InstanceMetadataProvider`
    /// makes them (refreshed 15 minutes before they expire), and `eager` made the same way but
    /// with the advisory refresh window set to a day, so that every use is a refresh, which
    /// brings botocore's minutes within the scenario's seconds.
    fn start(imds: &Server) -> Botocore {
        let mut child = Command::new(crate::sts::venv().join("bin/python"))
            .args(["-c", BOTOCORE_HOLDER])
            .env("IMDS", format!("http://{}/", imds.address()))
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run the virtualenv's python (scripts/install-deps makes it)");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Botocore {
            child,
            input,
            output,
        }
    }

    /// The access key id of `name` (`cached`, `eager`; `fetch`: a fetch of its own), `none`
    /// when a fetch got none, `error KIND` when botocore raised.
    fn ask(&mut self, name: &str) -> String {
        writeln!(self.input, "{name}").unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the botocore process ended");
        line.trim().to_owned()
    }
}

impl Drop for Botocore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fault `fault_id` of the instance, as listed.
fn fault(imds: &Server, fault_id: &str) -> Value {
    let response = imds.admin("GET", &format!("/v1/instances/{INSTANCE}/faults"), None);
    let list: Value = serde_json::from_str(&response.text()).unwrap();
    list["Faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|fault| fault["FaultId"] == fault_id)
        .cloned()
        .unwrap_or_else(|| panic!("no fault {fault_id}: {list:#}"))
}

#[test]
fn botocore_keeps_its_credentials_through_a_credentials_outage_and_takes_the_new_set_after_it() {
    let imds = server().config(config()).start();
    let mut botocore = Botocore::start(&imds);
    let first = botocore.ask("cached");
    assert!(first.starts_with("ASIA"), "{first}");
    assert_eq!(botocore.ask("eager"), first);
    // From 1 s to 4 s the credentials path answers 500; from 4 s to 7 s it serves the last set
    // with an Expiration in the past, a service that cannot renew; at 7 s a new set.
    let scenario_id = start(
        &imds,
        &serde_json::json!({
            "name": "static stability",
            "steps": [
                {"at": 1, "until": 4, "inject-fault": {"Kind": "status", "Status": 500,
                    "Path": "meta-data/iam/security-credentials/*", "FaultId": "outage"}},
                {"at": 4, "until": 7, "inject-fault": {"Kind": "credentials-expiry",
                    "ExpiresIn": -60, "FaultId": "stale"}},
                {"at": 7, "put-role": {"name": "app"}},
            ]
        }),
    );

    wait_for(&imds, &scenario_id, step_done(0));
    // A fetch now gets no credentials; botocore's provider keeps serving its cached set.
    assert_eq!(botocore.ask("fetch"), "none");
    assert!(fault(&imds, "outage")["Injected"].as_u64().unwrap() >= 1);
    assert_eq!(botocore.ask("cached"), first);

    wait_for(&imds, &scenario_id, step_done(1));
    // Every use of `eager` refreshes: it gets the set expired, extends it and keeps using it.
    assert_eq!(botocore.ask("eager"), first);
    assert!(fault(&imds, "stale")["Injected"].as_u64().unwrap() >= 1);

    let run = wait_for(&imds, &scenario_id, ended);
    assert_eq!(run["State"], "completed", "{run:#}");
    assert_ran_in_order(&run);
    // After it, the next refresh takes the new set; the cached provider keeps its own until its
    // refresh window, 15 minutes before its set expires.
    let renewed = botocore.ask("eager");
    assert!(renewed.starts_with("ASIA") && renewed != first, "{renewed}");
    assert_eq!(botocore.ask("fetch"), renewed);
    assert_eq!(botocore.ask("cached"), first);
}

#[test]
fn imds_serve_runs_a_spot_interruption_scenario_from_start_up() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("spot.toml");
    std::fs::write(
        &path,
        "name = \"spot\"\n\
         [[steps]]\nat = \"3s\"\npost-event = { Type = \"spot-interruption\", Action = \"stop\" }\n",
    )
    .unwrap();
    let imds = server()
        .config(config())
        .args(&["--scenario", path.to_str().unwrap()])
        .start();
    let action = "/latest/meta-data/spot/instance-action";
    // Not before its offset.
    assert_eq!(imds.get(action).status, 404);
    let deadline = Instant::now() + Duration::from_secs(60);
    let notice = loop {
        let response = imds.get(action);
        if response.status == 200 {
            break response.text();
        }
        assert_eq!(response.status, 404);
        assert!(Instant::now() < deadline, "the notice never came");
        std::thread::sleep(Duration::from_millis(50));
    };
    let notice: Value = serde_json::from_str(&notice).unwrap();
    assert_eq!(notice["action"], "stop");
    assert!(notice["time"].as_str().unwrap().ends_with('Z'), "{notice}");
    let run = progress(&imds, "scenario-1");
    assert_eq!(run["Name"], "spot");
    assert_ran_in_order(&run);
    assert!(run["Steps"][0]["ElapsedMs"].as_u64().unwrap() >= 3000);
    assert_eq!(
        imds.get("/latest/meta-data/spot/termination-time").status,
        200
    );
}

#[test]
fn an_invalid_scenario_is_refused_with_its_key_and_a_failing_exit() {
    let directory = tempfile::tempdir().unwrap();
    let bad = directory.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\n[[steps]]\nat = \"5s\"\nclear-faults = true\n\
         [[steps]]\nat = \"soon\"\nclear-faults = true\n",
    )
    .unwrap();
    let elsewhere = directory.path().join("elsewhere.toml");
    std::fs::write(
        &elsewhere,
        "name = \"elsewhere\"\ninstance-id = \"i-0000000000000000f\"\n\
         [[steps]]\nat = 0\nclear-faults = true\n",
    )
    .unwrap();
    let config_file = directory.path().join("imds.toml");
    std::fs::write(&config_file, config()).unwrap();
    for (file, expect) in [
        (&bad, "steps[1].at: \"soon\" is not a delay"),
        (
            &elsewhere,
            "steps[0].instance-id: the instance ID 'i-0000000000000000f' is not served here",
        ),
    ] {
        let mut serve = serve_command(&directory.path().join("state"));
        serve
            .arg("--config")
            .arg(&config_file)
            .arg("--scenario")
            .arg(file);
        let served = output_within(serve, Duration::from_secs(60));
        assert_eq!(served.status.code(), Some(64), "{served:?}");
        let stderr = String::from_utf8_lossy(&served.stderr);
        assert!(stderr.contains(expect), "{expect:?} not in {stderr}");
    }

    let imds = server().config(config()).start();
    for (file, expect) in [
        (&bad, "steps[1].at: \"soon\" is not a delay"),
        (
            &elsewhere,
            "steps[0].instance-id: the instance ID 'i-0000000000000000f' is not served here",
        ),
    ] {
        let output = imds.ctl(&["run-scenario", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(64), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expect), "{expect:?} not in {stderr}");
    }
    // Nothing was started.
    let list: Value =
        serde_json::from_str(&imds.admin("GET", "/v1/scenarios", None).text()).unwrap();
    assert_eq!(list["Scenarios"].as_array().unwrap().len(), 0);
}

/// Probes what is served while the scenario `scenario_id` runs: a probe between two reads of
/// its progress that agree (the same steps done, none under way) is kept with how many steps
/// were done then, so that it saw exactly their effects. Until the scenario has ended and a
/// probe after its last step is kept (bounded only to catch a hang).
fn stages<T>(imds: &Server, scenario_id: &str, probe: impl Fn() -> T) -> Vec<(usize, T)> {
    let done = |run: &Value| {
        let steps = run["Steps"].as_array().unwrap();
        let settled = steps.iter().all(|step| step["State"] != "running");
        settled.then(|| steps.iter().filter(|step| step["State"] == "done").count())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let before = progress(imds, scenario_id);
        let value = probe();
        let after = progress(imds, scenario_id);
        let all = after["Steps"].as_array().unwrap().len();
        if let (Some(before), Some(after)) = (done(&before), done(&after)) {
            if before == after {
                seen.push((after, value));
            }
        }
        if ended(&after) {
            assert_eq!(after["State"], "completed", "{after:#}");
            if seen.last().is_some_and(|(done, _)| *done == all) {
                return seen;
            }
        }
        assert!(Instant::now() < deadline, "scenario never ended: {after:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks each probe of `seen` with `expect` for its stage; every stage from `first` to the
/// last was seen.
#[track_caller]
fn assert_stages<T: std::fmt::Debug>(
    seen: &[(usize, T)],
    first: usize,
    last: usize,
    expect: impl Fn(usize, &T),
) {
    for (stage, value) in seen {
        expect(*stage, value);
    }
    for stage in first..=last {
        assert!(
            seen.iter().any(|(done, _)| *done == stage),
            "stage {stage} never seen: {seen:?}"
        );
    }
}

const TASK_ID: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

#[test]
fn a_scenario_registers_a_task_stops_it_and_deregisters_it() {
    let imds = server()
        .config(config())
        .args(&["--container-listen", "127.0.0.1:0"])
        .start();
    let container = imds.container_address.unwrap();
    let task = || {
        let response = crate::support::send_raw(
            container,
            b"GET /v4/scenario-app/task HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n",
        );
        let document = (response.status == 200)
            .then(|| serde_json::from_slice::<Value>(&response.body).unwrap());
        (response.status, document)
    };
    assert_eq!(task().0, 404);
    let scenario_id = start(
        &imds,
        &serde_json::json!({
            "name": "a task's life",
            "steps": [
                {"at": 0, "register-task": {"task-id": TASK_ID, "family": "web",
                    "containers": [{"name": "app", "endpoint-id": "scenario-app"}]}},
                {"at": 2, "update-task": {"task-id": TASK_ID,
                    "known-status": "STOPPED", "desired-status": "STOPPED",
                    "containers": [{"name": "app", "endpoint-id": "scenario-app",
                        "known-status": "STOPPED", "desired-status": "STOPPED"}]}},
                {"at": 4, "deregister-task": TASK_ID},
            ]
        }),
    );
    let seen = stages(&imds, &scenario_id, task);
    let arn = "arn:aws:ecs:us-east-1:";
    assert_stages(&seen, 1, 3, |stage, (status, document)| match stage {
        0 | 3 => assert_eq!(*status, 404, "stage {stage}: {document:?}"),
        1 | 2 => {
            let document = document.as_ref().expect("the task is served");
            let arn_served = document["TaskARN"].as_str().unwrap();
            assert!(
                arn_served.starts_with(arn) && arn_served.ends_with(TASK_ID),
                "{document}"
            );
            assert_eq!(document["Family"], "web");
            let status = if stage == 1 { "RUNNING" } else { "STOPPED" };
            assert_eq!(document["KnownStatus"], status, "stage {stage}: {document}");
            assert_eq!(
                document["DesiredStatus"], status,
                "stage {stage}: {document}"
            );
            assert_eq!(
                document["Containers"][0]["KnownStatus"], status,
                "{document}"
            );
        }
        _ => panic!("stage {stage}"),
    });
    // The update kept the values generated at registration (the same container).
    let docker_ids: std::collections::BTreeSet<&str> = seen
        .iter()
        .filter_map(|(_, (_, document))| document.as_ref())
        .map(|document| document["Containers"][0]["DockerId"].as_str().unwrap())
        .collect();
    assert_eq!(docker_ids.len(), 1, "{docker_ids:?}");

    // Each step's answer is its call's, and the steps act on no instance.
    let run = progress(&imds, &scenario_id);
    assert_ran_in_order(&run);
    assert_eq!(run["Steps"][0]["Answer"]["TaskId"], TASK_ID);
    assert_eq!(run["Steps"][0]["Answer"]["Origin"], "api");
    assert_eq!(
        run["Steps"][1]["Answer"]["Description"]["known-status"],
        "STOPPED"
    );
    assert_eq!(run["Steps"][2]["Answer"], serde_json::json!({}));
    for step in run["Steps"].as_array().unwrap() {
        assert_eq!(step["InstanceId"], Value::Null, "{step:#}");
    }
    let text = imds.ctl_ok(&["describe-scenario", &scenario_id]);
    assert!(
        text.contains("register-task") && text.contains(TASK_ID),
        "{text}"
    );
    let tasks: Value = serde_json::from_str(&imds.admin("GET", "/v1/tasks", None).text()).unwrap();
    assert_eq!(tasks["Tasks"], serde_json::json!([]));
}

const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host";

#[test]
fn a_scenario_sends_an_ssh_public_key_the_instance_serves() {
    let imds = server().config(config()).start();
    let keys = "/latest/meta-data/managed-ssh-keys/active-keys/";
    let token = imds.token(60);
    assert_eq!(imds.get_with_token(keys, &token).status, 404);
    let scenario_id = start(
        &imds,
        &serde_json::json!({
            "name": "a login",
            "steps": [
                {"at": 0, "send-ssh-public-key": {"InstanceOSUser": "ec2-user",
                    "SSHPublicKey": SSH_KEY}},
                {"at": 1, "send-ssh-public-key": {"InstanceOSUser": "ec2-user",
                    "SSHPublicKey": SSH_KEY, "AvailabilityZone": "eu-west-3c"}},
            ]
        }),
    );
    let run = wait_for(&imds, &scenario_id, ended);
    // The first is served; the second names another zone, and is refused as the Instance
    // Connect API refuses it.
    assert_eq!(run["State"], "failed", "{run:#}");
    assert_eq!(run["Steps"][0]["InstanceId"], INSTANCE);
    let answer = &run["Steps"][0]["Answer"];
    assert_eq!(answer["Success"], true, "{run:#}");
    let request_id = answer["RequestId"].as_str().unwrap();
    assert_eq!(run["Steps"][1]["State"], "failed");
    assert_eq!(
        run["Steps"][1]["Error"]["Code"],
        "EC2InstanceNotFoundException"
    );
    assert_eq!(
        run["Steps"][0]["Step"]["send-ssh-public-key"]["SSHPublicKey"],
        SSH_KEY
    );

    let token = imds.token(60);
    assert_eq!(imds.get_with_token(keys, &token).text(), "ec2-user");
    let document = imds.get_with_token(&format!("{keys}ec2-user"), &token);
    assert_eq!(document.status, 200);
    let text = document.text();
    assert!(text.contains(SSH_KEY), "{text}");
    assert!(text.contains(&format!("#Request={request_id}")), "{text}");
    assert_eq!(text.matches("ssh-ed25519 ").count(), 1, "{text}");
}

#[test]
fn a_scenario_creates_changes_and_deletes_a_pod_identity_association() {
    use crate::pod_identity::{credentials, eks_auth, minted, pod_identity_server};
    let directory = tempfile::tempdir().unwrap();
    let imds = pod_identity_server(directory.path(), "", None);
    let address = imds.pod_identity_addresses[0];
    let token = minted(&imds, "web", "front");
    let scenario_id = start(
        &imds,
        &serde_json::json!({
            "name": "a service account's role",
            "steps": [
                {"at": 0, "create-pod-identity-association": {"Namespace": "web",
                    "ServiceAccount": "front", "Role": "fixed"}},
                {"at": 2, "update-pod-identity-association": {"Namespace": "web",
                    "ServiceAccount": "front", "Role": "generated-role"}},
                {"at": 4, "delete-pod-identity-association": {"Namespace": "web",
                    "ServiceAccount": "front"}},
            ]
        }),
    );
    let seen = stages(&imds, &scenario_id, || credentials(address, &token));
    assert_stages(&seen, 1, 3, |stage, response| match stage {
        0 | 3 => eks_auth(response, 404, "ResourceNotFoundException", "client"),
        1 | 2 => {
            assert_eq!(response.status, 200, "stage {stage}: {}", response.text());
            let body: Value = serde_json::from_slice(&response.body).unwrap();
            let key = body["AccessKeyId"].as_str().unwrap();
            if stage == 1 {
                assert_eq!(key, "ASIAFIXEDFIXEDFIXED1");
            } else {
                assert!(
                    key.starts_with("ASIA") && key != "ASIAFIXEDFIXEDFIXED1",
                    "{key}"
                );
            }
        }
        _ => panic!("stage {stage}"),
    });
    let run = progress(&imds, &scenario_id);
    assert_ran_in_order(&run);
    let association_id = run["Steps"][0]["Answer"]["AssociationId"].as_str().unwrap();
    assert!(association_id.starts_with("a-"), "{association_id}");
    // The update found the association by its service account.
    assert_eq!(run["Steps"][1]["Answer"]["AssociationId"], association_id);
    assert_eq!(run["Steps"][1]["Answer"]["Role"], "generated-role");
    let listed: Value = serde_json::from_str(
        &imds
            .admin(
                "GET",
                &format!("/v1/pod-identity/associations/{association_id}"),
                None,
            )
            .text(),
    )
    .unwrap();
    assert_eq!(listed["Code"], "ResourceNotFoundException", "{listed}");

    // By id too; an association that is not there fails its step with the route's error.
    let scenario_id = start(
        &imds,
        &serde_json::json!({
            "name": "gone",
            "steps": [
                {"at": 0, "delete-pod-identity-association": {"Namespace": "web",
                    "ServiceAccount": "front"}},
                {"at": 0, "update-pod-identity-association": {
                    "AssociationId": association_id, "Role": "fixed"}},
            ]
        }),
    );
    let run = wait_for(&imds, &scenario_id, ended);
    assert_eq!(run["State"], "failed");
    for step in run["Steps"].as_array().unwrap() {
        assert_eq!(
            step["Error"]["Code"], "ResourceNotFoundException",
            "{step:#}"
        );
    }
    assert!(
        run["Steps"][0]["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("web/front"),
        "{run:#}"
    );
}

#[test]
fn a_bad_payload_of_each_new_action_is_refused_before_anything_runs() {
    let imds = server()
        .config(config())
        .args(&["--container-listen", "127.0.0.1:0"])
        .start();
    let register = serde_json::json!({"at": 0, "register-task": {"task-id": TASK_ID,
        "containers": [{"name": "app", "endpoint-id": "refused-app"}]}});
    for (step, expect) in [
        (
            serde_json::json!({"send-ssh-public-key": {"InstanceOSUser": "ec2 user",
                "SSHPublicKey": SSH_KEY}}),
            "steps[1].send-ssh-public-key.InstanceOSUser: \"ec2 user\" is not an OS user name",
        ),
        (
            serde_json::json!({"register-task": {"containers": [{"name": "app",
                "endpoint-id": "x", "ports": [{"container-port": 80, "protocol": "sctp"}]}]}}),
            "steps[1].register-task.containers[0]",
        ),
        (
            serde_json::json!({"update-task": {"task-id": TASK_ID, "launch-type": "ECS"}}),
            "steps[1].update-task.launch-type: \"ECS\" must be EC2 or FARGATE",
        ),
        (
            serde_json::json!({"deregister-task": "web"}),
            "steps[1].deregister-task: \"web\" is not a task id",
        ),
        (
            serde_json::json!({"create-pod-identity-association": {"Namespace": "web",
                "ServiceAccount": "Front", "Role": "app"}}),
            "steps[1].create-pod-identity-association.ServiceAccount: ",
        ),
        (
            serde_json::json!({"update-pod-identity-association": {"Namespace": "web",
                "ServiceAccount": "front", "Role": "no role"}}),
            "steps[1].update-pod-identity-association.Role: ",
        ),
        (
            serde_json::json!({"delete-pod-identity-association": {"AssociationId": "a-1",
                "Namespace": "web", "ServiceAccount": "front"}}),
            "steps[1].delete-pod-identity-association.AssociationId: give AssociationId, or \
             Namespace and ServiceAccount, not both",
        ),
    ] {
        let mut step = step;
        step["at"] = serde_json::json!(1);
        let scenario = serde_json::json!({"name": "refused", "steps": [register, step]});
        let response = imds.admin("POST", "/v1/scenarios", Some(&scenario.to_string()));
        assert_eq!(response.status, 400, "{}", response.text());
        let error: Value = serde_json::from_str(&response.text()).unwrap();
        assert_eq!(error["Code"], "InvalidParameterValue");
        let message = error["Message"].as_str().unwrap();
        assert!(
            message.starts_with(expect),
            "{expect:?} is not the start of {message:?}"
        );
    }
    // A task action takes no instance-id, as a role action does not.
    let scenario = serde_json::json!({"name": "refused", "steps": [
        {"at": 0, "instance-id": INSTANCE, "deregister-task": TASK_ID}]});
    let response = imds.admin("POST", "/v1/scenarios", Some(&scenario.to_string()));
    assert_eq!(response.status, 400);
    assert!(
        response
            .text()
            .contains("steps[0].instance-id: deregister-task acts on a task, not an instance"),
        "{}",
        response.text()
    );
    // imds ctl refuses a file the same way, exiting 64.
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("refused.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"refused\"\n[[steps]]\nat = 0\nregister-task = {{ task-id = \"{TASK_ID}\", \
             containers = [{{ name = \"app\" }}] }}\n[[steps]]\nat = 1\nupdate-task = \
             {{ task-id = \"{TASK_ID}\", containers = [] }}\n"
        ),
    )
    .unwrap();
    let output = imds.ctl(&["run-scenario", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("steps[1].update-task.containers: give at least one container"),
        "{stderr}"
    );

    // Nothing ran: no scenario, no task.
    let list: Value =
        serde_json::from_str(&imds.admin("GET", "/v1/scenarios", None).text()).unwrap();
    assert_eq!(list["Scenarios"], serde_json::json!([]));
    let tasks: Value = serde_json::from_str(&imds.admin("GET", "/v1/tasks", None).text()).unwrap();
    assert_eq!(tasks["Tasks"], serde_json::json!([]));
}
