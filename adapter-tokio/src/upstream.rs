//! The inference hot path's HTTP/1.1 client: requests to nodes written and answers read by the
//! request's own task, with core's push codecs (`http1` heads, `chunked` bodies), over a small
//! pool of idle keep-alive connections per node address.
//!
//! A pooled client with a connection task (hyper-util's) costs every request a hop to that task
//! and back, and every streamed chunk another hop through a channel; here the answer's body reads
//! the socket itself in [`Body::poll_frame`], so the bytes go from the node's socket to the
//! client's in the one task that serves the request.
//!
//! A connection goes back to the pool only when its answer's body ended cleanly on a keep-alive
//! response with nothing after it. Dropping a body early closes its connection, which is how a
//! cancelled attempt stops the node's generation. An idle connection the node has since closed
//! is found on reuse: when the write fails, or the connection ends before any byte of an answer,
//! the request is sent once more on a fresh connection (never once an answer began).

use bytes::{Buf, Bytes, BytesMut};
use herd_core::codec::chunked::{ChunkedDecoder, ChunkedLimits};
use herd_core::codec::http1::{self, Framing, Limits, ResponseHead, ResponseTo};
use herd_core::codec::Status;
use http_body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most idle connections kept per node address.
const MAX_IDLE_PER_ADDR: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the whole pool is swept of expired connections (on a return).
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Bytes read from a node's socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Below this much spare room the read buffer grows before a read.
const MIN_READ_ROOM: usize = 4 * 1024;
/// Request bodies up to this size go out in the same write as the head.
const COALESCE_BODY: usize = 64 * 1024;

/// Why a request got no answer head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (refused, unreachable, timed out, bad address or scheme).
    Connect(String),
    /// The connection failed or the answer was malformed before its head ended.
    Reset(String),
}

impl SendError {
    /// Whether the failure was in opening the connection.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Reset(e) => write!(f, "{e}"),
        }
    }
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

#[derive(Default)]
struct Idles {
    by_addr: HashMap<Arc<str>, Vec<Idle>>,
    last_sweep: Option<Instant>,
}

/// Idle keep-alive connections per node address (`host:port`). Cheap to clone.
#[derive(Clone, Default)]
pub struct Pool {
    idle: Arc<Mutex<Idles>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Pool::default()
    }

    /// Sends `POST path` with a JSON `body` to the node at `base_url` (`http://host:port`), with
    /// `headers` besides `Host`, `Content-Type` and `Content-Length`, and reads the answer's head.
    ///
    /// # Errors
    ///
    /// [`SendError::Connect`] when no connection could be opened, [`SendError::Reset`] when the
    /// connection failed or the answer's head was malformed.
    pub async fn post_json(
        &self,
        base_url: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Bytes,
    ) -> Result<(ResponseHead, UpstreamBody), SendError> {
        let Some(authority) = authority_of(base_url) else {
            return Err(SendError::Connect(format!("unsupported node address {base_url:?}")));
        };
        let mut fields: Vec<(&str, &[u8])> = Vec::with_capacity(headers.len() + 2);
        fields.push(("host", authority.as_bytes()));
        fields.push(("content-type", b"application/json"));
        fields.extend_from_slice(headers);
        let mut head = Vec::with_capacity(256 + if body.len() <= COALESCE_BODY { body.len() } else { 0 });
        http1::encode_request_head("POST", path, &fields, Framing::Length(body.len() as u64), &mut head)
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let body = if body.len() <= COALESCE_BODY {
            head.extend_from_slice(&body);
            Bytes::new()
        } else {
            body
        };
        if let Some(stream) = self.checkout(authority) {
            match exchange(stream, &head, &body).await {
                Ok(answer) => return Ok(self.answer(authority, answer)),
                // The node had closed the idle connection: once more on a fresh one.
                Err(Failure::Stale(_)) => {}
                Err(Failure::Failed(e)) => return Err(SendError::Reset(e)),
            }
        }
        let stream = connect(authority).await?;
        match exchange(stream, &head, &body).await {
            Ok(answer) => Ok(self.answer(authority, answer)),
            Err(Failure::Stale(e) | Failure::Failed(e)) => Err(SendError::Reset(e)),
        }
    }

    fn answer(
        &self,
        authority: &str,
        (head, stream, buf): (ResponseHead, TcpStream, BytesMut),
    ) -> (ResponseHead, UpstreamBody) {
        let state = match head.framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(ChunkedDecoder::new(ChunkedLimits::default())),
            Framing::CloseDelimited => State::Close,
        };
        let mut body = UpstreamBody {
            conn: Some(Conn { stream, pool: self.clone(), addr: Arc::from(authority), keep_alive: head.keep_alive }),
            buf,
            state: State::Done,
        };
        if matches!(state, State::Done) {
            body.release();
        } else {
            body.state = state;
        }
        (head, body)
    }

    /// The most recently used live idle connection to `addr`, if any.
    fn checkout(&self, addr: &str) -> Option<TcpStream> {
        loop {
            let idle = {
                let mut idles = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idles.by_addr.get_mut(addr)?;
                expire(list, Instant::now());
                list.pop()?
            };
            // Closed by the node, or something unasked for arrived: not reusable. (Without a
            // readiness event this reads nothing and costs no system call.)
            match idle.stream.try_read(&mut [0u8; 1]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(idle.stream),
                _ => continue,
            }
        }
    }

    /// Keeps `stream` for reuse, unless the address already has its fill.
    fn checkin(&self, addr: Arc<str>, stream: TcpStream) {
        let now = Instant::now();
        let mut idles = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idles.last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
            idles.last_sweep = Some(now);
            idles.by_addr.retain(|_, list| {
                expire(list, now);
                !list.is_empty()
            });
        }
        let list = idles.by_addr.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(Idle { stream, since: now });
        }
    }
}

/// Drops the expired connections of `list`, oldest first (returns append, so it is in age order).
fn expire(list: &mut Vec<Idle>, now: Instant) {
    let stale = list.partition_point(|i| now.duration_since(i.since) > IDLE_TIMEOUT);
    list.drain(..stale);
}

/// `host:port` of `http://host:port[/...]` (port 80 when absent); `None` for other schemes.
fn authority_of(base_url: &str) -> Option<&str> {
    let (scheme, rest) = base_url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    (!authority.is_empty()).then_some(authority)
}

async fn connect(authority: &str) -> Result<TcpStream, SendError> {
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let target = if has_port { authority.to_string() } else { format!("{authority}:80") };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
        Err(_) => return Err(SendError::Connect("connect timed out".into())),
    };
    stream.set_nodelay(true).map_err(|e| SendError::Connect(e.to_string()))?;
    Ok(stream)
}

enum Failure {
    /// Nothing of an answer arrived: safe to send again on a fresh connection.
    Stale(String),
    /// Part of an answer arrived, or it was malformed.
    Failed(String),
}

/// Writes the request and reads the answer's head; returns it with the connection and the bytes
/// read past the head.
async fn exchange(
    mut stream: TcpStream,
    head: &[u8],
    body: &[u8],
) -> Result<(ResponseHead, TcpStream, BytesMut), Failure> {
    let written = async {
        stream.write_all(head).await?;
        if !body.is_empty() {
            stream.write_all(body).await?;
        }
        io::Result::Ok(())
    };
    written.await.map_err(|e| Failure::Stale(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut any = false;
    loop {
        if !buf.is_empty() {
            match http1::parse_response(&buf, &Limits::default(), ResponseTo::NonHead) {
                Ok(Status::Complete(h)) if (100..200).contains(&h.status) => {
                    // An interim answer (100 Continue): the real head follows.
                    buf.advance(h.head_len);
                    continue;
                }
                Ok(Status::Complete(h)) => {
                    buf.advance(h.head_len);
                    return Ok((h, stream, buf));
                }
                Ok(Status::Partial) => {}
                Err(e) => return Err(Failure::Failed(format!("malformed answer head: {e}"))),
            }
        }
        let read = std::future::poll_fn(|cx| poll_fill(&stream, &mut buf, cx)).await;
        match read {
            Ok(0) if !any => return Err(Failure::Stale("the node closed the connection".into())),
            Ok(0) => return Err(Failure::Failed("the node closed the connection mid-head".into())),
            Ok(_) => any = true,
            Err(e) if !any => return Err(Failure::Stale(e.to_string())),
            Err(e) => return Err(Failure::Failed(e.to_string())),
        }
    }
}

/// Reads what the socket has into `buf`'s spare room; `Ok(0)` at the end of the stream.
fn poll_fill(stream: &TcpStream, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_READ_ROOM {
        buf.reserve(READ_CHUNK);
    }
    loop {
        ready!(stream.poll_read_ready(cx))?;
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

struct Conn {
    stream: TcpStream,
    pool: Pool,
    addr: Arc<str>,
    keep_alive: bool,
}

enum State {
    /// This many body bytes are still to come.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// The body runs until the node closes the connection.
    Close,
    /// The body ended (or failed).
    Done,
}

/// A node's answer body, read from its connection as it is polled.
pub struct UpstreamBody {
    conn: Option<Conn>,
    /// Bytes read but not yet handed out.
    buf: BytesMut,
    state: State,
}

impl UpstreamBody {
    /// The body ended cleanly: the connection goes back to the pool if it may carry another
    /// request, and is closed otherwise.
    fn release(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            if conn.keep_alive && self.buf.is_empty() {
                conn.pool.checkin(conn.addr, conn.stream);
            }
        }
    }

    /// The body failed: the connection is closed.
    fn fail(&mut self, message: impl Into<String>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(io::Error::other(message.into()))))
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match &self.conn {
            Some(conn) => poll_fill(&conn.stream, &mut self.buf, cx),
            None => Poll::Ready(Ok(0)),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !this.buf.is_empty() {
                        let take = usize::try_from(*left).map_or(this.buf.len(), |l| l.min(this.buf.len()));
                        let data = this.buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.release();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(decoder) => {
                    if !this.buf.is_empty() {
                        let mut out = Vec::new();
                        match decoder.feed(&this.buf, &mut out) {
                            Ok(Status::Partial) => this.buf.clear(),
                            Ok(Status::Complete(used)) => {
                                this.buf.advance(used);
                                this.release();
                            }
                            Err(e) => return this.fail(format!("malformed chunked body: {e}")),
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                        continue;
                    }
                }
                State::Close => {
                    if !this.buf.is_empty() {
                        let data = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail("the node closed the connection before the body ended"),
                Ok(_) => {}
                Err(e) => return this.fail(format!("reading the body: {e}")),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
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

    async fn collect(body: UpstreamBody) -> Result<Vec<u8>, io::Error> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn framings_and_reuse() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
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
        let pool = Pool::new();
        let (head, body) = pool.post_json(&url, "/api/chat", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(collect(body).await.unwrap(), b"hello");
        let (_, body) = pool.post_json(&url, "/api/chat", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"abcde");
        let (_, body) = pool.post_json(&url, "/api/chat", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"until the end");
        // All three on one connection; the close-delimited one is not kept.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(pool.checkout(authority_of(&url).unwrap()).is_none());
    }

    #[tokio::test]
    async fn a_stale_idle_connection_is_retried_once_on_a_fresh_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
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
        let pool = Pool::new();
        let (_, body) = pool.post_json(&url, "/x", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"ok");
        let (_, body) = pool.post_json(&url, "/x", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(collect(body).await.unwrap(), b"fresh");
        // `fresh`'s connection is idle in the pool but the server no longer reads it: drop it.
        assert!(pool.checkout(authority_of(&url).unwrap()).is_some());
        let (_, body) = pool.post_json(&url, "/x", &[], Bytes::from_static(b"{}")).await.unwrap();
        assert!(collect(body).await.is_err());
    }

    #[tokio::test]
    async fn connect_failures_are_connect_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = Pool::new().post_json(&url, "/x", &[], Bytes::new()).await.err().unwrap();
        assert!(e.is_connect());
        let e = Pool::new().post_json("https://example.invalid", "/x", &[], Bytes::new()).await.err().unwrap();
        assert!(e.is_connect());
    }
}
