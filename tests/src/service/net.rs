//! An in-memory network on the virtual clock, in the manner of netem: connections are pairs of
//! byte queues with a latency, bounded like socket buffers (a full one makes the writer wait),
//! and faults applied from outside: a stall (bytes held for a while), a reset (both ends fail at
//! once), a partition (a host's traffic and new connections held until it heals) and a crash (a
//! host's listener gone and its connections reset). Every byte delivered is folded into one
//! hash, in delivery order: the run's byte trace.

use super::exec::Exec;
use bytes::{Bytes, BytesMut};
use herd_core::rng::fnv1a;
use herd_core::time::Instant;
use herd_service::upstream::Transport;
use herd_service::BoxFuture;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Bytes a direction of a connection holds before its writer waits (a socket buffer).
pub const CAPACITY: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Dir {
    /// Bytes in flight, each with the instant it arrives.
    segs: VecDeque<(Instant, Bytes)>,
    held: usize,
    /// The writer closed (FIN).
    fin: bool,
    /// The reader is gone: writes fail.
    reader_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

struct LinkState {
    dirs: [Dir; 2],
    reset: bool,
    /// Nothing is delivered before this instant (a stall or a partition).
    held_until: Instant,
}

struct Link {
    id: u64,
    /// `[client, server]` addresses.
    ends: [SocketAddr; 2],
    latency: Duration,
    state: Mutex<LinkState>,
    net: Arc<NetShared>,
}

impl Link {
    fn wake_all(st: &mut LinkState) {
        for d in &mut st.dirs {
            if let Some(w) = d.read_waker.take() {
                w.wake();
            }
            if let Some(w) = d.write_waker.take() {
                w.wake();
            }
        }
    }
}

#[derive(Default)]
struct Listener {
    queue: VecDeque<SimConn>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct NetState {
    listeners: BTreeMap<SocketAddr, Listener>,
    links: BTreeMap<u64, std::sync::Weak<Link>>,
    next_link: u64,
    next_port: BTreeMap<IpAddr, u16>,
    /// Hosts cut off until the instant.
    partitioned: BTreeMap<IpAddr, Instant>,
    hash: u64,
    delivered: u64,
    held_now: usize,
    held_max: usize,
    connects: u64,
    /// Writes refused because the reader had gone, per connection end.
    writes_after_close: BTreeMap<(u64, usize), u64>,
}

struct NetShared {
    state: Mutex<NetState>,
}

/// The network. Cheap to clone.
#[derive(Clone)]
pub struct Net {
    exec: Exec,
    shared: Arc<NetShared>,
    latency: Duration,
}

/// What the network saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Hash of every byte delivered, in order, with its connection and direction.
    pub hash: u64,
    /// Bytes delivered.
    pub delivered: u64,
    /// Most bytes held in flight at once, over every connection.
    pub held_max: usize,
    /// Connections opened.
    pub connects: u64,
    /// Connections open now.
    pub open: usize,
    /// Most writes one connection end tried after its reader had gone (each refused).
    pub writes_after_close: u64,
}

impl Net {
    /// A network on `exec`'s clock where every byte takes `latency` to arrive.
    pub fn new(exec: &Exec, latency: Duration) -> Net {
        let shared =
            Arc::new(NetShared { state: Mutex::new(NetState { hash: 0xcbf2_9ce4_8422_2325, ..NetState::default() }) });
        Net { exec: exec.clone(), shared, latency }
    }

    /// Starts listening at `addr`.
    pub fn listen(&self, addr: SocketAddr) -> SimListener {
        lock(&self.shared.state).listeners.insert(addr, Listener::default());
        SimListener { net: self.clone(), addr }
    }

    /// Opens a connection from host `from` to `target` (`ip:port`).
    pub fn connect(&self, from: IpAddr, target: String) -> BoxFuture<'static, io::Result<SimConn>> {
        let net = self.clone();
        Box::pin(async move {
            let to: SocketAddr =
                target.parse().map_err(|_| io::Error::new(io::ErrorKind::NotFound, format!("no host {target}")))?;
            // A partition holds the handshake until it heals (the caller's timeout decides).
            loop {
                let until = net.partitioned_until(from).max(net.partitioned_until(to.ip()));
                if until <= net.exec.now() {
                    break;
                }
                super::exec::SimTimer::at(&net.exec, until).await;
            }
            super::exec::SimTimer::at(&net.exec, net.exec.now() + net.latency).await;
            let mut st = lock(&net.shared.state);
            if !st.listeners.contains_key(&to) {
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("{to} refused the connection")));
            }
            let port = st.next_port.entry(from).or_insert(40_000);
            *port = port.wrapping_add(1).max(40_000);
            let local = SocketAddr::new(from, *port);
            st.next_link += 1;
            st.connects += 1;
            let link = Arc::new(Link {
                id: st.next_link,
                ends: [local, to],
                latency: net.latency,
                state: Mutex::new(LinkState {
                    dirs: [Dir::default(), Dir::default()],
                    reset: false,
                    held_until: Instant::ZERO,
                }),
                net: net.shared.clone(),
            });
            st.links.insert(link.id, Arc::downgrade(&link));
            let server = SimConn { link: link.clone(), side: 1, exec: net.exec.clone() };
            let listener = st.listeners.get_mut(&to).expect("checked above");
            listener.queue.push_back(server);
            if let Some(w) = listener.waker.take() {
                w.wake();
            }
            Ok(SimConn { link, side: 0, exec: net.exec.clone() })
        })
    }

    fn partitioned_until(&self, ip: IpAddr) -> Instant {
        lock(&self.shared.state).partitioned.get(&ip).copied().unwrap_or(Instant::ZERO)
    }

    fn links_of(&self, ip: IpAddr) -> Vec<Arc<Link>> {
        let st = lock(&self.shared.state);
        st.links.values().filter_map(std::sync::Weak::upgrade).filter(|l| l.ends.iter().any(|e| e.ip() == ip)).collect()
    }

    /// Cuts host `ip` off for `d`: its connections deliver nothing and its new connections wait.
    pub fn partition(&self, ip: IpAddr, d: Duration) {
        let until = self.exec.now() + d;
        lock(&self.shared.state).partitioned.insert(ip, until);
        for link in self.links_of(ip) {
            link.hold(&self.exec, until);
        }
    }

    /// Resets every connection of host `ip`.
    pub fn reset_host(&self, ip: IpAddr) {
        for link in self.links_of(ip) {
            link.reset();
        }
    }

    /// What the network saw so far.
    pub fn stats(&self) -> NetStats {
        let st = lock(&self.shared.state);
        let open = st.links.values().filter(|w| w.strong_count() > 0).count();
        let writes_after_close = st.writes_after_close.values().copied().max().unwrap_or(0);
        NetStats {
            hash: st.hash,
            delivered: st.delivered,
            held_max: st.held_max,
            connects: st.connects,
            open,
            writes_after_close,
        }
    }

    /// Connections open now from host `from` (the side that connected) to host `to`.
    pub fn open_from(&self, from: IpAddr, to: IpAddr) -> usize {
        let st = lock(&self.shared.state);
        st.links
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|l| {
                let st = lock(&l.state);
                l.ends[0].ip() == from && l.ends[1].ip() == to && !st.reset && !st.dirs[0].fin && !st.dirs[1].fin
            })
            .count()
    }
}

impl Link {
    fn hold(&self, exec: &Exec, until: Instant) {
        let mut st = lock(&self.state);
        st.held_until = st.held_until.max(until);
        // Readers waiting now must look again when the hold ends.
        for d in &mut st.dirs {
            if let Some(w) = d.read_waker.clone() {
                exec.wake_at(until, w);
            }
        }
    }

    fn reset(&self) {
        let mut st = lock(&self.state);
        if st.reset {
            return;
        }
        st.reset = true;
        let dropped: usize = st.dirs.iter().map(|d| d.held).sum();
        for d in &mut st.dirs {
            d.segs.clear();
            d.held = 0;
        }
        Link::wake_all(&mut st);
        drop(st);
        lock(&self.net.state).held_now -= dropped;
    }
}

/// A listening address.
pub struct SimListener {
    net: Net,
    addr: SocketAddr,
}

impl SimListener {
    /// The next connection and its peer's address.
    pub async fn accept(&self) -> (SimConn, SocketAddr) {
        std::future::poll_fn(|cx| {
            let mut st = lock(&self.net.shared.state);
            let Some(l) = st.listeners.get_mut(&self.addr) else { return Poll::Pending };
            match l.queue.pop_front() {
                Some(c) => {
                    let peer = c.link.ends[0];
                    Poll::Ready((c, peer))
                }
                None => {
                    l.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let queued = lock(&self.net.shared.state).listeners.remove(&self.addr);
        // Connections not yet accepted are refused.
        if let Some(l) = queued {
            for c in l.queue {
                c.link.reset();
            }
        }
    }
}

/// One end of a connection.
pub struct SimConn {
    link: Arc<Link>,
    side: usize,
    exec: Exec,
}

impl SimConn {
    /// Where this end is.
    pub fn local(&self) -> SocketAddr {
        self.link.ends[self.side]
    }

    /// Where the other end is.
    pub fn peer(&self) -> SocketAddr {
        self.link.ends[1 - self.side]
    }

    /// Resets the connection: both ends fail from now on.
    pub fn reset(&self) {
        self.link.reset();
    }

    /// Holds what this connection delivers (both ways) for `d`.
    pub fn stall(&self, d: Duration) {
        self.link.hold(&self.exec, self.exec.now() + d);
    }

    /// Whether the other end has closed or reset the connection.
    pub fn peer_closed(&self) -> bool {
        let st = lock(&self.link.state);
        st.reset || st.dirs[1 - self.side].fin || st.dirs[self.side].reader_gone
    }
}

impl Transport for SimConn {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        let now = self.exec.now();
        let mut st = lock(&self.link.state);
        if st.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let held_until = st.held_until;
        let dir = &mut st.dirs[1 - self.side];
        let mut n = 0;
        let mut next_at = None;
        if now >= held_until {
            while let Some((at, _)) = dir.segs.front() {
                if *at > now {
                    next_at = Some(*at);
                    break;
                }
                let (_, b) = dir.segs.pop_front().expect("front exists");
                buf.extend_from_slice(&b);
                n += b.len();
            }
        } else {
            next_at = Some(held_until);
        }
        if n > 0 {
            dir.held -= n;
            if let Some(w) = dir.write_waker.take() {
                w.wake();
            }
            drop(st);
            lock(&self.link.net.state).held_now -= n;
            return Poll::Ready(Ok(n));
        }
        if dir.segs.is_empty() && dir.fin {
            return Poll::Ready(Ok(0));
        }
        dir.read_waker = Some(cx.waker().clone());
        if let Some(at) = next_at {
            self.exec.wake_at(at.max(held_until), cx.waker().clone());
        }
        Poll::Pending
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let now = self.exec.now();
        let mut st = lock(&self.link.state);
        if st.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let dir = &mut st.dirs[self.side];
        if dir.reader_gone {
            drop(st);
            *lock(&self.link.net.state).writes_after_close.entry((self.link.id, self.side)).or_default() += 1;
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = CAPACITY.saturating_sub(dir.held);
        if room == 0 {
            dir.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        let piece = Bytes::copy_from_slice(&data[..n]);
        dir.segs.push_back((now + self.link.latency, piece));
        dir.held += n;
        if let Some(w) = dir.read_waker.take() {
            // The reader looks when the bytes arrive.
            self.exec.wake_at(now + self.link.latency, w);
        }
        drop(st);
        let mut net = lock(&self.link.net.state);
        net.held_now += n;
        net.held_max = net.held_max.max(net.held_now);
        net.delivered += n as u64;
        let mut h = net.hash ^ (self.link.id << 1 | self.side as u64);
        h = h.wrapping_mul(0x0100_0000_01b3);
        net.hash = fnv1a(h, &data[..n]);
        Poll::Ready(Ok(n))
    }

    fn idle_ok(&self) -> bool {
        let st = lock(&self.link.state);
        let inbound = &st.dirs[1 - self.side];
        !st.reset && !inbound.fin && inbound.segs.is_empty() && !st.dirs[self.side].reader_gone
    }
}

impl Drop for SimConn {
    fn drop(&mut self) {
        let mut st = lock(&self.link.state);
        let out = &mut st.dirs[self.side];
        out.fin = true;
        if let Some(w) = out.read_waker.take() {
            w.wake();
        }
        let inbound = &mut st.dirs[1 - self.side];
        inbound.reader_gone = true;
        let dropped = inbound.held;
        inbound.segs.clear();
        inbound.held = 0;
        if let Some(w) = inbound.write_waker.take() {
            w.wake();
        }
        drop(st);
        lock(&self.link.net.state).held_now -= dropped;
    }
}
