//! The listening side: accepts connections with hyper (limits, timeouts, TCP_NODELAY), checks
//! keys, reads bodies with a size and time limit, and sends each path to its handler.

use crate::app::{key_matches, App};
use crate::errors::{error_response, text_response, Body, Proto};
use crate::{fleet_api, proxy};
use bytes::Bytes;
use herd_core::api::Surface;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Most request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Largest request head, bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

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

/// Which key a path needs.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Guard {
    Open,
    Api,
    Admin,
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(k) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(k.trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `None` when allowed, else the refusal.
fn check(app: &App, guard: Guard, headers: &HeaderMap, proto: Proto) -> Option<Response<Body>> {
    let key = presented_key(headers);
    let admin_ok = |k: &str| app.admin_key.as_deref().is_some_and(|a| key_matches(k, &[a.to_string()]));
    match guard {
        Guard::Open => None,
        Guard::Api => {
            if app.api_keys.is_empty() || key.is_some_and(|k| key_matches(k, &app.api_keys) || admin_ok(k)) {
                None
            } else {
                Some(error_response(proto, 401, "missing or invalid API key (Authorization: Bearer <key>)", None))
            }
        }
        Guard::Admin => match (&app.admin_key, key) {
            (Some(_), Some(k)) if admin_ok(k) => None,
            (Some(_), _) => {
                Some(error_response(proto, 403, "this endpoint needs the admin key (HERD_ADMIN_KEY)", None))
            }
            (None, _) if app.api_keys.is_empty() => None,
            (None, Some(k)) if key_matches(k, &app.api_keys) => None,
            (None, _) => {
                Some(error_response(proto, 401, "missing or invalid API key (Authorization: Bearer <key>)", None))
            }
        },
    }
}

/// Reads a whole body within the size and time limits.
pub async fn read_body(app: &App, body: Incoming, proto: Proto) -> Result<Bytes, Response<Body>> {
    let limited = http_body_util::Limited::new(body, app.max_body_bytes);
    match tokio::time::timeout(app.read_timeout, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(error_response(
            proto,
            413,
            &format!("request body is larger than the limit of {} MiB (HERD_MAX_BODY_MB)", app.max_body_bytes >> 20),
            None,
        )),
        Ok(Err(_)) => Err(error_response(proto, 400, "the request body could not be read", None)),
        Err(_) => Err(error_response(proto, 408, "the request body was not received in time", None)),
    }
}

async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let path = if path.len() > 1 { path.trim_end_matches('/').to_string() } else { path };
    let method = req.method().clone();
    let proto = if path.starts_with("/v1/messages") {
        Proto::Anthropic
    } else if path.starts_with("/v1/") {
        Proto::OpenAi
    } else {
        Proto::Ollama
    };
    if let Some(surface) = Surface::from_path(&path) {
        if method != Method::POST {
            return text_response(405, "405 method not allowed");
        }
        if let Some(refused) = check(&app, Guard::Api, req.headers(), proto) {
            return refused;
        }
        let (parts, body) = req.into_parts();
        let body = match read_body(&app, body, proto).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        return proxy::serve(app, surface, parts.headers, body, Some(peer.ip().to_string())).await;
    }
    let guard = match path.as_str() {
        "/" | "/api/version" | "/heartbeat" => Guard::Open,
        "/api/pull" | "/api/delete" | "/api/copy" | "/api/create" | "/api/push" => Guard::Admin,
        p if p.starts_with("/fleet/drain/") => Guard::Admin,
        _ => Guard::Api,
    };
    if let Some(refused) = check(&app, guard, req.headers(), proto) {
        return refused;
    }
    fleet_api::route(app, req, &path, peer).await
}
