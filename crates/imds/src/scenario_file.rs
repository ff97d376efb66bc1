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
