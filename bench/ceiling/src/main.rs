//! The ceiling for `bench/run`: a minimal hyper server, configured like imds's guest listener
//! (HTTP/1.1, keep-alive, the same tokio runtime), that answers every request with a fixed body.
//! Whatever throughput it reaches is the most an HTTP server can do on the machine at hand.
#![forbid(unsafe_code)]

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1339".to_owned())
        .parse()
        .expect("usage: imds-bench-ceiling ADDRESS");
    let listener = TcpListener::bind(address).await?;
    eprintln!("Listening. address={}", listener.local_addr()?);
    let body = Bytes::from_static(b"i-0123456789abcdef0");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
