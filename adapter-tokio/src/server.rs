//! The listening side: accepts connections with hyper (limits, timeouts, TCP_NODELAY), reads
//! bodies with a size and time limit, and hands each request to herd-service, whose [`Answer`]
//! it turns into hyper's response.

use bytes::Bytes;
use herd_core::codec::http1::{host_rule, Version};
use herd_service::errors::{body_timeout, body_unreadable, error_answer, too_large, Proto};
use herd_service::{http as service, Answer, AnswerBody, App, BodyStream, Headers};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

/// The body type of every answer.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Most request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Largest request head, bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Gives memory mimalloc holds freed back to the system at once. mimalloc purges freed memory
/// only when the freeing thread allocates again (after `purge_delay`), so after one 32 MB request
/// `herd` kept 110 MB until the next large one; purging on every free instead cost S1 about 8 %.
/// Called after large requests only. (In a binary with another global allocator this only
/// tidies mimalloc's own, unused heap.)
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    // SAFETY: mi_collect takes a flag and only frees memory mimalloc itself holds unused; no
    // live allocation is touched.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Accepts connections until the task is dropped.
/// Stops the listener and lets open connections finish: [`Draining::begin`] closes idle
/// keep-alive connections and lets every request in progress (streams included) end, and
/// [`Draining::open_connections`] counts what is left.
#[derive(Clone)]
pub struct Draining {
    signal: tokio::sync::watch::Sender<bool>,
    live: Arc<()>,
}

impl Default for Draining {
    fn default() -> Self {
        Draining { signal: tokio::sync::watch::channel(false).0, live: Arc::new(()) }
    }
}

impl Draining {
    /// Stops accepting and asks every connection to close once its current request is answered.
    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        Arc::strong_count(&self.live) - 1
    }
}

/// Accepts and serves connections until [`Draining::begin`].
pub async fn serve(listener: TcpListener, app: Arc<App>, draining: Draining) {
    let mut stop = draining.signal.subscribe();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let live = draining.live.clone();
        let mut stop = draining.signal.subscribe();
        tokio::spawn(async move {
            let _live = live;
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req, peer).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

struct HyperHeaders<'a>(&'a HeaderMap);

impl Headers for HyperHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a whole body within the size and time limits (`limit`: the admitted path's).
/// A declared length over the limit is refused from the head, before anything is buffered: with
/// `expects_continue` (the client waits for `100 Continue` before sending) the body is not polled
/// at all, so hyper sends no `100 Continue`; a client that is already sending has what it sends
/// read and dropped within the read timeout, so it reads the 413 rather than a reset. A chunked
/// body is cut off at the limit as it arrives.
pub async fn read_body(
    app: &App,
    mut body: Incoming,
    proto: Proto,
    limit: usize,
    expects_continue: bool,
) -> Result<Bytes, Answer> {
    use http_body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        if !expects_continue {
            let discard = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(app.read_timeout, discard).await;
        }
        let mut answer = too_large(proto, limit);
        answer.headers.push(("connection", "close".to_string()));
        return Err(answer);
    }
    // Gathered into one buffer of the declared size as frames arrive: the body is held once, not
    // once in frames and again when joined.
    let declared = body.size_hint().exact().unwrap_or(0).min(limit as u64) as usize;
    let read = async {
        let mut out = Vec::with_capacity(declared);
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| false)?.into_data() else { continue };
            if out.len() + data.len() > limit {
                return Err(true);
            }
            if out.is_empty() && declared > 0 && data.len() == declared {
                // The whole body in one frame: keep it as is.
                return Ok(data);
            }
            out.extend_from_slice(&data);
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(app.read_timeout, read).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(true)) => Err(too_large(proto, limit)),
        Ok(Err(false)) => Err(body_unreadable(proto)),
        Err(_) => Err(body_timeout(proto)),
    }
}

/// Refuses a request without reading its body: a client that waits for `100 Continue` never
/// sends it; one already sending has it read and dropped within the read timeout (never
/// buffered), so it reads the refusal rather than a reset. The connection is closed after.
async fn refuse_unread(app: &App, mut body: Incoming, mut answer: Answer, expects_continue: bool) -> Answer {
    if !expects_continue {
        let discard = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(app.read_timeout, discard).await;
    }
    answer.headers.push(("connection", "close".to_string()));
    answer
}

async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    use herd_core::api::cors::Cors;
    match service::cors(&app, req.method().as_str(), &HyperHeaders(req.headers())) {
        Cors::None => serve_request(app, req, peer).await,
        Cors::Preflight(status, h) => response(service::preflight_answer(status, h), false),
        Cors::Headers(h) => {
            let mut resp = serve_request(app, req, peer).await;
            for (k, v) in h {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    resp.headers_mut().append(HeaderName::from_static(k), v);
                }
            }
            resp
        }
    }
}

async fn serve_request(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str();
    let version = if parts.version == hyper::Version::HTTP_11 { Version::Http11 } else { Version::Http10 };
    if let Err(e) = host_rule(version, parts.headers.get_all(hyper::header::HOST).iter().count()) {
        let mut refused = error_answer(Proto::Ollama, 400, &e.to_string(), None);
        refused.headers.push(("connection", "close".to_string()));
        return response(refused, false);
    }
    let admitted = match service::admit(&app, method, parts.uri.path(), &HyperHeaders(&parts.headers)) {
        Ok(a) => a,
        Err(refused) => return response(refused, false),
    };
    let head = method == "HEAD";
    let expects_continue =
        parts.headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // A declared length is taken from the budget of bodies in flight before reading; a chunked
    // body once read.
    let declared = http_body::Body::size_hint(&body).exact().filter(|&n| n <= admitted.body_limit as u64);
    let mut permit = match service::reserve_body(&app, admitted.proto, declared.unwrap_or(0) as usize) {
        Ok(p) => p,
        Err(refused) => return response(refuse_unread(&app, body, refused, expects_continue).await, head),
    };
    let body = match read_body(&app, body, admitted.proto, admitted.body_limit, expects_continue).await {
        Ok(b) => b,
        Err(refused) => {
            service::note_unread_refusal(&admitted, peer, &refused);
            return response(refused, head);
        }
    };
    if declared.is_none() && !permit.grow(body.len()) {
        return response(service::budget_full(&app, admitted.proto), head);
    }
    let app_runtime = app.runtime.clone();
    let answer = service::serve(app, admitted, method, parts.uri.query().unwrap_or(""), body, peer).await;
    let large = permit.bytes() >= herd_service::RELEASE_AFTER_BYTES;
    drop(permit);
    if large {
        herd_service::release_after_large_request(&app_runtime);
    }
    response(answer, head)
}

/// hyper's response for an answer (no body for `HEAD`).
pub fn response(answer: Answer, head: bool) -> Response<Body> {
    let body = match answer.body {
        _ if head => Full::new(Bytes::new()).map_err(|e| match e {}).boxed_unsync(),
        AnswerBody::Full(b) => Full::new(b).map_err(|e| match e {}).boxed_unsync(),
        AnswerBody::Stream(s) => Streamed(s).boxed_unsync(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (k, v) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(HeaderName::from_static(k), v);
        }
    }
    resp
}

/// A streamed answer as a hyper body.
struct Streamed(Box<dyn BodyStream>);

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_chunk(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
