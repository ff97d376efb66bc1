//! `/stats` and `/task/stats` of the task metadata endpoint: Docker's stats document
//! (`types.StatsJSON`, as the ECS agent passes it on) for each container.
//!
//! A container given a `pid` or a `cgroup` has its numbers read from that cgroup
//! (`task_cgroup`). For the others, imds runs no container, so the numbers are made up, but they
//! behave as Docker's do: the
//! counters (CPU time, network and block I/O bytes) grow with the time since the task was
//! registered, at a steady rate picked from its Docker id, and `preread`/`precpu_stats` are the same
//! sample one second earlier, as Docker samples about once a second. The keys are the cgroup v2
//! ones (no `percpu_usage` or `max_usage`, lower-case block I/O `op`s), as moby's
//! `daemon/stats_unix.go` fills them on current hosts.

use imds_core::{
    render::rfc3339_nano,
    task::{Container, LaunchType, NetworkMode, StatsSource, Task},
};
use time::{Duration, OffsetDateTime};

use crate::container_api::task_metadata::Json;

/// The rates a container's made-up counters grow at, per second.
struct Rates {
    /// CPU nanoseconds per second (a share of one CPU).
    cpu: f64,
    rx_bytes: f64,
    tx_bytes: f64,
    read_bytes: f64,
    write_bytes: f64,
}

impl Rates {
    /// Steady rates of its own for each container: taken from the hex digits of its Docker id.
    fn of(container: &Container) -> Rates {
        let seed: u64 = container
            .docker_id
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .take(12)
            .fold(0, |value, byte| {
                value * 16 + u64::from((byte as char).to_digit(16).unwrap_or(0))
            });
        let pick = |shift: u32, low: f64, span: f64| {
            low + span * (((seed >> shift) & 0xff) as f64 / 255.0)
        };
        Rates {
            cpu: pick(0, 0.01e9, 0.2e9),
            rx_bytes: pick(8, 200.0, 4000.0),
            tx_bytes: pick(16, 100.0, 2000.0),
            read_bytes: pick(24, 0.0, 8192.0),
            write_bytes: pick(32, 0.0, 16384.0),
        }
    }
}

/// Seconds from `since` to `now`, never negative.
fn seconds(since: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (now - since).as_seconds_f64().max(0.0)
}

fn count(value: f64) -> Json {
    Json::Int(value.max(0.0) as i64)
}

/// The CPU part of a sample taken at `at`.
fn cpu_stats(origin: OffsetDateTime, rates: &Rates, at: OffsetDateTime, cpus: i64) -> Json {
    let running = seconds(origin, at);
    let total = rates.cpu * running;
    let system = (at.unix_timestamp_nanos() as f64) * cpus as f64;
    Json::Object(vec![
        (
            "cpu_usage",
            Json::Object(vec![
                ("total_usage", count(total)),
                ("usage_in_kernelmode", count(total * 0.3)),
                ("usage_in_usermode", count(total * 0.7)),
            ]),
        ),
        ("system_cpu_usage", count(system)),
        ("online_cpus", Json::Int(cpus)),
        (
            "throttling_data",
            Json::Object(vec![
                ("periods", Json::Int(0)),
                ("throttled_periods", Json::Int(0)),
                ("throttled_time", Json::Int(0)),
            ]),
        ),
    ])
}

/// One container's stats document at `now`: read from its cgroup when it has a `pid` or a
/// `cgroup` (`None` when that cannot be read), else made up.
pub(crate) fn container_stats(
    task: &Task,
    container: &Container,
    with_rates: bool,
    now: OffsetDateTime,
) -> Option<Json> {
    match container.stats {
        StatsSource::Synthetic => Some(synthetic_stats(task, container, with_rates, now)),
        StatsSource::Pid(_) | StatsSource::Cgroup(_) => {
            crate::container_api::task_cgroup::container_stats(task, container, now)
        }
    }
}

/// One container's made-up stats document at `now`.
fn synthetic_stats(
    task: &Task,
    container: &Container,
    with_rates: bool,
    now: OffsetDateTime,
) -> Json {
    let rates = Rates::of(container);
    let read = now;
    let preread = now - Duration::SECOND;
    // From the task's registration: its containers' `StartedAt` may lie a few seconds ahead.
    let origin = task.pull_started_at;
    let running = seconds(origin, read);
    let cpus = std::thread::available_parallelism()
        .map_or(1, |count| count.get())
        .try_into()
        .unwrap_or(1);
    let limit_mib = container.memory.or(task.memory).unwrap_or(512);
    let limit = i64::from(limit_mib) * 1024 * 1024;
    // A working set of a fifth of the limit, breathing by a few per cent over a minute.
    let breathing = 1.0 + 0.03 * ((read.second() as f64) / 60.0 * std::f64::consts::TAU).sin();
    let usage = (limit as f64 * 0.2 * breathing) as i64;
    let file = usage / 4;
    let anon = usage - file;
    let blkio = |bytes: f64| {
        Json::Array(vec![
            Json::Object(vec![
                ("major", Json::Int(259)),
                ("minor", Json::Int(0)),
                ("op", Json::str("read")),
                ("value", count(rates.read_bytes * bytes)),
            ]),
            Json::Object(vec![
                ("major", Json::Int(259)),
                ("minor", Json::Int(0)),
                ("op", Json::str("write")),
                ("value", count(rates.write_bytes * bytes)),
            ]),
        ])
    };
    let mut fields = vec![
        ("read", Json::Str(rfc3339_nano(read))),
        ("preread", Json::Str(rfc3339_nano(preread))),
        (
            "pids_stats",
            Json::Object(vec![("current", Json::Int(3)), ("limit", Json::Int(4096))]),
        ),
        (
            "blkio_stats",
            Json::Object(vec![
                ("io_service_bytes_recursive", blkio(running)),
                ("io_serviced_recursive", Json::Array(Vec::new())),
                ("io_queue_recursive", Json::Array(Vec::new())),
                ("io_service_time_recursive", Json::Array(Vec::new())),
                ("io_wait_time_recursive", Json::Array(Vec::new())),
                ("io_merged_recursive", Json::Array(Vec::new())),
                ("io_time_recursive", Json::Array(Vec::new())),
                ("sectors_recursive", Json::Array(Vec::new())),
            ]),
        ),
        ("num_procs", Json::Int(0)),
        ("storage_stats", Json::Object(Vec::new())),
        ("cpu_stats", cpu_stats(origin, &rates, read, cpus)),
        ("precpu_stats", cpu_stats(origin, &rates, preread, cpus)),
        (
            "memory_stats",
            Json::Object(vec![
                ("usage", Json::Int(usage)),
                (
                    "stats",
                    Json::Object(vec![
                        ("active_anon", Json::Int(anon / 2)),
                        ("active_file", Json::Int(file / 2)),
                        ("anon", Json::Int(anon)),
                        ("file", Json::Int(file)),
                        ("inactive_anon", Json::Int(anon - anon / 2)),
                        ("inactive_file", Json::Int(file - file / 2)),
                        ("pgfault", count(running * 50.0)),
                        ("pgmajfault", Json::Int(0)),
                    ]),
                ),
                ("limit", Json::Int(limit)),
            ]),
        ),
        ("name", Json::Str(format!("/{}", container.docker_name))),
        ("id", Json::str(container.docker_id.as_str())),
    ];
    if task.network_mode != NetworkMode::Host {
        let rx = rates.rx_bytes * running;
        let tx = rates.tx_bytes * running;
        fields.push((
            "networks",
            Json::Object(vec![(
                "eth0",
                Json::Object(vec![
                    ("rx_bytes", count(rx)),
                    ("rx_packets", count(rx / 120.0)),
                    ("rx_errors", Json::Int(0)),
                    ("rx_dropped", Json::Int(0)),
                    ("tx_bytes", count(tx)),
                    ("tx_packets", count(tx / 120.0)),
                    ("tx_errors", Json::Int(0)),
                    ("tx_dropped", Json::Int(0)),
                ]),
            )]),
        ));
        // The EC2 agent adds rates for bridge and awsvpc tasks (ECS Developer Guide, v4).
        if with_rates && task.launch_type == LaunchType::Ec2 {
            fields.push((
                "network_rate_stats",
                Json::Object(vec![
                    ("rx_bytes_per_sec", Json::Float(rates.rx_bytes)),
                    ("tx_bytes_per_sec", Json::Float(rates.tx_bytes)),
                ]),
            ));
        }
    }
    Json::Object(fields)
}

/// `/task/stats`: every container's stats, keyed by its Docker id; a container whose cgroup
/// cannot be read is `{}`, as the agent writes a container it has no stats for
/// (`agent/handlers/v4/stats_response.go`).
pub(crate) fn task_stats(task: &Task, with_rates: bool, now: OffsetDateTime) -> Json {
    Json::Keyed(
        task.containers
            .iter()
            .map(|container| {
                (
                    container.docker_id.clone(),
                    container_stats(task, container, with_rates, now)
                        .unwrap_or_else(|| Json::Object(Vec::new())),
                )
            })
            .collect(),
    )
}
