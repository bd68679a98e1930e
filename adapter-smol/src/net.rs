//! The smol side of herd-service's seams: [`SmolRuntime`] (async-io timers, smol's executor)
//! and [`SmolTcp`] (an `Async<TcpStream>` to a node for the pooled HTTP/1.1 client).

use async_io::{Async, Timer};
use bytes::BytesMut;
use herd_service::upstream::Transport;
use herd_service::{clock, AsyncTimer, BoxFuture, Instant, Runtime};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// Time and timers from async-io, tasks on smol's global executor.
#[derive(Clone, Copy, Debug)]
pub struct SmolRuntime {
    epoch: std::time::Instant,
}

impl SmolRuntime {
    /// A runtime whose monotonic time starts now.
    pub fn new() -> Self {
        SmolRuntime { epoch: std::time::Instant::now() }
    }

    fn at(&self, at: Instant) -> std::time::Instant {
        self.epoch + clock::offset(at)
    }
}

impl Default for SmolRuntime {
    fn default() -> Self {
        Self::new()
    }
}

/// An async-io `Timer` behind herd-service's timer seam.
struct SmolTimer {
    timer: Timer,
    rt: SmolRuntime,
}

impl AsyncTimer for SmolTimer {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        let this = self.get_mut();
        this.timer.set_at(this.rt.at(at));
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().timer).poll(cx).map(|_| ())
    }
}

impl Runtime for SmolRuntime {
    fn now(&self) -> Instant {
        clock::instant(self.epoch.elapsed())
    }
    fn unix_ms(&self) -> i64 {
        clock::unix_ms(std::time::SystemTime::now())
    }
    fn seed(&self) -> u64 {
        clock::seed(std::time::SystemTime::now())
    }
    fn timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(SmolTimer { timer: Timer::at(self.at(at)), rt: *self })
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            Timer::after(d).await;
        })
    }
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        smol::spawn(task).detach();
    }
    fn release_memory(&self) {
        crate::release_freed_memory();
    }
}

/// Bytes read from a socket at once.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    /// Where sockets are read into before the bytes are appended to their buffer: a buffer is
    /// then only as large as what it holds (a zero-filled spare room per connection would be
    /// resident memory, 1,000 idle streams × 2 sockets × 16 KiB).
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; SCRATCH]);
}

/// Reads what `stream` has and appends it to `buf`; `Ok(0)` at the end of the stream.
pub fn poll_read_into(stream: &Async<TcpStream>, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    loop {
        let r = SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let r = stream.get_ref().read(&mut scratch[..]);
            if let Ok(n) = r {
                buf.extend_from_slice(&scratch[..n]);
            }
            r
        });
        match r {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(stream.poll_readable(cx))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Writes some of `data` to `stream`.
pub fn poll_write(stream: &Async<TcpStream>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        match stream.get_ref().write(data) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(stream.poll_writable(cx))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return Poll::Ready(r),
        }
    }
}

/// Writes all of `data` to `stream`.
pub async fn write_all(stream: &Async<TcpStream>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| poll_write(stream, cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// An async-io TCP connection to a node, and whether its last read drained it.
pub struct SmolTcp(Async<TcpStream>, AtomicBool);

impl SmolTcp {
    /// An accepted connection.
    pub fn accepted(stream: Async<TcpStream>) -> Self {
        SmolTcp(stream, AtomicBool::new(false))
    }

    /// Opens a connection to `target` (`host:port`), TCP_NODELAY set.
    pub fn connect(target: String) -> BoxFuture<'static, io::Result<Self>> {
        Box::pin(async move {
            // An address needs no resolver thread; a name is resolved off the executor.
            let addrs: Vec<std::net::SocketAddr> = match target.parse() {
                Ok(a) => vec![a],
                Err(_) => {
                    smol::unblock(move || std::net::ToSocketAddrs::to_socket_addrs(&target).map(Vec::from_iter)).await?
                }
            };
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
            for addr in addrs {
                match Async::<TcpStream>::connect(addr).await {
                    Ok(s) => {
                        s.get_ref().set_nodelay(true)?;
                        return Ok(SmolTcp(s, AtomicBool::new(false)));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}

impl Transport for SmolTcp {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // A read that left room unfilled drained the socket: wait for the next arrival before
        // reading again, instead of asking the kernel for an EAGAIN first (one system call per
        // streamed chunk). Arming the interest reports data that came in meanwhile at once.
        if self.1.load(Ordering::Relaxed) {
            ready!(self.0.poll_readable(cx))?;
            self.1.store(false, Ordering::Relaxed);
        }
        let read = poll_read_into(&self.0, cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            self.1.store(n > 0 && n < SCRATCH, Ordering::Relaxed);
        }
        read
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(&self.0, cx, data)
    }

    fn idle_ok(&self) -> bool {
        // Nothing to read (WouldBlock) means open and quiet; EOF or stray bytes mean not reusable.
        matches!(self.0.get_ref().read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// The node client of the smol router.
pub type Pool = herd_service::upstream::Pool<SmolTcp>;

/// A pool on [`SmolRuntime`].
pub fn pool() -> Pool {
    Pool::new(std::sync::Arc::new(SmolRuntime::new()), std::sync::Arc::new(SmolTcp::connect))
}
