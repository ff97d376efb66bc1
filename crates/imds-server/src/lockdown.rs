//! Lockdown: which users of this host may reach the endpoint, and which may read credentials.
//!
//! When a policy is configured, each accepted connection is looked up once in the kernel's
//! socket table through `NETLINK_SOCK_DIAG` (an `INET_DIAG` exact lookup by the connection's
//! 4-tuple, as `ss` does): if the client's end of the connection is a socket of this host (of
//! this network namespace), the kernel tells its owner's uid and its inode. The connection then
//! gets an `Access`, which its requests read, until a config reload changes the lockdown
//! (`LockdownSwitch`): the connection's next request is then decided again under the new one
//! (looking the caller up if it was not). Without a policy nothing is looked up.
//!
//! Callers whose socket is not on this host (other machines, guests, containers in their own
//! network namespace) are not subject to the policy: the kernel cannot say who they are.
//! A failed lookup of a caller that must be local (a loopback address) refuses everything.
//!
//! The lookups run on a thread of their own (`Identifier`), never on an async worker or in an
//! accept loop: one netlink socket, reused for every lookup, with a receive timeout; the
//! connection's task awaits the answer, within a bound too.

use std::{
    collections::HashSet,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

/// `INET_DIAG_NOCOOKIE`: look the socket up by its addresses alone (linux/inet_diag.h).
const NO_COOKIE: [u8; 8] = [0xff; 8];
/// TCP states whose sockets still belong to a process (linux/tcp_states.h): a `TIME_WAIT` or
/// `NEW_SYN_RECV` entry reports uid 0 whoever opened it, so those never identify a caller.
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;
/// How long the kernel may take to answer one lookup. It answers in microseconds; a socket
/// that does not answer within this is dropped and a new one made for the next lookup.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection waits for its lookup, queueing included; past it, it is refused.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Lookups that may wait for the thread; past them, connections are refused at once.
const QUEUED_LOOKUPS: usize = 4096;

/// Who is at the other end of a connection, as the kernel reports the client's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The uid owning the client's socket.
    pub uid: u32,
    /// The client socket's inode (`socket:[INODE]` in the owner's `/proc/PID/fd`).
    pub inode: u32,
}

/// What a connection may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything (no policy, or a caller the policy allows everything).
    Everything,
    /// Everything but credentials (`iam/security-credentials/`, `identity-credentials/`, the
    /// container endpoint).
    NoCredentials,
    /// Nothing: every request is refused.
    Nothing,
}

/// The lockdown policy: uids, resolved from the config's names and numbers when it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Users who may reach the endpoint at all; `None`: every user.
    pub users: Option<HashSet<u32>>,
    /// Users who may read credentials; `None`: every user who may reach the endpoint.
    pub credential_users: Option<HashSet<u32>>,
}

/// The result of checking one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The caller, when its socket is on this host.
    pub caller: Option<Caller>,
    /// What the connection may read.
    pub access: Access,
}

impl Verdict {
    /// No policy: everything, caller unknown.
    pub const OPEN: Verdict = Verdict {
        caller: None,
        access: Access::Everything,
    };
}

/// One lookup for the identifier's thread.
struct Lookup {
    local: SocketAddr,
    peer: SocketAddr,
    answer: tokio::sync::oneshot::Sender<io::Result<Option<Caller>>>,
}

/// Looks callers up on a thread of its own with one reused netlink socket.
#[derive(Debug, Clone)]
pub struct Identifier {
    lookups: mpsc::SyncSender<Lookup>,
}

impl Identifier {
    /// Starts the lookup thread.
    pub fn start() -> io::Result<Identifier> {
        let (lookups, queue) = mpsc::sync_channel::<Lookup>(QUEUED_LOOKUPS);
        std::thread::Builder::new()
            .name("imds-lockdown".to_owned())
            .spawn(move || {
                let mut socket = None;
                let sequence = AtomicU32::new(0);
                for lookup in queue {
                    let answer = identify_on(&mut socket, &sequence, lookup.local, lookup.peer);
                    if answer.is_err() {
                        // A socket that failed or timed out may still deliver a late answer;
                        // the next lookup gets a fresh one.
                        socket = None;
                    }
                    let _ = lookup.answer.send(answer);
                }
            })?;
        Ok(Identifier { lookups })
    }

    /// Who the client of the connection `peer` → `local` is, as `identify` says; an error if
    /// the lookup thread is swamped or does not answer in time.
    pub async fn identify(
        &self,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> io::Result<Option<Caller>> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.lookups
            .try_send(Lookup {
                local,
                peer,
                answer,
            })
            .map_err(|_| io::Error::other("too many caller lookups waiting"))?;
        match tokio::time::timeout(LOOKUP_TIMEOUT, answered).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(io::Error::other("the caller lookup thread stopped")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the kernel did not answer the caller lookup in time",
            )),
        }
    }
}

/// A lockdown policy and the identifier that looks callers up for it.
#[derive(Debug, Clone)]
pub struct Lockdown {
    /// Who may read what.
    pub policy: Policy,
    /// Looks callers up.
    pub identifier: Identifier,
}

impl Lockdown {
    /// Enforces `policy`, starting the lookup thread.
    pub fn start(policy: Policy) -> io::Result<Lockdown> {
        Ok(Lockdown {
            policy,
            identifier: Identifier::start()?,
        })
    }

    /// Identifies the caller of the connection from `peer` to `local` (off the async workers)
    /// and decides its access.
    pub async fn check(&self, local: SocketAddr, peer: SocketAddr) -> Verdict {
        self.policy
            .decide(self.identifier.identify(local, peer).await, peer)
    }
}

/// The lockdown in force for every listener, which a config reload may replace; connections
/// decided under an earlier one are decided again on their next request.
#[derive(Debug, Clone, Default)]
pub struct LockdownSwitch {
    inner: Arc<SwitchInner>,
}

#[derive(Debug, Default)]
struct SwitchInner {
    current: ArcSwapOption<Lockdown>,
    /// Bumped after each replacement: a verdict of another generation is stale.
    generation: AtomicU64,
}

impl LockdownSwitch {
    /// A switch serving `lockdown` (`None`: none).
    pub fn new(lockdown: Option<Lockdown>) -> LockdownSwitch {
        LockdownSwitch {
            inner: Arc::new(SwitchInner {
                current: ArcSwapOption::from(lockdown.map(Arc::new)),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The lockdown in force and its generation.
    pub fn current(&self) -> (u64, Option<Arc<Lockdown>>) {
        let generation = self.inner.generation.load(Ordering::Acquire);
        (generation, self.inner.current.load_full())
    }

    /// The generation in force, for requests to tell a stale verdict (a plain load on x86).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The policy in force, if any.
    pub fn policy(&self) -> Option<Policy> {
        self.inner
            .current
            .load()
            .as_ref()
            .map(|lockdown| lockdown.policy.clone())
    }

    /// The lockdown that enforces `policy` (`None`: none), with the lookup thread of the
    /// lockdown in force, or a new one; nothing is enforced until `install`.
    pub fn prepare(&self, policy: Option<Policy>) -> io::Result<Option<Arc<Lockdown>>> {
        let Some(policy) = policy else {
            return Ok(None);
        };
        let identifier = match self.inner.current.load().as_ref() {
            Some(current) => current.identifier.clone(),
            None => Identifier::start()?,
        };
        Ok(Some(Arc::new(Lockdown { policy, identifier })))
    }

    /// Enforces `next` (from `prepare`) from each connection's next request on.
    pub fn install(&self, next: Option<Arc<Lockdown>>) {
        self.inner.current.store(next);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The verdict on the connection from `peer` to `local` (`None`: its local address could
    /// not be read) under the lockdown in force, with the generation it was decided under.
    pub async fn decide(&self, local: Option<SocketAddr>, peer: SocketAddr) -> (u64, Verdict) {
        let (generation, lockdown) = self.current();
        let verdict = match (lockdown, local) {
            (None, _) => Verdict::OPEN,
            (Some(lockdown), Some(local)) => lockdown.check(local, peer).await,
            (Some(_), None) => Verdict {
                caller: None,
                access: Access::Nothing,
            },
        };
        (generation, verdict)
    }
}

/// One connection's verdict and the generation of the lockdown it was decided under, as plain
/// atomics: every request reads it (a load each, several times), a reload's change of the
/// lockdown has the next request decide it again. The generation is written last (release) and
/// read first (acquire), so a request that finds it current reads the verdict stored with it;
/// a request racing a write on the same connection (only HTTP/2 could) may pair one verdict's
/// caller, which is only logged, with the other's access.
#[derive(Debug)]
pub struct ConnectionVerdict {
    generation: AtomicU64,
    /// The caller's uid (low half) and socket inode (high half).
    caller: AtomicU64,
    /// Bit 0: a caller is known; bits 1 and 2: the access's index in `ACCESS`.
    state: AtomicU8,
}

/// The accesses by their index in `ConnectionVerdict::state`.
const ACCESS: [Access; 3] = [Access::Everything, Access::NoCredentials, Access::Nothing];

/// The generation of a connection not decided yet: no switch reaches it.
const UNDECIDED: u64 = u64::MAX;

impl Default for ConnectionVerdict {
    /// Not decided yet.
    fn default() -> ConnectionVerdict {
        ConnectionVerdict::new(UNDECIDED, Verdict::OPEN)
    }
}

impl ConnectionVerdict {
    /// `verdict`, decided under lockdown generation `generation`.
    pub fn new(generation: u64, verdict: Verdict) -> ConnectionVerdict {
        let decided = ConnectionVerdict {
            generation: AtomicU64::new(UNDECIDED),
            caller: AtomicU64::new(0),
            state: AtomicU8::new(0),
        };
        decided.store(generation, verdict);
        decided
    }

    fn store(&self, generation: u64, verdict: Verdict) {
        let index = ACCESS
            .iter()
            .position(|access| *access == verdict.access)
            .unwrap_or(2) as u8;
        let (known, caller) = match verdict.caller {
            Some(caller) => (1, u64::from(caller.uid) | (u64::from(caller.inode) << 32)),
            None => (0, 0),
        };
        self.caller.store(caller, Ordering::Relaxed);
        self.state.store(known | (index << 1), Ordering::Relaxed);
        self.generation.store(generation, Ordering::Release);
    }

    /// The verdict last decided (open before the first).
    pub fn last(&self) -> Verdict {
        let state = self.state.load(Ordering::Relaxed);
        let caller = self.caller.load(Ordering::Relaxed);
        Verdict {
            caller: (state & 1 == 1).then_some(Caller {
                uid: caller as u32,
                inode: (caller >> 32) as u32,
            }),
            access: ACCESS[usize::from((state >> 1) & 3).min(2)],
        }
    }

    /// True when the verdict was decided under the lockdown `switch` enforces now.
    pub fn is_current(&self, switch: &LockdownSwitch) -> bool {
        self.generation.load(Ordering::Acquire) == switch.generation()
    }

    /// The verdict, if it was decided under the lockdown `switch` enforces now.
    pub fn current(&self, switch: &LockdownSwitch) -> Option<Verdict> {
        self.is_current(switch).then(|| self.last())
    }

    /// Decides the connection from `peer` to `local` again under the lockdown `switch` enforces
    /// now, and keeps the verdict.
    pub async fn decide(
        &self,
        switch: &LockdownSwitch,
        local: Option<SocketAddr>,
        peer: SocketAddr,
    ) -> Verdict {
        let (generation, verdict) = switch.decide(local, peer).await;
        self.store(generation, verdict);
        verdict
    }
}

impl Policy {
    /// What `caller` may read; `None` is a caller on another host.
    pub fn access(&self, caller: Option<Caller>) -> Access {
        let Some(caller) = caller else {
            return Access::Everything;
        };
        let allowed = |users: &Option<HashSet<u32>>| {
            users
                .as_ref()
                .is_none_or(|users| users.contains(&caller.uid))
        };
        if !allowed(&self.users) {
            Access::Nothing
        } else if !allowed(&self.credential_users) {
            Access::NoCredentials
        } else {
            Access::Everything
        }
    }

    /// Identifies the caller of the connection from `peer` to `local` and decides its access,
    /// blocking on the kernel: for tests and tools, not for async workers (see `Lockdown`).
    pub fn check(&self, local: SocketAddr, peer: SocketAddr) -> Verdict {
        self.decide(identify(local, peer), peer)
    }

    /// Decides the access of the caller a lookup found. A lookup that fails for a caller that
    /// must be on this host refuses everything.
    pub fn decide(&self, lookup: io::Result<Option<Caller>>, peer: SocketAddr) -> Verdict {
        match lookup {
            Ok(caller) => {
                if caller.is_none() && peer.ip().is_loopback() {
                    tracing::warn!(message = "Loopback caller not found in the socket table; refusing it.", %peer);
                    return Verdict {
                        caller: None,
                        access: Access::Nothing,
                    };
                }
                Verdict {
                    caller,
                    access: self.access(caller),
                }
            }
            Err(error) => {
                tracing::warn!(message = "Could not identify a caller; refusing it.", %peer, %error);
                Verdict {
                    caller: None,
                    access: Access::Nothing,
                }
            }
        }
    }
}

/// Asks the kernel for the owner of the client's end of the connection `peer` → `local`, on a
/// socket of its own. `Ok(None)` when no such socket exists in this network namespace (a caller
/// on another host).
pub fn identify(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<Caller>> {
    identify_on(&mut None, &AtomicU32::new(0), local, peer)
}

/// A netlink socket for sock_diag lookups, with the receive timeout.
fn diag_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    Ok(socket)
}

/// `identify` on `socket` (made first if `None`), numbering the request from `sequence` and
/// skipping answers to earlier requests.
fn identify_on(
    socket: &mut Option<Socket>,
    sequence: &AtomicU32,
    local: SocketAddr,
    peer: SocketAddr,
) -> io::Result<Option<Caller>> {
    let (peer, local) = (unmap(peer), unmap(local));
    let family = match peer {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    };
    // The client's socket: its local end is the peer, its remote end is our listener.
    let socket_id = SocketId {
        source_port: peer.port(),
        destination_port: local.port(),
        source_address: peer.ip(),
        destination_address: local.ip(),
        interface_id: 0,
        cookie: NO_COOKIE,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let number = sequence.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    header.sequence_number = number;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut request = vec![0; packet.buffer_len()];
    packet.serialize(&mut request);

    let socket = match socket {
        Some(socket) => socket,
        None => socket.insert(diag_socket()?),
    };
    socket.send(&request, 0)?;
    let mut buffer = vec![0; 8192];
    let reply = loop {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[..size])
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
        if reply.header.sequence_number == number {
            break reply;
        }
    };
    match reply.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            let header = &response.header;
            let found = &header.socket_id;
            // The exact lookup may fall back to a listener bound to the peer's port; only an
            // endpoint of this very connection identifies the caller.
            let same_connection = found.source_port == peer.port()
                && found.destination_port == local.port()
                && found.destination_address == local.ip();
            if !same_connection || matches!(header.state, TCP_TIME_WAIT | TCP_NEW_SYN_RECV) {
                return Ok(None);
            }
            Ok(Some(Caller {
                uid: header.uid,
                inode: header.inode,
            }))
        }
        NetlinkPayload::Error(error) => {
            let code = error.code.map_or(0, |code| -code.get());
            if code == libc::ENOENT {
                Ok(None)
            } else {
                Err(io::Error::from_raw_os_error(code))
            }
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected sock_diag answer {other:?}"),
        )),
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 addresses they are.
fn unmap(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => address,
        },
        SocketAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_connections_verdict_reads_back_as_stored() {
        let verdicts = [
            Verdict::OPEN,
            Verdict {
                caller: Some(Caller {
                    uid: u32::MAX,
                    inode: 7,
                }),
                access: Access::NoCredentials,
            },
            Verdict {
                caller: Some(Caller {
                    uid: 0,
                    inode: u32::MAX,
                }),
                access: Access::Nothing,
            },
            Verdict {
                caller: None,
                access: Access::Nothing,
            },
        ];
        let decided = ConnectionVerdict::default();
        for (generation, verdict) in verdicts.into_iter().enumerate() {
            decided.store(generation as u64, verdict);
            assert_eq!(decided.last(), verdict);
            assert_eq!(
                decided.generation.load(Ordering::Relaxed),
                generation as u64
            );
        }
    }

    #[test]
    fn identifies_the_owner_of_a_local_connection() {
        for address in ["127.0.0.1:0", "[::1]:0"] {
            let listener = TcpListener::bind(address).unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server_side, peer) = listener.accept().unwrap();
            let caller = identify(server_side.local_addr().unwrap(), peer)
                .unwrap()
                .expect("the client socket is on this host");
            assert_eq!(caller.uid, nix::unistd::getuid().as_raw());
            assert_ne!(caller.inode, 0);
            // The server's own socket is a different one.
            let reverse = identify(peer, server_side.local_addr().unwrap())
                .unwrap()
                .unwrap();
            assert_ne!(reverse.inode, caller.inode);
            drop(client);
        }
    }

    #[tokio::test]
    async fn the_identifier_thread_reuses_its_socket_for_every_lookup() {
        let lockdown = Lockdown::start(Policy {
            users: Some(HashSet::from([nix::unistd::getuid().as_raw()])),
            credential_users: Some(HashSet::new()),
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server_side, peer) = listener.accept().unwrap();
            let verdict = lockdown
                .check(server_side.local_addr().unwrap(), peer)
                .await;
            assert_eq!(verdict.access, Access::NoCredentials);
            assert_eq!(
                verdict.caller.map(|caller| caller.uid),
                Some(nix::unistd::getuid().as_raw())
            );
            drop(client);
        }
        // A connection that does not exist, from loopback: refused.
        let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let verdict = lockdown.check(listener.local_addr().unwrap(), nobody).await;
        assert_eq!(verdict.access, Access::Nothing);
    }

    #[test]
    fn a_connection_that_does_not_exist_is_not_local() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(identify(local, peer).unwrap(), None);
        let policy = Policy {
            users: Some(HashSet::from([0])),
            credential_users: None,
        };
        // A loopback caller must be found; not finding it refuses everything.
        assert_eq!(policy.check(local, peer).access, Access::Nothing);
    }

    #[track_caller]
    fn check(policy: &Policy, uid: u32, expect: Access) {
        assert_eq!(policy.access(Some(Caller { uid, inode: 1 })), expect);
    }

    #[test]
    fn policy_decides_by_uid() {
        let policy = Policy {
            users: Some(HashSet::from([0, 1000])),
            credential_users: Some(HashSet::from([0])),
        };
        check(&policy, 0, Access::Everything);
        check(&policy, 1000, Access::NoCredentials);
        check(&policy, 1001, Access::Nothing);
        assert_eq!(policy.access(None), Access::Everything);
        let credentials_only = Policy {
            users: None,
            credential_users: Some(HashSet::from([0])),
        };
        check(&credentials_only, 0, Access::Everything);
        check(&credentials_only, 5, Access::NoCredentials);
        check(&Policy::default(), 5, Access::Everything);
    }
}
