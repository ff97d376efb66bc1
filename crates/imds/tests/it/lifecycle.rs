//! The service's life under a service manager: systemd's readiness protocol (`READY=1` once
//! serving, `WATCHDOG=1` pings, `RELOADING=1` then `READY=1` around a SIGHUP reload, `STOPPING=1` at SIGTERM) heard on a real
//! notify socket, and the
//! drain at SIGTERM: open requests answered, new connections refused, audit log flushed, exit 0.

use std::{
    net::{SocketAddr, TcpStream},
    os::unix::net::UnixDatagram,
    path::Path,
    time::{Duration, Instant},
};

use crate::support::{send_raw, server};

const INSTANCE: &str = "i-0a1b2c3d4e5f60718";

fn config() -> String {
    format!("[instance]\ninstance-id = \"{INSTANCE}\"\n[instance.iam]\nrole-name = \"app\"\n")
}

/// The next datagram on `socket`, waiting at most `bound`.
fn next_datagram(socket: &UnixDatagram, bound: Duration) -> Option<String> {
    socket.set_read_timeout(Some(bound)).unwrap();
    let mut buffer = [0u8; 4096];
    let count = socket.recv(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..count]).into_owned())
}

/// Datagrams until one has `line` as one of its lines, within `bound`; all of them.
fn datagrams_until(socket: &UnixDatagram, line: &str, bound: Duration) -> Vec<String> {
    let deadline = Instant::now() + bound;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(datagram) = next_datagram(socket, left.max(Duration::from_millis(1))) else {
            break;
        };
        let found = datagram.lines().any(|each| each == line);
        seen.push(datagram);
        if found {
            return seen;
        }
    }
    panic!("no {line} within {bound:?}: {seen:?}");
}

fn notify_socket(directory: &Path) -> (UnixDatagram, String) {
    let path = directory.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    (socket, path.to_str().unwrap().to_owned())
}

#[test]
fn ready_comes_once_serving_then_watchdog_pings_then_stopping_at_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(directory.path());
    // Started on a thread of its own: this one listens for READY=1 and, as soon as it comes,
    // asks the address its status names, knowing nothing else about the server.
    let starting = std::thread::spawn(move || {
        server()
            .config(&config())
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000")
            .start()
    });
    let ready = next_datagram(&socket, Duration::from_secs(60)).expect("a notification");
    let lines: Vec<&str> = ready.lines().collect();
    assert_eq!(lines[0], "READY=1", "{ready}");
    let status = lines
        .iter()
        .find_map(|line| line.strip_prefix("STATUS=Serving 1 instance(s) on "))
        .unwrap_or_else(|| panic!("a status naming the listener: {ready}"));
    let address: SocketAddr = status.trim_end_matches('.').parse().unwrap();
    let answer = send_raw(
        address,
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((answer.status, answer.text().as_str()), (200, INSTANCE));
    let imds = starting.join().unwrap();
    assert_eq!(imds.address(), address);
    assert_eq!(imds.admin("GET", "/v1/instances", None).status, 200);

    // WatchdogSec=200ms: a ping at least every 100ms.
    let started = Instant::now();
    for _ in 0..3 {
        datagrams_until(&socket, "WATCHDOG=1", Duration::from_secs(5));
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    imds.terminate();
    let seen = datagrams_until(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(
        seen.iter().all(|datagram| !datagram.contains("READY=1")),
        "{seen:?}"
    );
    let (status, log) = imds.wait();
    assert!(status.success(), "{status:?}: {log:#?}");
}

#[test]
fn a_reload_is_told_to_the_manager_reloading_then_ready() {
    let directory = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(directory.path());
    let imds = server()
        .config(&config())
        .env("NOTIFY_SOCKET", &path)
        .start();
    datagrams_until(&socket, "READY=1", Duration::from_secs(60));
    imds.signal("HUP");
    // systemd wants MONOTONIC_USEC beside RELOADING=1, and READY=1 when the reload is over.
    let seen = datagrams_until(&socket, "READY=1", Duration::from_secs(30));
    let reloading = seen
        .iter()
        .find(|datagram| datagram.lines().any(|line| line == "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 before READY=1: {seen:?}"));
    assert!(
        reloading.lines().any(|line| line
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|usec| usec.parse::<u64>().is_ok())),
        "{reloading}"
    );
    assert_eq!(imds.get("/latest/meta-data/instance-id").text(), INSTANCE);
}

#[test]
fn without_a_notify_socket_nothing_is_sent_and_the_server_serves() {
    let imds = server().config(&config()).start();
    assert_eq!(imds.get("/latest/meta-data/instance-id").text(), INSTANCE);
    let log = imds.stop();
    assert!(
        !log.iter().any(|line| line.contains("Could not notify")),
        "{log:#?}"
    );
}

/// Reads one answer from a request sent on `stream`.
fn answer(mut stream: TcpStream) -> crate::support::Response {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    crate::support::read_response(&mut stream).expect("an answer")
}

#[test]
fn sigterm_answers_open_requests_refuses_new_ones_flushes_the_audit_log_and_exits_0() {
    use std::io::Write;

    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let imds = server()
        .config(&config())
        .args(&[
            "--audit-log",
            audit.to_str().unwrap(),
            "--shutdown-timeout",
            "20",
        ])
        .start();
    let token = imds.token(600);
    let credentials = imds.get_with_token("/latest/meta-data/iam/security-credentials/app", &token);
    assert_eq!(credentials.status, 200);
    let credentials: serde_json::Value = serde_json::from_slice(&credentials.body).unwrap();
    let access_key_id = credentials["AccessKeyId"].as_str().unwrap().to_owned();

    // One slow answer: the instance id, held two seconds by a latency fault.
    let fault = imds.admin(
        "POST",
        &format!("/v1/instances/{INSTANCE}/faults"),
        Some(r#"{"Kind": "latency", "LatencyMs": 2000, "Path": "meta-data/instance-id", "Count": 1}"#),
    );
    assert_eq!(fault.status, 201, "{}", fault.text());
    let address = imds.address();
    let mut slow = TcpStream::connect(address).unwrap();
    slow.write_all(
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let sent = Instant::now();
    let in_flight = std::thread::spawn(move || answer(slow));
    // An idle kept-alive connection is closed by the drain rather than holding it open.
    let idle = TcpStream::connect(address).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    imds.terminate();
    // The listener closes at once: new connections are refused while the slow answer is still
    // being held.
    let refused_by = Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect(address) {
            Err(error) => {
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < refused_by, "still accepting after SIGTERM");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    assert!(
        sent.elapsed() < Duration::from_millis(1900),
        "the check came too late"
    );

    let slow = in_flight.join().unwrap();
    assert_eq!((slow.status, slow.text().as_str()), (200, INSTANCE));
    assert!(sent.elapsed() >= Duration::from_secs(2));
    let (status, log) = imds.wait();
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert!(log.iter().any(|line| line.contains("Stopped.")), "{log:#?}");
    drop(idle);

    // The credentials handed out before the signal are in the audit log when the process has
    // exited: read once, no waiting.
    let text = std::fs::read_to_string(&audit).unwrap();
    let issued = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|record| record["event"] == "credentials-issued")
        .unwrap_or_else(|| panic!("no credentials-issued record in {text}"));
    assert_eq!(issued["access_key_id"], access_key_id.as_str(), "{issued}");
}

#[test]
fn the_shutdown_timeout_bounds_the_drain() {
    use std::io::Write;

    let imds = server()
        .config(&config())
        .args(&["--shutdown-timeout", "0.5"])
        .start();
    let fault = imds.admin(
        "POST",
        &format!("/v1/instances/{INSTANCE}/faults"),
        Some(r#"{"Kind": "latency", "LatencyMs": 30000, "Path": "meta-data/instance-id", "Count": 1}"#),
    );
    assert_eq!(fault.status, 201, "{}", fault.text());
    let mut slow = TcpStream::connect(imds.address()).unwrap();
    slow.write_all(
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    imds.terminate();
    let (status, log) = imds.wait();
    assert_eq!(status.code(), Some(0), "{log:#?}");
    let took = signalled.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        log.iter()
            .any(|line| line.contains("still open at the shutdown timeout")),
        "{log:#?}"
    );
}

#[test]
fn sigterm_answers_a_control_api_request_in_flight() {
    use std::io::Write;

    let imds = server()
        .config(&config())
        .args(&["--shutdown-timeout", "20"])
        .start();
    let token = imds.admin_token();
    let body = r#"{"Kind": "status", "Status": 503, "Path": "meta-data/instance-id", "Count": 1}"#;
    let (head, tail) = body.split_at(20);
    // A fault injection whose body is half sent when the signal comes.
    let mut writing = TcpStream::connect(imds.admin_address).unwrap();
    writing
        .write_all(
            format!(
                "POST /v1/instances/{INSTANCE}/faults HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{head}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    imds.terminate();
    // The control listener stops accepting while the request is open.
    let refused_by = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(imds.admin_address).is_ok() {
        assert!(
            Instant::now() < refused_by,
            "the control API still accepts after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    writing.write_all(tail.as_bytes()).unwrap();
    let answer = answer(writing);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let fault: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(fault["Description"]["Kind"], "status", "{fault}");
    let (status, log) = imds.wait();
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert!(log.iter().any(|line| line.contains("Stopped.")), "{log:#?}");
}
