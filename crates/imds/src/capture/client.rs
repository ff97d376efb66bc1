//! The HTTP side of `imds capture`: a client of one metadata service that asks for an IMDSv2
//! token, sends it with every request, retries what a second try may fix, and bounds every wait.
//!
//! Each request has `timeout` to connect and answer in full; connection failures, timeouts,
//! `429` (IMDS throttling) and `5xx` are tried again up to `retries` times, waiting 0.2 s, 0.4 s,
//! ... (at most 2 s) in between. A `401` while a token is in use gets a new token and one more
//! try (the token may have expired during a long walk). Nothing else is retried, so the longest
//! a request can take is `(retries + 1) × timeout` plus the pauses.

use std::time::Duration;

use anyhow::format_err;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use crate::error::UsageError;

/// The largest answer read: EC2's largest values (user-data, 16 KiB before encoding; the
/// identity signatures) are far below it.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest pause between two tries of one request.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The token request and header names (EC2 User Guide, "Use the Instance Metadata Service to
/// access instance metadata", IMDSv2).
const TOKEN_PATH: &str = "/latest/api/token";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// How the client waits and retries.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long one try of a request may take, connecting included.
    pub timeout: Duration,
    /// How many times a failed try is repeated.
    pub retries: u32,
    /// The TTL asked for with each token.
    pub token_ttl: u32,
}

/// What the token request came to.
#[derive(Debug)]
pub enum TokenOutcome {
    /// A token was issued; the client now sends it.
    Issued,
    /// The endpoint issues no tokens; the text says how it answered.
    Refused(String),
}

/// A client of one metadata service.
pub struct ImdsClient {
    /// `http://HOST[:PORT]`, no trailing slash, for requests and messages.
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    settings: Settings,
    /// The IMDSv2 token in use; never printed.
    token: Option<String>,
}

impl std::fmt::Debug for ImdsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsClient")
            .field("base", &self.base)
            .field("settings", &self.settings)
            .field("has_token", &self.token.is_some())
            .finish()
    }
}

/// A try that did not get an answer.
enum Failure {
    /// Connecting or the exchange failed; the text says how.
    Unreachable(String),
    /// No full answer within the timeout.
    TimedOut,
    /// The answer was larger than `MAX_BODY_BYTES`.
    TooLarge,
}

impl ImdsClient {
    /// A client of the metadata service at `endpoint` (`http://HOST[:PORT]`, an optional `/`).
    pub fn new(endpoint: &str, settings: Settings) -> anyhow::Result<ImdsClient> {
        let base = parse_endpoint(endpoint).map_err(UsageError)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.timeout));
        connector.set_nodelay(true);
        Ok(ImdsClient {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
            settings,
            token: None,
        })
    }

    /// The endpoint as messages name it: `http://HOST[:PORT]`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// True when a token is in use.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Asks for an IMDSv2 token. A `403` is an error (on EC2 it means the endpoint is turned
    /// off); an unreachable endpoint is an error; any other answer, or none in time, is
    /// `Refused`.
    pub async fn fetch_token(&mut self) -> anyhow::Result<TokenOutcome> {
        let ttl = self.settings.token_ttl.to_string();
        let outcome = self
            .send_with_retries(Method::PUT, TOKEN_PATH, &[(TOKEN_TTL_HEADER, &ttl)])
            .await;
        match outcome {
            Ok((StatusCode::OK, body)) => {
                let token = String::from_utf8(body.to_vec())
                    .ok()
                    .filter(|token| !token.is_empty() && http::HeaderValue::from_str(token).is_ok())
                    .ok_or_else(|| {
                        format_err!(
                            "{}: PUT {TOKEN_PATH} answered 200 without a usable token",
                            self.base
                        )
                    })?;
                self.token = Some(token);
                Ok(TokenOutcome::Issued)
            }
            Ok((StatusCode::FORBIDDEN, _)) => Err(format_err!(
                "{}: PUT {TOKEN_PATH} answered 403 Forbidden: the metadata endpoint is turned off (HttpEndpoint disabled)",
                self.base
            )),
            Ok((status, _)) => Ok(TokenOutcome::Refused(format!(
                "PUT {TOKEN_PATH} answered {}",
                status_text(status)
            ))),
            Err(Failure::TimedOut) => Ok(TokenOutcome::Refused(format!(
                "PUT {TOKEN_PATH} got no answer within {}",
                self.bound_text()
            ))),
            Err(Failure::TooLarge) => Ok(TokenOutcome::Refused(format!(
                "PUT {TOKEN_PATH} answered with more than {MAX_BODY_BYTES} bytes"
            ))),
            Err(Failure::Unreachable(reason)) => Err(self.unreachable("PUT", TOKEN_PATH, &reason)),
        }
    }

    /// `GET path` with the token, if any: the body of a `200`, `None` for a `404`, an error
    /// naming the path for anything else.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Option<Bytes>> {
        let mut renewed = false;
        loop {
            let headers: Vec<(&str, &str)> = match &self.token {
                Some(token) => vec![(TOKEN_HEADER, token.as_str())],
                None => Vec::new(),
            };
            let outcome = self.send_with_retries(Method::GET, path, &headers).await;
            match outcome {
                Ok((StatusCode::OK, body)) => return Ok(Some(body)),
                Ok((StatusCode::NOT_FOUND, _)) => return Ok(None),
                Ok((StatusCode::UNAUTHORIZED, _)) if self.token.is_some() && !renewed => {
                    renewed = true;
                    match self.fetch_token().await? {
                        TokenOutcome::Issued => continue,
                        TokenOutcome::Refused(how) => {
                            return Err(format_err!(
                                "{}: GET {path} answered 401 and a new token could not be had: {how}",
                                self.base
                            ))
                        }
                    }
                }
                Ok((StatusCode::UNAUTHORIZED, _)) if self.token.is_none() => {
                    return Err(format_err!(
                        "{}: GET {path} answered 401 Unauthorized without a token, and the endpoint issues none",
                        self.base
                    ))
                }
                Ok((status, _)) => {
                    return Err(format_err!(
                        "{}: GET {path} answered {}",
                        self.base,
                        status_text(status)
                    ))
                }
                Err(failure) => return Err(self.failed("GET", path, failure)),
            }
        }
    }

    /// The status of `GET path` without a token (`401` when IMDSv2 is required).
    pub async fn status_without_token(&self, path: &str) -> anyhow::Result<StatusCode> {
        match self.send_with_retries(Method::GET, path, &[]).await {
            Ok((status, _)) => Ok(status),
            Err(failure) => Err(self.failed("GET", path, failure)),
        }
    }

    async fn send_with_retries(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, Bytes), Failure> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            let outcome = self.send_once(method.clone(), path, headers).await;
            let again = match &outcome {
                Ok((status, _)) => {
                    *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
                }
                Err(Failure::TooLarge) => false,
                Err(_) => true,
            };
            if !again || attempt >= self.settings.retries {
                return outcome;
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, Bytes), Failure> {
        let uri = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&uri).header(
            "user-agent",
            concat!("imds-capture/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|error| Failure::Unreachable(format!("cannot form the request: {error}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| Failure::Unreachable(error_chain(&error)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        Failure::TooLarge
                    } else {
                        Failure::Unreachable(error_chain(&*error))
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.settings.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::TimedOut),
        }
    }

    fn failed(&self, method: &str, path: &str, failure: Failure) -> anyhow::Error {
        match failure {
            Failure::Unreachable(reason) => self.unreachable(method, path, &reason),
            Failure::TimedOut => format_err!(
                "{}: no answer to {method} {path} within {}",
                self.base,
                self.bound_text()
            ),
            Failure::TooLarge => format_err!(
                "{}: {method} {path} answered with more than {MAX_BODY_BYTES} bytes",
                self.base
            ),
        }
    }

    fn unreachable(&self, method: &str, path: &str, reason: &str) -> anyhow::Error {
        format_err!(
            "cannot reach the metadata service at {} ({method} {path}, {} tries): {reason}",
            self.base,
            self.settings.retries + 1
        )
    }

    /// `5 s (3 tries)`.
    fn bound_text(&self) -> String {
        let tries = self.settings.retries + 1;
        format!(
            "{} s ({tries} {})",
            self.settings.timeout.as_secs_f64(),
            if tries == 1 { "try" } else { "tries" }
        )
    }
}

/// `200 OK`, `405 Method Not Allowed`.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// An error and its causes, `a: b: c`, without repeats (hyper's errors nest the same text).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(cause) = current {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}

/// Checks `endpoint` and returns it as `http://HOST[:PORT]`.
pub fn parse_endpoint(endpoint: &str) -> anyhow::Result<String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|error| format_err!("--endpoint {endpoint:?} is not a URL: {error}"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!(
            "--endpoint {endpoint:?} must be an http:// URL (the metadata service speaks plain HTTP)"
        );
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format_err!("--endpoint {endpoint:?} has no host"))?;
    if authority.as_str().contains('@') {
        anyhow::bail!("--endpoint {endpoint:?} must not carry user information");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        anyhow::bail!(
            "--endpoint {endpoint:?} must be the service's root, like http://169.254.169.254"
        );
    }
    Ok(format!("http://{authority}"))
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters,
/// sub-delimiters, `:` and `@` (tag keys may hold any letter, and `+ - = . , _ : @`).
pub fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_endpoint(endpoint: &str, expect: Result<&str, &str>) {
        match (parse_endpoint(endpoint), expect) {
            (Ok(base), Ok(expect)) => assert_eq!(base, expect),
            (Err(error), Err(expect)) => {
                let text = format!("{error:#}");
                assert!(text.contains(expect), "{text:?} does not say {expect:?}");
            }
            (got, expect) => panic!("{endpoint}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn endpoints() {
        check_endpoint("http://169.254.169.254", Ok("http://169.254.169.254"));
        check_endpoint("http://169.254.169.254/", Ok("http://169.254.169.254"));
        check_endpoint("http://127.0.0.1:1338/", Ok("http://127.0.0.1:1338"));
        check_endpoint("http://[fd00:ec2::254]", Ok("http://[fd00:ec2::254]"));
        check_endpoint("https://169.254.169.254", Err("must be an http:// URL"));
        check_endpoint("169.254.169.254", Err("must be an http:// URL"));
        check_endpoint("http://169.254.169.254/latest/", Err("the service's root"));
        check_endpoint("http://user@host/", Err("user information"));
        check_endpoint("http://a b/", Err("is not a URL"));
    }

    #[test]
    fn segments() {
        for (segment, expect) in [
            ("instance-id", "instance-id"),
            ("aws:autoscaling:groupName", "aws:autoscaling:groupName"),
            ("a+b=c,d@e", "a+b=c,d@e"),
            ("ünï", "%C3%BCn%C3%AF"),
            ("a b/c%", "a%20b%2Fc%25"),
        ] {
            assert_eq!(encode_segment(segment), expect, "{segment}");
        }
    }

    #[test]
    fn the_token_is_never_in_debug() {
        let mut client = ImdsClient::new(
            "http://127.0.0.1:1",
            Settings {
                timeout: Duration::from_secs(1),
                retries: 0,
                token_ttl: 60,
            },
        )
        .unwrap();
        client.token = Some("AQAEAsecret-token-text".to_owned());
        let text = format!("{client:?}");
        assert!(!text.contains("secret-token-text"), "{text}");
        assert!(text.contains("has_token: true"), "{text}");
    }
}
