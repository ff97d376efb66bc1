//! PostgreSQL for tests (feature `test-server`): a private server on loopback, or the one
//! `IMDS_TEST_PG_URL` names, and a fresh database on it per test.
//!
//! `TestServer::start` runs `initdb` and `pg_ctl` from Debian's `postgresql` package (the newest
//! `/usr/lib/postgresql/*/bin`, or `IMDS_TEST_PG_BINDIR`) in a temporary directory, on a free
//! loopback port, with trust authentication. `TestServer::builder` can put it in a network
//! namespace of the test's, listening on an address there; its Unix socket (in the temporary
//! directory) reaches it from any namespace. PostgreSQL refuses to run as root, so under root the
//! server runs as the `postgres` user (through `runuser`). A small shell supervisor
//! (`test_server.sh`) owns the cluster: it stops and deletes it when the test process closes its
//! standard input, which the operating system does when the process exits, however it exits.

#![allow(
    clippy::disallowed_methods,
    reason = "test support: bounded waits on the real clock, and the documented IMDS_TEST_* variables"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sqlx::{Connection, Executor, PgConnection};

/// The supervisor script, run with `sh -c`.
const SUPERVISOR: &str = include_str!("test_server.sh");

/// A PostgreSQL server private to this test process.
#[derive(Debug)]
pub struct TestServer {
    /// The address it listens on (loopback unless the builder said otherwise).
    address: IpAddr,
    /// The port it listens on, and that names its Unix socket.
    port: u16,
    /// The supervisor's pipes; commands go in, `ready`/`stopped` come out.
    control: Mutex<(Child, ChildStdin, BufReader<ChildStdout>)>,
    /// Where the cluster lives (removed by the supervisor at the end).
    dir: PathBuf,
}

/// How to start a `TestServer`.
#[derive(Debug, Clone)]
pub struct TestServerBuilder {
    /// Run inside this network namespace (`ip netns exec`).
    netns: Option<String>,
    /// Listen on this address (loopback by default).
    address: IpAddr,
}

impl TestServerBuilder {
    /// Runs the server inside the network namespace `name` (made by the test; root needed).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_owned());
        self
    }

    /// Listens on `address` (one of the namespace's, with `netns`) instead of loopback.
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = address;
        self
    }

    /// Creates and starts the cluster; blocks until it accepts connections.
    ///
    /// The port is free when picked but only bound by PostgreSQL a moment later, so another
    /// process (a test running alongside) can take it in between: then a new cluster is tried on
    /// another port.
    pub fn start(self) -> Result<TestServer, String> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match TestServer::start_on(&self, free_port()?) {
                Err(error) if attempts < 3 && error.contains("Address already in use") => continue,
                result => return result,
            }
        }
    }
}

impl TestServer {
    /// Creates and starts a cluster on loopback; blocks until it accepts connections.
    pub fn start() -> Result<TestServer, String> {
        TestServer::builder().start()
    }

    /// A server to start somewhere else than loopback.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            netns: None,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    fn start_on(builder: &TestServerBuilder, port: u16) -> Result<TestServer, String> {
        let bindir = postgres_bindir()?;
        let dir = tempfile_dir()?;
        let running_as_root = std::fs::metadata(&dir)
            .map_err(|error| format!("{}: {error}", dir.display()))?
            .uid()
            == 0;
        let mut command = match &builder.netns {
            Some(name) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", name]);
                command
            }
            None => Command::new("env"),
        };
        if running_as_root {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|error| format!("chown {}: {error}", dir.display()))?;
            command.args(["runuser", "-u", "postgres", "--"]);
        }
        command
            .args(["sh", "-c", SUPERVISOR, "sh"])
            .arg(&bindir)
            .arg(&dir)
            .arg(port.to_string())
            .arg(builder.address.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The supervisor outlives the test by a moment; it must not hold the test's output.
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot run the PostgreSQL supervisor: {error}"))?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let server = TestServer {
            address: builder.address,
            port,
            control: Mutex::new((child, stdin, stdout)),
            dir,
        };
        server.expect_line("ready")?;
        Ok(server)
    }

    /// The URL of `database` on this server, over TCP to its address.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}/{database}", self.socket_address())
    }

    /// The URL of `database` on this server over its Unix socket, which reaches it from every
    /// network namespace.
    pub fn unix_socket_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            self.dir.display()
        )
    }

    /// The address and port it listens on.
    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Stops the server (fast shutdown: connections are closed); blocks until it is down.
    pub fn stop(&self) -> Result<(), String> {
        self.command("stop")?;
        self.expect_line("stopped")
    }

    /// Starts the server again after `stop`; blocks until it accepts connections.
    pub fn restart(&self) -> Result<(), String> {
        self.command("start")?;
        self.expect_line("ready")
    }

    fn command(&self, command: &str) -> Result<(), String> {
        let mut control = self
            .control
            .lock()
            .unwrap_or_else(|error| error.into_inner());
        writeln!(control.1, "{command}")
            .and_then(|()| control.1.flush())
            .map_err(|error| format!("the PostgreSQL supervisor is gone: {error}"))
    }

    fn expect_line(&self, expected: &str) -> Result<(), String> {
        let mut control = self
            .control
            .lock()
            .unwrap_or_else(|error| error.into_inner());
        let mut line = String::new();
        let read = control.2.read_line(&mut line);
        if matches!(read, Ok(n) if n > 0) && line.trim() == expected {
            return Ok(());
        }
        let log = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        Err(format!(
            "PostgreSQL did not become {expected} (got {line:?}, {read:?})\n\
             supervisor.log:\n{}\ninitdb.log:\n{}\npostgres.log:\n{}",
            log("supervisor.log"),
            log("initdb.log"),
            log("postgres.log"),
        ))
    }
}

/// A database made for one test, dropped when this is dropped (unless `IMDS_TEST_KEEP_DB` is
/// set).
#[derive(Debug)]
pub struct TestDatabase {
    /// The database's URL.
    pub url: String,
    /// The URL of the server's `postgres` database, to drop this one from.
    admin_url: String,
    /// Its name.
    name: String,
}

impl TestDatabase {
    /// The database's name, to reach it by another URL (`TestServer::url`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os("IMDS_TEST_KEEP_DB").is_some() {
            eprintln!("kept test database {}", self.url);
            return;
        }
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs outside any async context the test may be in, on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|error| error.to_string())?;
                connection
                    .execute(statement.as_str())
                    .await
                    .map_err(|error| error.to_string())?;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// The server every test of this process shares: `IMDS_TEST_PG_URL` (a URL whose user may
/// create databases) if set, else a private `TestServer` started on first use.
///
/// Returns the URL of a database to connect to for creating others.
pub fn shared_admin_url() -> Result<String, String> {
    static SHARED: OnceLock<Result<(Option<TestServer>, String), String>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| match std::env::var("IMDS_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Ok((None, url)),
        _ => {
            let server = TestServer::start()?;
            let url = server.url("postgres");
            Ok((Some(server), url))
        }
    });
    shared
        .as_ref()
        .map(|(_, url)| url.clone())
        .map_err(Clone::clone)
}

/// A new, empty database on `admin_url`'s server, named uniquely for this process.
pub async fn create_database(admin_url: &str) -> Result<TestDatabase, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "imds_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut connection = PgConnection::connect(admin_url)
        .await
        .map_err(|error| format!("cannot connect to the test server: {error}"))?;
    connection
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .map_err(|error| format!("cannot create database {name}: {error}"))?;
    // Query parameters of the admin URL (a Unix socket's `host`, say) stay with the new one.
    let (location, query) = match admin_url.split_once('?') {
        Some((location, query)) => (location, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let (base, _) = location
        .rsplit_once('/')
        .ok_or_else(|| format!("{admin_url} names no database"))?;
    Ok(TestDatabase {
        url: format!("{base}/{name}{query}"),
        admin_url: admin_url.to_owned(),
        name,
    })
}

/// A new database on the shared server.
pub async fn database() -> Result<TestDatabase, String> {
    create_database(&shared_admin_url()?).await
}

fn postgres_bindir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("IMDS_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bindir = entry.path().join("bin");
            bindir.join("initdb").exists().then_some((version, bindir))
        })
        .collect();
    versions.sort();
    if let Some((_, bindir)) = versions.pop() {
        return Ok(bindir);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).find(|dir| Path::new(dir).join("initdb").exists())
        })
        .ok_or_else(|| {
            "no PostgreSQL server found: install Debian's postgresql package \
             (scripts/install-deps does) or set IMDS_TEST_PG_BINDIR or IMDS_TEST_PG_URL"
                .to_owned()
        })
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "imds-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> Result<u16, String> {
    // The port is free when asked; PostgreSQL binds it a moment later.
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|error| format!("no free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| error.to_string())
}

fn postgres_user() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|error| format!("id: {error}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                "there is no postgres user: install Debian's postgresql package".to_owned()
            })
    };
    Ok((id("-u")?, id("-g")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `start` retries on another port when PostgreSQL finds its port taken; this is the message
    /// it goes by.
    #[test]
    fn a_taken_port_is_reported_as_address_already_in_use() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = match TestServer::start_on(&TestServer::builder(), port) {
            Ok(_) => panic!("PostgreSQL started on a port that is taken"),
            Err(error) => error,
        };
        assert!(error.contains("Address already in use"), "{error}");
    }
}
