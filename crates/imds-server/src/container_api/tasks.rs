//! The ECS tasks the container listener serves: the task table, how it is loaded from the
//! config file's `[[tasks]]` and the store, and how the control API registers and deregisters
//! tasks while the server runs (`Tasks`).
//!
//! Each task is kept in the store with the values generated for it (ids, Docker ids,
//! timestamps), so it answers the same after a restart. A configured task finds its stored
//! version by its `task-id` when it gives one, else by an unchanged description; a task whose
//! description changed without a `task-id` gets new values. The file is the whole list of its
//! own tasks: stored tasks of this host that came from the file and that it no longer names are
//! removed at start. Tasks registered through the control API are kept until deregistered, as
//! instances registered through it are; a configured task whose `task-id` is one of theirs
//! takes it over.
//!
//! The table in force is behind an `ArcSwap`: the container listener loads it without a lock,
//! and a write (store first, then a new table) replaces it whole.

use std::{net::IpAddr, sync::Arc};

use arc_swap::ArcSwap;
use imds_core::task::{
    spec::{StoredTask, TaskOrigin, TaskSpec},
    Container, Task,
};
use imds_store::{Store, StoreError, TaskWrite};
use thiserror::Error;

type Limiter = governor::DefaultKeyedRateLimiter<(IpAddr, String)>;

/// The tasks served, the ids that pick one, and the rate limit of their endpoint.
#[derive(Default)]
pub struct TaskTable {
    tasks: Vec<Task>,
    /// Each task's description and generated values, in the order of `tasks`.
    stored: Vec<StoredTask>,
    /// True once the table has had tasks: the ECS paths are answered as the agent answers
    /// them (an unknown credentials id is `400 InvalidIdInRequest`) even when the last task
    /// has been deregistered.
    answers_ecs: bool,
    /// Requests by caller address and path, as the ECS agent limits its task server; `None`:
    /// no limit. Shared by the tables that replace this one.
    limiter: Option<Arc<Limiter>>,
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

/// Checks that no two tasks share a task id, endpoint id, credentials id or address.
fn check_unique(tasks: &[Task]) -> Result<(), String> {
    let mut endpoint_ids = std::collections::HashSet::new();
    let mut credentials_ids = std::collections::HashSet::new();
    let mut task_ids = std::collections::HashSet::new();
    let mut addresses = std::collections::HashSet::new();
    for task in tasks {
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
    Ok(())
}

impl TaskTable {
    /// A table of `tasks` (each with its stored form); refuses two tasks or containers with
    /// one id, and an address claimed by two tasks.
    pub fn new(entries: Vec<(StoredTask, Task)>) -> Result<TaskTable, String> {
        let (stored, tasks): (Vec<StoredTask>, Vec<Task>) = entries.into_iter().unzip();
        check_unique(&tasks)?;
        Ok(TaskTable {
            answers_ecs: !tasks.is_empty(),
            tasks,
            stored,
            limiter: None,
        })
    }

    /// The table with each caller address limited to `rate` requests on each path (`None`: no
    /// limit). The ECS agent allows 40 a second with a burst of 60 (its
    /// `TaskMetadataSteadyStateRate` and `TaskMetadataBurstRate`).
    pub fn with_rate_limit(mut self, rate: Option<crate::throttle::Rate>) -> TaskTable {
        self.limiter = rate.map(|rate| {
            Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_second(rate.per_second).allow_burst(rate.burst),
            ))
        });
        self
    }

    /// A table of `entries` that takes this one's place: same limiter, and the ECS paths stay
    /// answered as the agent answers them.
    fn successor(&self, entries: Vec<(StoredTask, Task)>) -> Result<TaskTable, String> {
        let mut table = TaskTable::new(entries)?;
        table.answers_ecs |= self.answers_ecs;
        table.limiter = self.limiter.clone();
        Ok(table)
    }

    /// Every task with its stored form.
    fn entries(&self) -> Vec<(StoredTask, Task)> {
        self.stored
            .iter()
            .cloned()
            .zip(self.tasks.iter().cloned())
            .collect()
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

    /// True when the ECS paths are answered: the table has, or has had, tasks.
    pub(crate) fn answers_ecs(&self) -> bool {
        self.answers_ecs
    }

    /// The task `task_id` with its stored form.
    pub fn task(&self, task_id: &str) -> Option<(&StoredTask, &Task)> {
        self.tasks
            .iter()
            .position(|task| task.task_id == task_id)
            .map(|index| (&self.stored[index], &self.tasks[index]))
    }

    /// Every task with its stored form, in the order loaded.
    pub fn described(&self) -> impl Iterator<Item = (&StoredTask, &Task)> {
        self.stored.iter().zip(self.tasks.iter())
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

/// Why a task write was refused.
#[derive(Debug, Error)]
pub enum TaskWriteError {
    /// The description is not valid; the message names the key (`task.family: ...`).
    #[error("{0}")]
    Invalid(String),
    /// No such task.
    #[error("the task {0} is not registered")]
    NotFound(String),
    /// An id or address is another task's.
    #[error("{0}")]
    Conflict(String),
    /// The store failed or is unavailable; nothing was changed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for TaskWriteError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => TaskWriteError::Conflict(message),
            StoreError::TaskNotFound(task_id) => TaskWriteError::NotFound(task_id),
            other => TaskWriteError::Store(other),
        }
    }
}

/// The task table in force, and how it is changed: the store is written first, then the table
/// is replaced. Clones share the table.
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<TasksInner>,
}

struct TasksInner {
    table: ArcSwap<TaskTable>,
    /// Where tasks are kept; `None`: a table that cannot be changed.
    store: Option<Arc<dyn Store>>,
    /// This host, in fleet mode: the tasks written are its own.
    host_id: Option<String>,
    /// Held by each write, from its check to its swap, so that no two writes lose each other's
    /// change.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("tasks", &self.inner.table.load().tasks.len())
            .field("host_id", &self.inner.host_id)
            .finish_non_exhaustive()
    }
}

impl Default for Tasks {
    /// No tasks, and none can be registered.
    fn default() -> Tasks {
        Tasks::fixed(TaskTable::default())
    }
}

impl Tasks {
    /// `table`, changed through `store` (`host_id`'s tasks in fleet mode).
    pub fn new(table: TaskTable, store: Arc<dyn Store>, host_id: Option<String>) -> Tasks {
        Tasks::with(table, Some(store), host_id)
    }

    /// `table`, which cannot be changed.
    pub fn fixed(table: TaskTable) -> Tasks {
        Tasks::with(table, None, None)
    }

    fn with(table: TaskTable, store: Option<Arc<dyn Store>>, host_id: Option<String>) -> Tasks {
        Tasks {
            inner: Arc::new(TasksInner {
                table: ArcSwap::from_pointee(table),
                store,
                host_id,
                writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The table in force; lock-free.
    pub fn table(&self) -> Arc<TaskTable> {
        self.inner.table.load_full()
    }

    fn store(&self) -> Result<&Arc<dyn Store>, TaskWriteError> {
        self.inner.store.as_ref().ok_or_else(|| {
            TaskWriteError::Store(StoreError::Config(
                "this server's tasks cannot be changed".to_owned(),
            ))
        })
    }

    /// Registers a task described by `spec` (`origin` API) on `host_id` (fleet mode; `None`:
    /// this host), served once this returns when it is this host's; another host serves it
    /// once the change feed brings it. Answers the host it was registered on.
    pub async fn register(
        &self,
        spec: TaskSpec,
        host_id: Option<&str>,
    ) -> Result<(StoredTask, Task, Option<String>), TaskWriteError> {
        let store = self.store()?;
        match (host_id, &self.inner.host_id) {
            (Some(_), None) => {
                return Err(TaskWriteError::Invalid(
                    "host-id: this server is not in fleet mode (serve with --host-id and a shared \
                     store)"
                        .to_owned(),
                ))
            }
            (Some(host_id), Some(_)) => imds_core::host_id::check_host_id(host_id)
                .map_err(|message| TaskWriteError::Invalid(format!("host-id: {message}")))?,
            (None, _) => {}
        }
        let mut stored = StoredTask::new(spec);
        stored.origin = TaskOrigin::Api;
        let task = stored
            .resolve()
            .map_err(|error| TaskWriteError::Invalid(error.0))?;
        let placed = host_id
            .map(str::to_owned)
            .or_else(|| self.inner.host_id.clone());
        if placed != self.inner.host_id {
            let mut write = self.write_of(&stored, &task);
            write.host_id = placed.clone();
            store.create_task(write).await?;
            return Ok((stored, task, placed));
        }
        let _writing = self.inner.writing.lock().await;
        let current = self.inner.table.load_full();
        if current.task(&task.task_id).is_some() {
            return Err(TaskWriteError::Conflict(format!(
                "the task id {} is registered already",
                task.task_id
            )));
        }
        let mut entries = current.entries();
        entries.push((stored.clone(), task.clone()));
        let table = current
            .successor(entries)
            .map_err(TaskWriteError::Conflict)?;
        store.create_task(self.write_of(&stored, &task)).await?;
        self.inner.table.store(Arc::new(table));
        Ok((stored, task, placed))
    }

    /// Applies an RFC 7396 merge `patch` to the description of the task `task_id` (one this
    /// host serves), keeping the values generated for it (a container added gets its own):
    /// served as changed once this returns. A config file's task keeps the change until the
    /// next start, which serves the file's list again.
    pub async fn update(
        &self,
        task_id: &str,
        patch: &serde_json::Value,
    ) -> Result<(StoredTask, Task), TaskWriteError> {
        let store = self.store()?;
        if !patch.is_object() {
            return Err(TaskWriteError::Invalid(
                "the body must be a JSON object: a merge patch of the task's description"
                    .to_owned(),
            ));
        }
        let _writing = self.inner.writing.lock().await;
        let current = self.inner.table.load_full();
        let Some((stored, _)) = current.task(task_id) else {
            return Err(TaskWriteError::NotFound(task_id.to_owned()));
        };
        let mut document =
            serde_json::to_value(&stored.task).expect("a task description always serialises");
        imds_core::patch::merge_patch(&mut document, patch);
        let spec: TaskSpec = serde_json::from_value(document)
            .map_err(|error| TaskWriteError::Invalid(format!("task: {error}")))?;
        let mut changed = stored.clone();
        changed.generated.complete(&spec);
        changed.task = spec;
        let task = changed
            .resolve()
            .map_err(|error| TaskWriteError::Invalid(error.0))?;
        if task.task_id != task_id {
            return Err(TaskWriteError::Invalid(
                "task-id: a task's id cannot change; register a new task".to_owned(),
            ));
        }
        let entries = current
            .entries()
            .into_iter()
            .map(|entry| {
                if entry.1.task_id == task_id {
                    (changed.clone(), task.clone())
                } else {
                    entry
                }
            })
            .collect();
        let table = current
            .successor(entries)
            .map_err(TaskWriteError::Conflict)?;
        store
            .update_task(self.write_of(&changed, &task), None)
            .await?;
        self.inner.table.store(Arc::new(table));
        Ok((changed, task))
    }

    /// Deregisters the task `task_id`: it is no longer served once this returns (in fleet
    /// mode, a task of another host is removed from the store, and that host drops it once the
    /// change feed brings the removal).
    pub async fn deregister(&self, task_id: &str) -> Result<(), TaskWriteError> {
        let store = self.store()?;
        let _writing = self.inner.writing.lock().await;
        let current = self.inner.table.load_full();
        if current.task(task_id).is_none() {
            if self.inner.host_id.is_none() {
                return Err(TaskWriteError::NotFound(task_id.to_owned()));
            }
            store.get_task(task_id).await?;
            store.delete_task(task_id).await?;
            return Ok(());
        }
        match store.delete_task(task_id).await {
            Ok(()) | Err(StoreError::TaskNotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let entries = current
            .entries()
            .into_iter()
            .filter(|(_, task)| task.task_id != task_id)
            .collect();
        let table = current
            .successor(entries)
            .map_err(TaskWriteError::Conflict)?;
        self.inner.table.store(Arc::new(table));
        Ok(())
    }

    /// Reads this host's tasks from the store again and serves them (fleet mode: another host
    /// registered or deregistered one of them). Stored tasks that cannot be read or served are
    /// logged and left out.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let _writing = self.inner.writing.lock().await;
        let records = match &self.inner.host_id {
            Some(host_id) => store.list_host_tasks(host_id).await?,
            None => store.list_tasks().await?,
        };
        let mut entries: Vec<(StoredTask, Task)> = Vec::with_capacity(records.len());
        for record in records {
            let resolved = serde_json::from_str::<StoredTask>(&record.spec)
                .map_err(|error| error.to_string())
                .and_then(|stored| {
                    let task = stored.resolve().map_err(|error| error.0)?;
                    Ok((stored, task))
                });
            match resolved {
                Ok(entry) => {
                    let mut candidate: Vec<Task> =
                        entries.iter().map(|(_, task)| task.clone()).collect();
                    candidate.push(entry.1.clone());
                    match check_unique(&candidate) {
                        Ok(()) => entries.push(entry),
                        Err(error) => {
                            tracing::warn!(message = "A stored task cannot be served.", task_id = %record.task_id, %error)
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "A stored task cannot be served.", task_id = %record.task_id, %error)
                }
            }
        }
        let current = self.inner.table.load_full();
        let table = current
            .successor(entries)
            .expect("the tasks were checked one by one");
        tracing::info!(
            message = "Tasks read from the store again.",
            tasks = table.tasks.len()
        );
        self.inner.table.store(Arc::new(table));
        Ok(())
    }

    fn write_of(&self, stored: &StoredTask, task: &Task) -> TaskWrite {
        TaskWrite {
            task_id: task.task_id.clone(),
            host_id: self.inner.host_id.clone(),
            addresses: task.addresses.clone(),
            spec: serde_json::to_string(stored).expect("a stored task always serialises"),
        }
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
                    None => task.origin.is_config() && task.task == spec,
                }
        });
        let task = match previous {
            Some((_, previous)) => {
                let mut generated = previous.generated.clone();
                generated.complete(&spec);
                StoredTask {
                    generated,
                    task: spec,
                    origin: TaskOrigin::Config,
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
    // Tasks registered through the control API stay (unless a configured task took one over);
    // the file's stale ones go first, so that their addresses are free for the configured ones.
    let mut registered = Vec::new();
    for (task_id, task) in &stored {
        if kept.contains(task_id) {
            continue;
        }
        if task.origin == TaskOrigin::Api {
            registered.push(task.clone());
        } else {
            match store.delete_task(task_id).await {
                Ok(()) | Err(StoreError::TaskNotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let mut tasks = Vec::with_capacity(chosen.len() + registered.len());
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
        tasks.push((task, resolved));
    }
    for task in registered {
        match task.resolve() {
            Ok(resolved) => tasks.push((task, resolved)),
            Err(error) => {
                tracing::warn!(message = "A registered task cannot be served.", task_id = %task.generated.task_id, error = %error.0)
            }
        }
    }
    TaskTable::new(tasks).map_err(TaskLoadError::Config)
}
