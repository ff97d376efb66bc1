//! The console over real HTTP on loopback: the session cookie's flags, CSRF and origin refusals,
//! the bound on sessions, that the token appears in no page, role and scenario changes (and a
//! static role's secret in no page), and what the live stream carries.

use std::{net::SocketAddr, sync::Arc};

use imds_credentials::generated::GeneratedProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ConsoleOptions, ConsoleState};
use crate::{
    admin_api::{AdminState, AdminToken, Tokens},
    audit::AuditLog,
    registry::Settings,
    telemetry::{Route, Version},
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
    if method == "POST" && !headers.iter().any(|(name, _)| *name == "Content-Type") {
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

/// A `multipart/form-data` body of `fields` (name, file name if a file, content), as a browser
/// sends a form with a file field; and its content type.
fn multipart(fields: &[(&str, Option<&str>, &str)]) -> (String, String) {
    let boundary = "----ConsoleTestBoundary7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (name, file, content) in fields {
        body.push_str(&format!("--{boundary}\r\n"));
        match file {
            Some(file) => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/json\r\n\r\n"
            )),
            None => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            )),
        }
        body.push_str(content);
        body.push_str("\r\n");
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";

#[tokio::test]
async fn roles_are_put_and_deleted_and_a_static_secret_is_never_shown() {
    let server = server(ConsoleOptions::default()).await;
    let cookie = login(&server).await;
    let page = server.get("/ui/roles", &cookie).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);

    // A generated role, from the plain form.
    let put = server
        .post(
            "/ui/roles",
            &[("Cookie", &cookie)],
            &form(&[
                ("RoleName", "app"),
                ("provider", "generated"),
                ("lifetime-seconds", "900"),
                ("csrf", &csrf),
            ]),
        )
        .await;
    assert_eq!(put.status, 303, "{put:?}");
    let role = server.state.admin.registry.role("app").await.unwrap();
    assert_eq!(role.spec.provider_name(), "generated");
    assert_eq!(role.spec.lifetime_seconds, Some(900));
    let page = server.get("/ui/roles", &cookie).await;
    assert!(page.body.contains(r#"data-role="app""#), "{}", page.body);
    assert!(page.body.contains("/ui/roles/app/delete"));

    // A static role, its keys from an uploaded credentials file (`aws sts assume-role`'s shape).
    let file = format!(
        r#"{{"Credentials": {{"AccessKeyId": "ASIAEXAMPLEKEYID0001", "SecretAccessKey": "{SECRET}", "SessionToken": "the-session-token-9f3", "Expiration": "2030-01-01T00:00:00Z"}}}}"#
    );
    let (content_type, body) = multipart(&[
        ("csrf", None, &csrf),
        ("RoleName", None, "keys"),
        ("provider", None, "static"),
        ("lifetime-seconds", None, ""),
        ("credentials-file", Some("keys.json"), &file),
    ]);
    let put = server
        .post(
            "/ui/roles",
            &[("Cookie", &cookie), ("Content-Type", &content_type)],
            &body,
        )
        .await;
    assert_eq!(put.status, 303, "{put:?}");
    assert!(!put.body.contains(SECRET));
    let role = server.state.admin.registry.role("keys").await.unwrap();
    assert_eq!(role.spec.provider_name(), "static");
    assert_eq!(
        role.spec.access_key_id.as_deref(),
        Some("ASIAEXAMPLEKEYID0001")
    );
    let page = server.get("/ui/roles", &cookie).await;
    assert!(page.body.contains("ASIAEXAMPLEKEYID0001"), "{}", page.body);
    assert!(
        !page.body.contains(SECRET),
        "the roles page shows the secret"
    );
    assert!(!page.body.contains("the-session-token-9f3"));

    // A file that is not a credentials file is refused, without quoting it.
    let (content_type, body) = multipart(&[
        ("csrf", None, &csrf),
        ("RoleName", None, "broken"),
        ("provider", None, "static"),
        (
            "credentials-file",
            Some("keys.json"),
            &format!("{{\"SecretAccessKey\": \"{SECRET}\""),
        ),
    ]);
    let refused = server
        .post(
            "/ui/roles",
            &[("Cookie", &cookie), ("Content-Type", &content_type)],
            &body,
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body.contains("is not JSON"), "{}", refused.body);
    assert!(!refused.body.contains(SECRET));

    // Delete.
    let deleted = server
        .post(
            "/ui/roles/app/delete",
            &[("Cookie", &cookie)],
            &form(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(deleted.status, 303, "{deleted:?}");
    assert!(server.state.admin.registry.role("app").await.is_err());
    let page = server.get("/ui/roles", &cookie).await;
    assert!(!page.body.contains(r#"data-role="app""#));
}

#[tokio::test]
async fn role_changes_need_the_csrf_token_and_a_token_that_may_change() {
    let server = server_with_viewer().await;
    let cookie = login(&server).await;
    let csrf = csrf_of(&server.get("/ui/roles", &cookie).await.body);
    let put = |cookie: String, csrf: Option<String>| {
        let server = &server;
        async move {
            let mut fields = vec![("RoleName", "app"), ("provider", "generated")];
            if let Some(csrf) = &csrf {
                fields.push(("csrf", csrf.as_str()));
            }
            server
                .post("/ui/roles", &[("Cookie", &cookie)], &form(&fields))
                .await
        }
    };
    assert_eq!(put(cookie.clone(), None).await.status, 403);
    let (content_type, body) =
        multipart(&[("RoleName", None, "app"), ("provider", None, "generated")]);
    let without = server
        .post(
            "/ui/roles",
            &[("Cookie", &cookie), ("Content-Type", &content_type)],
            &body,
        )
        .await;
    assert_eq!(without.status, 403);
    assert!(server.state.admin.registry.role("app").await.is_err());

    let viewer = server
        .post("/ui/login", &[], &form(&[("token", VIEWER_TOKEN)]))
        .await
        .session_cookie()
        .unwrap();
    let viewer_csrf = csrf_of(&server.get("/ui/roles", &viewer).await.body);
    assert_eq!(
        put(viewer.clone(), Some(viewer_csrf.clone())).await.status,
        403
    );
    assert!(server.state.admin.registry.role("app").await.is_err());

    assert_eq!(put(cookie, Some(csrf)).await.status, 303);
    assert!(server.state.admin.registry.role("app").await.is_ok());
    let delete = server
        .post(
            "/ui/roles/app/delete",
            &[("Cookie", &viewer)],
            &form(&[("csrf", &viewer_csrf)]),
        )
        .await;
    assert_eq!(delete.status, 403);
    assert!(server.state.admin.registry.role("app").await.is_ok());
}

/// Reads `/ui/live?{query}` until its first `stats` message; returns the message's data.
async fn first_message(server: &Server, cookie: &str, query: &str) -> serde_json::Value {
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let request = format!(
        "GET /ui/live?{query} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
        server.address
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some(at) = text.find("event: stats\ndata: ") {
            let rest = &text[at + "event: stats\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                return serde_json::from_str(&rest[..end]).unwrap();
            }
        }
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .unwrap()
                .unwrap();
        assert!(read > 0, "{text}");
        raw.extend_from_slice(&buffer[..read]);
    }
}

#[tokio::test]
async fn scenarios_are_started_shown_and_stopped_and_need_the_right_to_change() {
    let server = server_with_viewer().await;
    let cookie = login(&server).await;
    let csrf = csrf_of(&server.get("/ui/instances", &cookie).await.body);
    assert_eq!(
        register(&server, &[("Cookie", &cookie)], &csrf)
            .await
            .status,
        303
    );
    let scenario = r#"{"name": "outage <b>", "instance-id": "i-0123456789abcdef0", "steps": [
        {"at": 0, "inject-fault": {"Kind": "status", "Status": 500}},
        {"at": "1h", "post-event": {"Type": "rebalance-recommendation"}}
    ]}"#;

    // Without the CSRF token, or with a read-only token: nothing starts.
    let (content_type, body) = multipart(&[("scenario", None, scenario)]);
    let without = server
        .post(
            "/ui/scenarios",
            &[("Cookie", &cookie), ("Content-Type", &content_type)],
            &body,
        )
        .await;
    assert_eq!(without.status, 403);
    let viewer = server
        .post("/ui/login", &[], &form(&[("token", VIEWER_TOKEN)]))
        .await
        .session_cookie()
        .unwrap();
    let viewer_csrf = csrf_of(&server.get("/ui/scenarios", &viewer).await.body);
    let refused = server
        .post(
            "/ui/scenarios",
            &[("Cookie", &viewer)],
            &form(&[("scenario", scenario), ("csrf", &viewer_csrf)]),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(server.state.admin.scenarios.list().scenarios.is_empty());

    // Not a scenario: 400, naming what is wrong.
    let invalid = server
        .post(
            "/ui/scenarios",
            &[("Cookie", &cookie)],
            &form(&[
                ("scenario", r#"{"name": "x", "steps": [{"at": 0}]}"#),
                ("csrf", &csrf),
            ]),
        )
        .await;
    assert_eq!(invalid.status, 400, "{invalid:?}");

    // Uploaded as a file: started.
    let (content_type, body) = multipart(&[
        ("csrf", None, &csrf),
        ("scenario", None, ""),
        ("scenario-file", Some("outage.json"), scenario),
    ]);
    let started = server
        .post(
            "/ui/scenarios",
            &[("Cookie", &cookie), ("Content-Type", &content_type)],
            &body,
        )
        .await;
    assert_eq!(started.status, 303, "{started:?}");
    let runs = server.state.admin.scenarios.list().scenarios;
    assert_eq!(runs.len(), 1);
    let id = runs[0].scenario_id.clone();
    let page = server.get("/ui/scenarios", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!(r#"data-scenario="{id}""#)));
    assert!(page.body.contains("outage &lt;b&gt;"));
    assert!(
        page.body
            .contains(r#"<tr data-step="1" data-state="pending">"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("/ui/scenarios/{id}/stop")));

    // Its progress is in the stream the page reads.
    let message = first_message(&server, &cookie, "scenarios=1").await;
    assert_eq!(
        message["scenarios"]["Scenarios"][0]["ScenarioId"],
        id.as_str()
    );
    assert_eq!(
        message["scenarios"]["Scenarios"][0]["Steps"][1]["State"],
        "pending"
    );

    // The viewer may not stop it; the admin may.
    let stop = format!("/ui/scenarios/{id}/stop");
    let refused = server
        .post(
            &stop,
            &[("Cookie", &viewer)],
            &form(&[("csrf", &viewer_csrf)]),
        )
        .await;
    assert_eq!(refused.status, 403);
    let stopped = server
        .post(&stop, &[("Cookie", &cookie)], &form(&[("csrf", &csrf)]))
        .await;
    assert_eq!(stopped.status, 303, "{stopped:?}");
    let run = server.state.admin.scenarios.describe(&id).unwrap();
    assert_eq!(run.state.as_str(), "stopped");
    let page = server.get("/ui/scenarios", &cookie).await;
    assert!(page
        .body
        .contains(r#"<tr data-step="1" data-state="skipped">"#));
    assert!(!page.body.contains(&format!("/ui/scenarios/{id}/stop")));
}

#[tokio::test]
async fn the_stream_carries_one_instances_requests_by_route_and_version() {
    let server = server(ConsoleOptions {
        tick: std::time::Duration::from_millis(50),
        ..ConsoleOptions::default()
    })
    .await;
    let cookie = login(&server).await;
    let csrf = csrf_of(&server.get("/ui/instances", &cookie).await.body);
    assert_eq!(
        register(&server, &[("Cookie", &cookie)], &csrf)
            .await
            .status,
        303
    );
    let slot = server
        .state
        .admin
        .registry
        .slot("i-0123456789abcdef0")
        .unwrap();
    let requests = &slot.counters.requests;
    requests.count(Route::MetaDataLeaf, Some(http::StatusCode::OK), Version::V2);
    requests.count(Route::MetaDataLeaf, Some(http::StatusCode::OK), Version::V1);
    requests.count(
        Route::Refused,
        Some(http::StatusCode::UNAUTHORIZED),
        Version::V1,
    );
    let message = first_message(&server, &cookie, "instance=i-0123456789abcdef0").await;
    assert_eq!(
        message["instance"],
        serde_json::json!({
            "routes": [["meta-data-leaf", "v1", 1], ["meta-data-leaf", "v2", 1], ["refused", "v1", 1]],
            "refusals": [[401, "v1", 1]],
        })
    );
    let unknown = first_message(&server, &cookie, "instance=i-00000000000000000").await;
    assert_eq!(unknown["instance"], serde_json::Value::Null);
    assert!(unknown.get("scenarios").is_none());
    let page = server
        .get("/ui/instances/i-0123456789abcdef0", &cookie)
        .await;
    assert!(page.body.contains(r#"data-scope="instance""#));
    assert!(page.body.contains(r#"id="by-route""#));
}
