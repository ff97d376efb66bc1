//! The audit log: one JSON object per line for every credential handed out, every refused
//! token request, every lockdown refusal and every control-API call that needs the admin scope
//! (changes and role credentials), answered or refused.
//!
//! Records name the time, the endpoint, the instance, the role, the caller's address and (when
//! the kernel told, see `lockdown`) its uid and socket inode, and the `AccessKeyId`. They never
//! carry a secret key, a session token or an IMDS token: `Record` has no field that could hold
//! one.
//!
//! Lines are handed to a writer thread (`tracing_appender::non_blocking`) so that a slow disk
//! never stalls a request. A request never waits for the writer: when `BUFFERED_LINES` records
//! are queued already (the disk has stalled), the record is dropped rather than the request
//! held, and never silently: every drop is counted (`imds_audit_records_dropped_total` in
//! `/metrics`, and the `Stopped.` line), and the first one is logged as an error.
//!
//! A config reload can send the records elsewhere (`AuditLog::retarget`): every clone of the log
//! writes to the new destination from then on, and the old one is flushed and closed.

use std::{
    collections::VecDeque,
    fs::OpenOptions,
    io::{self, Write},
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use arc_swap::ArcSwapOption;

use serde::Serialize;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::lockdown::Caller;

/// Records that may wait for the writer thread; past them, records are dropped and counted.
const BUFFERED_LINES: usize = 65_536;

/// Where the records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, appended to (created with mode 0600).
    File(std::path::PathBuf),
}

/// The audit log, or nothing when it is off.
#[derive(Clone, Default)]
pub struct AuditLog {
    /// Where records are written, shared by every clone; `None`: nowhere.
    writer: Arc<ArcSwapOption<Writer>>,
    /// Records the writers replaced by `retarget` dropped.
    dropped_before: Arc<AtomicU64>,
    /// The latest records, kept in memory for the web console's feed (even when no file is
    /// written).
    recent: Option<Arc<Recent>>,
}

/// One record as the console's feed shows it: the record's fields that name who got what,
/// never a secret (a `Record` has none to copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedEntry {
    /// Its place in the feed: 1 for the first record kept, then one more for each.
    pub seq: u64,
    /// RFC 3339, UTC, when serialized (see [`rfc3339`]).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub time: OffsetDateTime,
    /// What happened.
    pub event: Event,
    /// Where.
    pub endpoint: Endpoint,
    /// The instance, when known.
    pub instance_id: Option<String>,
    /// The role.
    pub role: Option<String>,
    /// `1.0` or `2.0`.
    pub delivery: Option<&'static str>,
    /// The caller's uid, when the kernel told.
    pub uid: Option<u32>,
    /// `AccessKeyId` of the credentials handed out.
    pub access_key_id: Option<String>,
    /// Why a request was refused.
    pub reason: Option<&'static str>,
}

/// The latest audit records, at most `capacity` of them; the oldest go first.
#[derive(Debug)]
pub struct Recent {
    capacity: usize,
    entries: Mutex<(u64, VecDeque<FeedEntry>)>,
}

impl Recent {
    /// Keeps `record` as the newest entry. Once the feed is full the oldest entry is reused,
    /// its strings refilled in place: a credentials request then allocates and frees nothing
    /// here (frees of another thread's allocations were most of this cost under load).
    fn push(&self, record: &Record<'_>) {
        let mut guard = self
            .entries
            .lock()
            .expect("the feed lock is never held across a panic");
        let (last, entries) = &mut *guard;
        *last += 1;
        let seq = *last;
        if entries.len() >= self.capacity {
            let mut oldest = entries
                .pop_front()
                .expect("a full feed has an oldest entry");
            oldest.refill(seq, record);
            entries.push_back(oldest);
        } else {
            let mut entry = FeedEntry {
                seq,
                time: record.time,
                event: record.event,
                endpoint: record.endpoint,
                instance_id: None,
                role: None,
                delivery: None,
                uid: None,
                access_key_id: None,
                reason: None,
            };
            entry.refill(seq, record);
            entries.push_back(entry);
        }
    }

    /// The kept records after `seq` (all of them for 0), oldest first, at most `limit` (the
    /// latest ones when there are more).
    pub fn after(&self, seq: u64, limit: usize) -> Vec<FeedEntry> {
        let guard = self
            .entries
            .lock()
            .expect("the feed lock is never held across a panic");
        let newer: Vec<&FeedEntry> = guard.1.iter().filter(|entry| entry.seq > seq).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }
}

#[derive(Clone)]
struct Writer {
    lines: NonBlocking,
    /// Records dropped because the queue was full.
    dropped: ErrorCounter,
    /// Set once the first drop is logged.
    told: Arc<AtomicBool>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.writer.load().is_some())
            .field(
                "recent",
                &self.recent.as_ref().map(|recent| recent.capacity),
            )
            .finish()
    }
}

/// Keeps the writer thread alive; dropping it writes out what is queued.
pub type Flusher = WorkerGuard;

impl AuditLog {
    /// No audit log.
    pub fn off() -> AuditLog {
        AuditLog::default()
    }

    /// Opens `destination`; keep the `Flusher` until shutdown.
    pub fn open(destination: &Destination) -> io::Result<(AuditLog, Flusher)> {
        let (writer, flusher) = Writer::open(destination)?;
        Ok((AuditLog::writing(writer), flusher))
    }

    /// Writes records to `output` on a thread of its own, at most `queued` of them waiting.
    pub fn to_writer(output: impl Write + Send + 'static, queued: usize) -> (AuditLog, Flusher) {
        let (writer, guard) = Writer::start(output, queued);
        (AuditLog::writing(writer), guard)
    }

    fn writing(writer: Writer) -> AuditLog {
        AuditLog {
            writer: Arc::new(ArcSwapOption::from_pointee(writer)),
            ..AuditLog::default()
        }
    }

    /// Sends the records of this log and of every clone of it to `destination` from now on
    /// (`None`: nowhere). The new destination's flusher is returned, to keep in place of the old
    /// one, whose drop writes out what was queued for the old destination. On an error nothing
    /// changes.
    pub fn retarget(&self, destination: Option<&Destination>) -> io::Result<Option<Flusher>> {
        let (writer, flusher) = match destination {
            None => (None, None),
            Some(destination) => {
                let (writer, flusher) = Writer::open(destination)?;
                (Some(Arc::new(writer)), Some(flusher))
            }
        };
        if let Some(old) = self.writer.swap(writer) {
            self.dropped_before
                .fetch_add(old.dropped_count(), Ordering::Relaxed);
        }
        Ok(flusher)
    }

    /// Also keeps the latest `capacity` records in memory, for `recent` (the web console's
    /// feed).
    pub fn with_recent(self, capacity: usize) -> AuditLog {
        AuditLog {
            recent: Some(Arc::new(Recent {
                capacity: capacity.max(1),
                entries: Mutex::new((0, VecDeque::with_capacity(capacity.max(1)))),
            })),
            ..self
        }
    }

    /// The latest records, when `with_recent` asked for them.
    pub fn recent(&self) -> Option<&Arc<Recent>> {
        self.recent.as_ref()
    }

    /// Records dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        let current = self
            .writer
            .load()
            .as_ref()
            .map_or(0, |writer| writer.dropped_count());
        self.dropped_before.load(Ordering::Relaxed) + current
    }

    /// True when records are written or kept for the console's feed.
    pub fn is_on(&self) -> bool {
        self.recent.is_some() || self.writer.load().is_some()
    }

    /// Writes `record` as one line.
    pub fn write(&self, record: &Record<'_>) {
        if let Some(recent) = &self.recent {
            recent.push(record);
        }
        let writer = self.writer.load();
        let Some(writer) = writer.as_deref() else {
            return;
        };
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(message = "Could not encode an audit record.", %error);
                return;
            }
        };
        line.push(b'\n');
        // One `write` call is one line for the writer thread; it never blocks.
        if let Err(error) = writer.lines.clone().write_all(&line) {
            tracing::error!(message = "Could not write an audit record.", %error);
        }
        if writer.dropped.dropped_lines() > 0 && !writer.told.swap(true, Ordering::Relaxed) {
            tracing::error!(
                message = "Audit records dropped: the audit log's writer cannot keep up; they are counted in imds_audit_records_dropped_total.",
                queued = BUFFERED_LINES,
            );
        }
    }
}

impl Writer {
    /// A writer thread writing to `output`, at most `queued` lines waiting.
    fn start(output: impl Write + Send + 'static, queued: usize) -> (Writer, Flusher) {
        let (lines, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(queued)
            .thread_name("imds-audit")
            .finish(output);
        let writer = Writer {
            dropped: lines.error_counter(),
            lines,
            told: Arc::new(AtomicBool::new(false)),
        };
        (writer, guard)
    }

    /// A writer thread writing to `destination`.
    fn open(destination: &Destination) -> io::Result<(Writer, Flusher)> {
        Ok(match destination {
            Destination::Stdout => Writer::start(io::stdout(), BUFFERED_LINES),
            Destination::File(path) => Writer::start(open_file(path)?, BUFFERED_LINES),
        })
    }

    /// The lines it dropped.
    fn dropped_count(&self) -> u64 {
        u64::try_from(self.dropped.dropped_lines()).unwrap_or(u64::MAX)
    }
}

fn open_file(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// Credentials were handed out.
    CredentialsIssued,
    /// A token request was refused.
    TokenRefused,
    /// A lockdown policy refused the caller.
    LockdownRefused,
    /// An injected fault answered a credentials request in place of the credentials (an
    /// error, a reset, no answer); faults that still hand credentials out are recorded as
    /// `credentials-issued` with the fault's id.
    FaultInjected,
    /// A control-API call that needs the admin scope (every change, and role credentials not
    /// handed out) was answered or refused: `token` names who made it (never the token
    /// itself), `operation` what, `status` the answer.
    ControlApiCall,
}

/// Which endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// The instance metadata service.
    Imds,
    /// The container credentials endpoint.
    Container,
    /// The control API's role credentials route.
    ControlApi,
    /// The EKS Pod Identity Agent's endpoint.
    PodIdentity,
}

impl FeedEntry {
    /// Makes this entry the one of `record`, reusing its strings' memory.
    fn refill(&mut self, seq: u64, record: &Record<'_>) {
        fn reuse(kept: &mut Option<String>, value: Option<&str>) {
            match (kept.as_mut(), value) {
                (Some(kept), Some(value)) => {
                    kept.clear();
                    kept.push_str(value);
                }
                (None, Some(value)) => *kept = Some(value.to_owned()),
                (_, None) => *kept = None,
            }
        }
        self.seq = seq;
        self.time = record.time;
        self.event = record.event;
        self.endpoint = record.endpoint;
        reuse(&mut self.instance_id, record.instance_id);
        reuse(&mut self.role, record.role);
        reuse(&mut self.access_key_id, record.access_key_id);
        self.delivery = record.delivery;
        self.uid = record.uid;
        self.reason = record.reason;
    }
}

/// `time` as records and the feed write it: RFC 3339, UTC, to the nanosecond.
pub fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

fn serialize_rfc3339<S: serde::Serializer>(
    time: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*time))
}

/// One audit record. It has no field for secrets, by design.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC, when serialized: formatted only where a record is written out, not
    /// for every credentials request that the console's feed alone keeps.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub time: OffsetDateTime,
    /// What happened.
    pub event: Event,
    /// Where.
    pub endpoint: Endpoint,
    /// The instance answered as, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<&'a str>,
    /// The Kubernetes namespace of the service account asking (EKS Pod Identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// The service account asking (EKS Pod Identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<&'a str>,
    /// The role whose credentials were handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// `AccessKeyId` of the credentials handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<&'a str>,
    /// Which of the role's sets was handed out: `1.0` (IMDSv1) or `2.0` (IMDSv2), as
    /// CloudTrail's `ec2RoleDelivery`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'static str>,
    /// The metadata path the credentials were asked on, below `meta-data/`
    /// (`iam/security-credentials-extended` or `iam/security-credentials`, or
    /// `identity-credentials/ec2/security-credentials`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'static str>,
    /// The caller's address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<SocketAddr>,
    /// The uid owning the caller's socket, when it is on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The inode of the caller's socket (find its process with `ss -p` or `/proc/*/fd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u32>,
    /// Why a request was refused; for a fault, its kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The injected fault that shaped the answer, or the fault a control-API call named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'a str>,
    /// The event a control-API call named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    /// The ECS task a control-API call named, or whose role's credentials were handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<&'a str>,
    /// The name of the control-API token that made the call (never its value); absent when
    /// the call had no known token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<&'a str>,
    /// The control-API operation (its `operationId` in docs/admin-api.openapi.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    /// The HTTP status the control API answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl<'a> Record<'a> {
    /// A record of `event` at `endpoint`, now, with every other field empty.
    #[allow(
        clippy::disallowed_methods,
        reason = "an audit record carries the time it is written"
    )]
    pub fn new(event: Event, endpoint: Endpoint) -> Record<'a> {
        Record {
            time: OffsetDateTime::now_utc(),
            event,
            endpoint,
            instance_id: None,
            namespace: None,
            service_account: None,
            role: None,
            access_key_id: None,
            delivery: None,
            path: None,
            caller: None,
            uid: None,
            inode: None,
            reason: None,
            fault: None,
            event_id: None,
            task_id: None,
            token: None,
            operation: None,
            status: None,
        }
    }

    /// Sets the caller's address and, when known, its uid and inode.
    pub fn caller(mut self, address: SocketAddr, caller: Option<Caller>) -> Record<'a> {
        self.caller = Some(address);
        self.uid = caller.map(|caller| caller.uid);
        self.inode = caller.map(|caller| caller.inode);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that takes nothing until it is let go, as a stalled disk would.
    struct Stalled(std::sync::Arc<std::sync::Barrier>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.wait();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_never_holds_up_a_request_and_drops_are_counted() {
        let release = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (log, flusher) = AuditLog::to_writer(Stalled(release.clone()), 2);
        // The writer thread takes the first record and stalls on it; two more fill the queue;
        // every later one is dropped, and each write returns at once (this test would hang
        // otherwise).
        for _ in 0..10 {
            log.write(&Record::new(Event::TokenRefused, Endpoint::Imds));
        }
        assert!(log.dropped() >= 7, "{} dropped", log.dropped());
        assert!(log.dropped() <= 8, "{} dropped", log.dropped());
        // Let the writer go: what was queued is written at shutdown.
        std::thread::spawn(move || loop {
            release.wait();
        });
        drop(flusher);
    }

    #[test]
    fn the_feed_keeps_the_latest_records_without_secrets() {
        let log = AuditLog::off().with_recent(3);
        for n in 0..5 {
            let mut record = Record::new(Event::CredentialsIssued, Endpoint::Imds);
            let key = format!("ASIA{n}");
            record.access_key_id = Some(&key);
            record.role = Some("app");
            record.delivery = Some("2.0");
            log.write(&record);
        }
        let recent = log.recent().unwrap();
        let all = recent.after(0, 10);
        assert_eq!(
            all.iter().map(|entry| entry.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(all[2].access_key_id.as_deref(), Some("ASIA4"));
        let shown = serde_json::to_value(&all[2]).unwrap();
        assert_eq!(shown["time"].as_str().unwrap(), rfc3339(all[2].time));
        assert_eq!(recent.after(4, 10).len(), 1);
        assert_eq!(recent.after(0, 2)[0].seq, 4);
        // An entry reused for a record with fewer fields keeps none of the old ones.
        let mut refused = Record::new(Event::TokenRefused, Endpoint::Imds);
        refused.reason = Some("ttl");
        log.write(&refused);
        let newest = recent.after(5, 10);
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].seq, 6);
        assert_eq!(newest[0].event, Event::TokenRefused);
        assert_eq!(
            (
                newest[0].role.as_deref(),
                newest[0].access_key_id.as_deref()
            ),
            (None, None)
        );
        assert_eq!((newest[0].delivery, newest[0].reason), (None, Some("ttl")));
        let keys: Vec<_> = recent
            .after(0, 10)
            .iter()
            .map(|entry| entry.access_key_id.clone())
            .collect();
        assert_eq!(
            keys,
            [Some("ASIA3".to_owned()), Some("ASIA4".to_owned()), None]
        );
    }

    #[test]
    fn records_are_json_lines_without_empty_fields() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.jsonl");
        let (log, flusher) = AuditLog::open(&Destination::File(path.clone())).unwrap();
        let mut record = Record::new(Event::CredentialsIssued, Endpoint::Imds).caller(
            "127.0.0.1:4000".parse().unwrap(),
            Some(Caller { uid: 0, inode: 7 }),
        );
        record.role = Some("app");
        record.access_key_id = Some("ASIAEXAMPLE");
        log.write(&record);
        log.write(&Record::new(Event::TokenRefused, Endpoint::Imds));
        drop(flusher);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "credentials-issued");
        assert_eq!(lines[0]["endpoint"], "imds");
        assert_eq!(lines[0]["caller"], "127.0.0.1:4000");
        assert_eq!(lines[0]["uid"], 0);
        assert_eq!(lines[0]["access_key_id"], "ASIAEXAMPLE");
        assert_eq!(lines[1]["event"], "token-refused");
        assert!(lines[1].get("uid").is_none());
        // The time as RFC 3339, UTC, the moment the record was made.
        let time = OffsetDateTime::parse(lines[0]["time"].as_str().unwrap(), &Rfc3339).unwrap();
        assert_eq!(time, record.time);
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
