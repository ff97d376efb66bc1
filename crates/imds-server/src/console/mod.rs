//! The web console: HTML pages under `/ui/` on the control listener, to see and steer instances,
//! events, faults, roles and credential use in a browser.
//!
//! - Pages are rendered on the server (`pages`, maud templates: every value is escaped by the
//!   template engine); the only script (`assets/console.js`) draws the live charts and the feed
//!   from the Server-Sent Events stream (`live`). Every asset is inside the binary.
//! - A user logs in by pasting a control-API token; `check_token` is the one place that decides
//!   what a token may do. The browser then holds only a random session id in a cookie
//!   (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Secure` when the listener has TLS): the token
//!   is never put in a URL, a page or a cookie. Sessions live in memory, expire, and are bounded
//!   in number (the oldest goes when a new one would pass the bound).
//! - Every change is a form POST carrying the session's CSRF token (a hidden field) and, from a
//!   browser, an `Origin` of this listener; anything else is refused with 403, as is a change by a
//!   session whose token may only read.
//! - Every change calls the control API's own handler (`admin_api::*`), with the same model
//!   types, so a change made here is the change `imds ctl` makes. The dependency is one way:
//!   `admin_api` knows nothing of the console.

mod live;
mod multipart;
mod pages;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use ring::rand::SecureRandom;
use tokio::{sync::Semaphore, time::Instant};

use crate::admin_api::{AdminState, ApiError, Scope, Tokens};

/// Audit records kept in memory for the credential-use feed.
pub const FEED_RECORDS: usize = 500;

/// The session cookie's name.
pub const COOKIE: &str = "imds_console";

/// How the console is served.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The listener serves HTTPS: the session cookie is `Secure` and `Origin` is `https://`.
    pub tls: bool,
    /// Sessions kept at most; a new login past it ends the oldest.
    pub max_sessions: usize,
    /// How long a session lasts after login.
    pub session_lifetime: Duration,
    /// Live-update streams open at once, over all sessions.
    pub max_streams: usize,
    /// Live-update streams open at once per session.
    pub max_streams_per_session: usize,
    /// How often a stream sends.
    pub tick: Duration,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            tls: false,
            max_sessions: 64,
            session_lifetime: Duration::from_secs(8 * 3600),
            max_streams: 32,
            // A stream is let go when the next message cannot be written (up to a tick after
            // its tab went away), so a few navigations in a row need more than one.
            max_streams_per_session: 4,
            tick: Duration::from_secs(1),
        }
    }
}

/// What a logged-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// May change things (register, edit, post events, inject faults, set roles); otherwise
    /// only see them.
    pub can_change: bool,
}

/// Decides what `presented` may do: `None` when it is no control-API token; a read-only token
/// may only look. The one place the console checks a token, through the control API's own check.
pub fn check_token(tokens: &Tokens, presented: &str) -> Option<Access> {
    tokens
        .authenticate(Some(presented.trim().as_bytes()))
        .map(|caller| Access {
            can_change: caller.scope.allows(Scope::Admin),
        })
}

/// One logged-in browser.
#[derive(Debug, Clone)]
struct Session {
    csrf: Arc<str>,
    access: Access,
    created: Instant,
    expires: Instant,
    streams: Arc<Semaphore>,
}

/// The sessions, by id.
#[derive(Debug, Default)]
struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut bytes = [0_u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Sessions {
    /// A new session; returns its id. Expired sessions go first, then the oldest past `max`.
    fn open(&self, access: Access, options: &ConsoleOptions) -> (String, Session) {
        let now = Instant::now();
        let id = random_hex();
        let session = Session {
            csrf: random_hex().into(),
            access,
            created: now,
            expires: now + options.session_lifetime,
            streams: Arc::new(Semaphore::new(options.max_streams_per_session)),
        };
        let mut by_id = self.lock();
        by_id.retain(|_, session| session.expires > now);
        while by_id.len() >= options.max_sessions.max(1) {
            let Some(oldest) = by_id
                .iter()
                .min_by_key(|(_, session)| session.created)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            by_id.remove(&oldest);
        }
        by_id.insert(id.clone(), session.clone());
        (id, session)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut by_id = self.lock();
        match by_id.get(id) {
            Some(session) if session.expires > now => Some(session.clone()),
            Some(_) => {
                by_id.remove(id);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id
            .lock()
            .expect("the sessions lock is never held across a panic")
    }
}

/// What the console's handlers share.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    admin: AdminState,
    tokens: Tokens,
    options: Arc<ConsoleOptions>,
    sessions: Arc<Sessions>,
    streams: Arc<Semaphore>,
}

impl ConsoleState {
    /// The console over `admin` (the control API's state), logging in with `tokens`.
    pub fn new(admin: AdminState, tokens: Tokens, options: ConsoleOptions) -> ConsoleState {
        ConsoleState {
            admin,
            tokens,
            streams: Arc::new(Semaphore::new(options.max_streams)),
            options: Arc::new(options),
            sessions: Arc::default(),
        }
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

/// The session of a request, from its cookie. A request without one is sent to the login page
/// (a page) or refused with 403 (a change).
#[derive(Debug, Clone)]
struct LoggedIn {
    id: String,
    session: Session,
}

impl FromRequestParts<ConsoleState> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let found = session_id(&parts.headers)
            .and_then(|id| state.sessions.get(&id).map(|session| (id, session)));
        match found {
            Some((id, session)) => Ok(LoggedIn { id, session }),
            None if parts.method == Method::GET => Err(Redirect::to("/ui/login").into_response()),
            None => Err(forbidden("log in first")),
        }
    }
}

impl LoggedIn {
    /// Refuses (403) a change whose form lacks this session's CSRF token, or by a session that
    /// may not change anything.
    #[allow(
        clippy::result_large_err,
        reason = "the refusal is the answer, sent at once; it is made at most once a request"
    )]
    fn may_change(&self, csrf: &str) -> Result<(), Response> {
        if !same_secret(&self.session.csrf, csrf) {
            return Err(forbidden(
                "the form's CSRF token is missing or wrong: reload the page and try again",
            ));
        }
        if !self.session.access.can_change {
            return Err(forbidden("this token may only read"));
        }
        Ok(())
    }
}

/// True when `presented` is `secret`, compared in constant time (as MACs under a random key,
/// as the control API compares its token).
fn same_secret(secret: &str, presented: &str) -> bool {
    let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
        .expect("the system random source works");
    let expected = ring::hmac::sign(&key, secret.as_bytes());
    ring::hmac::verify(&key, presented.as_bytes(), expected.as_ref()).is_ok()
}

/// The session id in the request's `Cookie` fields.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::message_page("Refused", message),
    )
        .into_response()
}

/// The `Set-Cookie` value for session `id` (`None`: the cookie is removed).
fn cookie(id: Option<&str>, options: &ConsoleOptions) -> HeaderValue {
    let secure = if options.tls { "; Secure" } else { "" };
    let value = match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            options.session_lifetime.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("session ids are hex")
}

/// Refuses (403) a POST sent from another origin: its `Origin` (which browsers send with every
/// POST) must be this listener's, and `Sec-Fetch-Site`, when sent, `same-origin`.
async fn same_origin(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let headers = request.headers();
        if let Some(site) = headers.get("sec-fetch-site") {
            if site.as_bytes() != b"same-origin" && site.as_bytes() != b"none" {
                return forbidden("the request came from another site");
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let scheme = if state.options.tls { "https" } else { "http" };
            let host = headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .unwrap_or_default();
            if origin.as_bytes() != format!("{scheme}://{host}").as_bytes() {
                return forbidden("the request came from another origin");
            }
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An error of the control API's handler, shown as a page with its status.
fn api_error(error: &ApiError) -> Response {
    (
        error.status(),
        pages::message_page("Not done", error.message()),
    )
        .into_response()
}

/// The console's routes, all below `/ui`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/instances") }))
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/instances", get(pages::instances).post(pages::register))
        .route("/ui/instances/{instance_id}", get(pages::instance))
        .route(
            "/ui/instances/{instance_id}/options",
            post(pages::modify_options),
        )
        .route(
            "/ui/instances/{instance_id}/description",
            post(pages::update_description),
        )
        .route(
            "/ui/instances/{instance_id}/deregister",
            post(pages::deregister),
        )
        .route(
            "/ui/instances/{instance_id}/events",
            post(pages::post_event),
        )
        .route(
            "/ui/instances/{instance_id}/events/{event_id}/{ending}",
            post(pages::end_event),
        )
        .route(
            "/ui/instances/{instance_id}/faults",
            post(pages::inject_fault),
        )
        .route(
            "/ui/instances/{instance_id}/faults/clear",
            post(pages::clear_faults),
        )
        .route("/ui/roles", get(pages::roles).post(pages::put_role))
        .route("/ui/roles/{role_name}/delete", post(pages::delete_role))
        .route(
            "/ui/scenarios",
            get(pages::scenarios).post(pages::start_scenario),
        )
        .route(
            "/ui/scenarios/{scenario_id}/stop",
            post(pages::stop_scenario),
        )
        .route("/ui/credentials", get(pages::credentials))
        .route("/ui/live", get(live::stream))
        .route("/ui/assets/console.js", get(pages::script))
        .route("/ui/assets/console.css", get(pages::style))
        .route_layer(middleware::from_fn_with_state(state.clone(), same_origin))
        .with_state(state)
}

/// The control listener's whole router: the control API and the console.
pub fn control_router(state: ConsoleState) -> Router {
    let admin = crate::admin_api::router_with(state.admin.clone(), state.tokens.clone());
    router(state).merge(admin)
}

/// Serves the control API and the console on `listener` until `watch` is told to stop (open
/// requests are then answered, new connections refused) or the task is dropped: over TLS when
/// `tls` is given (whose certificate `ServerTls::reload` replaces for new connections).
pub async fn serve(
    listener: std::net::TcpListener,
    state: ConsoleState,
    tls: Option<crate::tls::ServerTls>,
    watch: crate::drain::Watch,
) -> std::io::Result<()> {
    crate::connection::serve_control(listener, control_router(state), tls, watch).await
}

#[cfg(test)]
mod tests;
