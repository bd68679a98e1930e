//! Everything that is not a routed inference request: liveness and version, the fleet-wide model
//! lists (`/api/tags`, `/api/ps`, `/v1/models`), `/api/show`, the admin calls forwarded to one
//! node (pull, delete, copy, create, push), heartbeats, and the `/fleet/*` views.

use crate::driver::{Input, NodeAddr, Nodes};
use crate::errors::{error_answer, json_answer, text_answer, Proto};
use crate::{Answer, AnswerBody, App, BodyStream};
use bytes::Bytes;
use herd_core::api::body::BodyIndex;
use herd_core::api::names;
use herd_core::api::routes::{Route, DRAIN_PREFIX, MODEL_PREFIX, UNDRAIN_PREFIX};
use herd_core::fleet::{views, NodeStatus, Registered};
use herd_core::ids::ModelName;
use herd_core::router::Router;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A request to a non-inference path, its body already read.
pub struct Call<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, trailing slash removed.
    pub path: &'a str,
    /// Its entry in core's route table.
    pub route: Option<Route>,
    /// The query string, without `?`.
    pub query: &'a str,
    /// The body (empty for most).
    pub body: Bytes,
    /// Who sent it.
    pub peer: SocketAddr,
}

/// Serves a non-inference path, as core's route table says.
pub async fn route(app: Arc<App>, call: Call<'_>) -> Answer {
    let path = call.path;
    let Some(route) = call.route else { return text_answer(404, "404 page not found") };
    if !route.accepts(call.method) {
        return crate::http::method_not_allowed(path);
    }
    if let Some((node_path, may_pick)) = route.admin_forward() {
        return admin_forward(&app, &call, node_path, may_pick).await;
    }
    match route {
        Route::Root => text_answer(200, "Ollama is running"),
        Route::Version => version(&app).await,
        Route::Tags => tags(&app).await,
        Route::Ps => ps(&app).await,
        Route::ImageModels => image_models(&app).await,
        Route::Models => models(&app, None).await,
        Route::Model => models(&app, Some(&path[MODEL_PREFIX.len()..])).await,
        Route::FleetStatus => status(&app).await,
        Route::FleetQueue => view(&app, Router::queue_view).await,
        Route::FleetLimits => view(&app, Router::limits_view).await,
        Route::FleetExplain => explain(&app, call.query).await,
        Route::FleetTraces => traces(&app, call.query).await,
        Route::FleetUsage => usage(&app).await,
        Route::Heartbeat => heartbeat(&app, call.body, call.peer).await,
        Route::Show => show(&app, call.body).await,
        Route::Drain => drain(&app, &path[DRAIN_PREFIX.len()..], true).await,
        Route::Undrain => drain(&app, &path[UNDRAIN_PREFIX.len()..], false).await,
        Route::Metrics => metrics(&app).await,
        Route::CountTokens => count_tokens(&app, &call.body),
        Route::Inference(herd_core::api::Surface::AnthropicMessages) => messages_probe(&app),
        // Inference is the proxy's; the admin forwards are above.
        Route::Inference(_) | Route::Pull | Route::Delete | Route::Copy | Route::Create | Route::Push => {
            text_answer(404, "404 page not found")
        }
    }
}

/// Prometheus' text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/metrics`: the driver renders the text (it owns the counters).
async fn metrics(app: &App) -> Answer {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let build = herd_core::metrics::BuildInfo { binary: app.binary, version: env!("CARGO_PKG_VERSION") };
    app.driver.send(Input::Metrics(build, reply)).await;
    match rx.await {
        Ok(text) => Answer {
            status: 200,
            headers: vec![("content-type", METRICS_CONTENT_TYPE.to_string())],
            body: AnswerBody::Full(Bytes::from(text)),
        },
        Err(_) => unavailable(),
    }
}

/// `GET /v1/messages`: Anthropic clients' probe of the endpoint (herd-router.md §9.4); `ts` is
/// Unix seconds, as ollama-herd's `time.time()`.
fn messages_probe(app: &App) -> Answer {
    let ts = app.runtime.unix_ms() as f64 / 1000.0;
    json_answer(200, &json!({ "ok": true, "service": "herd", "endpoint": "/v1/messages", "ts": ts }))
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, core's estimate; never routed to a
/// node (Ollama has no such endpoint).
fn count_tokens(app: &App, body: &[u8]) -> Answer {
    let bad = |e: herd_core::api::ApiError| error_answer(Proto::Anthropic, e.http_status(), &e.to_string(), None);
    let index = match BodyIndex::new(body, &app.body_limits) {
        Ok(i) => i,
        Err(e) => return error_answer(Proto::Anthropic, e.http_status(), &e.to_string(), None),
    };
    let counted = index.decode::<herd_core::api::anthropic::MessagesRequest>(body).and_then(|req| req.count_tokens());
    match counted {
        Ok(n) => json_answer(200, &json!({ "input_tokens": n })),
        Err(e) => bad(e),
    }
}

fn unavailable() -> Answer {
    error_answer(Proto::Ollama, 503, "the router is shutting down", None)
}

async fn version(app: &App) -> Answer {
    let v = app
        .driver
        .query(|r, _| views::ollama_version(r.fleet()))
        .await
        .flatten()
        .unwrap_or_else(|| views::FALLBACK_OLLAMA_VERSION.to_string());
    json_answer(200, &json!({ "version": v, "herd_version": env!("CARGO_PKG_VERSION") }))
}

async fn tags(app: &App) -> Answer {
    let wall = app.wall;
    match app.driver.query(move |r, _| views::listing(r.fleet(), r.image_fleet(), wall)).await {
        Some(models) => json_answer(200, &json!({ "models": models })),
        None => unavailable(),
    }
}

async fn image_models(app: &App) -> Answer {
    match app.driver.query(|r, _| views::image_models(r.image_fleet())).await {
        Some(models) => json_answer(200, &json!({ "models": views::image_models_json(&models) })),
        None => unavailable(),
    }
}

async fn ps(app: &App) -> Answer {
    let models = app.driver.query(|r, _| views::running(r.fleet())).await;
    match models {
        Some(models) => json_answer(200, &json!({ "models": models })),
        None => unavailable(),
    }
}

async fn models(app: &App, one: Option<&str>) -> Answer {
    let wall = app.wall;
    let Some(entries) = app.driver.query(move |r, _| views::listing(r.fleet(), r.image_fleet(), wall)).await else {
        return unavailable();
    };
    let created = app.runtime.unix_ms() / 1000;
    // Image models are marked (`type: image`, which OpenAI's SDK keeps as an extra field).
    let object = |name: &str, entry: &Value| {
        let mut o = json!({ "id": name, "object": "model", "created": created, "owned_by": "library" });
        if views::is_image_entry(entry) {
            o["type"] = json!("image");
        }
        o
    };
    let named = entries.iter().filter_map(|e| Some((e["name"].as_str()?, e)));
    match one {
        None => {
            let data: Vec<Value> = named.map(|(n, e)| object(n, e)).collect();
            json_answer(200, &json!({ "object": "list", "data": data }))
        }
        Some(raw) => {
            let want = ModelName::new(raw);
            match named.into_iter().find(|(n, _)| ModelName::new(n) == want) {
                Some((_, e)) => json_answer(200, &object(raw, e)),
                None => error_answer(Proto::OpenAi, 404, &format!("model \"{raw}\" not found"), None),
            }
        }
    }
}

/// The addresses of the nodes that have `model`, in core's order (loaded ones first).
fn holders(r: &Router, n: &Nodes, model: &ModelName) -> Vec<Arc<NodeAddr>> {
    views::holders(r.fleet(), model).into_iter().filter_map(|id| n.addr(id).cloned()).collect()
}

/// The body's top-level fields, within the body limits (never a tree of the whole body).
fn index_of(app: &App, body: &[u8]) -> Result<BodyIndex, Answer> {
    BodyIndex::new(body, &app.body_limits)
        .map_err(|e| error_answer(Proto::Ollama, e.http_status(), &e.to_string(), None))
}

/// A top-level string field.
fn text_field(index: &BodyIndex, body: &[u8], name: &str) -> Option<String> {
    index.value(body, name).and_then(|v| v.as_str().map(str::to_string))
}

async fn show(app: &App, body: Bytes) -> Answer {
    let index = match index_of(app, &body) {
        Ok(i) => i,
        Err(refused) => return refused,
    };
    let Some(name) = text_field(&index, &body, "model").or_else(|| text_field(&index, &body, "name")) else {
        return error_answer(Proto::Ollama, 400, "model is required", None);
    };
    let model = ModelName::new(&name);
    let candidates = app.driver.query(move |r, n| holders(r, n, &model)).await.unwrap_or_default();
    let mut last: Option<Answer> = None;
    for addr in candidates {
        match forward(app, "POST", &addr, "/api/show", body.clone()).await {
            Some(resp) if (200..300).contains(&resp.status) => return resp,
            Some(resp) => last = Some(resp),
            None => {}
        }
    }
    last.unwrap_or_else(|| error_answer(Proto::Ollama, 404, &format!("model '{name}' not found"), None))
}

/// Sends a request to one node and relays its answer as it streams.
async fn forward(app: &App, method: &str, addr: &NodeAddr, path: &str, body: Bytes) -> Option<Answer> {
    let headers = app.node_headers();
    let call = app.upstream.send(method, &addr.url, path, &headers, Some(body));
    let resp = crate::timeout(&*app.runtime, Duration::from_secs(30), call).await?.ok()?;
    let mut headers = vec![(names::NODE_HEADER, addr.name.clone())];
    if let Some(t) = resp.head.header("content-type").and_then(|v| std::str::from_utf8(v).ok()) {
        headers.push(("content-type", t.to_string()));
    }
    Some(Answer { status: resp.head.status, headers, body: AnswerBody::Stream(Box::new(EndOnError(Some(resp.body)))) })
}

/// A relayed body whose read errors end it (the client sees the stream stop).
struct EndOnError(Option<Box<dyn BodyStream>>);

impl BodyStream for EndOnError {
    fn poll_chunk(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<std::io::Result<Bytes>>> {
        let Some(body) = &mut self.0 else { return std::task::Poll::Ready(None) };
        match body.poll_chunk(cx) {
            std::task::Poll::Ready(Some(Ok(b))) => std::task::Poll::Ready(Some(Ok(b))),
            std::task::Poll::Ready(_) => {
                self.0 = None;
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// The whole JSON body of a node's answer, at most 1 MiB.
pub async fn read_json(body: &mut Box<dyn BodyStream>) -> Option<Value> {
    serde_json::from_slice(&crate::read_to_end(body, 1 << 20).await.ok()?).ok()
}

/// Pulls `model` onto the Ollama at `url` (within an hour); true when it says success.
pub async fn pull(app: &App, url: &herd_core::url::BaseUrl, model: &str) -> bool {
    let body = Bytes::from(json!({ "model": model, "stream": false }).to_string());
    let headers = app.node_headers();
    let call = async {
        let mut resp = app.upstream.send("POST", url, "/api/pull", &headers, Some(body)).await.ok()?;
        if !(200..300).contains(&resp.head.status) {
            return None;
        }
        // `stream: false`: one short status object.
        let text = crate::read_to_end(&mut resp.body, 1 << 20).await.ok()?;
        Some(String::from_utf8_lossy(&text).contains("success"))
    };
    crate::timeout(&*app.runtime, Duration::from_secs(3600), call).await.flatten().unwrap_or(false)
}

/// The first value of `key` in a query string (`application/x-www-form-urlencoded`).
fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// A percent-encoded path segment, decoded (`+` stays `+` in a path).
fn path_segment(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

/// Pull, delete, copy, create, push: to the node named by `?node=` (or the body's `node`); pull
/// alone may pick the best node itself.
async fn admin_forward(app: &App, call: &Call<'_>, path: &'static str, may_pick: bool) -> Answer {
    let raw: &[u8] = if call.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &call.body };
    let index = match index_of(app, raw) {
        Ok(i) => i,
        Err(refused) => return refused,
    };
    let named = query_param(call.query, "node")
        .or_else(|| text_field(&index, raw, "node"))
        .or_else(|| text_field(&index, raw, "node_id"));
    let model = text_field(&index, raw, "model").or_else(|| text_field(&index, raw, "name")).unwrap_or_default();
    let addr = match named {
        Some(name) => {
            let found = app
                .driver
                .query(move |r, n| r.fleet().by_name(&name).and_then(|node| n.addr(node.id()).cloned()))
                .await
                .flatten();
            match found {
                Some(a) => a,
                None => return error_answer(Proto::Ollama, 404, "no node of that name is known", None),
            }
        }
        None if may_pick => {
            let m = ModelName::new(&model);
            let best =
                app.driver.query(move |r, n| r.pull_target(&m).and_then(|id| n.addr(id).cloned())).await.flatten();
            match best {
                Some(a) => a,
                None => return error_answer(Proto::Ollama, 503, "no online node can take a pull right now", None),
            }
        }
        None => {
            return error_answer(
                Proto::Ollama,
                400,
                &format!("{path} must name its node: add ?node=<node_id> (see GET /fleet/status for the names)"),
                None,
            )
        }
    };
    // herd's own fields naming the node are not the node's business.
    let body = Bytes::from(index.without(raw, &["node", "node_id"]));
    match forward(app, call.method, &addr, path, body).await {
        Some(resp) => resp,
        None => error_answer(Proto::Ollama, 502, &format!("node {} did not answer", addr.name), None),
    }
}

async fn heartbeat(app: &App, body: Bytes, peer: SocketAddr) -> Answer {
    let (reply, rx) = tokio::sync::oneshot::channel();
    app.driver.send(Input::Heartbeat { body, peer: Some(peer.ip()), reply }).await;
    match rx.await {
        Ok(Ok(Registered { status: NodeStatus::Draining, .. })) => json_answer(200, &json!({ "status": "draining" })),
        Ok(Ok(Registered { status, .. })) => {
            json_answer(200, &json!({ "status": "ok", "node_status": status.as_str() }))
        }
        Ok(Err(e @ herd_core::router::ReportError::Invalid(_))) => {
            error_answer(Proto::Ollama, e.http_status(), &format!("invalid heartbeat: {e}"), None)
        }
        Ok(Err(e)) => error_answer(Proto::Ollama, e.http_status(), &format!("heartbeat refused: {e}"), None),
        Err(_) => unavailable(),
    }
}

/// Drains a node (`on`), holding over its heartbeats until undrained, or takes that back.
async fn drain(app: &App, name: &str, on: bool) -> Answer {
    let (reply, rx) = tokio::sync::oneshot::channel();
    app.driver.send(Input::Drain(path_segment(name), on, reply)).await;
    match rx.await {
        Ok(Ok(r)) if on => {
            json_answer(200, &json!({ "status": "draining", "node_id": name, "node_status": r.status.as_str() }))
        }
        Ok(Ok(r)) => {
            json_answer(200, &json!({ "status": "undrained", "node_id": name, "node_status": r.status.as_str() }))
        }
        Ok(Err(e)) => error_answer(Proto::Ollama, e.http_status(), &format!("cannot drain '{name}': {e}"), None),
        Err(_) => unavailable(),
    }
}

/// `GET /fleet/status`: herd's view of each node and the fleet, with ollama-herd's fields beside
/// (`fleet.models_loaded`, `fleet.requests_active`, the top-level `queues` of `/fleet/queue` and
/// `timestamp`), so its dashboards and scripts read it unchanged.
async fn status(app: &App) -> Answer {
    let unix_ms = app.runtime.unix_ms();
    let v = app
        .driver
        .query(move |r, n| {
            let mut nodes = Vec::new();
            let queues = r.queues();
            for node in r.fleet().nodes() {
                let rep = node.report();
                let mut qs = Vec::new();
                for (nid, model, q) in queues.iter() {
                    if nid == node.id() {
                        qs.push(json!({ "model": model.as_str(), "pending": q.pending.len(), "in_flight": q.in_flight }));
                    }
                }
                nodes.push(json!({
                    "node_id": node.name(),
                    "status": node.status().as_str(),
                    "url": n.addr(node.id()).map(|a| a.url.to_string()),
                    "models_loaded": rep.ollama.models_loaded.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
                    "models_available": rep.ollama.models_available.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    "queues": qs,
                    "in_flight": queues.node_in_flight(node.id()),
                    "pending": queues.node_pending(node.id()),
                    "ollama_reachable": rep.ollama.reachable.unwrap_or(true),
                    "ollama_version": rep.ollama.version,
                    "num_parallel": node.num_parallel(),
                    "hot_model_cap": node.hot_model_cap(),
                    "models_loaded_count": node.models_loaded_count(),
                    "free_slots": node.free_slots(),
                    "memory": { "total_gb": rep.memory.total_gb, "available_gb": rep.memory.available_gb, "pressure": format!("{:?}", rep.memory.pressure).to_lowercase() },
                    "free_memory_gb": node.free_memory_gb(),
                    "gpus": rep.gpus.len(),
                    "memory_bandwidth_gbps": node.bandwidth_gbps(),
                    "breaker_open": !r.breaker_allows(node.id()),
                    "seconds_since_report": r.now().saturating_since(node.last_report()).as_secs_f64(),
                }));
            }
            let s = r.stats();
            let mut queue = r.queue_view(unix_ms);
            let models_loaded: u64 = r.fleet().nodes().map(|n| u64::from(n.models_loaded_count())).sum();
            json!({
                "fleet": {
                    "nodes_total": s.nodes,
                    "models_loaded": models_loaded,
                    "requests_active": queue["in_flight"].take(),
                    "nodes_online": r.fleet().nodes().filter(|n| n.routable()).count(),
                    "requests_live": s.live, "requests_queued": s.queued, "requests_holding": s.holding,
                    "attempts_in_flight": s.in_flight,
                    "counters": {
                        "requests": s.counters.requests, "completed": s.counters.completed,
                    },
                },
                "nodes": nodes,
                "queues": queue["queues"].take(),
                "timestamp": queue["timestamp"].take(),
            })
        })
        .await;
    match v {
        Some(v) => json_answer(200, &v),
        None => unavailable(),
    }
}

/// A view core builds from the router's state and the wall clock now (`/fleet/queue`,
/// `/fleet/limits`).
async fn view(app: &App, build: fn(&Router, i64) -> Value) -> Answer {
    let unix_ms = app.runtime.unix_ms();
    match app.driver.query(move |r, _| build(r, unix_ms)).await {
        Some(v) => json_answer(200, &v),
        None => unavailable(),
    }
}

async fn explain(app: &App, query: &str) -> Answer {
    let Some(model) = query_param(query, "model").filter(|m| !m.is_empty()) else {
        return error_answer(Proto::Ollama, 400, "add ?model=<name>", None);
    };
    let m = ModelName::new(&model);
    let v = app
        .driver
        .query(move |r, _| {
            if let Some(images) = r.explain_image(&model) {
                return image_explain(&model, &images, r.image_fleet());
            }
            let d = r.explain(&m);
            let name = |id| r.fleet().node(id).map_or_else(String::new, |n| n.name().to_string());
            let ranked: Vec<Value> = d
                .ranked
                .iter()
                .map(|c| {
                    let signals: Map<String, Value> =
                        c.breakdown.iter().map(|(s, v)| (s.as_str().to_string(), json!(v))).collect();
                    json!({
                        "node_id": name(c.node), "score": c.total, "signals": signals,
                        "temperature": format!("{:?}", c.temperature).to_lowercase(), "queue_depth": c.depth,
                    })
                })
                .collect();
            let eliminated: Vec<Value> = d
                .eliminated
                .iter()
                .map(|(id, e)| json!({ "node_id": name(*id), "reason": e.as_str(), "detail": format!("{e:?}") }))
                .collect();
            json!({
                "model": m.as_str(), "policy": format!("{:?}", r.config().score.policy).to_lowercase(),
                "best": d.best().map(|c| name(c.node)), "ranked": ranked, "eliminated": eliminated,
            })
        })
        .await;
    match v {
        Some(v) => json_answer(200, &v),
        None => unavailable(),
    }
}

/// `/fleet/explain` for an image model: its servers ranked (loaded first, then the expected
/// seconds) with the times behind each rank, and the others with why.
fn image_explain(
    model: &str,
    r: &herd_core::image::sched::Ranking,
    fleet: &herd_core::image::sched::ImageFleet,
) -> Value {
    let kind = |id| fleet.info(id).map_or("", |i| i.kind.as_str());
    let ranked: Vec<Value> = r
        .candidates
        .iter()
        .map(|c| {
            json!({
                "node_id": c.machine, "backend": kind(c.backend), "loaded": c.loaded,
                "expected_seconds": c.total_s(), "wait_seconds": c.wait_s, "load_seconds": c.load_s,
                "run_seconds": c.run_s, "learned": c.learned,
            })
        })
        .collect();
    let eliminated: Vec<Value> = r
        .eliminated
        .iter()
        .map(|(id, machine, e)| json!({ "node_id": machine, "backend": kind(*id), "reason": e.as_str(), "detail": format!("{e:?}") }))
        .collect();
    json!({
        "model": model, "kind": "image", "best": r.candidates.first().map(|c| c.machine.clone()),
        "ranked": ranked, "eliminated": eliminated,
    })
}

async fn traces(app: &App, query: &str) -> Answer {
    let Some(log) = app.traces.clone() else {
        return error_answer(Proto::Ollama, 404, "traces are not recorded", None);
    };
    let limit = query_param(query, "limit").and_then(|l| l.parse().ok()).unwrap_or(100u32).min(10_000);
    match log.recent(limit).await {
        Ok(out) => json_answer(200, &json!({ "traces": out })),
        Err(e) => error_answer(Proto::Ollama, 500, &format!("could not read the trace store: {e}"), None),
    }
}

async fn usage(app: &App) -> Answer {
    let Some(log) = app.traces.clone() else {
        return error_answer(Proto::Ollama, 404, "traces are not recorded", None);
    };
    let since = app.runtime.unix_ms() - 24 * 3600 * 1000;
    match log.usage(since).await {
        Ok((tags, models)) => json_answer(
            200,
            &json!({
                "since_unix_ms": since,
                "by_tag": tags,
                "by_model": models,
            }),
        ),
        Err(e) => error_answer(Proto::Ollama, 500, &format!("could not read the trace store: {e}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        assert_eq!(query_param("model=qwen3%3A8b&x=1", "model").as_deref(), Some("qwen3:8b"));
        assert_eq!(query_param("a=b", "model"), None);
        assert_eq!(query_param("node=a+b%2", "node").as_deref(), Some("a b%2"));
        assert_eq!(path_segment("studio%20one+x"), "studio one+x");
    }
}
