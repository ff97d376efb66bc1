//! The console over real HTTP on loopback: the session cookie's flags, CSRF and origin refusals,
//! the bound on sessions, and that the token appears in no page.

use std::{net::SocketAddr, sync::Arc};

use imds_credentials::generated::GeneratedProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ConsoleOptions, ConsoleState};
use crate::{
    admin_api::{AdminState, AdminToken, Tokens},
    audit::AuditLog,
    registry::Settings,
};

const TOKEN: &str = "console-test-token-4f1d2a";

/// A read-only token, from the tokens directory of `server_with_viewer`.
const VIEWER_TOKEN: &str = "console-viewer-token-93be0c";

struct Server {
    address: SocketAddr,
    state: ConsoleState,
    _task: tokio::task::JoinHandle<()>,
    _directory: tempfile::TempDir,
    _tokens: Option<tempfile::TempDir>,
}

async fn server(options: ConsoleOptions) -> Server {
    serve_with(options, AdminToken::new(TOKEN).into(), None).await
}

/// A server that also admits `VIEWER_TOKEN`, a read-only token from a tokens directory.
async fn server_with_viewer() -> Server {
    let tokens = tempfile::tempdir().unwrap();
    std::fs::write(tokens.path().join("viewer.read-only"), VIEWER_TOKEN).unwrap();
    let admitted = Tokens::new(Some(AdminToken::new(TOKEN)), Some(tokens.path().to_owned()));
    serve_with(ConsoleOptions::default(), admitted, Some(tokens)).await
}

async fn serve_with(
    options: ConsoleOptions,
    admitted: Tokens,
    tokens: Option<tempfile::TempDir>,
) -> Server {
    let (registry, directory) = crate::registry::sqlite_tests::on_sqlite(
        Arc::new(GeneratedProvider::default()),
        Settings::default(),
    )
    .await;
    let registry = Arc::new(registry);
    let admin = AdminState {
        audit: AuditLog::off().with_recent(16),
        ..AdminState::new(registry, None)
    };
    let state = ConsoleState::new(admin, admitted, options);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn({
        let state = state.clone();
        async move {
            super::serve(listener, state, None, crate::drain::Watch::never())
                .await
                .unwrap();
        }
    });
    Server {
        address,
        state,
        _task: task,
        _directory: directory,
        _tokens: tokens,
    }
}

impl Server {
    async fn get(&self, path: &str, cookie: &str) -> Answer {
        send(self.address, "GET", path, &[("Cookie", cookie)], "").await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        send(self.address, "POST", path, headers, body).await
    }
}

/// One answer: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The `name=value` of the session cookie set.
    fn session_cookie(&self) -> Option<String> {
        self.header("set-cookie")
            .and_then(|value| value.split(';').next())
            .map(str::to_owned)
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .unwrap()
    .unwrap();
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(text: &str) -> Answer {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "{name}={}",
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn login(server: &Server) -> String {
    let answer = server
        .post("/ui/login", &[], &form(&[("token", TOKEN)]))
        .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    answer.session_cookie().unwrap()
}

/// The instance the change tests register.
const DESCRIPTION: &str = r#"{"addresses": ["127.0.0.9"], "instance-id": "i-0123456789abcdef0"}"#;

/// Registers `DESCRIPTION` through the console's form, with `headers` and `csrf`.
async fn register(server: &Server, headers: &[(&str, &str)], csrf: &str) -> Answer {
    server
        .post(
            "/ui/instances",
            headers,
            &form(&[("description", DESCRIPTION), ("csrf", csrf)]),
        )
        .await
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let start = page.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    page[start..start + 64].to_owned()
}

#[tokio::test]
async fn the_session_cookie_is_httponly_samesite_strict_and_secure_with_tls() {
    let plain = server(ConsoleOptions::default()).await;
    let answer = plain
        .post("/ui/login", &[], &form(&[("token", TOKEN)]))
        .await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), Some("/ui/instances"));
    let cookie = answer.header("set-cookie").unwrap();
    let flags: Vec<&str> = cookie.split("; ").collect();
    assert!(flags[0].starts_with("imds_console="), "{cookie}");
    assert_eq!(flags[0].len(), "imds_console=".len() + 64, "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(flags.contains(&flag), "{flag} missing from {cookie}");
    }
    assert!(!flags.contains(&"Secure"), "{cookie}");
    assert!(!cookie.contains(TOKEN));

    let tls = server(ConsoleOptions {
        tls: true,
        ..ConsoleOptions::default()
    })
    .await;
    let answer = tls.post("/ui/login", &[], &form(&[("token", TOKEN)])).await;
    assert!(answer
        .header("set-cookie")
        .unwrap()
        .split("; ")
        .any(|flag| flag == "Secure"));
}

#[tokio::test]
async fn a_wrong_token_gets_no_session() {
    let server = server(ConsoleOptions::default()).await;
    let answer = server
        .post("/ui/login", &[], &form(&[("token", "not-the-token")]))
        .await;
    assert_eq!(answer.status, 401);
    assert!(answer.header("set-cookie").is_none());
    assert!(answer.body.contains("not a control-API token"));
    assert_eq!(server.state.session_count(), 0);
    let answer = send(server.address, "GET", "/ui/instances", &[], "").await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), Some("/ui/login"));
}

#[tokio::test]
async fn a_change_without_the_csrf_token_or_from_another_origin_is_refused() {
    let server = server(ConsoleOptions::default()).await;
    let cookie = login(&server).await;
    let page = server.get("/ui/instances", &cookie).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);

    let without = server
        .post(
            "/ui/instances",
            &[("Cookie", &cookie)],
            &form(&[("description", DESCRIPTION)]),
        )
        .await;
    assert_eq!(without.status, 403);
    let wrong = register(&server, &[("Cookie", &cookie)], &"0".repeat(64)).await;
    assert_eq!(wrong.status, 403);
    let elsewhere = register(
        &server,
        &[("Cookie", &cookie), ("Origin", "http://attacker.example")],
        &csrf,
    )
    .await;
    assert_eq!(elsewhere.status, 403);
    let no_session = register(&server, &[], &csrf).await;
    assert_eq!(no_session.status, 403);
    assert!(server.state.admin.registry.instance_ids().is_empty());

    let origin = format!("http://{}", server.address);
    let done = register(&server, &[("Cookie", &cookie), ("Origin", &origin)], &csrf).await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(
        done.header("location"),
        Some("/ui/instances/i-0123456789abcdef0")
    );
    assert_eq!(
        server.state.admin.registry.instance_ids(),
        ["i-0123456789abcdef0"]
    );
}

#[tokio::test]
async fn sessions_are_bounded_and_logout_ends_one() {
    let server = server(ConsoleOptions {
        max_sessions: 2,
        ..ConsoleOptions::default()
    })
    .await;
    let first = login(&server).await;
    let second = login(&server).await;
    let third = login(&server).await;
    assert_eq!(server.state.session_count(), 2);
    let gone = server.get("/ui/instances", &first).await;
    assert_eq!(gone.status, 303);
    for cookie in [&second, &third] {
        let page = server.get("/ui/instances", cookie).await;
        assert_eq!(page.status, 200);
    }
    let page = server.get("/ui/roles", &third).await;
    let csrf = csrf_of(&page.body);
    let out = server
        .post(
            "/ui/logout",
            &[("Cookie", &third)],
            &form(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = server.get("/ui/roles", &third).await;
    assert_eq!(after.status, 303);
    assert_eq!(server.state.session_count(), 1);
}

#[tokio::test]
async fn the_token_is_in_no_page_and_the_assets_are_served_from_the_binary() {
    let server = server(ConsoleOptions {
        tick: std::time::Duration::from_millis(50),
        ..ConsoleOptions::default()
    })
    .await;
    let cookie = login(&server).await;
    let page = server.get("/ui/instances", &cookie).await;
    let csrf = csrf_of(&page.body);
    let registered = server.post("/ui/instances", &[("Cookie", &cookie)], &form(&[
            (
                "description",
                r#"{"addresses": ["127.0.0.9"], "tags": {"Name": "<script>alert(1)</script>"}}"#,
            ),
            ("csrf", &csrf),
        ])).await;
    assert_eq!(registered.status, 303, "{registered:?}");
    let instance_page = registered.header("location").unwrap().to_owned();
    let mut seen = String::new();
    for path in [
        "/ui/login",
        "/ui/instances",
        instance_page.as_str(),
        "/ui/roles",
        "/ui/credentials",
        "/ui/assets/console.js",
        "/ui/assets/console.css",
    ] {
        let answer = server.get(path, &cookie).await;
        assert!(
            answer.status == 200 || (path == "/ui/login" && answer.status == 303),
            "{path}: {answer:?}"
        );
        assert!(!answer.body.contains(TOKEN), "{path} shows the token");
        assert!(
            answer
                .headers
                .iter()
                .all(|(_, value)| !value.contains(TOKEN)),
            "{path}"
        );
        if path.ends_with(".js") || path.ends_with(".css") {
            assert!(!answer.body.contains("http://") && !answer.body.contains("https://"));
        } else if answer.status == 200 {
            assert!(answer
                .header("content-security-policy")
                .unwrap()
                .contains("default-src 'none'"));
        }
        seen.push_str(&answer.body);
    }
    assert!(seen.contains("127.0.0.9"));
    // A page's markup is escaped by the template engine: a description value shows as text.
    assert!(!seen.contains("<script>alert"));
    assert!(seen.contains("&lt;script&gt;alert(1)"));

    // The live stream: one message of counters, without the token either.
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let request = format!(
        "GET /ui/live HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
        server.address
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buffer = [0_u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("\n\n")
        || !String::from_utf8_lossy(&raw).contains("event: stats")
    {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .unwrap()
                .unwrap();
        assert!(read > 0);
        raw.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("\"instances\""), "{text}");
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn live_streams_are_bounded_per_session() {
    let server = server(ConsoleOptions {
        max_streams_per_session: 1,
        ..ConsoleOptions::default()
    })
    .await;
    let cookie = login(&server).await;
    let mut open = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let request = format!(
        "GET /ui/live HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
        server.address
    );
    open.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = [0_u8; 1024];
    let read = open.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    let second = server.get("/ui/live", &cookie).await;
    assert_eq!(second.status, 429);
    drop(open);
}

#[tokio::test]
async fn a_read_only_token_sees_the_pages_but_changes_nothing() {
    let server = server_with_viewer().await;
    let answer = server
        .post("/ui/login", &[], &form(&[("token", VIEWER_TOKEN)]))
        .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    let cookie = answer.session_cookie().unwrap();
    let page = server.get("/ui/instances", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(VIEWER_TOKEN));
    let csrf = csrf_of(&page.body);
    let origin = format!("http://{}", server.address);
    let refused = register(&server, &[("Cookie", &cookie), ("Origin", &origin)], &csrf).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(server.state.admin.registry.instance_ids().is_empty());

    // The same change with the admin token's session is made.
    let cookie = login(&server).await;
    let csrf = csrf_of(&server.get("/ui/instances", &cookie).await.body);
    let done = register(&server, &[("Cookie", &cookie), ("Origin", &origin)], &csrf).await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(
        server.state.admin.registry.instance_ids(),
        ["i-0123456789abcdef0"]
    );
}
