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
