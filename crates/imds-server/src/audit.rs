//! The audit log: one JSON object per line for every credential handed out, every refused
//! token request and every lockdown refusal.
//!
//! Records name the time, the endpoint, the instance, the role, the caller's address and (when
//! the kernel told, see `lockdown`) its uid and socket inode, and the `AccessKeyId`. They never
//! carry a secret key, a session token or an IMDS token: `Record` has no field that could hold
//! one.
//!
//! Lines are handed to a writer thread (`tracing_appender::non_blocking`) so that a slow disk
//! never stalls a request. The channel is not lossy: when more than `BUFFERED_LINES` records
//! wait, the request that adds one waits too, so no record is ever dropped.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use serde::Serialize;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::lockdown::Caller;

/// Records that may wait for the writer thread before a request has to wait for it.
const BUFFERED_LINES: usize = 65_536;

/// Where the records go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, appended to (created with mode 0600).
    File(std::path::PathBuf),
}

/// The audit log, or nothing when it is off.
#[derive(Clone, Default)]
pub struct AuditLog {
    writer: Option<NonBlocking>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.writer.is_some())
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
        let builder = NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(BUFFERED_LINES)
            .thread_name("imds-audit");
        let (writer, guard) = match destination {
            Destination::Stdout => builder.finish(io::stdout()),
            Destination::File(path) => builder.finish(open_file(path)?),
        };
        Ok((
            AuditLog {
                writer: Some(writer),
            },
            guard,
        ))
    }

    /// True when records are written.
    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Writes `record` as one line.
    pub fn write(&self, record: &Record<'_>) {
        let Some(writer) = &self.writer else {
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
        // One `write` call is one line for the writer thread.
        if let Err(error) = writer.clone().write_all(&line) {
            tracing::error!(message = "Could not write an audit record.", %error);
        }
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
}

/// One audit record. It has no field for secrets, by design.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    /// What happened.
    pub event: Event,
    /// Where.
    pub endpoint: Endpoint,
    /// The instance answered as, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<&'a str>,
    /// The role whose credentials were handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// `AccessKeyId` of the credentials handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<&'a str>,
    /// The caller's address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<SocketAddr>,
    /// The uid owning the caller's socket, when it is on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The inode of the caller's socket (find its process with `ss -p` or `/proc/*/fd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u32>,
    /// Why a request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl<'a> Record<'a> {
    /// A record of `event` at `endpoint`, now, with every other field empty.
    pub fn new(event: Event, endpoint: Endpoint) -> Record<'a> {
        Record {
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            event,
            endpoint,
            instance_id: None,
            role: None,
            access_key_id: None,
            caller: None,
            uid: None,
            inode: None,
            reason: None,
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
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
