//! How every listener speaks HTTP/1: the connection settings the guest, container and control API
//! listeners share, the request checks RFC 9112 requires before anything else looks at a
//! request, and serving an axum router with both.
//!
//! - Half-closed connections are served: a client may send its request and then shut down its
//!   sending side (`nc -N`, socat, some embedded clients) and still gets its whole answer.
//! - Header names are written title-cased, as EC2 writes them (`Content-Type`, `Server`,
//!   `X-Aws-Ec2-Metadata-Token-Ttl-Seconds`).
//! - An HTTP/1.1 request without exactly one valid `Host`, or any request with more than one
//!   or an invalid one, gets 400 (RFC 9112 §3.2).

use std::{convert::Infallible, sync::Arc};

use axum::{extract::ConnectInfo, Router};
use http::{header, HeaderMap, Request, Version};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::Service;

use crate::{drain::Watch, listener::Limits, responses};

/// The HTTP/1 connection settings of every listener.
pub fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true)
        // A read that meets the end of the client's sending side must not end the connection
        // before the answer is written.
        .half_close(true)
        .title_case_headers(true);
    builder
}

/// True when the request's `Host` fields are what RFC 9112 §3.2 requires: exactly one in an
/// HTTP/1.1 request, at most one otherwise, and a valid `uri-host [":" port]` (an empty value
/// is a valid, empty `reg-name`).
pub fn host_is_valid(version: Version, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return false;
    }
    match first {
        None => version != Version::HTTP_11,
        Some(value) => is_host(value.as_bytes()),
    }
}

/// The bytes a `reg-name` may hold (RFC 3986 §3.2.2: unreserved, sub-delims and the `%` of
/// pct-encoded), as a table: every request's `Host` is checked byte by byte.
const REG_NAME_BYTES: [bool; 256] = {
    let symbols = b"-._~!$&'()*+,;=%";
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut symbol = 0;
    while symbol < symbols.len() {
        table[symbols[symbol] as usize] = true;
        symbol += 1;
    }
    table
};

/// `uri-host [":" port]` (RFC 3986 §3.2.2, §3.2.3).
fn is_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|byte| *byte == b']') {
            Some(end) => {
                let address = &literal[..end];
                let rest = &literal[end + 1..];
                let valid_literal = std::str::from_utf8(address)
                    .is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok());
                if !valid_literal {
                    return false;
                }
                match rest {
                    [] => (&b""[..], None),
                    [b':', port @ ..] => (&b""[..], Some(port)),
                    _ => return false,
                }
            }
            None => return false,
        },
        None => match value.iter().rposition(|byte| *byte == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        },
    };
    let reg_name = host.iter().all(|byte| REG_NAME_BYTES[usize::from(*byte)]);
    let port = port.is_none_or(|port| port.iter().all(u8::is_ascii_digit));
    reg_name && port
}

/// Serves `router` on `listener` with the shared settings, giving handlers the listener's
/// address type as `ConnectInfo`, until `watch` is told to stop: then the listener is closed and
/// open connections finish their current answer.
pub async fn serve_router_until<L>(mut listener: L, router: Router, limits: Limits, watch: Watch)
where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let builder = Arc::new(http1_builder(&limits));
    let stopping = watch.stopping();
    tokio::pin!(stopping);
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopping => return,
        };
        tokio::spawn(serve_connection(
            io,
            address,
            router.clone(),
            builder.clone(),
            watch.clone(),
        ));
    }
}

/// Serves `router` over TLS on `listener`, each connection with the certificate `tls` has when
/// it is accepted, until `watch` is told to stop (then as [`serve_router_until`]). A handshake
/// has the header read timeout to finish; one that fails or takes longer ends its connection,
/// and no other.
pub async fn serve_router_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    tls: crate::tls::ServerTls,
    watch: Watch,
) {
    let builder = Arc::new(http1_builder(&limits));
    let stopping = watch.stopping();
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopping => return,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // As axum's own listener does: out of descriptors or a connection reset
                // before it was taken; wait a little rather than spin.
                tracing::debug!(message = "Accept failed.", %error);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor();
        let router = router.clone();
        let builder = builder.clone();
        let timeout = limits.header_read_timeout;
        let watch = watch.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, address, router, builder, watch).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(message = "TLS handshake failed.", %address, %error);
                }
                Err(_) => tracing::debug!(message = "TLS handshake timed out.", %address),
            }
        });
    }
}

/// Serves the control listener's `router` until `watch` is told to stop: over TLS when `tls`
/// is given, else plain HTTP, with the default limits.
pub async fn serve_control(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<crate::tls::ServerTls>,
    watch: Watch,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    match tls {
        Some(tls) => serve_router_tls(listener, router, Limits::default(), tls, watch).await,
        None => serve_router_until(listener, router, Limits::default(), watch).await,
    }
    Ok(())
}

/// Serves one connection: `router` with `address` as `ConnectInfo`, requests with a bad `Host`
/// refused first; once `watch` is told to stop, the connection closes after its current answer.
async fn serve_connection<I, A>(
    io: I,
    address: A,
    router: Router,
    builder: Arc<http1::Builder>,
    watch: Watch,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let mut router = router.clone();
        let well_formed = host_is_valid(request.version(), request.headers());
        request
            .extensions_mut()
            .insert(ConnectInfo(address.clone()));
        async move {
            if !well_formed {
                let mut response = responses::bad_request().map(axum::body::Body::new);
                response
                    .headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                return Ok::<_, Infallible>(response);
            }
            router.call(request.map(axum::body::Body::new)).await
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = crate::lifetime::serve_connection(connection, watch, None).await {
        tracing::debug!(message = "Connection ended with an error.", %error);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[track_caller]
    fn check(version: Version, hosts: &[&str], expect: bool) {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        assert_eq!(
            host_is_valid(version, &headers),
            expect,
            "{version:?} {hosts:?}"
        );
    }

    #[test]
    fn host_fields() {
        for good in [
            "169.254.169.254",
            "169.254.169.254:80",
            "[fd00:ec2::254]",
            "[fd00:ec2::254]:80",
            "localhost",
            "x",
            "",
            "instance-data.ec2.internal:",
        ] {
            check(Version::HTTP_11, &[good], true);
            check(Version::HTTP_10, &[good], true);
        }
        for bad in [
            "user@169.254.169.254",
            "169.254.169.254:http",
            "[fd00:ec2::254",
            "[not-an-address]",
            "[::1]x",
            "a b",
            "a/b",
            "fd00:ec2::254",
        ] {
            check(Version::HTTP_11, &[bad], false);
            check(Version::HTTP_10, &[bad], false);
        }
        check(Version::HTTP_11, &[], false);
        check(Version::HTTP_10, &[], true);
        check(Version::HTTP_11, &["a", "a"], false);
        check(Version::HTTP_10, &["a", "b"], false);
    }

    #[test]
    fn the_reg_name_table_holds_exactly_the_rfc_bytes() {
        // RFC 3986 §2.3 unreserved, §2.2 sub-delims, and `%`.
        let allowed = b"-._~!$&'()*+,;=%";
        for byte in 0..=u8::MAX {
            assert_eq!(
                REG_NAME_BYTES[usize::from(byte)],
                byte.is_ascii_alphanumeric() || allowed.contains(&byte),
                "byte {byte:#04x}"
            );
        }
    }
}
