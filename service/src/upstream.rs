//! The HTTP/1.1 client to the nodes: requests written and answers read by the request's own task,
//! with core's push codecs (`http1` heads, `chunked` bodies), over a small pool of idle
//! keep-alive connections per node address. The socket is the adapter's [`Transport`] (tokio's
//! `TcpStream`, or async-io's `Async<TcpStream>`); the protocol is written once, here.
//!
//! A pooled client with a connection task (hyper-util's) costs every request a hop to that task
//! and back, and every streamed chunk another hop through a channel; here the answer's body reads
//! the socket itself in [`BodyStream::poll_chunk`], so the bytes go from the node's socket to the
//! client's in the one task that serves the request.
//!
//! A connection goes back to the pool only when its answer's body ended cleanly on a keep-alive
//! response with nothing after it. Dropping a body early closes its connection, which is how a
//! cancelled attempt stops the node's generation. An idle connection the node has since closed
//! is found on reuse: when the write fails, or the connection ends before any byte of an answer,
//! the request is sent once more on a fresh connection (never once an answer began).

use crate::Instant;
use crate::{BodyStream, BoxFuture, Runtime};
use bytes::{Buf, Bytes, BytesMut};
use herd_core::codec::chunked::ChunkedLimits;
use herd_core::codec::http1::{self, BodyDecoder, Framing, Limits, ResponseHead, ResponseTo};
use herd_core::codec::Status;
use herd_core::url::BaseUrl;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// A byte stream over a connection, as the adapter's runtime provides it: a TCP socket to a node
/// or from a client (tokio's `TcpStream`, async-io's `Async<TcpStream>`), or one of herd-sim's
/// in-memory pipes.
pub trait Transport: Sized + Send + Sync + 'static {
    /// Reads what the socket has and appends it to `buf` (growing it as the transport sees fit);
    /// `Ok(0)` at the end of the stream.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
    /// Writes some of `data`; how much.
    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>>;
    /// For an idle pooled connection: whether it is still open with nothing unasked for to read.
    /// Must not block.
    fn idle_ok(&self) -> bool;
}

/// Opens connections to nodes: `host:port` in, a connected [`Transport`] out (TCP_NODELAY set).
pub trait Connect<T>: Send + Sync + 'static {
    /// Opens a connection to `target` (`host:port`).
    fn connect(&self, target: String) -> BoxFuture<'static, io::Result<T>>;
}

impl<T, F> Connect<T> for F
where
    F: Fn(String) -> BoxFuture<'static, io::Result<T>> + Send + Sync + 'static,
{
    fn connect(&self, target: String) -> BoxFuture<'static, io::Result<T>> {
        self(target)
    }
}

/// Writes all of `data`.
pub async fn write_all<T: Transport>(stream: &T, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| stream.poll_write(cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// A node's answer: its head and its body, read as it is polled.
pub struct Response {
    /// Status, headers, framing.
    pub head: ResponseHead,
    /// The body.
    pub body: Box<dyn BodyStream>,
}

/// The client the service sends node requests through.
pub trait Upstream: Send + Sync {
    /// Sends `method path` to the node at `base` with `headers` besides `Host`, `Content-Type`
    /// and `Content-Length`, and a JSON body when given; reads the head.
    fn send<'a>(
        &'a self,
        method: &'a str,
        base: &'a BaseUrl,
        path: &'a str,
        headers: &'a [(&'a str, &'a [u8])],
        body: Option<Bytes>,
    ) -> BoxFuture<'a, Result<Response, SendError>>;
}

/// Most idle connections kept per node address.
const MAX_IDLE_PER_ADDR: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A connection returned more recently than this is reused without first checking that the
/// node has not closed it: a node closes an idle connection after its own idle timeout (seconds),
/// and one that said it would close was never pooled. Under load nearly every reuse is this
/// fresh, and the check costs a system call. Should the node have closed it anyway, the send
/// fails before any answer and is made once more on a fresh connection.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the whole pool is swept of expired connections (on a return).
const SWEEP_EVERY: Duration = Duration::from_secs(30);
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

struct Idle<T> {
    stream: T,
    since: Instant,
}

struct Idles<T> {
    by_addr: HashMap<Arc<str>, Vec<Idle<T>>>,
    last_sweep: Option<Instant>,
}

/// Idle keep-alive connections per node address (`host:port`). Cheap to clone.
pub struct Pool<T> {
    idle: Arc<Mutex<Idles<T>>>,
    rt: Arc<dyn Runtime>,
    net: Arc<dyn Connect<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool { idle: self.idle.clone(), rt: self.rt.clone(), net: self.net.clone() }
    }
}

impl<T: Transport> Upstream for Pool<T> {
    fn send<'a>(
        &'a self,
        method: &'a str,
        base: &'a BaseUrl,
        path: &'a str,
        headers: &'a [(&'a str, &'a [u8])],
        body: Option<Bytes>,
    ) -> BoxFuture<'a, Result<Response, SendError>> {
        Box::pin(async move {
            let (head, body) = self.request(method, base, path, headers, body).await?;
            Ok(Response { head, body: Box::new(body) })
        })
    }
}

impl<T: Transport> Pool<T> {
    /// An empty pool that opens connections with `net`, timed on `rt`.
    pub fn new(rt: Arc<dyn Runtime>, net: Arc<dyn Connect<T>>) -> Self {
        Pool { idle: Arc::new(Mutex::new(Idles { by_addr: HashMap::new(), last_sweep: None })), rt, net }
    }

    /// Idle connections kept now, over every address.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).by_addr.values().map(Vec::len).sum()
    }

    /// [`Pool::request`] for `POST` with a JSON body.
    ///
    /// # Errors
    ///
    /// As [`Pool::request`].
    pub async fn post_json(
        &self,
        base: &BaseUrl,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Bytes,
    ) -> Result<(ResponseHead, UpstreamBody<T>), SendError> {
        self.request("POST", base, path, headers, Some(body)).await
    }

    /// Sends `method path` to the node at `base` (its path prefix, if any, first), with `headers` besides
    /// `Host`, `Content-Type` and `Content-Length`, and a JSON `body` when given; reads the
    /// answer's head.
    ///
    /// # Errors
    ///
    /// [`SendError::Connect`] when no connection could be opened, [`SendError::Reset`] when the
    /// connection failed or the answer's head was malformed.
    pub async fn request(
        &self,
        method: &str,
        base: &BaseUrl,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Option<Bytes>,
    ) -> Result<(ResponseHead, UpstreamBody<T>), SendError> {
        if base.is_https() {
            return Err(SendError::Connect(format!(
                "{base}: the router reaches nodes over plain http:// (put TLS in front of the router, not between it and its nodes)"
            )));
        }
        let authority = base.authority();
        let prefixed;
        let path = if base.prefix().is_empty() {
            path
        } else {
            prefixed = format!("{}{path}", base.prefix());
            &prefixed
        };
        let mut fields: Vec<(&str, &[u8])> = Vec::with_capacity(headers.len() + 2);
        fields.push(("host", authority.as_bytes()));
        if body.is_some() {
            fields.push(("content-type", b"application/json"));
        }
        fields.extend_from_slice(headers);
        let framing = body.as_ref().map_or(Framing::Empty, |b| Framing::Length(b.len() as u64));
        let body = body.unwrap_or_default();
        let mut head = Vec::with_capacity(256 + if body.len() <= COALESCE_BODY { body.len() } else { 0 });
        http1::encode_request_head(method, path, &fields, framing, &mut head)
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
        let stream = connect::<T>(&*self.rt, &*self.net, authority).await?;
        match exchange(stream, &head, &body).await {
            Ok(answer) => Ok(self.answer(authority, answer)),
            Err(Failure::Stale(e) | Failure::Failed(e)) => Err(SendError::Reset(e)),
        }
    }

    fn answer(
        &self,
        authority: &str,
        (head, stream, buf): (ResponseHead, T, BytesMut),
    ) -> (ResponseHead, UpstreamBody<T>) {
        let decoder = BodyDecoder::new(head.framing, ChunkedLimits::default());
        let mut body = UpstreamBody {
            conn: Some(Conn { stream, pool: self.clone(), addr: Arc::from(authority), keep_alive: head.keep_alive }),
            buf,
            chunked: head.framing == Framing::Chunked,
            decoder,
            done: false,
        };
        if body.decoder.is_complete() {
            body.release();
        }
        (head, body)
    }

    /// The most recently used live idle connection to `addr`, if any.
    pub fn checkout(&self, addr: &str) -> Option<T> {
        loop {
            let now = self.rt.now();
            let idle = {
                let mut idles = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idles.by_addr.get_mut(addr)?;
                expire(list, now);
                list.pop()?
            };
            // Closed by the node, or something unasked for arrived: not reusable.
            if now.saturating_since(idle.since) < CHECK_IDLE_AFTER || idle.stream.idle_ok() {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps `stream` for reuse, unless the address already has its fill.
    fn checkin(&self, addr: Arc<str>, stream: T) {
        let now = self.rt.now();
        let mut idles = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idles.last_sweep.is_none_or(|t| now.saturating_since(t) >= SWEEP_EVERY) {
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
fn expire<T>(list: &mut Vec<Idle<T>>, now: Instant) {
    let stale = list.partition_point(|i| now.saturating_since(i.since) > IDLE_TIMEOUT);
    list.drain(..stale);
}

async fn connect<T: Transport>(rt: &dyn Runtime, net: &dyn Connect<T>, authority: &str) -> Result<T, SendError> {
    // A BaseUrl's authority always carries its port.
    match crate::timeout(rt, CONNECT_TIMEOUT, net.connect(authority.to_string())).await {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(SendError::Connect(e.to_string())),
        None => Err(SendError::Connect("connect timed out".into())),
    }
}

enum Failure {
    /// Nothing of an answer arrived: safe to send again on a fresh connection.
    Stale(String),
    /// Part of an answer arrived, or it was malformed.
    Failed(String),
}

/// Writes the request and reads the answer's head; returns it with the connection and the bytes
/// read past the head.
async fn exchange<T: Transport>(stream: T, head: &[u8], body: &[u8]) -> Result<(ResponseHead, T, BytesMut), Failure> {
    let written = async {
        write_all(&stream, head).await?;
        if !body.is_empty() {
            write_all(&stream, body).await?;
        }
        io::Result::Ok(())
    };
    written.await.map_err(|e| Failure::Stale(e.to_string()))?;
    let mut buf = BytesMut::new();
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
        let read = std::future::poll_fn(|cx| stream.poll_read(cx, &mut buf)).await;
        match read {
            Ok(0) if !any => return Err(Failure::Stale("the node closed the connection".into())),
            Ok(0) => return Err(Failure::Failed("the node closed the connection mid-head".into())),
            Ok(_) => any = true,
            Err(e) if !any => return Err(Failure::Stale(e.to_string())),
            Err(e) => return Err(Failure::Failed(e.to_string())),
        }
    }
}

struct Conn<T> {
    stream: T,
    pool: Pool<T>,
    addr: Arc<str>,
    keep_alive: bool,
}

/// A node's answer body, read from its connection as it is polled.
pub struct UpstreamBody<T> {
    conn: Option<Conn<T>>,
    /// Bytes read but not yet handed out.
    buf: BytesMut,
    /// Chunked framing (decoded into new buffers; other framings pass bytes through as read).
    chunked: bool,
    decoder: BodyDecoder,
    /// The body ended (or failed).
    done: bool,
}

impl<T: Transport> UpstreamBody<T> {
    /// The body ended cleanly: the connection goes back to the pool if it may carry another
    /// request, and is closed otherwise.
    fn release(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            if conn.keep_alive && self.buf.is_empty() {
                conn.pool.checkin(conn.addr, conn.stream);
            }
        }
    }

    /// The body failed: the connection is closed.
    fn fail(&mut self, message: impl Into<String>) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        self.conn = None;
        Poll::Ready(Some(Err(io::Error::other(message.into()))))
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match &self.conn {
            Some(conn) => conn.stream.poll_read(cx, &mut self.buf),
            None => Poll::Ready(Ok(0)),
        }
    }
}

impl<T: Transport> BodyStream for UpstreamBody<T> {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.buf.is_empty() {
                if this.chunked {
                    let mut out = Vec::new();
                    match this.decoder.feed(&this.buf, &mut out) {
                        Ok(Status::Partial) => this.buf.clear(),
                        Ok(Status::Complete(used)) => {
                            this.buf.advance(used);
                            this.release();
                        }
                        Err(e) => return this.fail(format!("malformed chunked body: {e}")),
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                    continue;
                }
                // Length and close-delimited bodies: the bytes as read, no copy.
                match this.decoder.pass(&this.buf) {
                    Ok(passed) => {
                        let data = this.buf.split_to(passed.take).freeze();
                        if passed.complete {
                            this.release();
                        }
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                        continue;
                    }
                    Err(e) => return this.fail(format!("malformed body: {e}")),
                }
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) => {
                    return match this.decoder.finish_eof() {
                        // A close-delimited body ends here.
                        Ok(()) => {
                            this.done = true;
                            this.conn = None;
                            Poll::Ready(None)
                        }
                        Err(_) => this.fail("the node closed the connection before the body ended"),
                    };
                }
                Ok(_) => {}
                Err(e) => return this.fail(format!("reading the body: {e}")),
            }
        }
    }
}
