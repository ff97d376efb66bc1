//! The ECS tasks the container listener serves: the task table, and how it is loaded from the
//! config file's `[[tasks]]` and the store.
//!
//! Each task is kept in the store with the values generated for it (ids, Docker ids,
//! timestamps), so it answers the same after a restart. A configured task finds its stored
//! version by its `task-id` when it gives one, else by an unchanged description; a task whose
//! description changed without a `task-id` gets new values. The file is the whole list: stored
//! tasks of this host that it no longer names are removed at start.

use std::net::IpAddr;

use imds_core::task::{
    spec::{StoredTask, TaskSpec},
    Container, Task,
};
use imds_store::{Store, StoreError, TaskWrite};
use thiserror::Error;

/// The tasks served, the ids that pick one, and the rate limit of their endpoint.
#[derive(Default)]
pub struct TaskTable {
    tasks: Vec<Task>,
    /// Requests by caller address and path, as the ECS agent limits its task server; `None`:
    /// no limit.
    limiter: Option<governor::DefaultKeyedRateLimiter<(IpAddr, String)>>,
}

impl std::fmt::Debug for TaskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTable")
            .field("tasks", &self.tasks)
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

/// Callers and paths the limiter remembers before it forgets those that are full again.
const REMEMBERED_KEYS: usize = 10_000;

/// Why the tasks could not be loaded.
#[derive(Debug, Error)]
pub enum TaskLoadError {
    /// A configured task is not valid; the message names the key (`tasks[0].family: ...`).
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

impl TaskTable {
    /// A table of `tasks`; refuses two tasks or containers with one id, and an address claimed
    /// by two tasks.
    pub fn new(tasks: Vec<Task>) -> Result<TaskTable, String> {
        let mut endpoint_ids = std::collections::HashSet::new();
        let mut credentials_ids = std::collections::HashSet::new();
        let mut task_ids = std::collections::HashSet::new();
        let mut addresses = std::collections::HashSet::new();
        for task in &tasks {
            if !task_ids.insert(task.task_id.as_str()) {
                return Err(format!("task id {} is given twice", task.task_id));
            }
            for container in &task.containers {
                if !endpoint_ids.insert(container.endpoint_id.as_str()) {
                    return Err(format!(
                        "endpoint id {} is given to two containers",
                        container.endpoint_id
                    ));
                }
            }
            if let Some(role) = &task.role {
                if !credentials_ids.insert(role.credentials_id.as_str()) {
                    return Err(format!(
                        "credentials id {} is given to two tasks",
                        role.credentials_id
                    ));
                }
            }
            for address in &task.addresses {
                if !addresses.insert(address.to_canonical()) {
                    return Err(format!("address {address} is given to two tasks"));
                }
            }
        }
        Ok(TaskTable {
            tasks,
            limiter: None,
        })
    }

    /// The table with each caller address limited to `rate` requests on each path (`None`: no
    /// limit). The ECS agent allows 40 a second with a burst of 60 (its
    /// `TaskMetadataSteadyStateRate` and `TaskMetadataBurstRate`).
    pub fn with_rate_limit(mut self, rate: Option<crate::throttle::Rate>) -> TaskTable {
        self.limiter = rate.map(|rate| {
            governor::RateLimiter::keyed(
                governor::Quota::per_second(rate.per_second).allow_burst(rate.burst),
            )
        });
        self
    }

    /// True when `address` may make another request on `path` now.
    pub(crate) fn admit(&self, address: IpAddr, path: &str) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if limiter.len() > REMEMBERED_KEYS {
            limiter.retain_recent();
        }
        limiter
            .check_key(&(address.to_canonical(), path.to_owned()))
            .is_ok()
    }

    /// Every task, in the order loaded.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// The index of the task whose containers call from `address`, if one is registered with it.
    pub(crate) fn task_at(&self, address: IpAddr) -> Option<usize> {
        let address = address.to_canonical();
        self.tasks.iter().position(|task| {
            task.addresses
                .iter()
                .any(|claimed| claimed.to_canonical() == address)
        })
    }

    /// The task and container whose endpoint id is `endpoint_id`.
    pub(crate) fn container(&self, endpoint_id: &str) -> Option<(usize, &Task, &Container)> {
        self.tasks.iter().enumerate().find_map(|(index, task)| {
            task.container_by_endpoint(endpoint_id)
                .map(|container| (index, task, container))
        })
    }

    /// The task whose credentials id is `credentials_id`.
    pub(crate) fn by_credentials(&self, credentials_id: &str) -> Option<(usize, &Task)> {
        self.tasks.iter().enumerate().find(|(_, task)| {
            task.role
                .as_ref()
                .is_some_and(|role| role.credentials_id == credentials_id)
        })
    }
}

/// Checks a configured task the way loading will, with throwaway generated values; the error
/// names the key as `tasks[INDEX].KEY`.
pub fn check_spec(index: usize, spec: &TaskSpec) -> Result<(), String> {
    StoredTask::new(spec.clone())
        .resolve()
        .map(|_| ())
        .map_err(|error| config_error(index, &error.0))
}

fn config_error(index: usize, message: &str) -> String {
    let key = message.strip_prefix("task").unwrap_or(message);
    format!("tasks[{index}]{key}")
}

/// Writes the configured tasks to the store (each keeping the values stored for it before) and
/// loads the table of this host's tasks: `host_id`'s in fleet mode, every task in host mode.
pub async fn load(
    store: &dyn Store,
    host_id: Option<&str>,
    configured: Vec<TaskSpec>,
) -> Result<TaskTable, TaskLoadError> {
    let records = match host_id {
        Some(host_id) => store.list_host_tasks(host_id).await?,
        None => store.list_tasks().await?,
    };
    let mut stored: Vec<(String, StoredTask)> = Vec::with_capacity(records.len());
    for record in records {
        match serde_json::from_str::<StoredTask>(&record.spec) {
            Ok(task) => stored.push((record.task_id, task)),
            Err(error) => {
                // Unreadable by this build: replaced by what the file says, or removed.
                tracing::warn!(message = "A stored task cannot be read; it is not served.", task_id = %record.task_id, %error);
                stored.push((record.task_id, StoredTask::new(TaskSpec::default())));
            }
        }
    }
    let mut kept = std::collections::HashSet::new();
    let mut chosen = Vec::with_capacity(configured.len());
    for (index, spec) in configured.into_iter().enumerate() {
        let previous = stored.iter().find(|(task_id, task)| {
            !kept.contains(task_id)
                && match &spec.task_id {
                    Some(wanted) => task_id == wanted,
                    None => task.task == spec,
                }
        });
        let task = match previous {
            Some((_, previous)) => {
                let mut generated = previous.generated.clone();
                generated.complete(&spec);
                StoredTask {
                    generated,
                    task: spec,
                }
            }
            None => StoredTask::new(spec),
        };
        let resolved = task
            .resolve()
            .map_err(|error| TaskLoadError::Config(config_error(index, &error.0)))?;
        kept.insert(resolved.task_id.clone());
        chosen.push((task, resolved));
    }
    // Stale tasks go first, so that their addresses are free for the configured ones.
    for (task_id, _) in &stored {
        if !kept.contains(task_id) {
            match store.delete_task(task_id).await {
                Ok(()) | Err(StoreError::TaskNotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let mut tasks = Vec::with_capacity(chosen.len());
    for (index, (task, resolved)) in chosen.into_iter().enumerate() {
        store
            .upsert_task(TaskWrite {
                task_id: resolved.task_id.clone(),
                host_id: host_id.map(str::to_owned),
                addresses: resolved.addresses.clone(),
                spec: serde_json::to_string(&task).expect("a stored task always serialises"),
            })
            .await
            .map_err(|error| match error {
                StoreError::Conflict(message) => {
                    TaskLoadError::Config(format!("tasks[{index}]: {message}"))
                }
                other => TaskLoadError::Store(other),
            })?;
        tasks.push(resolved);
    }
    TaskTable::new(tasks).map_err(TaskLoadError::Config)
}
