//! Response building: the headers every IMDS answer carries and the error pages AWS sends.
//!
//! Header names go out as EC2 spells them (`Content-Type`, `Server`, `Last-Modified`,
//! `X-Aws-Ec2-Metadata-Token-Ttl-Seconds`): the listeners write them title-cased. Every answer
//! has `Content-Type` and `Server: EC2ws`; metadata answers also `Accept-Ranges` and
//! `Last-Modified`, which captured token and error answers do not have (docs/behaviour.md,
//! "Headers").

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The body type of every guest response.
pub type Body = Full<Bytes>;

/// `Server: EC2ws`, on every answer real IMDS gives.
const SERVER: HeaderValue = HeaderValue::from_static("EC2ws");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
const TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html");
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
const ACCEPT_RANGES_NONE: HeaderValue = HeaderValue::from_static("none");
const ACCEPT_RANGES_BYTES: HeaderValue = HeaderValue::from_static("bytes");

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

/// A response with the headers of every IMDS answer: `Content-Type` and `Server`.
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
    headers.insert(header::SERVER, SERVER);
    response
}

/// A 200 with metadata (`Text`) or user-data (`Binary`): `Accept-Ranges` as captured (`none`, and
/// `bytes` for user-data, which answers ranges) and `Last-Modified` when the answer is dated.
pub fn data(kind: Kind, body: Bytes, last_modified: Option<HeaderValue>) -> Response<Body> {
    let mut response = answer(StatusCode::OK, kind, body);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCEPT_RANGES,
        match kind {
            Kind::Binary => ACCEPT_RANGES_BYTES,
            Kind::Text | Kind::Html => ACCEPT_RANGES_NONE,
        },
    );
    if let Some(last_modified) = last_modified {
        headers.insert(header::LAST_MODIFIED, last_modified);
    }
    response
}

/// User-data for a `GET`: the whole body, or the one byte range a `Range` header asks for (206
/// with `Content-Range`; 416 when the range starts past the end). A `Range` with several ranges,
/// one that does not parse, or one sent with `If-Range` (which imds does not evaluate) is ignored
/// and the whole body sent, as RFC 9110 §14.2 allows.
pub fn user_data(
    body: Bytes,
    request_headers: &HeaderMap,
    last_modified: Option<HeaderValue>,
) -> Response<Body> {
    let range = match request_headers.get(header::RANGE) {
        Some(_) if request_headers.contains_key(header::IF_RANGE) => ByteRange::Whole,
        Some(value) => byte_range(value.as_bytes(), body.len()),
        None => ByteRange::Whole,
    };
    let content_range = |text: String| {
        HeaderValue::from_str(&text).expect("a Content-Range of digits is a valid header value")
    };
    match range {
        ByteRange::Whole => data(Kind::Binary, body, last_modified),
        ByteRange::Part { first, last } => {
            let length = body.len();
            let mut response = data(Kind::Binary, body.slice(first..=last), last_modified);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                content_range(format!("bytes {first}-{last}/{length}")),
            );
            response
        }
        ByteRange::Unsatisfiable => {
            let mut response = answer(StatusCode::RANGE_NOT_SATISFIABLE, Kind::Text, Bytes::new());
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                content_range(format!("bytes */{}", body.len())),
            );
            response
        }
    }
}

/// What a `Range` header value asks of a body of `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Send the whole body: no range, or one that is ignored.
    Whole,
    /// Send bytes `first..=last`.
    Part {
        /// The first byte sent.
        first: usize,
        /// The last byte sent.
        last: usize,
    },
    /// The range starts past the end: 416.
    Unsatisfiable,
}

/// Reads one `bytes` range of a `Range` value (RFC 9110 §14.1.2: `first-last`, `first-` or
/// `-suffix`); anything else is `Whole`.
pub fn byte_range(value: &[u8], length: usize) -> ByteRange {
    let Ok(text) = std::str::from_utf8(value) else {
        return ByteRange::Whole;
    };
    let Some((unit, set)) = text.trim().split_once('=') else {
        return ByteRange::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |text: &str| -> Option<usize> {
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse().unwrap_or(usize::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), number(first), number(last)) {
        // `-suffix`: the last `suffix` bytes.
        (true, _, Some(0)) => ByteRange::Unsatisfiable,
        (true, _, Some(suffix)) if length > 0 => ByteRange::Part {
            first: length.saturating_sub(suffix),
            last: length - 1,
        },
        (true, _, _) => ByteRange::Whole,
        (false, Some(first), _) if first >= length => ByteRange::Unsatisfiable,
        (false, Some(first), None) if last.is_empty() => ByteRange::Part {
            first,
            last: length - 1,
        },
        (false, Some(first), Some(last)) if last >= first => ByteRange::Part {
            first,
            last: last.min(length - 1),
        },
        _ => ByteRange::Whole,
    }
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

/// An error answer of `status` with the page real IMDS sends for errors, titled with the status
/// (the 404 template, as for 401 and 429: real 5xx bodies are not published).
pub fn error_page(status: StatusCode) -> Response<Body> {
    let title = format!(
        "{} - {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let page = NOT_FOUND_PAGE.replace("404 - Not Found", &title);
    answer(status, Kind::Html, Bytes::from(page))
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

/// 200 to `OPTIONS`, with `Allow` and an empty body.
pub fn options(allow: &'static str) -> Response<Body> {
    let mut response = answer(StatusCode::OK, Kind::Text, Bytes::new());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(value: &str, length: usize, expect: ByteRange) {
        assert_eq!(byte_range(value.as_bytes(), length), expect, "{value:?}");
    }

    #[test]
    fn byte_ranges() {
        let part = |first, last| ByteRange::Part { first, last };
        check("bytes=0-3", 10, part(0, 3));
        check("bytes=2-", 10, part(2, 9));
        check("bytes=-4", 10, part(6, 9));
        check("bytes=-40", 10, part(0, 9));
        check("bytes=5-100", 10, part(5, 9));
        check("Bytes = 1-1", 10, part(1, 1));
        check("bytes=10-", 10, ByteRange::Unsatisfiable);
        check("bytes=99-100", 10, ByteRange::Unsatisfiable);
        check("bytes=-0", 10, ByteRange::Unsatisfiable);
        for ignored in [
            "bytes=3-1",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "0-1",
        ] {
            check(ignored, 10, ByteRange::Whole);
        }
        check("bytes=18446744073709551616-", 10, ByteRange::Unsatisfiable);
    }

    #[test]
    fn user_data_ranges() {
        let body = Bytes::from_static(b"0123456789");
        let mut headers = HeaderMap::new();
        let whole = user_data(body.clone(), &headers, None);
        assert_eq!(whole.status(), StatusCode::OK);
        assert_eq!(whole.headers()[header::ACCEPT_RANGES], "bytes");
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        let part = user_data(body.clone(), &headers, None);
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=20-"));
        let beyond = user_data(body.clone(), &headers, None);
        assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(beyond.headers()[header::CONTENT_RANGE], "bytes */10");
        headers.insert(header::IF_RANGE, HeaderValue::from_static("\"x\""));
        assert_eq!(user_data(body, &headers, None).status(), StatusCode::OK);
    }
}
