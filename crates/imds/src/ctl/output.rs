//! How `imds ctl` prints the control API's answers: `--output json` prints the answer as the API
//! gave it (or, for verbs the API answers with no body, a small object saying what was done);
//! `--output text` prints tables and short lines. No HTTP here.

use imds_server::admin_api::model::TaskOrigin;
use imds_server::admin_api::model::{
    AssociationOrigin, PodIdentityAssociation, PodIdentityAssociationList,
};
use imds_server::admin_api::model::{
    EcsTask, EcsTaskList, EventEnded, EventList, EventPosted, Fault, FaultList, FaultsCleared,
    Instance, InstanceList, InstanceMetadataOptionsResult, Role, RoleList, ScenarioList,
    ScenarioRun, SendSshPublicKeyResult, ServiceAccountToken, StepProgress, StepState,
};
use serde::Serialize;

use crate::ctl::Output;

/// What a verb got from the control API.
#[derive(Debug)]
pub enum Outcome {
    /// `describe-instances`.
    Instances(InstanceList),
    /// `register-instance`, `update-instance`.
    Instance(Box<Instance>),
    /// `deregister-instance`.
    Deregistered {
        /// The instance deregistered.
        instance_id: String,
    },
    /// `describe-instance-metadata-options`, `modify-instance-metadata-options`.
    Options(InstanceMetadataOptionsResult),
    /// The `send-...`, `schedule-...` and `set-...` verbs.
    Posted(EventPosted),
    /// `describe-instance-events`.
    Events(EventList),
    /// `cancel-event`, `complete-event`.
    Ended(EventEnded),
    /// `describe-roles`.
    Roles(RoleList),
    /// `put-role`.
    Role(Box<Role>),
    /// `inject-fault`, `clear-faults --fault-id`.
    Fault(Box<Fault>),
    /// `describe-faults`.
    Faults(FaultList),
    /// `send-ssh-public-key`.
    KeySent(SendSshPublicKeyResult),
    /// `mint-service-account-token`.
    Token(ServiceAccountToken),
    /// `mint-service-account-token --token-file`.
    TokenWritten {
        path: std::path::PathBuf,
        expiration_timestamp: String,
    },
    /// `clear-faults`.
    FaultsCleared(FaultsCleared),
    /// `run-scenario`, `describe-scenario ID`, `stop-scenario`.
    Scenario(Box<ScenarioRun>),
    /// `describe-scenario`.
    Scenarios(ScenarioList),
    /// `register-task`.
    Task(Box<EcsTask>),
    /// `describe-tasks`.
    Tasks(EcsTaskList),
    /// `deregister-task`.
    TaskDeregistered {
        /// The task deregistered.
        task_id: String,
    },
    /// `create-pod-identity-association`, `update-pod-identity-association`.
    Association(PodIdentityAssociation),
    /// `list-pod-identity-associations`.
    Associations(PodIdentityAssociationList),
    /// `delete-pod-identity-association`.
    AssociationDeleted {
        /// The association deleted.
        association_id: String,
    },
    /// `delete-role`.
    RoleDeleted {
        /// The role that uses the default provider again.
        role_name: String,
    },
}

/// `deregister-instance --output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Deregistered<'a> {
    instance_id: &'a str,
    deregistered: bool,
}

/// `deregister-task --output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskDeregistered<'a> {
    task_id: &'a str,
    deregistered: bool,
}

/// `delete-pod-identity-association --output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AssociationDeleted<'a> {
    association_id: &'a str,
    deleted: bool,
}

/// `mint-service-account-token --token-file --output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TokenWritten<'a> {
    token_file: &'a str,
    expiration_timestamp: &'a str,
}

/// `delete-role --output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoleDeleted<'a> {
    role_name: &'a str,
    deleted: bool,
}

/// Prints `outcome` to standard output.
pub fn print(outcome: &Outcome, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", json(outcome)?),
        Output::Text => print!("{}", text(outcome)),
    }
    Ok(())
}

/// `outcome` as pretty JSON.
fn json(outcome: &Outcome) -> serde_json::Result<String> {
    match outcome {
        Outcome::Instances(list) => serde_json::to_string_pretty(list),
        Outcome::Instance(instance) => serde_json::to_string_pretty(instance),
        Outcome::Deregistered { instance_id } => serde_json::to_string_pretty(&Deregistered {
            instance_id,
            deregistered: true,
        }),
        Outcome::Options(options) => serde_json::to_string_pretty(options),
        Outcome::Posted(posted) => serde_json::to_string_pretty(posted),
        Outcome::Events(events) => serde_json::to_string_pretty(events),
        Outcome::Ended(ended) => serde_json::to_string_pretty(ended),
        Outcome::Roles(roles) => serde_json::to_string_pretty(roles),
        Outcome::Fault(fault) => serde_json::to_string_pretty(fault),
        Outcome::Faults(faults) => serde_json::to_string_pretty(faults),
        Outcome::KeySent(sent) => serde_json::to_string_pretty(sent),
        Outcome::Token(minted) => serde_json::to_string_pretty(minted),
        Outcome::TokenWritten {
            path,
            expiration_timestamp,
        } => serde_json::to_string_pretty(&TokenWritten {
            token_file: &path.display().to_string(),
            expiration_timestamp,
        }),
        Outcome::FaultsCleared(cleared) => serde_json::to_string_pretty(cleared),
        Outcome::Role(role) => serde_json::to_string_pretty(role),
        Outcome::Scenario(run) => serde_json::to_string_pretty(run),
        Outcome::Scenarios(list) => serde_json::to_string_pretty(list),
        Outcome::Task(task) => serde_json::to_string_pretty(task),
        Outcome::Tasks(list) => serde_json::to_string_pretty(list),
        Outcome::TaskDeregistered { task_id } => serde_json::to_string_pretty(&TaskDeregistered {
            task_id,
            deregistered: true,
        }),
        Outcome::Association(association) => serde_json::to_string_pretty(association),
        Outcome::Associations(list) => serde_json::to_string_pretty(list),
        Outcome::AssociationDeleted { association_id } => {
            serde_json::to_string_pretty(&AssociationDeleted {
                association_id,
                deleted: true,
            })
        }
        Outcome::RoleDeleted { role_name } => serde_json::to_string_pretty(&RoleDeleted {
            role_name,
            deleted: true,
        }),
    }
}

/// A registered task: its ARN, and what its containers are given.
fn task_text(task: &EcsTask) -> String {
    let mut text = format!("{} {}\n", task.task_id, task.task_arn);
    if let Some(role) = &task.role {
        text.push_str(&format!(
            "  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI={} (role {})\n",
            role.credentials_relative_uri, role.role_name
        ));
    }
    for container in &task.containers {
        text.push_str(&format!(
            "  {}: ECS_CONTAINER_METADATA_URI_V4 path {}\n",
            container.name, container.metadata_uri_v4_path
        ));
    }
    text
}

/// A cell for an optional value: `-` when there is none.
/// Associations, one row each.
fn associations_text(associations: &[PodIdentityAssociation]) -> String {
    let rows = associations
        .iter()
        .map(|association| {
            vec![
                association.association_id.clone(),
                association.namespace.clone(),
                association.service_account.clone(),
                association.role.clone(),
                match association.origin {
                    AssociationOrigin::Config => "config".to_owned(),
                    AssociationOrigin::Api => "api".to_owned(),
                },
            ]
        })
        .collect();
    table(
        &[
            "ASSOCIATION",
            "NAMESPACE",
            "SERVICE-ACCOUNT",
            "ROLE",
            "ORIGIN",
        ],
        rows,
    )
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// Rows under a header, each column as wide as its widest cell, two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|name| name.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned();
        text.push('\n');
        text
    };
    let mut text = line(header.iter().map(|name| (*name).to_owned()).collect());
    for row in rows {
        text.push_str(&line(row));
    }
    text
}

/// `outcome` as tables and short lines.
fn text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Instances(list) => {
            let rows = list
                .instances
                .iter()
                .map(|instance| {
                    let options = &instance.metadata_options;
                    vec![
                        instance.instance_id.clone(),
                        instance.addresses.join(","),
                        instance.instance_type.clone(),
                        instance.availability_zone.clone(),
                        or_dash(instance.iam_role.as_deref()),
                        options.http_tokens.to_string(),
                        options.http_endpoint.to_string(),
                        options.http_put_response_hop_limit.to_string(),
                        options.state.as_str().to_owned(),
                    ]
                })
                .collect();
            table(
                &[
                    "INSTANCE",
                    "ADDRESSES",
                    "TYPE",
                    "ZONE",
                    "ROLE",
                    "TOKENS",
                    "ENDPOINT",
                    "HOPS",
                    "OPTIONS",
                ],
                rows,
            )
        }
        Outcome::Instance(instance) => format!(
            "{} (revision {}) addresses {} host {}\n",
            instance.instance_id,
            instance.revision,
            instance.addresses.join(","),
            or_dash(instance.host_id.as_deref()),
        ),
        Outcome::Deregistered { instance_id } => format!("{instance_id} deregistered\n"),
        Outcome::Task(task) => task_text(task),
        Outcome::Tasks(list) => {
            let rows = list
                .tasks
                .iter()
                .map(|task| {
                    vec![
                        task.task_id.clone(),
                        format!("{}:{}", task.family, task.revision),
                        task.launch_type.clone(),
                        task.network_mode.clone(),
                        task.addresses.join(","),
                        or_dash(task.role.as_ref().map(|role| role.role_name.as_str())),
                        match task.origin {
                            TaskOrigin::Config => "config".to_owned(),
                            TaskOrigin::Api => "api".to_owned(),
                        },
                    ]
                })
                .collect();
            table(
                &[
                    "TASK",
                    "FAMILY",
                    "LAUNCH",
                    "NETWORK",
                    "ADDRESSES",
                    "ROLE",
                    "ORIGIN",
                ],
                rows,
            )
        }
        Outcome::TaskDeregistered { task_id } => format!("{task_id} deregistered\n"),
        Outcome::Association(association) => associations_text(std::slice::from_ref(association)),
        Outcome::Associations(list) => associations_text(&list.associations),
        Outcome::AssociationDeleted { association_id } => format!("{association_id} deleted\n"),
        Outcome::Options(result) => {
            let options = &result.instance_metadata_options;
            format!(
                "{}: http-tokens={} http-endpoint={} hop-limit={} ipv6={} tags={} ({})\n",
                result.instance_id,
                options.http_tokens,
                options.http_endpoint,
                options.http_put_response_hop_limit,
                options.http_protocol_ipv6,
                options.instance_metadata_tags,
                options.state.as_str(),
            )
        }
        Outcome::Posted(posted) => format!(
            "{} {} posted at {}\n",
            posted.instance_id, posted.event_id, posted.posted_time
        ),
        Outcome::Events(list) => {
            let rows = list
                .events
                .iter()
                .map(|event| {
                    vec![
                        event.event_id.clone(),
                        event.r#type.as_str().to_owned(),
                        event.status.as_str().to_owned(),
                        event.posted_time.clone(),
                    ]
                })
                .collect();
            table(&["EVENT", "TYPE", "STATUS", "POSTED"], rows)
        }
        Outcome::Fault(fault) => format!(
            "{} {} {} {}\n",
            fault.instance_id,
            fault.fault_id,
            fault.description.kind.as_str(),
            fault.state.as_str()
        ),
        Outcome::Faults(list) => {
            let rows = list
                .faults
                .iter()
                .map(|fault| {
                    vec![
                        fault.fault_id.clone(),
                        fault.description.kind.as_str().to_owned(),
                        or_dash(fault.description.path.as_deref()),
                        fault.state.as_str().to_owned(),
                        fault.matched.to_string(),
                        fault.injected.to_string(),
                        or_dash(fault.ends_at.as_deref()),
                    ]
                })
                .collect();
            table(
                &[
                    "FAULT", "KIND", "PATH", "STATE", "MATCHED", "INJECTED", "ENDS",
                ],
                rows,
            )
        }
        Outcome::KeySent(sent) => format!("{} sent (success: {})\n", sent.request_id, sent.success),
        Outcome::Token(minted) => format!("{}\n", minted.token),
        Outcome::TokenWritten {
            path,
            expiration_timestamp,
        } => format!(
            "token written to {} (expires {expiration_timestamp})\n",
            path.display()
        ),
        Outcome::FaultsCleared(cleared) => format!(
            "{} {} faults removed\n",
            cleared.instance_id, cleared.removed
        ),
        Outcome::Ended(ended) => format!(
            "{} {} {}\n",
            ended.instance_id,
            ended.event_id,
            ended.status.as_str()
        ),
        Outcome::Roles(list) => {
            let rows = list
                .roles
                .iter()
                .map(|role| {
                    vec![
                        role.role_name.clone(),
                        role.provider.clone(),
                        or_dash(role.description.role_arn.as_deref()),
                        role.instance_ids.join(","),
                        role.revision.to_string(),
                    ]
                })
                .collect();
            table(&["ROLE", "PROVIDER", "ARN", "INSTANCES", "REVISION"], rows)
        }
        Outcome::Role(role) => format!(
            "{} provider={} (revision {}) instances {}\n",
            role.role_name,
            role.provider,
            role.revision,
            role.instance_ids.join(","),
        ),
        Outcome::RoleDeleted { role_name } => {
            format!("{role_name} uses the default provider again\n")
        }
        Outcome::Scenario(run) => scenario_text(run),
        Outcome::Scenarios(list) => {
            let rows = list
                .scenarios
                .iter()
                .map(|run| {
                    let ran = run
                        .steps
                        .iter()
                        .filter(|step| matches!(step.state, StepState::Done | StepState::Failed))
                        .count();
                    vec![
                        run.scenario_id.clone(),
                        run.name.clone(),
                        run.state.as_str().to_owned(),
                        format!("{ran}/{}", run.steps.len()),
                        run.started_at.clone(),
                    ]
                })
                .collect();
            table(&["SCENARIO", "NAME", "STATE", "STEPS", "STARTED"], rows)
        }
    }
}

/// Milliseconds as seconds, `2.5s`.
fn seconds(milliseconds: u64) -> String {
    let whole = milliseconds / 1000;
    match milliseconds % 1000 {
        0 => format!("{whole}s"),
        fraction => format!("{whole}.{fraction:03}s"),
    }
}

/// What a step's answer or error says in a word: the id its call made, or the error.
fn step_detail(step: &StepProgress) -> String {
    if let Some(error) = &step.error {
        return format!("{}: {}", error.code, error.message);
    }
    step.answer
        .as_ref()
        .and_then(|answer| {
            [
                "FaultId",
                "EventId",
                "RoleName",
                "TaskId",
                "AssociationId",
                "RequestId",
                "InstanceId",
            ]
            .iter()
            .find_map(|key| answer.get(key).and_then(serde_json::Value::as_str))
        })
        .unwrap_or("-")
        .to_owned()
}

/// A scenario: a line about it, then a table of its steps.
fn scenario_text(run: &ScenarioRun) -> String {
    let mut text = format!(
        "{} {} {} (started {}{})\n",
        run.scenario_id,
        run.name,
        run.state.as_str(),
        run.started_at,
        run.ended_at
            .as_ref()
            .map(|ended| format!(", ended {ended}"))
            .unwrap_or_default(),
    );
    let rows = run
        .steps
        .iter()
        .map(|step| {
            vec![
                step.index.to_string(),
                seconds(step.at_ms),
                step.action.clone(),
                or_dash(step.instance_id.as_deref()),
                step.state.as_str().to_owned(),
                step.elapsed_ms.map_or_else(|| "-".to_owned(), seconds),
                step_detail(step),
            ]
        })
        .collect();
    text.push_str(&table(
        &[
            "STEP", "AT", "ACTION", "INSTANCE", "STATE", "RAN AT", "DETAIL",
        ],
        rows,
    ));
    text
}

#[cfg(test)]
mod tests {
    use imds_core::options::{HopLimit, HttpTokens, Toggle};
    use imds_server::admin_api::model::{InstanceMetadataOptions, OptionsState};

    use super::*;

    fn options() -> InstanceMetadataOptions {
        InstanceMetadataOptions {
            state: OptionsState::Pending,
            http_tokens: HttpTokens::Required,
            http_put_response_hop_limit: HopLimit::new(2).unwrap(),
            http_endpoint: Toggle::Enabled,
            http_protocol_ipv6: Toggle::Disabled,
            instance_metadata_tags: Toggle::Disabled,
        }
    }

    #[track_caller]
    fn check_text(outcome: Outcome, expect: &str) {
        assert_eq!(text(&outcome), expect);
    }

    #[track_caller]
    fn check_json(outcome: Outcome, expect: serde_json::Value) {
        let printed: serde_json::Value = serde_json::from_str(&json(&outcome).unwrap()).unwrap();
        assert_eq!(printed, expect);
    }

    #[test]
    fn answers_print_as_short_lines() {
        check_text(
            Outcome::Options(InstanceMetadataOptionsResult {
                instance_id: "i-0a".to_owned(),
                instance_metadata_options: options(),
            }),
            "i-0a: http-tokens=required http-endpoint=enabled hop-limit=2 ipv6=disabled tags=disabled (pending)\n",
        );
        check_text(
            Outcome::Deregistered {
                instance_id: "i-0a".to_owned(),
            },
            "i-0a deregistered\n",
        );
        check_text(
            Outcome::RoleDeleted {
                role_name: "app".to_owned(),
            },
            "app uses the default provider again\n",
        );
    }

    #[test]
    fn tables_align_their_columns() {
        assert_eq!(
            table(
                &["A", "BB"],
                vec![
                    vec!["long-cell".to_owned(), "x".to_owned()],
                    vec!["y".to_owned(), String::new()]
                ]
            ),
            "A          BB\nlong-cell  x\ny\n"
        );
    }

    #[test]
    fn bodiless_answers_print_what_was_done_as_json() {
        check_json(
            Outcome::Deregistered {
                instance_id: "i-0a".to_owned(),
            },
            serde_json::json!({"InstanceId": "i-0a", "Deregistered": true}),
        );
        check_json(
            Outcome::RoleDeleted {
                role_name: "app".to_owned(),
            },
            serde_json::json!({"RoleName": "app", "Deleted": true}),
        );
    }

    #[test]
    fn a_scenario_prints_a_line_then_its_steps() {
        let run: ScenarioRun = serde_json::from_value(serde_json::json!({
            "ScenarioId": "scenario-1", "Name": "outage", "State": "failed",
            "StartedAt": "2026-11-24T12:00:00Z", "EndedAt": "2026-11-24T12:00:03Z",
            "Steps": [
                {"Index": 0, "AtMs": 1000, "Action": "inject-fault", "InstanceId": "i-0a",
                 "State": "done", "ElapsedMs": 1002, "EndedAt": "2026-11-24T12:00:01Z",
                 "Answer": {"FaultId": "outage"},
                 "Step": {"at": 1, "inject-fault": {"Kind": "reset"}}},
                {"Index": 1, "AtMs": 2500, "Action": "cancel-event", "InstanceId": "i-0a",
                 "State": "failed", "ElapsedMs": 2500, "EndedAt": "2026-11-24T12:00:03Z",
                 "Error": {"Code": "InvalidEventID.NotFound", "Message": "no event x"},
                 "Step": {"at": 2, "cancel-event": "x"}},
                {"Index": 2, "AtMs": 3_600_000, "Action": "delete-role", "InstanceId": null,
                 "State": "skipped", "ElapsedMs": null, "EndedAt": null,
                 "Step": {"at": "1h", "delete-role": "app"}},
            ]
        }))
        .unwrap();
        check_text(
            Outcome::Scenario(Box::new(run)),
            "scenario-1 outage failed (started 2026-11-24T12:00:00Z, ended 2026-11-24T12:00:03Z)\n\
             STEP  AT      ACTION        INSTANCE  STATE    RAN AT  DETAIL\n\
             0     1s      inject-fault  i-0a      done     1.002s  outage\n\
             1     2.500s  cancel-event  i-0a      failed   2.500s  InvalidEventID.NotFound: no event x\n\
             2     3600s   delete-role   -         skipped  -       -\n",
        );
    }
}
