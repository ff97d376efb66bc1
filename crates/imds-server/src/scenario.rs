//! Scenarios: timelines of control-API calls, each at an offset from the scenario's start (a
//! Spot interruption at +5 s, the credentials path answering 500 from +40 s to +60 s, ...).
//!
//! `check` validates a whole scenario before anything runs; `Scenarios::start` resolves its
//! instances against the registry and runs it on a tokio task of its own, which sleeps until each
//! step's offset and then makes the step's call through the control API's own handlers
//! (`admin_api::perform`), so a step is exactly the call a client would make. Each step's
//! progress (pending, running, done at T with the answer, failed with the error, skipped) is
//! kept for `GET /v1/scenarios`. The task holds no lock while it waits or calls, so neither the
//! control API nor the guest path ever waits for a scenario.

#![allow(
    clippy::disallowed_methods,
    reason = "a scenario's start and each step's end are read off the clock as they happen"
)]

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use imds_core::{
    kubernetes_name::{check_namespace, check_service_account},
    managed_ssh_keys::{check_availability_zone, check_os_user, PublicKey},
    render::{aws_timestamp, parse_aws_timestamp},
    spec::InstanceSpec,
    task::spec::{StoredTask, TaskSpec},
};
use imds_credentials::spec::check_role_name;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{
    admin_api::{
        model::{
            ActionSubject, Delay, ErrorBody, EventType, PodIdentityAssociationTarget, PostEvent,
            Scenario, ScenarioAction, ScenarioList, ScenarioRun, ScenarioState, ScenarioStep,
            StepProgress, StepState, TaskPatch,
        },
        AdminState,
    },
    faults::Fault,
};

/// The most steps a scenario may have.
pub const MAX_STEPS: usize = 1000;
/// The most scenarios running at once.
pub const MAX_RUNNING: usize = 16;
/// The most scenarios kept for describing, running or ended.
const MAX_KEPT: usize = 64;

/// A checked step: its offset, its instance as given, and the step with `until` made the
/// fault's `Duration`.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Milliseconds from the scenario's start.
    pub at_ms: u64,
    /// The step's instance, or the scenario's; `None` for the actions on a role, a task or an
    /// association, and when neither names one (the server's default instance then).
    pub instance_id: Option<String>,
    /// The step to run.
    pub step: ScenarioStep,
}

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its name.
    pub name: String,
    /// Its steps, in time order.
    pub steps: Vec<PlannedStep>,
}

fn seconds(field: &str, delay: &Delay) -> Result<u64, String> {
    delay
        .to_seconds()
        .map_err(|error| format!("{field}: {error}"))
}

fn timestamp(field: &str, text: Option<&str>) -> Result<(), String> {
    match text {
        Some(text) if parse_aws_timestamp(text).is_err() => Err(format!(
            "{field}: {text:?} is not a timestamp like 2026-11-24T12:00:00Z"
        )),
        _ => Ok(()),
    }
}

/// What the events route would refuse in `event` whatever the instance.
fn check_event(event: &PostEvent) -> Result<(), String> {
    if event.at.is_some() && event.r#in.is_some() {
        return Err("At: give At or In, not both".to_owned());
    }
    if let Some(delay) = &event.r#in {
        seconds("In", delay)?;
    }
    timestamp("At", event.at.as_deref())?;
    timestamp("Time", event.time.as_deref())?;
    timestamp("NotBefore", event.not_before.as_deref())?;
    timestamp("NotAfter", event.not_after.as_deref())?;
    match event.r#type {
        EventType::TargetLifecycleState if event.state.as_deref().is_none_or(str::is_empty) => {
            Err("State: give the target lifecycle state, e.g. InService".to_owned())
        }
        EventType::ScheduledMaintenance if event.code.is_none() => {
            Err("Code: give the event code, e.g. system-reboot".to_owned())
        }
        _ => Ok(()),
    }
}

fn non_empty(text: &str) -> Result<(), String> {
    if text.is_empty() {
        Err("give a non-empty id".to_owned())
    } else {
        Ok(())
    }
}

/// A task description's error (`task.containers[0].name: ...`) as a step's payload's: without
/// the `task` the control API's messages start with.
fn task_error(message: &str) -> String {
    message
        .strip_prefix("task.")
        .or_else(|| message.strip_prefix("task: "))
        .unwrap_or(message)
        .to_owned()
}

/// Checks a task id as the task routes take it: 32 lower-case hex digits.
fn check_task_id(task_id: &str) -> Result<(), String> {
    let is_hex = task_id
        .bytes()
        .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if task_id.len() == 32 && is_hex {
        Ok(())
    } else {
        Err(format!(
            "{task_id:?} is not a task id (32 lower-case hex digits)"
        ))
    }
}

/// Checks a task description as `POST /v1/tasks` would, with throwaway generated values.
fn check_task(spec: &TaskSpec) -> Result<(), String> {
    StoredTask::new(spec.clone())
        .resolve()
        .map(drop)
        .map_err(|error| task_error(&error.0))
}

/// Removes the `null`s of a merge patch's objects (a `null` removes a key), leaving what the
/// patch sets: what must have the description's shape.
fn set_by(patch: &serde_json::Value) -> serde_json::Value {
    match patch {
        serde_json::Value::Object(object) => serde_json::Value::Object(
            object
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key.clone(), set_by(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Checks an `update-task` patch: a table naming its task by `task-id`, setting only keys of a
/// task's description; when an earlier step registered the task (`tasks`), the description it
/// makes is checked whole, and kept for later steps.
fn check_task_patch(
    patch: &TaskPatch,
    tasks: &mut HashMap<String, TaskSpec>,
) -> Result<(), String> {
    let Some(object) = patch.0.as_object() else {
        return Err("a merge patch of the task's description is a table".to_owned());
    };
    let task_id = match object.get("task-id") {
        Some(serde_json::Value::String(task_id)) => task_id,
        _ => {
            return Err(
                "task-id: give the id of the task to change (32 lower-case hex digits)".to_owned(),
            )
        }
    };
    check_task_id(task_id).map_err(|error| format!("task-id: {error}"))?;
    serde_json::from_value::<TaskSpec>(set_by(&patch.0)).map_err(|error| error.to_string())?;
    if let Some(registered) = tasks.get(task_id) {
        let mut document =
            serde_json::to_value(registered).expect("a task description always serialises");
        imds_core::patch::merge_patch(&mut document, &patch.0);
        let changed: TaskSpec =
            serde_json::from_value(document).map_err(|error| error.to_string())?;
        check_task(&changed)?;
        tasks.insert(task_id.clone(), changed);
    }
    Ok(())
}

/// Checks the names a Pod Identity payload gives, naming the field as the routes do.
fn check_association_names(
    namespace: Option<&str>,
    service_account: Option<&str>,
    role: Option<&str>,
) -> Result<(), String> {
    if let Some(namespace) = namespace {
        check_namespace(namespace).map_err(|error| format!("Namespace: {error}"))?;
    }
    if let Some(service_account) = service_account {
        check_service_account(service_account)
            .map_err(|error| format!("ServiceAccount: {error}"))?;
    }
    if let Some(role) = role {
        imds_core::role_name::check_role_name(role).map_err(|error| format!("Role: {error}"))?;
    }
    Ok(())
}

/// Checks that a step names one association: by id, or by namespace and service account.
fn check_association_target(target: &PodIdentityAssociationTarget) -> Result<(), String> {
    match (
        target.association_id.as_deref(),
        target.namespace.as_deref(),
        target.service_account.as_deref(),
    ) {
        (Some(association_id), None, None) => {
            let tail = association_id.strip_prefix("a-").unwrap_or_default();
            if tail.len() == 17
                && tail
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
            {
                Ok(())
            } else {
                Err(format!(
                    "AssociationId: {association_id:?} is not an association id (a- and 17 \
                     lowercase letters and digits)"
                ))
            }
        }
        (Some(_), _, _) => Err(
            "AssociationId: give AssociationId, or Namespace and ServiceAccount, not both"
                .to_owned(),
        ),
        (None, Some(namespace), Some(service_account)) => {
            check_association_names(Some(namespace), Some(service_account), None)
        }
        (None, Some(_), None) => {
            Err("ServiceAccount: give it with Namespace (or give AssociationId)".to_owned())
        }
        (None, None, _) => Err(
            "AssociationId: give the association: AssociationId, or Namespace and ServiceAccount"
                .to_owned(),
        ),
    }
}

/// Checks what an action says, before anything runs; errors name the payload's field. `tasks`
/// holds the descriptions of the tasks the earlier steps registered, by id.
fn check_action(
    action: ScenarioAction<'_>,
    now: OffsetDateTime,
    tasks: &mut HashMap<String, TaskSpec>,
) -> Result<(), String> {
    match action {
        ScenarioAction::PostEvent(event) => check_event(event),
        ScenarioAction::CancelEvent(id)
        | ScenarioAction::CompleteEvent(id)
        | ScenarioAction::RemoveFault(id) => non_empty(id),
        ScenarioAction::InjectFault(fault) => {
            Fault::new(fault.clone(), "fault-1".to_owned(), now).map(|_| ())
        }
        ScenarioAction::ClearFaults(true) => Ok(()),
        ScenarioAction::ClearFaults(false) => {
            Err("write clear-faults = true, or leave the step out".to_owned())
        }
        ScenarioAction::ModifyMetadataOptions(options) if options.is_empty() => {
            Err("give at least one option to change, e.g. HttpTokens".to_owned())
        }
        ScenarioAction::ModifyMetadataOptions(_) => Ok(()),
        ScenarioAction::PatchInstance(patch) => {
            if !patch.0.is_object() {
                return Err("a merge patch of the instance's description is a table".to_owned());
            }
            serde_json::from_value::<InstanceSpec>(patch.0.clone())
                .map(|_| ())
                .map_err(|error| error.to_string())
        }
        ScenarioAction::PutRole(role) => match &role.name {
            Some(name) => check_role_name(name)
                .and_then(|()| role.check())
                .map_err(|error| error.0),
            None => Err("name: give the role's name".to_owned()),
        },
        ScenarioAction::DeleteRole(name) => check_role_name(name).map_err(|error| error.0),
        ScenarioAction::SendSshPublicKey(request) => {
            check_os_user(&request.instance_os_user)
                .map_err(|error| format!("InstanceOSUser: {error}"))?;
            PublicKey::parse(&request.ssh_public_key)
                .map_err(|error| format!("SSHPublicKey: {error}"))?;
            match &request.availability_zone {
                Some(zone) => check_availability_zone(zone)
                    .map_err(|error| format!("AvailabilityZone: {error}")),
                None => Ok(()),
            }
        }
        ScenarioAction::RegisterTask(spec) => {
            check_task(spec)?;
            if let Some(task_id) = &spec.task_id {
                tasks.insert(task_id.clone(), spec.clone());
            }
            Ok(())
        }
        ScenarioAction::UpdateTask(patch) => check_task_patch(patch, tasks),
        ScenarioAction::DeregisterTask(task_id) => {
            check_task_id(task_id)?;
            tasks.remove(task_id);
            Ok(())
        }
        ScenarioAction::CreatePodIdentityAssociation(request) => check_association_names(
            Some(&request.namespace),
            Some(&request.service_account),
            Some(&request.role),
        ),
        ScenarioAction::UpdatePodIdentityAssociation(request) => {
            check_association_target(&request.target())?;
            check_association_names(None, None, Some(&request.role))
        }
        ScenarioAction::DeletePodIdentityAssociation(target) => check_association_target(target),
    }
}

/// Checks a whole scenario (at `now`, for the faults' checks): its name, every step's offset,
/// order and single action, and every payload as far as it can be checked without the
/// registry. Errors name the key at fault: `steps[2].inject-fault.Status: ...`.
pub fn check(scenario: Scenario, now: OffsetDateTime) -> Result<Plan, String> {
    let name = scenario.name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err("name: give 1 to 128 printable characters".to_owned());
    }
    if scenario.steps.is_empty() {
        return Err("steps: give at least one step".to_owned());
    }
    if scenario.steps.len() > MAX_STEPS {
        return Err(format!("steps: at most {MAX_STEPS} steps"));
    }
    let mut steps = Vec::with_capacity(scenario.steps.len());
    let mut tasks = HashMap::new();
    let mut previous = 0;
    for (index, mut step) in scenario.steps.into_iter().enumerate() {
        let at = seconds(&format!("steps[{index}].at"), &step.at)?;
        if at < previous {
            return Err(format!(
                "steps[{index}].at: {at} s is before the step before it ({previous} s); list the \
                 steps in time order"
            ));
        }
        previous = at;
        let action = match step.actions().as_slice() {
            [action] => *action,
            [] => {
                return Err(format!(
                    "steps[{index}]: give one action: {}",
                    ScenarioStep::ACTIONS.join(", ")
                ))
            }
            [first, second, ..] => {
                return Err(format!(
                    "steps[{index}]: give one action, not both {} and {}",
                    first.key(),
                    second.key()
                ))
            }
        };
        check_action(action, now, &mut tasks).map_err(|error| {
            format!(
                "steps[{index}].{}{error}",
                field_prefix(action.key(), &error)
            )
        })?;
        let (key, subject) = (action.key(), action.subject());
        let is_on_instance = subject == ActionSubject::Instance;
        if !is_on_instance && step.instance_id.is_some() {
            return Err(format!(
                "steps[{index}].instance-id: {key} acts on {}, not an instance",
                subject.noun()
            ));
        }
        if let Some(until) = step.until.take() {
            let until_at = seconds(&format!("steps[{index}].until"), &until)?;
            let Some(fault) = step.inject_fault.as_mut() else {
                return Err(format!(
                    "steps[{index}].until: only for inject-fault, not {key}"
                ));
            };
            if fault.duration.is_some() {
                return Err(format!(
                    "steps[{index}].until: give until or inject-fault.Duration, not both"
                ));
            }
            if until_at <= at {
                return Err(format!(
                    "steps[{index}].until: {until_at} s must be after at ({at} s)"
                ));
            }
            fault.duration = Some(Delay::Seconds(until_at - at));
        }
        let instance_id = if is_on_instance {
            step.instance_id.clone().or(scenario.instance_id.clone())
        } else {
            None
        };
        steps.push(PlannedStep {
            at_ms: at * 1000,
            instance_id,
            step,
        });
    }
    Ok(Plan {
        name: name.to_owned(),
        steps,
    })
}

/// `action.` before a payload's error that names a field (`Status: ...`), `action: ` before
/// one that does not.
fn field_prefix(action: &str, error: &str) -> String {
    let names_a_field = error
        .split_once(": ")
        .is_some_and(|(field, _)| !field.is_empty() && !field.contains(' '));
    if names_a_field {
        format!("{action}.")
    } else {
        format!("{action}: ")
    }
}

/// Why a scenario was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The scenario is not valid; the message names the key.
    #[error("{0}")]
    Invalid(String),
    /// As many scenarios as may run at once are running.
    #[error("{MAX_RUNNING} scenarios are running, the most at once; stop one first")]
    Busy,
}

/// One step's progress.
#[derive(Debug, Clone)]
struct StepRecord {
    state: StepState,
    elapsed_ms: Option<u64>,
    ended_at: Option<OffsetDateTime>,
    answer: Option<serde_json::Value>,
    error: Option<ErrorBody>,
}

#[derive(Debug)]
struct Progress {
    state: ScenarioState,
    ended_at: Option<OffsetDateTime>,
    steps: Vec<StepRecord>,
}

/// A started scenario.
#[derive(Debug)]
struct Run {
    id: String,
    name: String,
    started_at: OffsetDateTime,
    /// Each step with its instance resolved.
    steps: Vec<PlannedStep>,
    progress: Mutex<Progress>,
    stop: watch::Sender<bool>,
}

impl Run {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn view(&self) -> ScenarioRun {
        let progress = self.progress();
        ScenarioRun {
            scenario_id: self.id.clone(),
            name: self.name.clone(),
            state: progress.state,
            started_at: aws_timestamp(self.started_at),
            ended_at: progress.ended_at.map(aws_timestamp),
            steps: self
                .steps
                .iter()
                .zip(&progress.steps)
                .enumerate()
                .map(|(index, (planned, record))| StepProgress {
                    index,
                    at_ms: planned.at_ms,
                    action: planned
                        .step
                        .actions()
                        .first()
                        .map_or("", |action| action.key())
                        .to_owned(),
                    instance_id: planned.instance_id.clone(),
                    state: record.state,
                    elapsed_ms: record.elapsed_ms,
                    ended_at: record.ended_at.map(aws_timestamp),
                    answer: record.answer.clone(),
                    error: record.error.clone(),
                    step: shown(&planned.step),
                })
                .collect(),
        }
    }

    /// Marks the steps not yet run skipped and the scenario stopped, unless it has ended.
    fn stop(&self, now: OffsetDateTime) {
        let mut progress = self.progress();
        if progress.state != ScenarioState::Running {
            return;
        }
        progress.state = ScenarioState::Stopped;
        progress.ended_at = Some(now);
        for record in &mut progress.steps {
            if record.state == StepState::Pending {
                record.state = StepState::Skipped;
            }
        }
        drop(progress);
        self.stop.send_replace(true);
    }
}

/// The step as shown: without a role's secrets. The other payloads carry none: a public key,
/// task descriptions and Pod Identity associations are shown as their own routes show them.
fn shown(step: &ScenarioStep) -> ScenarioStep {
    ScenarioStep {
        put_role: step.put_role.as_ref().map(|role| role.without_secrets()),
        ..step.clone()
    }
}

/// The scenarios started on this server.
#[derive(Debug)]
pub struct Scenarios {
    /// The instance steps act on when neither they nor their scenario name one.
    default_instance: Option<String>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    runs: VecDeque<Arc<Run>>,
}

impl Scenarios {
    /// No scenarios yet; steps without an instance act on `default_instance`.
    pub fn new(default_instance: Option<String>) -> Scenarios {
        Scenarios {
            default_instance,
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks `scenario`, resolves its instances against `state`'s registry (each must be
    /// served here), and runs it from now on a task of its own. Nothing runs unless all of it
    /// is valid.
    pub fn start(&self, state: &AdminState, scenario: Scenario) -> Result<ScenarioRun, StartError> {
        let now = OffsetDateTime::now_utc();
        let mut plan = check(scenario, now).map_err(StartError::Invalid)?;
        for (index, planned) in plan.steps.iter_mut().enumerate() {
            let is_on_instance = planned
                .step
                .actions()
                .first()
                .is_some_and(|action| action.subject() == ActionSubject::Instance);
            if !is_on_instance {
                continue;
            }
            let Some(instance_id) = planned
                .instance_id
                .clone()
                .or_else(|| self.default_instance.clone())
            else {
                return Err(StartError::Invalid(format!(
                    "steps[{index}].instance-id: give the instance the step acts on (in the step \
                     or at the top)"
                )));
            };
            if state.registry.slot(&instance_id).is_none() {
                return Err(StartError::Invalid(format!(
                    "steps[{index}].instance-id: the instance ID '{instance_id}' is not served here"
                )));
            }
            planned.instance_id = Some(instance_id);
        }
        let mut inner = self.inner();
        let running = inner
            .runs
            .iter()
            .filter(|run| run.progress().state == ScenarioState::Running)
            .count();
        if running >= MAX_RUNNING {
            return Err(StartError::Busy);
        }
        while inner.runs.len() >= MAX_KEPT {
            let Some(ended) = inner
                .runs
                .iter()
                .position(|run| run.progress().state != ScenarioState::Running)
            else {
                break;
            };
            inner.runs.remove(ended);
        }
        inner.next += 1;
        let (stop, stopped) = watch::channel(false);
        let run = Arc::new(Run {
            id: format!("scenario-{}", inner.next),
            name: plan.name,
            started_at: now,
            progress: Mutex::new(Progress {
                state: ScenarioState::Running,
                ended_at: None,
                steps: vec![
                    StepRecord {
                        state: StepState::Pending,
                        elapsed_ms: None,
                        ended_at: None,
                        answer: None,
                        error: None,
                    };
                    plan.steps.len()
                ],
            }),
            steps: plan.steps,
            stop,
        });
        inner.runs.push_back(run.clone());
        drop(inner);
        tracing::info!(
            message = "Scenario started.",
            scenario_id = %run.id,
            name = %run.name,
            steps = run.steps.len(),
        );
        let view = run.view();
        tokio::spawn(execute(run, state.clone(), stopped));
        Ok(view)
    }

    /// Every scenario kept, in the order started.
    pub fn list(&self) -> ScenarioList {
        let runs: Vec<Arc<Run>> = self.inner().runs.iter().cloned().collect();
        ScenarioList {
            scenarios: runs.iter().map(|run| run.view()).collect(),
        }
    }

    fn find(&self, scenario_id: &str) -> Option<Arc<Run>> {
        self.inner()
            .runs
            .iter()
            .find(|run| run.id == scenario_id)
            .cloned()
    }

    /// One scenario, if kept.
    pub fn describe(&self, scenario_id: &str) -> Option<ScenarioRun> {
        self.find(scenario_id).map(|run| run.view())
    }

    /// Stops a running scenario: the steps not yet run are skipped (a step whose call is under
    /// way finishes). What its steps did stays (a fault injected ends when it says).
    pub fn stop(&self, scenario_id: &str) -> Option<ScenarioRun> {
        let run = self.find(scenario_id)?;
        run.stop(OffsetDateTime::now_utc());
        Some(run.view())
    }
}

/// Runs `run`'s steps at their offsets until the last one or a stop.
async fn execute(run: Arc<Run>, state: AdminState, mut stopped: watch::Receiver<bool>) {
    let start = tokio::time::Instant::now();
    for (index, planned) in run.steps.iter().enumerate() {
        let due = start + Duration::from_millis(planned.at_ms);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        {
            let mut progress = run.progress();
            if progress.state != ScenarioState::Running {
                return;
            }
            progress.steps[index].state = StepState::Running;
        }
        let outcome =
            crate::admin_api::perform(&state, planned.instance_id.as_deref(), &planned.step).await;
        let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let action = planned
            .step
            .actions()
            .first()
            .map_or("", |action| action.key());
        let mut progress = run.progress();
        let record = &mut progress.steps[index];
        record.elapsed_ms = Some(elapsed_ms);
        record.ended_at = Some(OffsetDateTime::now_utc());
        match outcome {
            Ok(answer) => {
                tracing::info!(message = "Scenario step done.", scenario_id = %run.id, step = index, action, elapsed_ms);
                record.state = StepState::Done;
                record.answer = Some(answer);
            }
            Err(error) => {
                tracing::warn!(message = "Scenario step failed.", scenario_id = %run.id, step = index, action, code = %error.code, error = %error.message);
                record.state = StepState::Failed;
                record.error = Some(error);
            }
        }
    }
    let mut progress = run.progress();
    if progress.state == ScenarioState::Running {
        let failed = progress
            .steps
            .iter()
            .any(|record| record.state == StepState::Failed);
        progress.state = if failed {
            ScenarioState::Failed
        } else {
            ScenarioState::Completed
        };
        progress.ended_at = Some(OffsetDateTime::now_utc());
        tracing::info!(message = "Scenario ended.", scenario_id = %run.id, state = progress.state.as_str());
    }
}
