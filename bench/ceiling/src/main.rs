//! The ceiling for `bench/run`: a minimal hyper server, configured like imds's guest listener
//! (HTTP/1.1, keep-alive, half-closed connections served, header names written title-cased, the
//! same tokio runtime), that answers every request with a fixed body and the same response
//! headers an IMDSv2 metadata answer carries (the token's remaining lifetime among them). `/large` answers a body the size of a
//! credentials document, anything else one the size of an instance id. Whatever throughput it
//! reaches is the most an HTTP server can do on the machine for answers of that shape.
#![forbid(unsafe_code)]

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    header::{HeaderName, HeaderValue, ACCEPT_RANGES, CONTENT_TYPE, LAST_MODIFIED, SERVER},
    server::conn::http1,
    service::service_fn,
    Request, Response,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The header every answer to an IMDSv2 (tokened) request carries: its token's remaining
/// lifetime.
const TOKEN_TTL: HeaderName = HeaderName::from_static("x-aws-ec2-metadata-token-ttl-seconds");

/// The size of a credentials document as imds serves it.
const LARGE_BODY_BYTES: usize = 1134;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1340".to_owned())
        .parse()
        .expect("usage: imds-bench-ceiling ADDRESS");
    let listener = TcpListener::bind(address).await?;
    eprintln!("Listening. address={}", listener.local_addr()?);
    let small = Bytes::from_static(b"i-0123456789abcdef0");
    let large = Bytes::from(vec![b'x'; LARGE_BODY_BYTES]);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (small, large) = (small.clone(), large.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let body = if request.uri().path() == "/large" {
                    large.clone()
                } else {
                    small.clone()
                };
                async move {
                    let mut response = Response::new(Full::new(body));
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("none"));
                    headers.insert(SERVER, HeaderValue::from_static("EC2ws"));
                    headers.insert(
                        LAST_MODIFIED,
                        HeaderValue::from_static("Tue, 24 Nov 2026 12:00:00 GMT"),
                    );
                    headers.insert(TOKEN_TTL, HeaderValue::from_static("21600"));
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .half_close(true)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
