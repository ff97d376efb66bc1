//! Response building: the headers every IMDS answer carries and the error pages AWS sends.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The body type of every guest response.
pub type Body = Full<Bytes>;

/// `Server: EC2ws`, on every answer real IMDS gives.
const SERVER: HeaderValue = HeaderValue::from_static("EC2ws");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
const TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html");
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
const ACCEPT_RANGES_NONE: HeaderValue = HeaderValue::from_static("none");

/// The XHTML error page real IMDS sends, with `$title` as its title and heading.
macro_rules! error_page {
    ($title:literal) => {
        concat!(
            "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n",
            "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n",
            "\t\t \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n",
            "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n",
            " <head>\n  <title>",
            $title,
            "</title>\n </head>\n <body>\n  <h1>",
            $title,
            "</h1>\n </body>\n</html>\n"
        )
    };
}

/// The 404 page exactly as real IMDS sends it (captured bytes: `rekby/lets-proxy2#133`,
/// `aws/aws-node-termination-handler#1058`).
pub const NOT_FOUND_PAGE: &str = error_page!("404 - Not Found");
/// The 401 page: the 404 template with the 401 title (the real 401 body is not published).
pub const UNAUTHORIZED_PAGE: &str = error_page!("401 - Unauthorized");
/// The 400 page: the 404 template with the 400 title.
pub const BAD_REQUEST_PAGE: &str = error_page!("400 - Bad Request");

/// The 429 page: the 404 template with the 429 title (the real 429 body is not published).
pub const TOO_MANY_REQUESTS_PAGE: &str = error_page!("429 - Too Many Requests");

/// How a body is labelled.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `text/plain`: values, listings, JSON documents, tokens.
    Text,
    /// `text/html`: error pages.
    Html,
    /// `application/octet-stream`: user-data.
    Binary,
}

/// A response with IMDS's standard headers.
pub fn answer(status: StatusCode, kind: Kind, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        match kind {
            Kind::Text => TEXT_PLAIN,
            Kind::Html => TEXT_HTML,
            Kind::Binary => OCTET_STREAM,
        },
    );
    headers.insert(header::ACCEPT_RANGES, ACCEPT_RANGES_NONE);
    headers.insert(header::SERVER, SERVER);
    response
}

/// 404 with the real page.
pub fn not_found() -> Response<Body> {
    answer(
        StatusCode::NOT_FOUND,
        Kind::Html,
        Bytes::from_static(NOT_FOUND_PAGE.as_bytes()),
    )
}

/// 401: no token where one is required, or a token that is invalid, expired or foreign.
pub fn unauthorized() -> Response<Body> {
    answer(
        StatusCode::UNAUTHORIZED,
        Kind::Html,
        Bytes::from_static(UNAUTHORIZED_PAGE.as_bytes()),
    )
}

/// 400: a token request with a missing or invalid TTL.
pub fn bad_request() -> Response<Body> {
    answer(
        StatusCode::BAD_REQUEST,
        Kind::Html,
        Bytes::from_static(BAD_REQUEST_PAGE.as_bytes()),
    )
}

/// 429: the instance is over its rate limit.
pub fn too_many_requests() -> Response<Body> {
    answer(
        StatusCode::TOO_MANY_REQUESTS,
        Kind::Html,
        Bytes::from_static(TOO_MANY_REQUESTS_PAGE.as_bytes()),
    )
}

/// 403 with an empty `text/plain` body, as captured from real IMDS refusing a forwarded request.
pub fn forbidden() -> Response<Body> {
    answer(StatusCode::FORBIDDEN, Kind::Text, Bytes::new())
}

/// 405 with `Allow`, an empty body (captured from real IMDS for `GET /latest/api/token`).
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, Kind::Text, Bytes::new());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 403 for a caller no registered instance claims (host mode without a default instance).
pub fn unknown_caller() -> Response<Body> {
    answer(
        StatusCode::FORBIDDEN,
        Kind::Text,
        Bytes::from_static(b"No instance is registered for this address."),
    )
}
