//! Scenario files: a scenario (`imds_server::admin_api::model::Scenario`) written as TOML, for
//! `imds serve --scenario` and `imds ctl run-scenario`. Unknown keys are refused, and the whole
//! scenario is checked (`imds_server::scenario::check`) before it is used; the server checks it
//! again, with the instances it serves, when it starts it.

#![allow(
    clippy::disallowed_methods,
    reason = "a scenario file is checked at the time it is read"
)]

use std::path::Path;

use anyhow::{format_err, Context};
use imds_server::admin_api::model::Scenario;
use time::OffsetDateTime;

use crate::error::UsageError;

/// Parses and checks a scenario written as TOML.
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let scenario: Scenario = toml::from_str(text)?;
    imds_server::scenario::check(scenario.clone(), OffsetDateTime::now_utc())
        .map_err(|error| format_err!("{error}"))?;
    Ok(scenario)
}

/// Reads, parses and checks the scenario file at `path`; every error is a usage error naming
/// the file.
pub fn read(path: &Path) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the scenario file {}", path.display()))
        .map_err(UsageError)?;
    parse(&text)
        .with_context(|| format!("invalid scenario file {}", path.display()))
        .map_err(|error| UsageError(error).into())
}

#[cfg(test)]
mod tests {
    use imds_server::admin_api::model::ScenarioStep;

    use super::*;

    #[track_caller]
    fn check_error(text: &str, expect: &str) {
        let error = format!("{:#}", parse(text).unwrap_err());
        assert!(error.contains(expect), "{expect:?} not in {error:?}");
    }

    #[test]
    fn steps_parse_as_control_api_bodies() {
        let scenario = parse(
            r#"
name = "outage"
instance-id = "i-0123456789abcdef0"

[[steps]]
at = "2s"
until = "5s"
inject-fault = { Kind = "status", Status = 500, Path = "meta-data/iam/security-credentials/*" }

[[steps]]
at = 6
put-role = { name = "app", lifetime-seconds = 3600 }

[[steps]]
at = "1m"
post-event = { Type = "spot-interruption", Action = "stop" }

[[steps]]
at = "1m"
modify-metadata-options = { HttpTokens = "required" }
"#,
        )
        .unwrap();
        assert_eq!(scenario.steps.len(), 4);
        let fault = scenario.steps[0].inject_fault.as_ref().unwrap();
        assert_eq!(fault.status, Some(500));
        assert_eq!(
            scenario.steps[1]
                .put_role
                .as_ref()
                .unwrap()
                .lifetime_seconds,
            Some(3600)
        );
        let plan = imds_server::scenario::check(scenario, OffsetDateTime::now_utc()).unwrap();
        let offsets: Vec<u64> = plan.steps.iter().map(|step| step.at_ms).collect();
        assert_eq!(offsets, [2000, 6000, 60_000, 60_000]);
        // `until` becomes the fault's Duration, counted from `at`.
        let fault = plan.steps[0].step.inject_fault.as_ref().unwrap();
        assert_eq!(fault.duration.as_ref().unwrap().to_seconds(), Ok(3));
        assert_eq!(
            plan.steps[0].instance_id.as_deref(),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(plan.steps[1].instance_id, None);
    }

    #[test]
    fn every_error_names_its_key() {
        let head = "name = \"x\"\n[[steps]]\n";
        check_error(
            "name = \"x\"\nsteps = []\n",
            "steps: give at least one step",
        );
        check_error(
            "[[steps]]\nat = 1\nclear-faults = true\n",
            "missing field `name`",
        );
        check_error(
            &format!("{head}at = 1\nclear-faults = true\ncolour = \"red\"\n"),
            "unknown field `colour`",
        );
        check_error(
            &format!("{head}at = \"5 seconds\"\nclear-faults = true\n"),
            "steps[0].at: \"5 seconds\" is not a delay",
        );
        check_error(
            &format!("{head}at = \"5s\"\nclear-faults = true\n[[steps]]\nat = \"2s\"\nclear-faults = true\n"),
            "steps[1].at: 2 s is before the step before it (5 s)",
        );
        check_error(
            &format!("{head}at = 1\n"),
            "steps[0]: give one action: post-event",
        );
        check_error(
            &format!("{head}at = 1\nclear-faults = true\nremove-fault = \"a\"\n"),
            "steps[0]: give one action, not both remove-fault and clear-faults",
        );
        check_error(
            &format!("{head}at = 1\nuntil = 3\nclear-faults = true\n"),
            "steps[0].until: only for inject-fault",
        );
        check_error(
            &format!("{head}at = 3\nuntil = 3\ninject-fault = {{ Kind = \"reset\" }}\n"),
            "steps[0].until: 3 s must be after at (3 s)",
        );
        check_error(
            &format!(
                "{head}at = 1\nuntil = 3\ninject-fault = {{ Kind = \"reset\", Duration = 5 }}\n"
            ),
            "steps[0].until: give until or inject-fault.Duration, not both",
        );
        check_error(
            &format!("{head}at = 1\ninject-fault = {{ Kind = \"status\", Status = 200 }}\n"),
            "steps[0].inject-fault.Status: 200 is not one of",
        );
        check_error(
            &format!("{head}at = 1\ninject-fault = {{ Kind = \"status\", Statu = 500 }}\n"),
            "unknown field `Statu`",
        );
        check_error(
            &format!("{head}at = 1\npost-event = {{ Type = \"target-lifecycle-state\" }}\n"),
            "steps[0].post-event.State: give the target lifecycle state",
        );
        check_error(
            &format!(
                "{head}at = 1\npost-event = {{ Type = \"spot-interruption\", Time = \"soon\" }}\n"
            ),
            "steps[0].post-event.Time: \"soon\" is not a timestamp",
        );
        check_error(
            &format!("{head}at = 1\nmodify-metadata-options = {{}}\n"),
            "steps[0].modify-metadata-options: give at least one option",
        );
        check_error(
            &format!("{head}at = 1\nput-role = {{ provider = \"generated\" }}\n"),
            "steps[0].put-role.name: give the role's name",
        );
        check_error(
            &format!(
                "{head}at = 1\ninstance-id = \"i-0123456789abcdef0\"\ndelete-role = \"app\"\n"
            ),
            "steps[0].instance-id: delete-role acts on a role",
        );
        check_error(
            &format!("{head}at = 1\npatch-instance = {{ colour = \"red\" }}\n"),
            "steps[0].patch-instance: unknown field `colour`",
        );
        check_error(
            &format!("{head}at = 1\nclear-faults = false\n"),
            "steps[0].clear-faults: write clear-faults = true",
        );
        check_error(
            "name = \"\"\n[[steps]]\nat = 1\nclear-faults = true\n",
            "name: give 1 to 128",
        );
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host";
    const TASK_ID: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

    #[test]
    fn instance_connect_task_and_association_steps_parse_as_their_calls_bodies() {
        let scenario = parse(&format!(
            r#"
name = "everything"

[[steps]]
at = 0
send-ssh-public-key = {{ InstanceOSUser = "ec2-user", SSHPublicKey = "{KEY}" }}

[[steps]]
at = 1
register-task = {{ task-id = "{TASK_ID}", family = "web", containers = [{{ name = "app" }}] }}

[[steps]]
at = 2
update-task = {{ task-id = "{TASK_ID}", known-status = "STOPPED", desired-status = "STOPPED" }}

[[steps]]
at = 3
deregister-task = "{TASK_ID}"

[[steps]]
at = 4
create-pod-identity-association = {{ Namespace = "shop", ServiceAccount = "cart", Role = "app" }}

[[steps]]
at = 5
update-pod-identity-association = {{ Namespace = "shop", ServiceAccount = "cart", Role = "other" }}

[[steps]]
at = 6
delete-pod-identity-association = {{ AssociationId = "a-0123456789abcdefg" }}
"#
        ))
        .unwrap();
        let keys: Vec<&str> = scenario
            .steps
            .iter()
            .map(|step| step.actions()[0].key())
            .collect();
        assert_eq!(keys, ScenarioStep::ACTIONS[10..]);
        let plan = imds_server::scenario::check(scenario, OffsetDateTime::now_utc()).unwrap();
        // Only the Instance Connect step acts on an instance.
        let instances: Vec<bool> = plan
            .steps
            .iter()
            .map(|step| step.instance_id.is_some())
            .collect();
        assert_eq!(instances, [false; 7]);
        let spec = plan.steps[1].step.register_task.as_ref().unwrap();
        assert_eq!(spec.family.as_deref(), Some("web"));
        assert_eq!(
            plan.steps[2].step.update_task.as_ref().unwrap().0["known-status"],
            "STOPPED"
        );
    }

    #[test]
    fn the_new_actions_errors_name_their_keys() {
        let head = "name = \"x\"\n[[steps]]\nat = 1\n";
        let register = format!(
            "register-task = {{ task-id = \"{TASK_ID}\", containers = [{{ name = \"app\" }}] }}\n"
        );
        for (step, expect) in [
            (
                format!("send-ssh-public-key = {{ InstanceOSUser = \"-x\", SSHPublicKey = \"{KEY}\" }}"),
                "steps[0].send-ssh-public-key.InstanceOSUser: \"-x\" is not an OS user name",
            ),
            (
                "send-ssh-public-key = { InstanceOSUser = \"ec2-user\", SSHPublicKey = \"ssh-ed25519 AAAA\" }".to_owned(),
                "steps[0].send-ssh-public-key.SSHPublicKey: ",
            ),
            (
                format!("send-ssh-public-key = {{ InstanceOSUser = \"ec2-user\", SSHPublicKey = \"{KEY}\", AvailabilityZone = \"moon\" }}"),
                "steps[0].send-ssh-public-key.AvailabilityZone: ",
            ),
            (
                "instance-id = \"i-0123456789abcdef0\"\nderegister-task = \"5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e\"".to_owned(),
                "steps[0].instance-id: deregister-task acts on a task, not an instance",
            ),
            (
                "register-task = { family = \"web\" }".to_owned(),
                "steps[0].register-task.containers: give at least one container",
            ),
            (
                "register-task = { task-id = \"ABC\", containers = [{ name = \"app\" }] }".to_owned(),
                "steps[0].register-task.task-id: \"ABC\" must be 32 lower-case hex digits",
            ),
            (
                "update-task = { family = \"web\" }".to_owned(),
                "steps[0].update-task.task-id: give the id of the task to change",
            ),
            (
                format!("update-task = {{ task-id = \"{TASK_ID}\", colour = \"red\" }}"),
                "steps[0].update-task: unknown field `colour`",
            ),
            (
                "deregister-task = \"web\"".to_owned(),
                "steps[0].deregister-task: \"web\" is not a task id",
            ),
            (
                "create-pod-identity-association = { Namespace = \"Shop\", ServiceAccount = \"cart\", Role = \"app\" }".to_owned(),
                "steps[0].create-pod-identity-association.Namespace: ",
            ),
            (
                "create-pod-identity-association = { Namespace = \"shop\", ServiceAccount = \"cart\", Role = \"a role\" }".to_owned(),
                "steps[0].create-pod-identity-association.Role: ",
            ),
            (
                "create-pod-identity-association = { Namespace = \"shop\", ServiceAccount = \"cart\" }".to_owned(),
                "missing field `Role`",
            ),
            (
                "update-pod-identity-association = { Namespace = \"shop\", Role = \"app\" }".to_owned(),
                "steps[0].update-pod-identity-association.ServiceAccount: give it with Namespace",
            ),
            (
                "update-pod-identity-association = { AssociationId = \"a-1\", Role = \"app\" }".to_owned(),
                "steps[0].update-pod-identity-association.AssociationId: \"a-1\" is not an association id",
            ),
            (
                "delete-pod-identity-association = {}".to_owned(),
                "steps[0].delete-pod-identity-association.AssociationId: give the association",
            ),
            (
                "create-pod-identity-association = { Namespace = \"shop\", ServiceAccount = \"cart\", Role = \"app\" }\ninstance-id = \"i-0123456789abcdef0\"".to_owned(),
                "steps[0].instance-id: create-pod-identity-association acts on a Pod Identity association, not an instance",
            ),
        ] {
            check_error(&format!("{head}{step}\n"), expect);
        }
        // A task registered by an earlier step: the description its update makes is checked whole.
        check_error(
            &format!(
                "{head}{register}[[steps]]\nat = 2\nupdate-task = {{ task-id = \"{TASK_ID}\", containers = [] }}\n"
            ),
            "steps[1].update-task.containers: give at least one container",
        );
        check_error(
            &format!(
                "{head}{register}[[steps]]\nat = 2\nupdate-task = {{ task-id = \"{TASK_ID}\", launch-type = \"FARGATE\", network-mode = \"bridge\" }}\n"
            ),
            "steps[1].update-task.network-mode: Fargate tasks use awsvpc",
        );
    }

    #[test]
    fn the_example_scenarios_are_valid() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
        let mut checked = 0;
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                read(&path).unwrap_or_else(|error| panic!("{}: {error:#}", path.display()));
                checked += 1;
            }
        }
        assert!(checked >= 4, "{checked} example scenarios");
    }
}
