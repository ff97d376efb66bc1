//! Helpers: start the server, send raw HTTP, read answers.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

/// A running `imds serve`.
pub struct Server {
    child: Child,
    /// Every address it listens on, in `--listen` order.
    pub addresses: Vec<SocketAddr>,
    /// The control API's address.
    pub admin_address: SocketAddr,
    /// The container credentials endpoint's address, when `--container-listen` was given.
    pub container_address: Option<SocketAddr>,
    /// The EKS Pod Identity endpoint's addresses, in `--pod-identity-listen` order.
    pub pod_identity_addresses: Vec<SocketAddr>,
    /// Log lines written after start-up.
    log: Arc<Mutex<Vec<String>>>,
    _state: Option<tempfile::TempDir>,
    pub state_dir: PathBuf,
}

/// Builds a server to start.
pub struct ServerBuilder {
    /// Run inside this network namespace (`ip netns exec`).
    netns: Option<String>,
    args: Vec<String>,
    config: Option<String>,
    state_dir: Option<PathBuf>,
    listen: Vec<String>,
    /// Without `--listen`: the number of listeners the config file gives.
    file_listeners: Option<usize>,
    env: Vec<(String, String)>,
}

pub fn server() -> ServerBuilder {
    ServerBuilder {
        netns: None,
        args: Vec::new(),
        config: None,
        state_dir: None,
        listen: Vec::new(),
        file_listeners: None,
        env: Vec::new(),
    }
}

impl ServerBuilder {
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    pub fn state_dir(mut self, path: &Path) -> Self {
        self.state_dir = Some(path.to_owned());
        self
    }

    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_owned());
        self
    }

    /// Sets an environment variable of the server process (never of the test process).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn listen(mut self, address: &str) -> Self {
        self.listen.push(address.to_owned());
        self
    }

    /// Passes no `--listen`: the config file's `[server] listen` gives `count` listeners.
    pub fn listeners_from_config(mut self, count: usize) -> Self {
        self.file_listeners = Some(count);
        self
    }

    pub fn start(self) -> Server {
        let (state, state_dir) = match self.state_dir {
            Some(path) => (None, path),
            None => {
                let directory = tempfile::tempdir().unwrap();
                let path = directory.path().to_owned();
                (Some(directory), path)
            }
        };
        let mut command = match &self.netns {
            Some(name) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", name, env!("CARGO_BIN_EXE_imds")]);
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_imds")),
        };
        command
            .arg("serve")
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--admin-listen")
            .arg("127.0.0.1:0");
        let listen = match self.file_listeners {
            Some(_) => Vec::new(),
            None if self.listen.is_empty() => vec!["127.0.0.1:0".to_owned()],
            None => self.listen,
        };
        for address in &listen {
            command.arg("--listen").arg(address);
        }
        if let Some(toml) = &self.config {
            let path = state_dir.join("test-config.toml");
            std::fs::write(&path, toml).unwrap();
            command.arg("--config").arg(path);
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start imds");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_sender, ready) = mpsc::channel();
        let log_writer = log.clone();
        let wanted = self.file_listeners.unwrap_or(listen.len());
        std::thread::spawn(move || {
            let mut addresses = Vec::new();
            let mut admin = None;
            let mut container = None;
            let mut pod_identity = Vec::new();
            let mut sender = Some(ready_sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(position) = line.find("Listening. address=") {
                    let text = &line[position + "Listening. address=".len()..];
                    addresses.push(text.trim().parse::<SocketAddr>().unwrap());
                }
                if let Some(position) = line.find("Control API ready. address=") {
                    let text = &line[position + "Control API ready. address=".len()..];
                    let address = text.split_whitespace().next().unwrap_or_default();
                    admin = Some(address.parse::<SocketAddr>().unwrap());
                }
                if let Some(position) = line.find("Container credentials ready. address=") {
                    let text = &line[position + "Container credentials ready. address=".len()..];
                    let address = text.split_whitespace().next().unwrap_or_default();
                    container = Some(address.parse::<SocketAddr>().unwrap());
                }
                if let Some(position) = line.find("EKS Pod Identity ready. address=") {
                    let text = &line[position + "EKS Pod Identity ready. address=".len()..];
                    let address = text.split_whitespace().next().unwrap_or_default();
                    pod_identity.push(address.parse::<SocketAddr>().unwrap());
                }
                if addresses.len() == wanted && line.contains("Serving.") {
                    if let (Some(sender), Some(admin)) = (sender.take(), admin) {
                        let _ = sender.send(Ok((
                            addresses.clone(),
                            admin,
                            container,
                            pod_identity.clone(),
                        )));
                    }
                }
                log_writer.lock().unwrap().push(line);
            }
            if let Some(sender) = sender.take() {
                let _ = sender.send(Err(()));
            }
        });
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok((addresses, admin_address, container_address, pod_identity_addresses))) => {
                Server {
                    child,
                    addresses,
                    admin_address,
                    container_address,
                    pod_identity_addresses,
                    log,
                    _state: state,
                    state_dir,
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("imds did not start: {:#?}", log.lock().unwrap());
            }
        }
    }
}

impl Server {
    /// The first listening address.
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// A raw request, with `Connection: close`.
    pub fn send(&self, request: &str) -> Response {
        send_raw(self.address(), request.as_bytes())
    }

    /// `METHOD path` with extra header lines.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Connection: close\r\n\r\n");
        self.send(&text)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[])
    }

    pub fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.request("GET", path, &[("X-aws-ec2-metadata-token", token)])
    }

    /// A fresh token, asserting the token response is right.
    pub fn token(&self, ttl: u32) -> String {
        let response = self.request(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", &ttl.to_string())],
        );
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            response.header("x-aws-ec2-metadata-token-ttl-seconds"),
            Some(ttl.to_string().as_str())
        );
        response.text()
    }

    /// The control API's bearer token (made by the server in its state directory).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A control-API call with the right token; `body` is JSON.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let token = self.admin_token();
        self.admin_with(method, path, body, Some(&token))
    }

    /// A control-API call with the given token (or none).
    pub fn admin_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Response {
        let mut text =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(token) = token {
            text.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            text.push_str("Content-Type: application/json\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        send_raw(self.admin_address, text.as_bytes())
    }

    /// Runs `imds ctl` against this server.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_imds"))
            .arg("ctl")
            .arg("--endpoint")
            .arg(format!("http://{}", self.admin_address))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .env_remove("IMDS_ADMIN_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs `imds ctl` against this server, asserts that it succeeded, and returns its output.
    #[track_caller]
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(
            output.status.success(),
            "imds ctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A guest request sent from the local address `source` (127.0.0.2, ...).
    pub fn request_from(
        &self,
        source: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Connection: close\r\n\r\n");
        let mut stream = connect_from(source.parse().unwrap(), self.address());
        stream.write_all(text.as_bytes()).unwrap();
        read_response(&mut stream).expect("a response")
    }

    /// A token obtained from `source`.
    pub fn token_from(&self, source: &str) -> String {
        let response = self.request_from(
            source,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "600")],
        );
        assert_eq!(response.status, 200, "{response:?}");
        response.text()
    }

    /// Waits until every instance serves its description in full, its role's credentials
    /// included (start-up does not wait for credentials that come from an upstream). Polls the
    /// control API; gives up after a minute.
    #[track_caller]
    pub fn wait_until_applied(&self) -> &Self {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let listing = self.admin("GET", "/v1/instances", None);
            assert_eq!(listing.status, 200, "{listing:?}");
            let json: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
            let instances = json["Instances"].as_array().cloned().unwrap_or_default();
            if instances
                .iter()
                .all(|instance| instance["MetadataOptions"]["State"] == "applied")
            {
                return self;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "instances never served in full: {json}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends the process `signal` (`HUP`, `TERM`, ...), as `kill -SIGNAL` does.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM and returns the shutdown line, which carries the counters.
    pub fn stop_counters(self) -> String {
        self.stop()
            .into_iter()
            .find(|line| line.contains("Stopped."))
            .expect("a shutdown line with the counters")
    }

    /// Stops with SIGTERM and returns the whole log.
    pub fn stop(self) -> Vec<String> {
        self.terminate();
        self.wait().1
    }

    /// Sends SIGTERM without waiting for the process to end.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to end: its exit status and its whole log.
    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        // Give the reader thread a moment to take the last lines.
        for _ in 0..50 {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains("Stopped."))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Sends raw bytes and reads the answer up to the end of its body (or EOF).
pub fn send_raw(address: SocketAddr, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).expect("write");
    read_response(&mut stream).expect("a response")
}

/// Reads one response from `stream`; `None` when the connection closes first.
pub fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(position) = find(&buffer, b"\r\n\r\n") {
            break position;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: Option<usize> = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse().unwrap());
    let mut body = buffer[head_end + 4..].to_vec();
    match length {
        Some(length) => {
            while body.len() < length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => body.extend_from_slice(&chunk[..read]),
                }
            }
            body.truncate(length);
        }
        None => {
            let _ = stream.read_to_end(&mut body);
        }
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Sends a HEAD request and reads only the head (HEAD answers have no body).
pub fn head(address: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    Response {
        status,
        headers: lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// A TCP connection from the local address `source` to `address`.
pub fn connect_from(source: std::net::IpAddr, address: SocketAddr) -> TcpStream {
    let domain = if source.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&address.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The exact 404 page of real IMDS.
pub const NOT_FOUND_PAGE: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\t\t \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n <head>\n  <title>404 - Not Found</title>\n </head>\n <body>\n  <h1>404 - Not Found</h1>\n </body>\n</html>\n";

/// Asserts two texts are equal, printing both in full when not.
#[track_caller]
pub fn assert_text(got: &str, expect: &str) {
    if got != expect {
        panic!("text differs\n--- got ---\n{got}\n--- expected ---\n{expect}\n---");
    }
}

/// A network namespace made for one test (root needed), its loopback up; deleted on drop.
pub struct Namespace(pub String);

impl Namespace {
    /// Makes `imds-{tag}-{pid}`.
    pub fn new(tag: &str) -> Namespace {
        let name = format!("imds-{tag}-{}", std::process::id() % 100_000);
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "ip netns add {name} (these tests need root)"
        );
        let status = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(status.success());
        Namespace(name)
    }

    /// Runs `program` inside the namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs this build's `imds` inside the namespace.
    pub fn imds(&self, args: &[&str]) -> std::process::Output {
        self.run(env!("CARGO_BIN_EXE_imds"), args)
    }

    /// `ip -o addr show` inside the namespace.
    pub fn addresses(&self) -> String {
        String::from_utf8_lossy(&self.run("ip", &["-o", "addr", "show"]).stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Every listing and value below `/latest/` of the IMDS at `address`, read with `token`, the
/// way a client walks it: keys are paths below `/latest/`, categories end in `/` (the root is
/// `""`). Written independently of `imds capture`'s own walk, so that one checks the other.
pub fn walk_tree(address: SocketAddr, token: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let get = |path: &str| {
        let encoded: String = path
            .bytes()
            .map(|byte| {
                if byte.is_ascii_graphic() && byte != b'%' {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect();
        let request = format!(
            "GET /latest/{encoded} HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
        );
        let response = send_raw(address, request.as_bytes());
        assert_eq!(response.status, 200, "GET /latest/{path}: {response:?}");
        response.body
    };
    let mut tree = std::collections::BTreeMap::new();
    let mut pending = vec![String::new()];
    while let Some(category) = pending.pop() {
        let listing = get(&category);
        let text = String::from_utf8(listing.clone()).expect("listings are text");
        tree.insert(category.clone(), listing);
        for line in text.split('\n').filter(|line| !line.is_empty()) {
            let child = if category.is_empty() {
                // `/latest/` lists its categories without slashes.
                match line {
                    "meta-data" | "dynamic" => Some(format!("{line}/")),
                    _ => None,
                }
            } else if let Some(name) = line.strip_suffix('/') {
                Some(format!("{category}{name}/"))
            } else if category == "meta-data/public-keys/" {
                let (index, _) = line.split_once('=').expect("public keys list INDEX=NAME");
                Some(format!("{category}{index}/"))
            } else {
                None
            };
            match child {
                Some(child) => pending.push(child),
                None => {
                    let key = format!("{category}{line}");
                    let value = get(&key);
                    tree.insert(key, value);
                }
            }
        }
        assert!(tree.len() < 5_000, "the tree does not end");
    }
    tree
}

/// A walked tree without what every imds makes anew: credentials (the role names stay), the
/// `LastUpdated` of the documents that describe them, the identity signatures, and the host's
/// EC2 Instance Connect chain (`managed-ssh-keys/signer-*`; the listing that names it stays).
pub fn comparable(
    tree: &std::collections::BTreeMap<String, Vec<u8>>,
) -> std::collections::BTreeMap<String, String> {
    let mut kept = std::collections::BTreeMap::new();
    for (key, value) in tree {
        let credentials = [
            "meta-data/iam/security-credentials/",
            "meta-data/identity-credentials/ec2/security-credentials/",
        ]
        .iter()
        .any(|prefix| key.len() > prefix.len() && key.starts_with(prefix));
        let signature = [
            "dynamic/instance-identity/signature",
            "dynamic/instance-identity/pkcs7",
            "dynamic/instance-identity/rsa2048",
        ]
        .contains(&key.as_str());
        let instance_connect = key.starts_with("meta-data/managed-ssh-keys/signer-");
        if credentials || signature || instance_connect {
            continue;
        }
        let text =
            if key == "meta-data/iam/info" || key == "meta-data/identity-credentials/ec2/info" {
                let mut document: serde_json::Value = serde_json::from_slice(value).unwrap();
                let removed = document.as_object_mut().unwrap().remove("LastUpdated");
                assert!(removed.is_some(), "{key} has a LastUpdated");
                document.to_string()
            } else {
                match String::from_utf8(value.clone()) {
                    Ok(text) => text,
                    Err(_) => format!("(bytes) {value:?}"),
                }
            };
        kept.insert(key.clone(), text);
    }
    kept
}

/// Asserts two comparable trees are the same, listing every difference when not.
#[track_caller]
pub fn assert_same_tree(
    got: &std::collections::BTreeMap<String, String>,
    expect: &std::collections::BTreeMap<String, String>,
) {
    let mut differences = Vec::new();
    for key in got
        .keys()
        .chain(expect.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (got.get(key), expect.get(key)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => differences.push(format!("{key:?}: {a:?}, expected {b:?}")),
            (Some(a), None) => differences.push(format!("{key:?}: {a:?}, expected nothing")),
            (None, Some(b)) => differences.push(format!("{key:?}: missing, expected {b:?}")),
            (None, None) => {}
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// `imds serve` on ephemeral loopback ports with `state_dir`, for runs expected to fail at start.
pub fn serve_command(state_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imds"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(state_dir);
    command
}

/// Runs `command` to its end, its output read; panics (killing it) if it has not ended after
/// `bound`, which only catches a hang: commands are expected to end long before.
pub fn output_within(mut command: Command, bound: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let (done_sender, done) = mpsc::channel();
    let pid = child.id();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done_sender.send(());
        status
    });
    if done.recv_timeout(bound).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("{command:?} did not end within {bound:?}");
    }
    std::process::Output {
        status: waiter.join().unwrap().unwrap(),
        stdout: stdout_reader.join().unwrap(),
        stderr: stderr_reader.join().unwrap(),
    }
}

/// A listener on loopback that accepts connections and never answers (nor closes them).
pub fn silent_listener() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
    });
    address
}

/// A service in front of the IMDS at `upstream` that answers `overrides` (request target to
/// body, status 200) itself and passes every other request on. With `refuse_tokens` it is an
/// IMDSv1-only service, as older EC2-compatible ones are: a PUT gets `405 Method Not Allowed`
/// and token headers are not passed on.
pub fn proxy(
    upstream: SocketAddr,
    refuse_tokens: bool,
    overrides: Vec<(String, Vec<u8>)>,
) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let overrides = Arc::new(overrides);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let overrides = overrides.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = String::new();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                        let name = header
                            .split(':')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase();
                        let token_header = name.starts_with("x-aws-ec2-metadata-token");
                        if name != "connection" && !(refuse_tokens && token_header) {
                            headers.push_str(&header);
                        }
                    }
                    let mut parts = request_line.split_whitespace();
                    let (method, target) =
                        (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
                    let overridden = overrides.iter().find(|(path, _)| path == target);
                    let (status, answer_headers, body) = if refuse_tokens && method == "PUT" {
                        (
                            405,
                            vec![("Allow".to_owned(), "GET".to_owned())],
                            Vec::new(),
                        )
                    } else if let (Some((_, body)), "GET") = (overridden, method) {
                        (
                            200,
                            vec![("Content-Type".to_owned(), "text/plain".to_owned())],
                            body.clone(),
                        )
                    } else {
                        let answer = send_raw(
                            upstream,
                            format!(
                                "{method} {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
                            )
                            .as_bytes(),
                        );
                        (answer.status, answer.headers, answer.body)
                    };
                    let mut head = format!("HTTP/1.1 {status} X\r\n");
                    for (name, value) in &answer_headers {
                        if !["connection", "content-length"]
                            .contains(&name.to_ascii_lowercase().as_str())
                        {
                            head.push_str(&format!("{name}: {value}\r\n"));
                        }
                    }
                    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                    let mut bytes = head.into_bytes();
                    bytes.extend_from_slice(&body);
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// A client of `server` in `mode` (`optional` or `required`): with a token when tokens are
/// required, as a v2 client would; without one when they are optional, as a v1 client would.
pub struct ModeClient<'a> {
    server: &'a Server,
    token: Option<String>,
}

impl<'a> ModeClient<'a> {
    pub fn new(server: &'a Server, mode: &str) -> ModeClient<'a> {
        ModeClient {
            server,
            token: (mode == "required").then(|| server.token(600)),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        match &self.token {
            Some(token) => self.server.get_with_token(path, token),
            None => self.server.get(path),
        }
    }

    #[track_caller]
    pub fn text(&self, path: &str) -> String {
        let response = self.get(path);
        assert_eq!(response.status, 200, "{path}: {response:?}");
        response.text()
    }

    #[track_caller]
    pub fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.text(path)).unwrap()
    }

    #[track_caller]
    pub fn absent(&self, path: &str) {
        let response = self.get(path);
        assert_eq!(response.status, 404, "{path}: {response:?}");
        assert_eq!(response.text(), NOT_FOUND_PAGE, "{path}");
    }

    /// Every leaf reached by walking the listings from `start`, as cloud-init crawls them; each
    /// listed name must answer 200.
    pub fn crawl(&self, start: &str) -> std::collections::BTreeSet<String> {
        let mut leaves = std::collections::BTreeSet::new();
        let mut pending = vec![start.to_owned()];
        while let Some(directory) = pending.pop() {
            for line in self
                .text(&directory)
                .split('\n')
                .filter(|line| !line.is_empty())
            {
                let (child, is_directory) = match line.split_once('=') {
                    Some((index, _)) => (format!("{directory}{index}/"), true),
                    None => (format!("{directory}{line}"), line.ends_with('/')),
                };
                if is_directory {
                    pending.push(child);
                } else {
                    self.text(&child);
                    leaves.insert(child);
                }
            }
        }
        leaves
    }
}

/// The audit log's records (one JSON object a line) once at least `count` are written (the
/// writer is a thread of its own); panics naming what it has after 30 seconds.
#[track_caller]
pub fn audit_records(path: &std::path::Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect();
        if records.len() >= count {
            return records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {count} audit records in {}, have {records:#?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
