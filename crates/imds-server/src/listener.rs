//! Listeners and connections: binding, accepting within a bound, per-connection limits, and the
//! hop limit of token responses.
//!
//! The hop limit is applied on the socket itself: when a token is issued, the connection's IP
//! TTL (IPv6 unicast hop limit) is set to the instance's `HttpPutResponseHopLimit` before the
//! response is written, so a caller more hops away than that never receives its token, as on
//! EC2. The connection then stays open with that TTL: a caller that received the token is within
//! the limit anyway, and one that did not times out and drops the connection.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Request, Response};
use hyper::{body::Incoming, service::Service};
use hyper_util::rt::TokioIo;
use imds_core::{
    path::{self, Target},
    token::TOKEN_HEADER,
};
use imds_credentials::Delivery;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use crate::{
    admin_api::model::FaultKind,
    audit::{Endpoint, Event, Record},
    connection,
    faults::{self, Action, Fault, Plan, Renamed, Rewriting},
    guest_api::{self, GuestRequest, Note, Outcome, Reply},
    instance::slot::InstanceSlot,
    lifetime::{self, Activity},
    lockdown::{Access, ConnectionVerdict, Verdict},
    minor_version::MinorVersion,
    responses::{self, Body},
    state::AppState,
    telemetry::{is_credentials_target, ConnectionGuard, Refusal, Route, Version},
};

/// Limits that keep hostile or broken clients from exhausting the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections per listener; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Time a client has to send a complete request head; idle keep-alive connections are
    /// closed after it too.
    pub header_read_timeout: Duration,
    /// Bytes buffered for one request head (request line and headers).
    pub max_header_bytes: usize,
    /// The longest a `no-answer` fault holds a request before the connection is closed
    /// without an answer, so that held connections never outlive the fault by much.
    pub fault_hold_limit: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            // hyper's smallest read buffer; real IMDS requests are a few hundred bytes.
            max_header_bytes: 8192,
            // Longer than any SDK's metadata timeout (one to a few seconds by default).
            fault_hold_limit: Duration::from_secs(120),
        }
    }
}

/// Binds a listening socket on `address`. IPv6 sockets are IPv6-only, so that `[::]:80` and
/// `0.0.0.0:80` can both be bound and each request's family is known.
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts guest connections on `listener` until `watch` is told to stop (then the listening
/// socket is closed and open connections finish their current answer) or the task is dropped.
pub async fn serve_guest(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
    watch: crate::drain::Watch,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // The head timeout is kept by `lifetime` (without a timer per request), not by hyper.
    let mut builder = connection::http1_builder(&limits);
    builder.header_read_timeout(None);
    let builder = Arc::new(builder);
    let stopping = watch.stopping();
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopping => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(message = "Accept failed.", %error);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(message = "Connection limit reached; closing new connection.", %peer);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr();
        let over_ipv6 =
            matches!(local, Ok(SocketAddr::V6(local)) if local.ip().to_ipv4_mapped().is_none());
        let signals = Arc::new(Signals::default());
        let io = TokioIo::new(HopLimitStream {
            inner: stream,
            signals: signals.clone(),
            applied_hop_limit: 0,
            over_ipv6,
            minor_version: MinorVersion::default(),
        });
        let state = state.clone();
        let builder = builder.clone();
        let watch = watch.clone();
        let activity = Activity::new();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = ConnectionGuard::new(state.requests.clone());
            // Lockdown: one kernel lookup per connection (and one more after a reload changed
            // the lockdown), only when a policy is configured, on the lookup thread; this task
            // awaits it, outside the accept loop.
            let local = match local {
                Ok(local) => Some(local),
                Err(error) => {
                    if state.lockdown.policy().is_some() {
                        tracing::warn!(message = "Could not read a connection's local address; refusing it.", %peer, %error);
                    }
                    None
                }
            };
            let (generation, verdict) = state.lockdown.decide(local, peer).await;
            if verdict.access == Access::Nothing {
                tracing::warn!(
                    message = "Lockdown refuses this caller every request.",
                    %peer,
                    uid = ?verdict.caller.map(|caller| caller.uid),
                );
            }
            let service = GuestService {
                state,
                peer,
                local,
                signals,
                over_ipv6,
                decided: Arc::new(ConnectionVerdict::new(generation, verdict)),
                fault_hold_limit: limits.fault_hold_limit,
                activity: activity.clone(),
            };
            let served = lifetime::serve_connection(
                builder.serve_connection(io, service),
                watch,
                Some((activity, limits.header_read_timeout)),
            );
            if let Err(error) = served.await {
                tracing::debug!(message = "Connection ended with an error.", %peer, %error);
            }
        });
    }
}

/// Unix time in milliseconds.
#[allow(
    clippy::disallowed_methods,
    reason = "a guest request is answered at the time it arrives: `now` is read here and passed down"
)]
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// What a connection's service tells its stream before the stream next writes or closes.
#[derive(Debug, Default)]
struct Signals {
    /// Set by the service when it issues a token; 0 when nothing is pending.
    hop_limit: AtomicU8,
    /// Set by a `reset` fault: the connection is closed with a TCP RST.
    reset: AtomicBool,
}

/// The per-connection service: every request of the connection goes through `guest_api`.
#[derive(Clone)]
struct GuestService {
    state: Arc<AppState>,
    peer: SocketAddr,
    /// The connection's local address; `None` if it could not be read.
    local: Option<SocketAddr>,
    signals: Arc<Signals>,
    over_ipv6: bool,
    /// Who the caller is and what lockdown lets it read: decided at accept, and again by the
    /// first request after a reload changed the lockdown.
    decided: Arc<ConnectionVerdict>,
    /// See `Limits::fault_hold_limit`.
    fault_hold_limit: Duration,
    /// When the connection last began to wait for a request head (its head timeout).
    activity: Arc<Activity>,
}

impl GuestService {
    /// Writes the audit record of `note`, and logs lockdown refusals.
    fn record(&self, note: &Note) {
        let audit = &self.state.audit;
        let record = match note {
            Note::CredentialsIssued {
                instance_id,
                role,
                access_key_id,
                delivery,
                path,
            } => {
                if let Some(delivery) = delivery {
                    self.state.requests.count_delivery(*delivery);
                }
                if !audit.is_on() {
                    return;
                }
                let mut record = Record::new(Event::CredentialsIssued, Endpoint::Imds);
                record.instance_id = Some(instance_id);
                record.role = Some(role);
                record.access_key_id = Some(access_key_id);
                record.delivery = delivery.map(Delivery::as_str);
                record.path = Some(path);
                record
            }
            Note::TokenRefused {
                instance_id,
                reason,
            } => {
                if !audit.is_on() {
                    return;
                }
                let mut record = Record::new(Event::TokenRefused, Endpoint::Imds);
                record.instance_id = Some(instance_id);
                record.reason = Some(reason);
                record
            }
            Note::CredentialsRefused { instance_id } => {
                self.state.requests.count_refusal(Refusal::Credentials);
                tracing::info!(
                    message = "Lockdown refused credentials.",
                    peer = %self.peer,
                    uid = ?self.verdict().caller.map(|caller| caller.uid),
                    instance_id = %instance_id,
                );
                let mut record = Record::new(Event::LockdownRefused, Endpoint::Imds);
                record.instance_id = Some(instance_id);
                record.reason = Some("credentials");
                record
            }
        };
        audit.write(&record.caller(self.peer, self.verdict().caller));
    }

    /// The answer to a caller lockdown refuses everything.
    fn refuse_everything(&self, instance_id: Option<&str>) -> Reply {
        self.state.requests.count_refusal(Refusal::Endpoint);
        let mut record = Record::new(Event::LockdownRefused, Endpoint::Imds);
        record.instance_id = instance_id;
        record.reason = Some("endpoint");
        self.state
            .audit
            .write(&record.caller(self.peer, self.verdict().caller));
        Reply {
            outcome: Outcome::Respond(responses::forbidden()),
            route: Route::Refused,
            version: Version::V1,
            note: None,
        }
    }
}

/// Returned to hyper to close a connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped without an answer")
    }
}

impl std::error::Error for Dropped {}

/// The answer to a guest request: ready at once, or after the instance's identity document was
/// signed on a blocking thread (once per document; RSA signing is CPU work of a millisecond or
/// more, which must not hold an async worker), or after what an injected fault says.
enum GuestFuture {
    Ready(Option<Result<Response<Body>, Dropped>>),
    Signing(Pin<Box<dyn Future<Output = Result<Response<Body>, Dropped>> + Send>>),
}

impl Future for GuestFuture {
    type Output = Result<Response<Body>, Dropped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            GuestFuture::Ready(answer) => Poll::Ready(
                answer
                    .take()
                    .expect("a ready answer is polled once, as futures are"),
            ),
            GuestFuture::Signing(future) => future.as_mut().poll(cx),
        }
    }
}

impl Service<Request<Incoming>> for GuestService {
    type Response = Response<Body>;
    type Error = Dropped;
    type Future = GuestFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if !self.decided.is_current(&self.state.lockdown) {
            // A reload changed the lockdown: this connection is decided again first.
            let service = self.clone();
            return self.later(async move {
                service.decide_again().await;
                service.call_decided(request).await
            });
        }
        self.call_decided(request)
    }
}

impl GuestService {
    /// The connection's verdict in force.
    fn verdict(&self) -> Verdict {
        self.decided.last()
    }

    /// Decides the connection again under the lockdown in force; a caller it now refuses
    /// everything is logged as at accept.
    async fn decide_again(&self) {
        self.decided
            .decide(&self.state.lockdown, self.local, self.peer)
            .await;
        let verdict = self.verdict();
        if verdict.access == Access::Nothing {
            tracing::warn!(
                message = "Lockdown refuses this caller every request.",
                peer = %self.peer,
                uid = ?verdict.caller.map(|caller| caller.uid),
            );
        }
    }

    /// An answer that `answer` gives later: while it is pending the connection is answering,
    /// so its head timeout does not run.
    fn later(
        &self,
        answer: impl Future<Output = Result<Response<Body>, Dropped>> + Send + 'static,
    ) -> GuestFuture {
        let answering = self.activity.answering();
        GuestFuture::Signing(Box::pin(async move {
            let _answering = answering;
            answer.await
        }))
    }

    /// `call`, with the connection decided under the lockdown in force.
    fn call_decided(&self, request: Request<Incoming>) -> GuestFuture {
        if self.verdict().access != Access::Nothing {
            if let Some(slot) = self.state.registry.directory().resolve(self.peer.ip()) {
                // The one check faults cost a request while none is injected.
                if slot.faults.in_force() {
                    if let Some(plan) = self.fault_plan(slot, &request) {
                        let service = self.clone();
                        let slot = slot.clone();
                        return self.later(async move {
                            service.answer_faulted(slot, request, plan).await
                        });
                    }
                }
                if slot.needs_signing() {
                    let slot = slot.clone();
                    let service = self.clone();
                    return self.later(async move { service.answer_signed(&slot, &request).await });
                }
            }
        }
        self.activity.answered();
        GuestFuture::Ready(Some(self.answer(&request)))
    }
    /// Answers `request` at once: the instance's identity document is signed already, or the
    /// caller is refused.
    fn answer(&self, request: &Request<Incoming>) -> Result<Response<Body>, Dropped> {
        self.finish(self.decide(request, request.uri().path()))
    }

    /// Answers `request` after signing the identity document of `slot` on a blocking thread if
    /// it is not signed yet.
    async fn answer_signed(
        &self,
        slot: &Arc<InstanceSlot>,
        request: &Request<Incoming>,
    ) -> Result<Response<Body>, Dropped> {
        self.sign(slot).await;
        self.answer(request)
    }

    /// Signs the identity document of `slot` on a blocking thread if it is not signed yet.
    async fn sign(&self, slot: &Arc<InstanceSlot>) {
        if slot.needs_signing() {
            let slot = slot.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || slot.sign()).await {
                tracing::error!(message = "Signing the identity document failed.", %error);
            }
        }
    }

    /// What `request`, answered as for the path `path`, gets from the guest API.
    fn decide(&self, request: &Request<Incoming>, path: &str) -> Reply {
        let guest_request = GuestRequest {
            method: request.method(),
            path,
            target_is_authority: request.uri().scheme().is_none()
                && request.uri().authority().is_some(),
            headers: request.headers(),
            over_ipv6: self.over_ipv6,
            credentials_allowed: self.verdict().access == Access::Everything,
        };
        let directory = self.state.registry.directory();
        match directory.resolve(self.peer.ip()) {
            // RFC 9112 §3.2: a request without exactly one valid Host is refused before anything
            // else looks at it.
            _ if !connection::host_is_valid(request.version(), request.headers()) => Reply {
                outcome: Outcome::Respond(responses::bad_request()),
                route: Route::Refused,
                version: Version::V1,
                note: None,
            },
            Some(slot) if self.verdict().access == Access::Nothing => {
                let reply = self.refuse_everything(Some(&slot.source().instance.instance_id));
                reply.count_in(slot);
                reply
            }
            Some(slot) => {
                let reply = guest_api::respond(
                    &guest_request,
                    slot,
                    &self.state.tokens,
                    &self.state.throttle.load(),
                    now_ms(),
                );
                reply.count_in(slot);
                reply
            }
            None if self.verdict().access == Access::Nothing => self.refuse_everything(None),
            None => {
                self.state.registry.count_unknown_caller();
                tracing::debug!(message = "Request from an unregistered address refused.", peer = %self.peer.ip());
                Reply {
                    outcome: Outcome::Respond(responses::unknown_caller()),
                    route: Route::Refused,
                    version: Version::V1,
                    note: None,
                }
            }
        }
    }

    /// Records, counts and sends `reply`.
    fn finish(&self, reply: Reply) -> Result<Response<Body>, Dropped> {
        if let Some(note) = &reply.note {
            self.record(note);
        }
        let status = reply.status();
        self.state
            .requests
            .count(reply.route, status, reply.version);
        let mut result = match reply.outcome {
            Outcome::Respond(response) => Ok(response),
            Outcome::Token {
                response,
                hop_limit,
            } => {
                self.signals
                    .hop_limit
                    .store(hop_limit.get(), Ordering::Release);
                Ok(response)
            }
            Outcome::Drop => Err(Dropped),
        };
        // Error answers close the connection, as real IMDS closes after every answer: clients
        // that do not read an error's body (the JavaScript SDK's `MetadataService`) would
        // otherwise hold the socket until the idle timeout, and their process with it.
        if let Ok(response) = &mut result {
            if !response.status().is_success() {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
        }
        result
    }

    /// What the faults of `slot` make of `request`, if any applies. Faults never reach callers
    /// lockdown refuses credentials on credentials paths, nor requests refused for their Host.
    fn fault_plan(&self, slot: &InstanceSlot, request: &Request<Incoming>) -> Option<Plan> {
        if !connection::host_is_valid(request.version(), request.headers()) {
            return None;
        }
        let target = path::parse(request.uri().path());
        if self.verdict().access != Access::Everything && is_credentials_target(&target) {
            return None;
        }
        slot.faults
            .plan(request.method(), fault_key(&target), now_ms())
    }

    /// Answers `request` as the faults of `plan` say.
    #[allow(
        clippy::disallowed_methods,
        reason = "a faulted answer is rewritten at the time the request arrives"
    )]
    async fn answer_faulted(
        &self,
        slot: Arc<InstanceSlot>,
        request: Request<Incoming>,
        plan: Plan,
    ) -> Result<Response<Body>, Dropped> {
        let instance_id = slot.source().instance.instance_id.clone();
        let target = path::parse(request.uri().path());
        let key = fault_key(&target).map(str::to_owned);
        let version = if request.headers().contains_key(TOKEN_HEADER) {
            Version::V2
        } else {
            Version::V1
        };
        if let Some(latency) = &plan.latency {
            log_fault(&instance_id, latency, &request, key.as_deref());
            tokio::time::sleep(plan.delay).await;
        }
        let Some(fault) = plan.decisive else {
            return self.answer_signed(&slot, &request).await;
        };
        // A rewriting fault is logged (and counted) only when it changed the answer.
        if fault.action() != Action::Rewrite {
            log_fault(&instance_id, &fault, &request, key.as_deref());
        }
        let on_credentials = is_credentials_target(&target);
        // A faulted answer is counted in the instance here; a rewritten one by `decide`.
        let faulted = |outcome| {
            let reply = Reply {
                outcome,
                route: Route::Faulted,
                version,
                note: None,
            };
            reply.count_in(&slot);
            reply
        };
        let dropped = |service: &GuestService| {
            if on_credentials {
                service.audit_fault(&instance_id, &fault, None);
            }
            service.finish(faulted(Outcome::Drop))
        };
        match fault.action() {
            Action::Status(status) => {
                if on_credentials {
                    self.audit_fault(&instance_id, &fault, None);
                }
                self.finish(faulted(Outcome::Respond(faults::status_answer(status))))
            }
            Action::Throttle => {
                if on_credentials {
                    self.audit_fault(&instance_id, &fault, None);
                }
                self.finish(faulted(Outcome::Respond(responses::too_many_requests())))
            }
            Action::Close => dropped(self),
            Action::Reset => {
                self.signals.reset.store(true, Ordering::Release);
                dropped(self)
            }
            Action::NoAnswer => {
                let until_end = fault
                    .ends_at_ms()
                    .map_or(Duration::MAX, |end| {
                        Duration::from_millis(end.saturating_sub(now_ms()))
                    })
                    .min(self.fault_hold_limit);
                tokio::select! {
                    () = tokio::time::sleep(until_end) => {}
                    () = fault.removed() => {}
                }
                dropped(self)
            }
            Action::Rewrite => {
                self.sign(&slot).await;
                let source = slot.source();
                let role = source.role_name();
                let mut path = request.uri().path().to_owned();
                let mut mapped_key = key.clone();
                if let (Some(shown), Some(role), Some(key)) = (fault.shown_role(), role, &key) {
                    match faults::renamed(key, role, shown) {
                        Renamed::As(role_key) => {
                            path = renamed_path(&path, role);
                            mapped_key = Some(role_key);
                        }
                        Renamed::Gone => {
                            log_fault(&instance_id, &fault, &request, Some(key.as_str()));
                            slot.faults.count_rewritten(&fault);
                            if on_credentials {
                                self.audit_fault(&instance_id, &fault, None);
                            }
                            return self.finish(faulted(Outcome::Respond(responses::not_found())));
                        }
                        Renamed::Same => {}
                    }
                }
                let mut reply = self.decide(&request, &path);
                let rewriting = Rewriting {
                    key: mapped_key.as_deref(),
                    is_token: target.is_token(),
                    role,
                    now: time::OffsetDateTime::now_utc(),
                };
                let mut changed = false;
                reply.outcome = match reply.outcome {
                    Outcome::Respond(response) => {
                        let (response, rewritten) =
                            faults::rewrite(&fault, rewriting, response).await;
                        changed = rewritten;
                        Outcome::Respond(response)
                    }
                    Outcome::Token {
                        response,
                        hop_limit,
                    } => {
                        let (response, rewritten) =
                            faults::rewrite(&fault, rewriting, response).await;
                        changed = rewritten;
                        Outcome::Token {
                            response,
                            hop_limit,
                        }
                    }
                    Outcome::Drop => Outcome::Drop,
                };
                if changed {
                    log_fault(&instance_id, &fault, &request, key.as_deref());
                    slot.faults.count_rewritten(&fault);
                    if on_credentials {
                        let note = reply.note.take();
                        self.audit_fault(&instance_id, &fault, note.as_ref());
                    }
                }
                self.finish(reply)
            }
        }
    }

    /// Audits a faulted answer to a credentials request: `credentials-issued` with the fault's
    /// id when credentials were still handed out (`note`), else `fault-injected`.
    fn audit_fault(&self, instance_id: &str, fault: &Fault, note: Option<&Note>) {
        let audit = &self.state.audit;
        if !audit.is_on() {
            return;
        }
        let handed_out = match note {
            Some(Note::CredentialsIssued {
                role,
                access_key_id,
                delivery,
                path,
                ..
            }) if fault.kind() != FaultKind::CredentialsCode => {
                Some((role, access_key_id, delivery, path))
            }
            _ => None,
        };
        let mut record = match handed_out {
            Some((role, access_key_id, delivery, path)) => {
                let mut record = Record::new(Event::CredentialsIssued, Endpoint::Imds);
                record.role = Some(role);
                record.access_key_id = Some(access_key_id);
                record.delivery = delivery.map(Delivery::as_str);
                record.path = Some(path);
                record
            }
            None => Record::new(Event::FaultInjected, Endpoint::Imds),
        };
        record.instance_id = Some(instance_id);
        record.reason = Some(fault.kind().as_str());
        record.fault = Some(fault.id());
        audit.write(&record.caller(self.peer, self.verdict().caller));
    }
}

/// The tree key faults match `target` by; `None` for `/` and paths that name no key.
fn fault_key<'a>(target: &'a Target<'_>) -> Option<&'a str> {
    match target {
        Target::Node { key, .. } => Some(key),
        Target::Versions | Target::Unknown => None,
    }
}

/// `path` with its last segment replaced by `role`, keeping a trailing slash.
fn renamed_path(path: &str, role: &str) -> String {
    let trailing = path.ends_with('/');
    let trimmed = path.trim_end_matches('/');
    let parent = trimmed.rsplit_once('/').map_or("", |(parent, _)| parent);
    let mut renamed = format!("{parent}/{role}");
    if trailing {
        renamed.push('/');
    }
    renamed
}

/// Logs a faulted answer.
fn log_fault(instance_id: &str, fault: &Fault, request: &Request<Incoming>, key: Option<&str>) {
    tracing::info!(
        message = "Fault injected.",
        instance_id = %instance_id,
        fault_id = %fault.id(),
        kind = fault.kind().as_str(),
        method = %request.method(),
        key = key.unwrap_or("-"),
    );
}

/// A TCP stream that applies a pending hop limit before its next write, and reads request lines
/// of a higher HTTP/1 minor version as HTTP/1.1 (RFC 9112 §2.3).
struct HopLimitStream {
    inner: TcpStream,
    /// The hop limit to set before the next write, and whether to reset the connection.
    signals: Arc<Signals>,
    /// The hop limit last set on the socket (0: the system's default), so that the tokens after
    /// the first on a kept-alive connection cost no system call.
    applied_hop_limit: u8,
    over_ipv6: bool,
    minor_version: MinorVersion,
}

impl HopLimitStream {
    fn apply_pending_hop_limit(&mut self) {
        let hop_limit = self.signals.hop_limit.swap(0, Ordering::Acquire);
        if hop_limit == 0 || hop_limit == self.applied_hop_limit {
            return;
        }
        let socket = SockRef::from(&self.inner);
        let result = if self.over_ipv6 {
            socket.set_unicast_hops_v6(u32::from(hop_limit))
        } else {
            socket.set_ttl_v4(u32::from(hop_limit))
        };
        match result {
            Ok(()) => self.applied_hop_limit = hop_limit,
            Err(error) => {
                tracing::warn!(message = "Could not set the hop limit of a token response.", %error);
            }
        }
    }
}

impl AsyncRead for HopLimitStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.minor_version.rewrite(&mut buf.filled_mut()[before..]);
        }
        result
    }
}

impl AsyncWrite for HopLimitStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.apply_pending_hop_limit();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.apply_pending_hop_limit();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.signals.reset.load(Ordering::Acquire) {
            // No FIN: the drop that follows resets the connection.
            self.set_reset();
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl HopLimitStream {
    /// SO_LINGER with a zero timeout: closing the socket sends RST, not FIN.
    fn set_reset(&self) {
        if let Err(error) = SockRef::from(&self.inner).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(message = "Could not set SO_LINGER for a reset.", %error);
        }
    }
}

impl Drop for HopLimitStream {
    fn drop(&mut self) {
        if self.signals.reset.load(Ordering::Acquire) {
            self.set_reset();
        }
    }
}

/// Serves guests on every listener, in tasks of their own, until `drain` is drained.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    state: Arc<AppState>,
    limits: Limits,
    drain: &crate::drain::Drain,
) -> io::Result<()> {
    for listener in listeners {
        let listener = TcpListener::from_std(listener)?;
        tokio::spawn(serve_guest(listener, state.clone(), limits, drain.watch()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn connected_pair(address: &str) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind(address).await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        (server_side, client)
    }

    #[tokio::test]
    async fn pending_hop_limit_is_set_on_the_socket_before_the_write() {
        for (address, over_ipv6) in [("127.0.0.1:0", false), ("[::1]:0", true)] {
            let (server_side, _client) = connected_pair(address).await;
            let signals = Arc::new(Signals::default());
            let pending = &signals.hop_limit;
            let mut stream = HopLimitStream {
                inner: server_side,
                signals: signals.clone(),
                applied_hop_limit: 0,
                over_ipv6,
                minor_version: MinorVersion::default(),
            };
            let hop_limit = |stream: &HopLimitStream| {
                let socket = SockRef::from(&stream.inner);
                if over_ipv6 {
                    socket.unicast_hops_v6().unwrap()
                } else {
                    socket.ttl_v4().unwrap()
                }
            };
            let default = hop_limit(&stream);
            assert_ne!(default, 2);
            stream.write_all(b"data").await.unwrap();
            assert_eq!(
                hop_limit(&stream),
                default,
                "nothing pending: TTL unchanged"
            );
            pending.store(2, Ordering::Release);
            assert_eq!(hop_limit(&stream), default, "not applied before a write");
            stream.write_all(b"token").await.unwrap();
            assert_eq!(hop_limit(&stream), 2);
            assert_eq!(pending.load(Ordering::Acquire), 0);

            // The same limit again costs no system call: a value set behind the stream's back
            // stays. A different one is set.
            let socket = SockRef::from(&stream.inner);
            if over_ipv6 {
                socket.set_unicast_hops_v6(5).unwrap();
            } else {
                socket.set_ttl_v4(5).unwrap();
            }
            pending.store(2, Ordering::Release);
            stream.write_all(b"token").await.unwrap();
            assert_eq!(hop_limit(&stream), 5, "an unchanged limit is not set again");
            pending.store(3, Ordering::Release);
            stream.write_all(b"token").await.unwrap();
            assert_eq!(hop_limit(&stream), 3);
        }
    }
}
