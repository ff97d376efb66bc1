//! A TCP relay between a store and its PostgreSQL server that can go silent: frozen, it keeps
//! every connection open and accepts new ones but forwards nothing, in either direction, as a
//! network partition does (no reset, no error: only silence). Thawed, it forwards what it held
//! and carries on, as a healed network does.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running relay; it stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub address: SocketAddr,
    /// `true` while frozen; every connection's copy loops watch it.
    frozen: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
}

impl Proxy {
    /// Relays loopback connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (frozen, watching) = watch::channel(false);
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(async move {
                    // Connecting upstream waits for a thaw too: a partition lets no SYN through.
                    let _ = watching.clone().wait_for(|frozen| !frozen).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        relay(client_read, server_write, watching.clone()),
                        relay(server_read, client_write, watching),
                    );
                });
            }
        });
        Proxy {
            address,
            frozen,
            accept_loop,
        }
    }

    /// Stops forwarding anything, on every connection, new ones included.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again, starting with what arrived while frozen.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Copies `from` to `to` while not frozen; what is read while frozen waits for the thaw.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
