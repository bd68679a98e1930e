//! The routing table and the keys: which handler a path goes to, which key it needs, and the
//! refusals that come before a body is read. Adapters call [`admit`] on each request head, read
//! the body within [`App::max_body_bytes`] and [`App::read_timeout`], then call [`serve`].

use crate::errors::{error_answer, text_answer, Proto};
use crate::proxy::Hints;
use crate::{fleet, key_matches, proxy, Answer, App, Headers};
use bytes::Bytes;
use herd_core::api::routes::{Access, Route};
use herd_core::api::Surface;
use std::net::SocketAddr;
use std::sync::Arc;

/// A request the keys let through, and where it goes.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The path, a trailing slash removed.
    pub path: String,
    /// The envelope its errors use.
    pub proto: Proto,
    /// An inference surface, or `None` for the other paths.
    pub surface: Option<Surface>,
    /// The path's entry in core's route table (`None`: not a path the router serves).
    pub route: Option<Route>,
    /// What its headers tell the router (inference only).
    pub hints: Hints,
    /// The largest body this path accepts, bytes (heartbeats have their own, smaller limit).
    pub body_limit: usize,
}

/// The methods a known path answers, as an `Allow` header value; `None` for an unknown path.
/// Read from core's one route table.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    Route::of(path).map(Route::allow)
}

/// The answer to a known path asked with a method it does not answer: 405 with `Allow` (RFC 9110
/// §15.5.6), in the protocol's error shape on `/v1/*` and as Ollama's plain text elsewhere.
pub fn method_not_allowed(path: &str) -> Answer {
    let mut answer = match Proto::of_path(path) {
        Proto::Ollama => text_answer(405, "405 method not allowed"),
        proto => error_answer(proto, 405, "method not allowed", None),
    };
    answer.headers.push(("allow", allowed_methods(path).unwrap_or("GET, HEAD").to_string()));
    answer
}

fn presented_key(headers: &dyn Headers) -> Option<&str> {
    if let Some(v) = headers.get("authorization") {
        // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
        let v = v.trim();
        if let Some((scheme, k)) = v.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(k.trim());
            }
        }
    }
    headers.get("x-api-key").map(str::trim)
}

/// `None` when allowed, else the refusal.
fn check(app: &App, guard: Access, headers: &dyn Headers, proto: Proto) -> Option<Answer> {
    let key = presented_key(headers);
    let admin_ok = |k: &str| app.admin_key.as_deref().is_some_and(|a| key_matches(k, &[a.to_string()]));
    let missing = || error_answer(proto, 401, "missing or invalid API key (Authorization: Bearer <key>)", None);
    match guard {
        Access::Open => None,
        Access::Api => {
            let inference_ok = |k: &str| key_matches(k, &app.api_keys) || admin_ok(k);
            match app.anthropic_key.as_ref().filter(|_| proto == Proto::Anthropic) {
                // Claude clients' key (ollama-herd's FLEET_ANTHROPIC_API_KEY), or any herd key.
                Some(claude)
                    if key.is_some_and(|k| key_matches(k, std::slice::from_ref(claude)) || inference_ok(k)) =>
                {
                    None
                }
                Some(_) => Some(error_answer(proto, 401, "missing or invalid API key (x-api-key)", None)),
                None if app.api_keys.is_empty() || key.is_some_and(inference_ok) => None,
                None => Some(missing()),
            }
        }
        Access::Admin => match (&app.admin_key, key) {
            (Some(_), Some(k)) if admin_ok(k) => None,
            (Some(_), _) => Some(error_answer(proto, 403, "this endpoint needs the admin key (HERD_ADMIN_KEY)", None)),
            (None, _) if app.api_keys.is_empty() => None,
            (None, Some(k)) if key_matches(k, &app.api_keys) => None,
            (None, _) => Some(missing()),
        },
    }
}

/// What CORS adds to a request (before anything else: a preflight is answered here, without a
/// key). Adapters answer `Cors::Preflight` as it is and add `Cors::Headers` to every answer.
pub fn cors(app: &App, method: &str, headers: &dyn Headers) -> herd_core::api::cors::Cors {
    match &app.cors {
        None => herd_core::api::cors::Cors::None,
        Some(policy) => policy.decide(
            method,
            headers.get("origin"),
            headers.get("access-control-request-method"),
            headers.get("access-control-request-headers"),
        ),
    }
}

/// A preflight's answer: its status and headers, a short text for a refusal.
pub fn preflight_answer(status: u16, headers: Vec<(&'static str, String)>) -> Answer {
    let body = if status == 204 {
        Bytes::new()
    } else {
        Bytes::from_static(b"origin not allowed by the router's CORS settings")
    };
    Answer { status, headers, body: crate::AnswerBody::Full(body) }
}

/// Checks a request head: the method of an inference path, and the key its path needs. `Err` is
/// the answer to send without reading the body.
pub fn admit(app: &App, method: &str, path: &str, headers: &dyn Headers) -> Result<Admitted, Answer> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let proto = Proto::of_path(path);
    let route = Route::of(path);
    if app.only_metrics && route != Some(Route::Metrics) {
        return Err(text_answer(404, "404 page not found (this listener serves /metrics only)"));
    }
    if let Some(Route::Inference(surface)) = route.filter(|_| method == "POST") {
        if let Some(refused) = check(app, Access::Api, headers, proto) {
            return Err(refused);
        }
        return Ok(Admitted {
            path: path.to_string(),
            proto,
            surface: Some(surface),
            route,
            hints: Hints::of(headers),
            body_limit: app.max_body_bytes,
        });
    }
    if let Some(r @ Route::Inference(_)) = route {
        if !r.accepts(method) {
            return Err(method_not_allowed(path));
        }
    }
    // An unknown path needs a key too, so it says nothing to a caller without one; the
    // inference paths' other methods (the `GET /v1/messages` probe) need the inference key.
    let access = match route {
        Some(Route::Metrics) if app.metrics_open => Access::Open,
        r => r.map_or(Access::Api, Route::access),
    };
    if let Some(refused) = check(app, access, headers, proto) {
        return Err(refused);
    }
    let body_limit = if route == Some(Route::Heartbeat) { app.max_report_bytes } else { app.max_body_bytes };
    Ok(Admitted { path: path.to_string(), proto, surface: None, route, hints: Hints::default(), body_limit })
}

/// Logs a request refused before its body was read, when it was a heartbeat (a node's refusals
/// are never silent; a client's 413 is its own business).
pub fn note_unread_refusal(admitted: &Admitted, peer: SocketAddr, answer: &Answer) {
    if admitted.route == Some(Route::Heartbeat) {
        tracing::warn!(peer = %peer.ip(), status = answer.status, limit = admitted.body_limit, "heartbeat refused unread");
    }
}

/// Takes `bytes` of a request's body from the router's budget of bodies in flight (a declared
/// `Content-Length` before reading, a chunked body's length once read); the permit is held until
/// the request is answered. `Err` is the 503 to answer instead.
pub fn reserve_body(app: &App, proto: Proto, bytes: usize) -> Result<crate::BodyPermit, Answer> {
    app.body_budget.reserve(bytes).ok_or_else(|| budget_full(app, proto))
}

/// The 503 for a body that does not fit the budget of bodies in flight.
pub fn budget_full(app: &App, proto: Proto) -> Answer {
    let message = format!(
        "the router holds its limit of request bodies in flight ({} MiB); try again shortly",
        app.body_budget.max() >> 20
    );
    error_answer(proto, 503, &message, Some(std::time::Duration::from_secs(1)))
}

/// Serves an admitted request whose body has been read.
pub async fn serve(
    app: Arc<App>,
    admitted: Admitted,
    method: &str,
    query: &str,
    body: Bytes,
    peer: SocketAddr,
) -> Answer {
    match admitted.surface {
        Some(surface) => proxy::serve(app, surface, admitted.hints, body, Some(peer.ip().to_string())).await,
        None => {
            let call = fleet::Call { method, path: &admitted.path, route: admitted.route, query, body, peer };
            fleet::route(app, call).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_of_methods() {
        assert_eq!(allowed_methods("/api/chat"), Some("POST"));
        assert_eq!(allowed_methods("/v1/models/qwen3:8b"), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/fleet/drain/box"), Some("POST"));
        assert_eq!(allowed_methods("/api/delete"), Some("DELETE"));
        assert_eq!(allowed_methods("/nowhere"), None);
        let openai = method_not_allowed("/v1/chat/completions");
        assert_eq!((openai.status, openai.header("allow")), (405, Some("POST")));
        assert!(openai.header("content-type").is_some_and(|t| t.starts_with("application/json")));
        let native = method_not_allowed("/api/tags");
        assert_eq!(native.header("allow"), Some("GET, HEAD"));
        assert!(native.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
    }
}
