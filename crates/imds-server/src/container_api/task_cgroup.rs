//! `/stats` of a container given a `pid` or a `cgroup`: Docker's stats document filled from the
//! real cgroup, as moby's `daemon/stats_unix.go` fills it, on cgroup v2 (unified) and v1 hosts.
//!
//! - CPU: v2 `cpu.stat` (`usage_usec`, `user_usec`, `system_usec`, throttling); v1
//!   `cpuacct.usage`, `cpuacct.stat` (clock ticks of 1/100 s) and `cpu.stat`. `system_cpu_usage`
//!   is the host's `/proc/stat` total in nanoseconds, `online_cpus` its CPU count.
//! - Memory: v2 `memory.current`, `memory.max` (`max`: the host's memory), `memory.stat`; v1
//!   `memory.usage_in_bytes`, `memory.limit_in_bytes` (at most the host's memory), `memory.stat`.
//! - Block I/O: v2 `io.stat` (`rbytes`/`wbytes` as `read`/`write`); v1
//!   `blkio.throttle.io_service_bytes` (`Read`/`Write`, as Docker writes them there).
//! - `pids.current` and `pids.max`; network counters from `/proc/PID/net/dev` of the process (or
//!   of the cgroup's first process), loopback left out.
//!
//! `precpu_stats` and `preread` are the container's previous sample, taken on its previous
//! request; on the first one they are zero and Go's zero time, as Docker's one-shot stats are.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use imds_core::{
    render::rfc3339_nano,
    task::{Container, NetworkMode, StatsSource, Task},
};
use time::OffsetDateTime;

use crate::container_api::task_metadata::Json;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Go's zero `time.Time`, as Docker writes a `preread` it has not taken.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// `USER_HZ`: the unit of `/proc/stat` and `cpuacct.stat`.
const TICKS_PER_SECOND: u64 = 100;

/// One CPU reading, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    total: u64,
    user: u64,
    system: u64,
    host: u64,
    online: u64,
    periods: u64,
    throttled_periods: u64,
    throttled_time: u64,
}

/// Each container's previous CPU reading, by Docker id.
static PREVIOUS: Mutex<Option<HashMap<String, (OffsetDateTime, Cpu)>>> = Mutex::new(None);

/// Where the container's cgroup files are.
enum Layout {
    /// cgroup v2: one directory.
    Unified(PathBuf),
    /// cgroup v1: a directory per controller.
    Split(HashMap<String, PathBuf>),
}

impl Layout {
    fn file(&self, controller: &str, name: &str) -> PathBuf {
        match self {
            Layout::Unified(directory) => directory.join(name),
            Layout::Split(directories) => directories
                .get(controller)
                .cloned()
                .unwrap_or_else(|| Path::new(CGROUP_ROOT).join(controller))
                .join(name),
        }
    }
}

fn unified() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// `path` below `root`, refusing anything that would climb out of it.
fn below(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return None;
    }
    Some(root.join(relative))
}

fn layout(source: &StatsSource) -> Option<Layout> {
    let root = Path::new(CGROUP_ROOT);
    match source {
        StatsSource::Synthetic => None,
        StatsSource::Cgroup(path) => {
            if unified() {
                below(root, path).map(Layout::Unified)
            } else {
                let mut directories = HashMap::new();
                for controller in ["cpu", "cpuacct", "memory", "blkio", "pids"] {
                    directories.insert(controller.to_owned(), below(&root.join(controller), path)?);
                }
                Some(Layout::Split(directories))
            }
        }
        StatsSource::Pid(pid) => {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let unified = unified();
            let mut directories = HashMap::new();
            for line in text.lines() {
                let mut parts = line.splitn(3, ':');
                let (Some(_), Some(controllers), Some(path)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if unified {
                    if controllers.is_empty() {
                        return below(root, path).map(Layout::Unified);
                    }
                } else {
                    for controller in controllers.split(',') {
                        directories
                            .insert(controller.to_owned(), below(&root.join(controller), path)?);
                    }
                }
            }
            (!unified).then_some(Layout::Split(directories))
        }
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// `key value` lines.
fn pairs(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

/// The host's CPU time in nanoseconds and its CPU count, from `/proc/stat`.
fn host_cpu() -> Option<(u64, u64)> {
    let text = read(Path::new("/proc/stat"))?;
    let mut total = None;
    let mut online = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields.take(8).filter_map(|f| f.parse::<u64>().ok()).sum();
                total = Some(ticks * (1_000_000_000 / TICKS_PER_SECOND));
            }
            Some(name) if name.starts_with("cpu") => online += 1,
            _ => {}
        }
    }
    Some((total?, online.max(1)))
}

fn host_memory() -> Option<u64> {
    let text = read(Path::new("/proc/meminfo"))?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu(layout: &Layout) -> Option<Cpu> {
    let (host, online) = host_cpu()?;
    let mut cpu = Cpu {
        host,
        online,
        ..Cpu::default()
    };
    match layout {
        Layout::Unified(_) => {
            let text = read(&layout.file("cpu", "cpu.stat"))?;
            let stat = pairs(&text);
            cpu.total = stat.get("usage_usec").copied()? * 1000;
            cpu.user = stat.get("user_usec").copied().unwrap_or(0) * 1000;
            cpu.system = stat.get("system_usec").copied().unwrap_or(0) * 1000;
            cpu.periods = stat.get("nr_periods").copied().unwrap_or(0);
            cpu.throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
            cpu.throttled_time = stat.get("throttled_usec").copied().unwrap_or(0) * 1000;
        }
        Layout::Split(_) => {
            cpu.total = number(&layout.file("cpuacct", "cpuacct.usage"))?;
            let tick = 1_000_000_000 / TICKS_PER_SECOND;
            if let Some(text) = read(&layout.file("cpuacct", "cpuacct.stat")) {
                let stat = pairs(&text);
                cpu.user = stat.get("user").copied().unwrap_or(0) * tick;
                cpu.system = stat.get("system").copied().unwrap_or(0) * tick;
            }
            if let Some(text) = read(&layout.file("cpu", "cpu.stat")) {
                let stat = pairs(&text);
                cpu.periods = stat.get("nr_periods").copied().unwrap_or(0);
                cpu.throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
                cpu.throttled_time = stat.get("throttled_time").copied().unwrap_or(0);
            }
        }
    }
    Some(cpu)
}

fn cpu_json(cpu: &Cpu) -> Json {
    Json::Object(vec![
        (
            "cpu_usage",
            Json::Object(vec![
                ("total_usage", int(cpu.total)),
                ("usage_in_kernelmode", int(cpu.system)),
                ("usage_in_usermode", int(cpu.user)),
            ]),
        ),
        ("system_cpu_usage", int(cpu.host)),
        ("online_cpus", int(cpu.online)),
        (
            "throttling_data",
            Json::Object(vec![
                ("periods", int(cpu.periods)),
                ("throttled_periods", int(cpu.throttled_periods)),
                ("throttled_time", int(cpu.throttled_time)),
            ]),
        ),
    ])
}

fn int(value: u64) -> Json {
    Json::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn memory(layout: &Layout) -> Option<Json> {
    let host = host_memory().unwrap_or(u64::MAX);
    let (usage, limit, stat) = match layout {
        Layout::Unified(_) => {
            let usage = number(&layout.file("memory", "memory.current"))?;
            let limit = read(&layout.file("memory", "memory.max"))
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(host);
            (usage, limit, read(&layout.file("memory", "memory.stat")))
        }
        Layout::Split(_) => {
            let usage = number(&layout.file("memory", "memory.usage_in_bytes"))?;
            let limit = number(&layout.file("memory", "memory.limit_in_bytes")).unwrap_or(host);
            (usage, limit, read(&layout.file("memory", "memory.stat")))
        }
    };
    let mut stats: Vec<(String, u64)> = stat
        .as_deref()
        .map(pairs)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    stats.sort();
    Some(Json::Object(vec![
        ("usage", int(usage)),
        (
            "stats",
            Json::Keyed(
                stats
                    .into_iter()
                    .map(|(key, value)| (key, int(value)))
                    .collect(),
            ),
        ),
        ("limit", int(limit.min(host))),
    ]))
}

fn blkio(layout: &Layout) -> Json {
    let entry = |major: u64, minor: u64, op: &str, value: u64| {
        Json::Object(vec![
            ("major", int(major)),
            ("minor", int(minor)),
            ("op", Json::str(op)),
            ("value", int(value)),
        ])
    };
    let device = |text: &str| {
        let (major, minor) = text.split_once(':')?;
        Some((major.parse::<u64>().ok()?, minor.parse::<u64>().ok()?))
    };
    let mut entries = Vec::new();
    match layout {
        Layout::Unified(_) => {
            for line in read(&layout.file("io", "io.stat"))
                .unwrap_or_default()
                .lines()
            {
                let mut fields = line.split_whitespace();
                let Some((major, minor)) = fields.next().and_then(device) else {
                    continue;
                };
                let values: HashMap<&str, u64> = fields
                    .filter_map(|field| {
                        let (key, value) = field.split_once('=')?;
                        Some((key, value.parse().ok()?))
                    })
                    .collect();
                for (key, op) in [("rbytes", "read"), ("wbytes", "write")] {
                    entries.push(entry(
                        major,
                        minor,
                        op,
                        values.get(key).copied().unwrap_or(0),
                    ));
                }
            }
        }
        Layout::Split(_) => {
            let file = layout.file("blkio", "blkio.throttle.io_service_bytes");
            for line in read(&file).unwrap_or_default().lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [device_field, op, value] = fields[..] {
                    if let (Some((major, minor)), Ok(value)) = (device(device_field), value.parse())
                    {
                        entries.push(entry(major, minor, op, value));
                    }
                }
            }
        }
    }
    Json::Object(vec![
        ("io_service_bytes_recursive", Json::Array(entries)),
        ("io_serviced_recursive", Json::Array(Vec::new())),
        ("io_queue_recursive", Json::Array(Vec::new())),
        ("io_service_time_recursive", Json::Array(Vec::new())),
        ("io_wait_time_recursive", Json::Array(Vec::new())),
        ("io_merged_recursive", Json::Array(Vec::new())),
        ("io_time_recursive", Json::Array(Vec::new())),
        ("sectors_recursive", Json::Array(Vec::new())),
    ])
}

fn pids(layout: &Layout) -> Json {
    let current = number(&layout.file("pids", "pids.current")).unwrap_or(0);
    let mut fields = vec![("current", int(current))];
    if let Some(limit) = number(&layout.file("pids", "pids.max")) {
        fields.push(("limit", int(limit)));
    }
    Json::Object(fields)
}

/// A process of the container: the given one, or the cgroup's first.
fn process(source: &StatsSource, layout: &Layout) -> Option<u32> {
    if let StatsSource::Pid(pid) = source {
        return Some(*pid);
    }
    let procs = read(&layout.file("memory", "cgroup.procs"))
        .or_else(|| read(&layout.file("pids", "cgroup.procs")))?;
    procs.lines().next()?.trim().parse().ok()
}

fn networks(pid: u32) -> Option<Json> {
    let text = read(Path::new(&format!("/proc/{pid}/net/dev")))?;
    let mut interfaces = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let counters: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|field| field.parse().ok())
            .collect();
        if counters.len() < 12 {
            continue;
        }
        interfaces.push((
            name.to_owned(),
            Json::Object(vec![
                ("rx_bytes", int(counters[0])),
                ("rx_packets", int(counters[1])),
                ("rx_errors", int(counters[2])),
                ("rx_dropped", int(counters[3])),
                ("tx_bytes", int(counters[8])),
                ("tx_packets", int(counters[9])),
                ("tx_errors", int(counters[10])),
                ("tx_dropped", int(counters[11])),
            ]),
        ));
    }
    interfaces.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Json::Keyed(interfaces))
}

/// The container's stats document from its cgroup at `now`, or `None` when its cgroup cannot be
/// read (the process is gone, the path does not exist).
pub(crate) fn container_stats(
    task: &Task,
    container: &Container,
    now: OffsetDateTime,
) -> Option<Json> {
    let layout = layout(&container.stats)?;
    let cpu = cpu(&layout)?;
    let memory = memory(&layout)?;
    let previous = {
        let mut remembered = PREVIOUS.lock().unwrap_or_else(|poison| poison.into_inner());
        remembered
            .get_or_insert_with(HashMap::new)
            .insert(container.docker_id.clone(), (now, cpu))
    };
    let (preread, precpu) = match previous {
        Some((at, cpu)) => (Json::Str(rfc3339_nano(at)), cpu_json(&cpu)),
        None => (Json::str(ZERO_TIME), cpu_json(&Cpu::default())),
    };
    let mut fields = vec![
        ("read", Json::Str(rfc3339_nano(now))),
        ("preread", preread),
        ("pids_stats", pids(&layout)),
        ("blkio_stats", blkio(&layout)),
        ("num_procs", Json::Int(0)),
        ("storage_stats", Json::Object(Vec::new())),
        ("cpu_stats", cpu_json(&cpu)),
        ("precpu_stats", precpu),
        ("memory_stats", memory),
        ("name", Json::Str(format!("/{}", container.docker_name))),
        ("id", Json::str(container.docker_id.as_str())),
    ];
    if task.network_mode != NetworkMode::Host {
        if let Some(networks) = process(&container.stats, &layout).and_then(networks) {
            fields.push(("networks", networks));
        }
    }
    Some(Json::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_hierarchy() {
        let root = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            below(root, "/imds/web"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/imds/web"))
        );
        assert_eq!(below(root, "/imds/../../etc"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let source = StatsSource::Pid(std::process::id());
        let layout = layout(&source).expect("this process has cgroups");
        let cpu = cpu(&layout).expect("its CPU time can be read");
        assert!(cpu.total > 0);
        assert!(cpu.host >= cpu.total / cpu.online.max(1));
        let Json::Object(fields) = memory(&layout).expect("its memory can be read") else {
            panic!("memory stats are an object");
        };
        assert!(matches!(fields[0], ("usage", Json::Int(usage)) if usage > 0));
        assert!(super::layout(&StatsSource::Pid(u32::MAX)).is_none());
    }
}
