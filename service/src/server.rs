//! The server side of a client's HTTP/1.1 connection, with core's codec (request heads, chunked
//! bodies, response heads): keep-alive and pipelining, the same limits as `herd` (header count
//! and size, body size, read timeouts), and each request handed to [`crate::http`]. `herd-lite`
//! serves its sockets with it and herd-sim its in-memory connections, so the simulation runs the
//! very code a client of herd-lite meets. (`herd` serves with hyper.)
//!
//! One task per connection reads a head, asks [`crate::http::admit`] whether the path and key
//! are allowed, reads the body, and writes the answer: whole with `Content-Length`, or streamed
//! with chunked transfer coding. While a request is being served the task watches the socket,
//! so a client that leaves (while queued, say) is noticed and its request ended at once.

use crate::errors::{body_timeout, body_unreadable, error_answer, too_large, Proto};
use crate::upstream::{write_all, Transport};
use crate::{http as service, next_chunk, race, Answer, AnswerBody, App, AsyncTimer, Either, Headers, Instant};
use bytes::{Buf, Bytes, BytesMut};
use herd_core::api::cors::Cors;
use herd_core::codec::chunked::{encode_chunk, encode_last, ChunkedLimits};
use herd_core::codec::http1::{self, BodyDecoder, BodyError, Framing, HeadError, Header, Limits, RequestHead};
use herd_core::codec::Status;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// Most request headers accepted (as `herd`).
pub const MAX_HEADERS: usize = 100;
/// Largest request head, bytes (as `herd`).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Stops new requests and lets open connections finish: the listener stops accepting, idle
/// connections close, and a connection closes once its current answer is written.
#[derive(Clone)]
pub struct Draining {
    stop: Arc<watch::Sender<bool>>,
    live: Arc<()>,
}

impl Default for Draining {
    fn default() -> Self {
        Draining { stop: Arc::new(watch::Sender::new(false)), live: Arc::new(()) }
    }
}

impl Draining {
    /// Stops accepting and asks every connection to close once its current request is answered.
    pub fn begin(&self) {
        self.stop.send_replace(true);
    }

    /// Whether [`Draining::begin`] was called.
    pub fn is_draining(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes when [`Draining::begin`] is called.
    pub async fn wait(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|&d| d).await;
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        Arc::strong_count(&self.live) - 1
    }
}

/// Serves one client connection until it closes, fails, times out or the router drains.
pub async fn serve_connection<S: Transport>(stream: S, peer: SocketAddr, app: Arc<App>, draining: Draining) {
    let _live = draining.live.clone();
    let timer = app.runtime.timer(Instant::MAX);
    let conn = Conn { stream, peer, app, draining, buf: BytesMut::new(), timer, cors: Vec::new() };
    conn.run().await;
}

struct HeadHeaders<'a>(&'a [Header]);

impl Headers for HeadHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        http1::find_header(self.0, name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Why reading stopped.
enum ReadEnd {
    /// The client closed, or the connection failed: nothing to answer.
    Closed,
    /// The client took too long.
    TimedOut,
    /// The router is draining and the connection is idle.
    Draining,
}

struct Conn<S> {
    stream: S,
    peer: SocketAddr,
    app: Arc<App>,
    draining: Draining,
    /// Bytes read and not yet used (the rest of a head, a body, pipelined requests).
    buf: BytesMut,
    /// The read deadline, moved for each wait.
    timer: Pin<Box<dyn AsyncTimer>>,
    /// CORS headers for the answers to the request being served.
    cors: Vec<(&'static str, String)>,
}

impl<S: Transport> Conn<S> {
    async fn run(mut self) {
        loop {
            let head = match self.read_head().await {
                Ok(h) => h,
                Err(None) => return,
                Err(Some(answer)) => {
                    let _ = self.write(answer, false, false).await;
                    return;
                }
            };
            match self.request(head).await {
                Ok(true) if !self.draining.is_draining() => {}
                _ => return,
            }
        }
    }

    /// Reads more bytes before `deadline`; while idle between requests, a drain ends the wait.
    async fn fill(&mut self, deadline: Instant, idle: bool) -> Result<(), ReadEnd> {
        let stream = &self.stream;
        let buf = &mut self.buf;
        let draining = &self.draining;
        let read = std::future::poll_fn(|cx| stream.poll_read(cx, buf));
        let stop = async {
            if idle {
                draining.wait().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        self.timer.as_mut().reset(deadline);
        let timer = &mut self.timer;
        let expired = std::future::poll_fn(|cx| timer.as_mut().poll(cx));
        match race(race(read, stop), expired).await {
            Either::Left(Either::Left(Ok(0) | Err(_))) => Err(ReadEnd::Closed),
            Either::Left(Either::Left(Ok(_))) => Ok(()),
            Either::Left(Either::Right(())) => Err(ReadEnd::Draining),
            Either::Right(_) => Err(ReadEnd::TimedOut),
        }
    }

    /// The next request head: `Err(None)` to close quietly, `Err(Some)` to answer and close.
    async fn read_head(&mut self) -> Result<RequestHead, Option<Answer>> {
        let limits = Limits { max_headers: MAX_HEADERS, max_head_bytes: MAX_HEAD_BYTES, ..Limits::default() };
        let timeout = self.app.read_timeout;
        // An idle connection waits `timeout` for a request; once it begins, the whole head must
        // arrive within `timeout` of its first byte (a client dripping bytes cannot hold on).
        let mut deadline = self.app.runtime.now() + timeout;
        let mut started = !self.buf.is_empty();
        // Bytes already searched for the end of the head: a head arriving a byte at a time is
        // parsed once it is whole, not once per byte.
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(&self.buf, scanned) {
                match http1::parse_request(&self.buf[..end], &limits) {
                    Ok(Status::Complete(head)) => {
                        self.buf.advance(head.head_len);
                        return Ok(head);
                    }
                    // Blank lines before a request line end nothing: look further.
                    Ok(Status::Partial) => {
                        scanned = end;
                        continue;
                    }
                    Err(e) => return Err(Some(head_error(&e))),
                }
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(Some(head_error(&HeadError::HeadTooLarge { limit: MAX_HEAD_BYTES })));
            }
            let idle = self.buf.is_empty();
            match self.fill(deadline, idle).await {
                Ok(()) => {}
                Err(ReadEnd::TimedOut) if !idle => {
                    return Err(Some(error_answer(
                        Proto::Ollama,
                        408,
                        "the request head was not received in time",
                        None,
                    )))
                }
                Err(_) => return Err(None),
            }
            if !started && !self.buf.is_empty() {
                started = true;
                deadline = self.app.runtime.now() + timeout;
            }
        }
    }

    /// Serves one request; `Ok(true)` when the connection may carry another.
    async fn request(&mut self, head: RequestHead) -> io::Result<bool> {
        let (path, query) = head.target.split_once('?').unwrap_or((head.target.as_str(), ""));
        let is_head = head.method == "HEAD";
        let mut keep_alive = head.keep_alive;
        let hosts = head.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).count();
        if let Err(e) = http1::host_rule(head.version, hosts) {
            self.write(head_error(&e), is_head, false).await?;
            return Ok(false);
        }
        self.cors.clear();
        match service::cors(&self.app, &head.method, &HeadHeaders(&head.headers)) {
            Cors::None => {}
            Cors::Headers(h) => self.cors = h,
            Cors::Preflight(status, h) => {
                let clean = !head.framing.has_body();
                self.write(service::preflight_answer(status, h), false, keep_alive && clean).await?;
                return Ok(keep_alive && clean);
            }
        }
        let admitted = match service::admit(&self.app, &head.method, path, &HeadHeaders(&head.headers)) {
            Ok(a) => a,
            Err(refused) => {
                // The body was not read: the connection cannot carry another request unless
                // there was none (a client told no `100 Continue` may still send its body).
                let clean = !head.framing.has_body();
                self.write(refused, is_head, keep_alive && clean).await?;
                return Ok(keep_alive && clean);
            }
        };
        if let (Framing::Length(n), true) = (head.framing, head.expects_continue) {
            if n > admitted.body_limit as u64 {
                // Refused before `100 Continue`: the client need not send the body at all.
                let answer = too_large(admitted.proto, admitted.body_limit);
                service::note_unread_refusal(&admitted, self.peer, &answer);
                self.write(answer, is_head, false).await?;
                return Ok(false);
            }
        }
        // A declared length is taken from the budget of bodies in flight before reading (and
        // before `100 Continue`); a chunked body once read.
        let declared = match head.framing {
            // Over the limit: refused by `read_body`, which reads none of it.
            Framing::Length(n) => Some(n.min(admitted.body_limit as u64) as usize),
            _ => None,
        };
        let mut permit = match service::reserve_body(&self.app, admitted.proto, declared.unwrap_or(0)) {
            Ok(p) => p,
            Err(refused) => {
                if let (Some(n), false) = (declared, head.expects_continue) {
                    // Read and drop what the client is sending, so it reads the 503.
                    let deadline = self.app.runtime.now() + self.app.read_timeout;
                    self.discard(n as u64, deadline).await;
                }
                self.write(refused, is_head, false).await?;
                return Ok(false);
            }
        };
        if head.expects_continue && head.framing.has_body() {
            write_all(&self.stream, b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = match self.read_body(head.framing, admitted.proto, admitted.body_limit).await {
            Ok(b) => b,
            Err(None) => return Ok(false),
            Err(Some(answer)) => {
                service::note_unread_refusal(&admitted, self.peer, &answer);
                self.write(answer, is_head, false).await?;
                return Ok(false);
            }
        };
        if declared.is_none() && !permit.grow(body.len()) {
            self.write(service::budget_full(&self.app, admitted.proto), is_head, keep_alive).await?;
            return Ok(keep_alive);
        }
        let (method, query) = (head.method.clone(), query.to_string());
        let answer = {
            let serve = service::serve(self.app.clone(), admitted, &method, &query, body, self.peer);
            match race(serve, watch_client(&self.stream, &mut self.buf)).await {
                Either::Left(a) => a,
                // The client left: dropping the request ends it (its guard reports it).
                Either::Right(()) => return Ok(false),
            }
        };
        let large = permit.bytes() >= crate::RELEASE_AFTER_BYTES;
        drop(permit);
        if answer.header("connection") == Some("close") {
            keep_alive = false;
        }
        keep_alive &= !self.draining.is_draining();
        let written = self.write(answer, is_head, keep_alive).await;
        if large {
            crate::release_after_large_request(&self.app.runtime);
        }
        written?;
        Ok(keep_alive)
    }

    /// Reads a whole body within the size and time limits.
    async fn read_body(&mut self, framing: Framing, proto: Proto, max: usize) -> Result<Bytes, Option<Answer>> {
        // The whole body within the read timeout, as `herd`.
        let deadline = self.app.runtime.now() + self.app.read_timeout;
        if framing == Framing::CloseDelimited {
            // Requests are never close-delimited (the head parser says Empty); be safe.
            return Ok(Bytes::new());
        }
        let mut decoder = BodyDecoder::with_max(framing, ChunkedLimits::default(), max as u64);
        if let Some(BodyError::TooLarge { .. }) = decoder.error() {
            // The client is already sending: take (and drop) what it sends within the read
            // timeout, so the 413 is read rather than lost to a reset of unread data.
            if let Framing::Length(n) = framing {
                self.discard(n, deadline).await;
            }
            return Err(Some(too_large(proto, max)));
        }
        let mut out = Vec::new();
        loop {
            if decoder.is_complete() {
                return Ok(Bytes::from(out));
            }
            if !self.buf.is_empty() {
                match decoder.feed(&self.buf, &mut out) {
                    Ok(Status::Complete(used)) => {
                        self.buf.advance(used);
                        return Ok(Bytes::from(out));
                    }
                    Ok(Status::Partial) => self.buf.clear(),
                    Err(BodyError::TooLarge { .. }) => return Err(Some(too_large(proto, max))),
                    Err(_) => return Err(Some(body_unreadable(proto))),
                }
            }
            if let Framing::Length(n) = framing {
                // Room for the rest in one go (bounded by the limit checked above).
                self.buf.reserve((n - decoder.delivered()) as usize);
            }
            match self.fill(deadline, false).await {
                Ok(()) => {}
                Err(ReadEnd::TimedOut) => return Err(Some(body_timeout(proto))),
                Err(_) => return Err(None),
            }
        }
    }

    /// Reads and drops up to `n` bytes before `deadline`.
    async fn discard(&mut self, mut n: u64, deadline: Instant) {
        loop {
            let take = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.buf.advance(take);
            n -= take as u64;
            if n == 0 || self.fill(deadline, false).await.is_err() {
                return;
            }
        }
    }

    /// Writes an answer: whole with `Content-Length`, or chunked as it streams.
    async fn write(&self, answer: Answer, is_head: bool, keep_alive: bool) -> io::Result<()> {
        let mut fields: Vec<(&str, &[u8])> = answer
            .headers
            .iter()
            .chain(&self.cors)
            .filter(|(k, _)| *k != "connection" && *k != "content-length" && *k != "transfer-encoding")
            .map(|(k, v)| (*k, v.as_bytes()))
            .collect();
        if !keep_alive {
            fields.push(("connection", b"close"));
        }
        let mut out = Vec::with_capacity(512);
        match answer.body {
            AnswerBody::Full(body) => {
                let framing = Framing::Length(body.len() as u64);
                encode_head(answer.status, &fields, framing, &mut out)?;
                if !is_head && body.len() <= 64 * 1024 {
                    out.extend_from_slice(&body);
                    write_all(&self.stream, &out).await
                } else {
                    write_all(&self.stream, &out).await?;
                    if is_head {
                        return Ok(());
                    }
                    write_all(&self.stream, &body).await
                }
            }
            AnswerBody::Stream(mut stream) => {
                if is_head {
                    encode_head(answer.status, &fields, Framing::Length(0), &mut out)?;
                    return write_all(&self.stream, &out).await;
                }
                encode_head(answer.status, &fields, Framing::Chunked, &mut out)?;
                // The head goes out with the first piece, in one write.
                loop {
                    match next_chunk(&mut stream).await {
                        Some(Ok(piece)) => {
                            if !piece.is_empty() {
                                encode_chunk(&piece, &mut out);
                            }
                            write_all(&self.stream, &out).await?;
                            out.clear();
                        }
                        Some(Err(e)) => {
                            // Ended abnormally: close without the last chunk, so the client sees
                            // a truncated answer rather than a complete one.
                            if !out.is_empty() {
                                write_all(&self.stream, &out).await?;
                            }
                            return Err(e);
                        }
                        None => {
                            encode_last(&mut out);
                            return write_all(&self.stream, &out).await;
                        }
                    }
                }
            }
        }
    }
}

fn encode_head(status: u16, fields: &[(&str, &[u8])], framing: Framing, out: &mut Vec<u8>) -> io::Result<()> {
    http1::encode_response_head(status, fields, framing, out).map_err(|e| io::Error::other(e.to_string()))
}

/// The first place after `from` where a head in `buf` may end (just past a blank line: a head's
/// lines end in CRLF or a bare LF).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(3);
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + p;
        let end = match buf.get(at + 1) {
            Some(b'\n') => Some(at + 2),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => Some(at + 3),
            _ => None,
        };
        if let Some(end) = end.filter(|&e| e > from) {
            return Some(end);
        }
        i = at + 1;
    }
    None
}

/// The answer to a head that cannot be parsed.
fn head_error(e: &HeadError) -> Answer {
    let status = match e {
        HeadError::TooManyHeaders { .. } | HeadError::HeadTooLarge { .. } | HeadError::LineTooLong { .. } => 431,
        _ => 400,
    };
    let mut answer = error_answer(Proto::Ollama, status, &e.to_string(), None);
    answer.headers.push(("connection", "close".to_string()));
    answer
}

/// Completes when the client closes its side (or the connection fails) while its request is
/// being served. Bytes it sends meanwhile (a pipelined request) are kept in `buf`.
async fn watch_client<S: Transport>(stream: &S, buf: &mut BytesMut) {
    loop {
        if buf.len() >= MAX_HEAD_BYTES {
            // Enough waiting input; stop reading until this answer is written.
            std::future::pending::<()>().await;
        }
        match std::future::poll_fn(|cx| stream.poll_read(cx, buf)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn head_end_in_pieces() {
        let wire = b"\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\nGET /x HTTP/1.1\n\n";
        assert_eq!(head_end(wire, 0), Some(4), "the leading blank lines first");
        assert_eq!(head_end(wire, 4), Some(31), "then the first head's blank line");
        assert_eq!(head_end(wire, 31), Some(wire.len()), "a bare-LF head");
        // Searching again from where the last search stopped finds an end split across reads.
        let cut = 29;
        assert_eq!(head_end(&wire[..cut], 4), None);
        assert_eq!(head_end(wire, cut), Some(31));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: a\r\n", 0), None);
    }
}
