//! The tokio side of herd-service's seams: [`TokioRuntime`] (timers, tasks) and [`TokioTcp`]
//! (a node connection for the pooled HTTP/1.1 client).

use bytes::BytesMut;
use herd_service::upstream::Transport;
use herd_service::{clock, AsyncTimer, BoxFuture, Instant, Runtime};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Bytes a read may take at once.
const READ_ROOM: usize = 16 * 1024;
/// Below this much spare room the read buffer grows before a read.
const MIN_READ_ROOM: usize = 4 * 1024;

/// Time, timers and tasks on the current tokio runtime: tokio's clock, so a test that pauses
/// tokio's time pauses the router's too.
#[derive(Clone, Copy, Debug)]
pub struct TokioRuntime {
    epoch: tokio::time::Instant,
}

impl TokioRuntime {
    /// A runtime whose monotonic time starts now.
    pub fn new() -> Self {
        TokioRuntime { epoch: tokio::time::Instant::now() }
    }

    fn at(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + clock::offset(at)
    }
}

impl Default for TokioRuntime {
    fn default() -> Self {
        Self::new()
    }
}

/// A tokio `Sleep` behind herd-service's timer seam.
struct TokioTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    rt: TokioRuntime,
}

impl AsyncTimer for TokioTimer {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        let this = self.get_mut();
        let when = this.rt.at(at);
        this.sleep.as_mut().reset(when);
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().sleep.as_mut().poll(cx)
    }
}

impl Runtime for TokioRuntime {
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
        Box::pin(TokioTimer { sleep: Box::pin(tokio::time::sleep_until(self.at(at))), rt: *self })
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
    fn release_memory(&self) {
        crate::server::release_freed_memory();
    }
}

/// A tokio TCP connection to a node.
pub struct TokioTcp(TcpStream);

impl TokioTcp {
    /// Opens a connection to `target` (`host:port`), TCP_NODELAY set.
    pub fn connect(target: String) -> BoxFuture<'static, io::Result<Self>> {
        Box::pin(async move {
            let s = TcpStream::connect(target.as_str()).await?;
            s.set_nodelay(true)?;
            Ok(TokioTcp(s))
        })
    }
}

impl Transport for TokioTcp {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // try_read_buf reads into spare room: keep a read's worth of it.
        if buf.capacity() - buf.len() < MIN_READ_ROOM {
            buf.reserve(READ_ROOM);
        }
        let room = buf.capacity() - buf.len();
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // A read that leaves room unfilled drained the socket: clear the readiness then, as
            // tokio's own `AsyncRead` does, so the next poll waits for the next arrival instead
            // of asking the kernel once more for an EAGAIN (one system call per streamed chunk).
            // try_io clears it only if no new readiness came in the meantime.
            let mut got = None;
            let read = self.0.try_io(tokio::io::Interest::READABLE, || match self.0.try_read_buf(buf) {
                Ok(n) if n > 0 && n < room => {
                    got = Some(n);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                r => r,
            });
            match (got, read) {
                (Some(n), _) => return Poll::Ready(Ok(n)),
                (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (None, r) => return Poll::Ready(r),
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn idle_ok(&self) -> bool {
        // Closed by the node, or something unasked for arrived: not reusable. (Without a
        // readiness event this reads nothing and costs no system call.)
        matches!(self.0.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// The node client of the tokio router.
pub type Pool = herd_service::upstream::Pool<TokioTcp>;

/// A pool on [`TokioRuntime`].
pub fn pool() -> Pool {
    Pool::new(std::sync::Arc::new(TokioRuntime::new()), std::sync::Arc::new(TokioTcp::connect))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use herd_core::url::BaseUrl;
    use herd_service::upstream::UpstreamBody;
    use herd_service::BodyStream;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Reads one request (head and content-length body) from `s`; false at the end of the stream.
    async fn read_request(s: &mut TcpStream) -> bool {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                return false;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.is_ok()
    }

    async fn collect(mut body: UpstreamBody<TokioTcp>) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn framings_and_reuse() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = BaseUrl::parse(&listener.local_addr().unwrap().to_string(), 80).unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let answers: [&[u8]; 3] = [
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
                    ];
                    for a in answers {
                        if !read_request(&mut s).await {
                            return;
                        }
                        s.write_all(a).await.unwrap();
                    }
                });
            }
        });
        let pool = pool();
        let (head, body) = pool.post_json(&url, "/api/chat", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(collect(body).await.unwrap(), b"hello");
        let (_, body) = pool.post_json(&url, "/api/chat", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"abcde");
        let (_, body) = pool.post_json(&url, "/api/chat", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"until the end");
        // All three on one connection; the close-delimited one is not kept.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(pool.checkout(url.authority()).is_none());
    }

    #[tokio::test]
    async fn a_stale_idle_connection_is_retried_once_on_a_fresh_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = BaseUrl::parse(&listener.local_addr().unwrap().to_string(), 80).unwrap();
        tokio::spawn(async move {
            // First connection: one answer, then the request after it is read and the
            // connection closed without a byte of answer.
            let (mut s, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut s).await);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            assert!(read_request(&mut s).await);
            drop(s);
            let (mut s, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut s).await);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh").await.unwrap();
            // A truncated answer: no retry once bytes came.
            let (mut s, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut s).await);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npart").await.unwrap();
        });
        let pool = pool();
        let (_, body) = pool.post_json(&url, "/x", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"ok");
        let (_, body) = pool.post_json(&url, "/x", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"fresh");
        // `fresh`'s connection is idle in the pool but the server no longer reads it: drop it.
        assert!(pool.checkout(url.authority()).is_some());
        let (_, body) = pool.post_json(&url, "/x", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert!(collect(body).await.is_err());
    }

    #[tokio::test]
    async fn connect_failures_are_connect_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = BaseUrl::parse(&listener.local_addr().unwrap().to_string(), 80).unwrap();
        drop(listener);
        let e = pool().post_json(&url, "/x", &[], Bytes::new()).await.err().unwrap();
        assert!(e.is_connect());
        let https = BaseUrl::parse("https://example.invalid", 443).unwrap();
        let e = pool().post_json(&https, "/x", &[], Bytes::new()).await.err().unwrap();
        assert!(e.is_connect() && e.to_string().contains("plain http://"), "{e}");
    }
}
