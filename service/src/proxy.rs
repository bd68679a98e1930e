//! One routed request, from body to answer: describe it with core's `api`, hand it to the driver,
//! run each attempt core dispatches against its node, and answer the client once core commits or
//! rejects. Retries and fallbacks are core's; this module only performs them.

use crate::driver::{AttemptInput, Input, NodeAddr, ReqMeta, ReqMsg};
use crate::errors::{error_answer, Proto, JSON};
use crate::relay::{cancel_message, EndGuard, Orders, Relay, Shaper};
use crate::{next_chunk, race, Answer, AnswerBody, App, BodyStream, Either, Headers};
use bytes::Bytes;
use herd_core::api::body::BodyIndex;
use herd_core::api::echo::ModelEcho;
use herd_core::api::names;
use herd_core::api::plan::{AnswerShape, AttemptBody, AttemptPlan as Plan, Gathered, PlanError};
use herd_core::api::watch::StreamWatch;
use herd_core::api::{describe_indexed, DescribeContext, Surface};
use herd_core::ids::ModelName;
use herd_core::policy::anthropic::Resolution;
use herd_core::policy::retry::{is_saturation, UpstreamFailure};
use herd_core::request::RequestSpec;
use herd_core::router::{CancelReason, Commit, Dispatch, Rejection};
use herd_core::translate::responses::{ResponsesAggregator, ResponsesConfig, ResponsesStream};
use herd_core::translate::{
    AnthropicAggregator, AnthropicResponseConfig, AnthropicStream, ChatCompletionAggregator, NativeAggregator,
    NativeEndpoint, OpenAiChatStream, OpenAiCompletionStream, OpenAiResponseConfig, TextCompletionAggregator,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Everything one request carries through its attempts.
struct Request {
    surface: Surface,
    proto: Proto,
    spec: RequestSpec,
    /// The top-level fields of `raw`: attempts splice what they change into the client's bytes.
    index: BodyIndex,
    /// The body as the client sent it, forwarded as is when nothing needs changing.
    raw: Bytes,
    /// The model string as the client sent it (answers echo it).
    client_model: String,
    /// How an Anthropic model id was resolved (from the attempts core dispatched).
    resolution: Option<Resolution>,
    /// The last error a node answered, relayed when core rejects with `Upstream`.
    last_error: Option<(u16, String)>,
    /// Time, for `created` fields and progress reports.
    rt: Arc<dyn crate::Runtime>,
    /// The fetched bytes of its remote `image_url`s, in order (`--image-url-hosts`).
    images: Vec<Vec<u8>>,
}

/// What an inference request's headers tell the router, read before the body arrives.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// `X-Herd-Tags`, parsed.
    pub tags: Vec<String>,
    /// `X-Fleet-No-Fallback`, parsed.
    pub no_fallback: Option<herd_core::request::FallbackChoice>,
}

impl Hints {
    /// Reads the hints from a request's headers.
    pub fn of(headers: &dyn Headers) -> Hints {
        Hints {
            tags: headers.get(names::TAGS_HEADER).map(herd_core::api::parse_tags_header).unwrap_or_default(),
            no_fallback: headers.get(names::NO_FALLBACK_HEADER).and_then(herd_core::api::parse_no_fallback_header),
        }
    }
}

/// Serves one inference request on `surface`.
pub async fn serve(app: Arc<App>, surface: Surface, hints: Hints, body: Bytes, client: Option<String>) -> Answer {
    let proto = Proto::of(surface);
    let index = match BodyIndex::new(&body, &app.body_limits) {
        Ok(i) => i,
        Err(e) => return error_answer(proto, e.http_status(), &e.to_string(), None),
    };
    let ctx = DescribeContext {
        client,
        header_tags: hints.tags,
        fallback_header: hints.no_fallback,
        ..DescribeContext::default()
    };
    let mut spec = match describe_indexed(surface, &body, &index, &ctx) {
        Ok(s) => s,
        Err(e) => return error_answer(proto, e.http_status(), &e.to_string(), None),
    };
    let mut images = Vec::new();
    if let (Surface::OpenAiChat | Surface::OpenAiResponses, Some(policy)) = (surface, &app.image_urls) {
        // Remote images are fetched once, before the request is routed: a failure is the
        // client's 400, and every attempt sends the same bytes.
        let urls = match herd_core::api::plan::remote_image_urls(surface, &body, &index) {
            Ok(u) => u,
            Err(e) => return error_answer(proto, e.status, &e.message, None),
        };
        if !urls.is_empty() {
            match crate::image_fetch::fetch_all(policy.clone(), urls, app.image_fetch).await {
                Ok(fetched) => images = fetched,
                Err(message) => return error_answer(proto, 400, &message, None),
            }
            spec.remote_images = true;
        }
    }
    let client_model = index.value(&body, "model").and_then(|m| m.as_str().map(str::to_string)).unwrap_or_default();
    if body.len() >= crate::RELEASE_AFTER_BYTES {
        // The typed copy that described it is gone.
        app.runtime.release_memory();
    }
    let mut req = Request {
        surface,
        proto,
        spec,
        index,
        raw: body,
        client_model,
        resolution: None,
        last_error: None,
        rt: app.runtime.clone(),
        images,
    };
    run(app, &mut req).await
}

/// A request task's inbox from the driver. Dropped with an `Admitted` still unread (the client
/// left in the instant between the driver taking the request and the task hearing its id, so
/// the task's guard never knew the id), it tells the driver the client is gone: a queued
/// request must not keep its place until a node frees up.
struct Inbox {
    rx: mpsc::UnboundedReceiver<ReqMsg>,
    driver: crate::driver::DriverTx,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            if let ReqMsg::Admitted(id) = msg {
                self.driver.send_now(Input::ClientGone(id));
            }
        }
    }
}

impl std::ops::Deref for Inbox {
    type Target = mpsc::UnboundedReceiver<ReqMsg>;
    fn deref(&self) -> &Self::Target {
        &self.rx
    }
}

impl std::ops::DerefMut for Inbox {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.rx
    }
}

async fn run(app: Arc<App>, req: &mut Request) -> Answer {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rx = Inbox { rx, driver: app.driver.clone() };
    let meta = ReqMeta { surface: req.surface, started_unix_ms: app.runtime.unix_ms() };
    let mut guard = EndGuard::new(app.driver.clone());
    app.driver.send(Input::Request { spec: req.spec.clone(), meta, tx }).await;
    loop {
        let Some(msg) = rx.recv().await else {
            guard.disarm();
            return error_answer(req.proto, 503, "the router is shutting down", Some(Duration::from_secs(1)));
        };
        match msg {
            ReqMsg::Admitted(id) => guard.admitted(id),
            ReqMsg::Reject(r) => {
                guard.disarm();
                return reject(req, &r);
            }
            ReqMsg::Dispatch(d, addr) => {
                guard.attempt(d.attempt);
                match attempt(&app, req, &d, &addr, &mut rx, guard).await {
                    Ok(resp) => return resp,
                    Err(g) => guard = g,
                }
            }
            // Stale messages of an attempt already given up.
            ReqMsg::Cancel(..) => {}
        }
    }
}

/// The refusal core decided, in the client's protocol.
fn reject(req: &Request, r: &Rejection) -> Answer {
    let status = r.http_status();
    let message = match r {
        Rejection::UnknownModel(_) if req.spec.anthropic_model.is_some() => format!(
            "model '{}' not found: it is not in the Anthropic model map (--anthropic-model-map), no node has it, \
             and no local model can serve it",
            req.client_model
        ),
        Rejection::UnknownModel(m) => format!(
            "model '{}' not found on any node; pull it onto a node first (ollama pull {})",
            req.client_model,
            m.as_str()
        ),
        Rejection::Unavailable { model, .. } => {
            format!("model '{}' exists but no node can serve it right now; try again shortly", model.as_str())
        }
        Rejection::QueueFull { .. } => "every queue for this model is full; try again shortly".to_string(),
        Rejection::Overloaded { .. } => "the router is at its request limit; try again shortly".to_string(),
        Rejection::ClientLimit { limit, .. } => format!("too many requests in flight from this client (limit {limit})"),
        Rejection::Upstream { .. } => match &req.last_error {
            Some((_, text)) => upstream_message(text),
            None => "the node refused the request".to_string(),
        },
        Rejection::AttemptsExhausted { attempts, last } => {
            format!("no node could answer: {attempts} attempt(s), last failure: {}", last.as_str())
        }
    };
    error_answer(req.proto, status, &message, r.retry_after())
}

/// The `error` text of a node's error body, or the body itself.
fn upstream_message(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => match v.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(e) => e.get("message").and_then(Value::as_str).map_or_else(|| e.to_string(), str::to_string),
            None => text.to_string(),
        },
        Err(_) => text.trim().to_string(),
    }
}

/// Runs one attempt. `Ok` when the client has its answer; `Err(guard)` to wait for core's next
/// order.
async fn attempt(
    app: &App,
    req: &mut Request,
    d: &Dispatch,
    addr: &Arc<NodeAddr>,
    rx: &mut mpsc::UnboundedReceiver<ReqMsg>,
    guard: EndGuard,
) -> Result<Answer, EndGuard> {
    let plan = Plan::of(req.surface, &req.spec, d);
    if d.resolution.is_some() {
        req.resolution = d.resolution.clone();
    }
    let large = req.raw.len() >= crate::RELEASE_AFTER_BYTES;
    let release = || {
        if large {
            app.runtime.release_memory();
        }
    };
    let built = plan.body_with_images(&req.raw, &req.index, &req.spec, d, &req.images, &mut { release });
    let (bytes, include_usage) = match built {
        Ok((AttemptBody::AsSent, usage)) => (req.raw.clone(), usage),
        Ok((AttemptBody::Rewritten(b), usage)) => (Bytes::from(b), usage),
        Err(PlanError { status, message }) => {
            // The body cannot be sent anywhere: the client's error. Tell core the node refused it.
            req.last_error = Some((status, serde_json::json!({ "error": message }).to_string()));
            guard.report(AttemptInput::Failed(UpstreamFailure::Status { code: status, saturated: false }));
            return Err(guard);
        }
    };
    // What the attempt body was built from is gone.
    release();
    let headers = app.node_headers();
    let call = app.upstream.send("POST", &addr.url, plan.path(), &headers, Some(bytes));
    let resp = match race(call, cancel_of(rx, d.attempt)).await {
        Either::Left(r) => r,
        Either::Right(m) => return cancelled(req, m, guard),
    };
    let crate::upstream::Response { head, body } = match resp {
        Ok(r) => r,
        Err(e) => {
            let failure = if e.is_connect() { UpstreamFailure::Connect } else { UpstreamFailure::Reset };
            guard.report(AttemptInput::Failed(failure));
            return Err(guard);
        }
    };
    let status = head.status;
    if !(200..300).contains(&status) {
        let read = crate::timeout(&*app.runtime, Duration::from_secs(10), read_error_body(body));
        let text = match race(read, cancel_of(rx, d.attempt)).await {
            Either::Left(text) => text.unwrap_or_default(),
            Either::Right(m) => return cancelled(req, m, guard),
        };
        let saturated = is_saturation(status, &text);
        req.last_error = Some((status, text));
        guard.report(AttemptInput::Failed(UpstreamFailure::Status { code: status, saturated }));
        return Err(guard);
    }
    let content_type = head.header("content-type").and_then(|v| std::str::from_utf8(v).ok()).map(str::to_string);
    let mut body = body;
    let first = match race(first_data(&mut body), cancel_of(rx, d.attempt)).await {
        Either::Left(f) => f,
        Either::Right(m) => return cancelled(req, m, guard),
    };
    let first = match first {
        Ok(b) => b,
        Err(failure) => {
            guard.report(AttemptInput::Failed(failure));
            return Err(guard);
        }
    };
    // The first byte commits the attempt: core takes the report as the commit, even when it
    // crosses a first-byte-timeout cancel, so the answer starts now, without a round trip.
    guard.report(AttemptInput::FirstByte);
    let commit = (d.commit(), addr.clone());
    // After commit the only orders left are the reaper's and the client leaving; the answer's
    // body watches for them.
    let orders = Orders::new(std::mem::replace(rx, mpsc::unbounded_channel().1), d.attempt);
    Ok(answer(req, plan, include_usage, commit, content_type, first, body, guard, orders).await)
}

/// The first message that ends the running attempt: its cancel, a rejection, or the driver gone.
/// Anything else (a stale order for an earlier attempt) is skipped, so the attempt goes on.
async fn cancel_of(rx: &mut mpsc::UnboundedReceiver<ReqMsg>, attempt: herd_core::ids::AttemptId) -> Option<ReqMsg> {
    loop {
        match rx.recv().await {
            Some(ReqMsg::Cancel(a, r)) if a == attempt => return Some(ReqMsg::Cancel(a, r)),
            Some(m @ ReqMsg::Reject(_)) => return Some(m),
            Some(_) => {}
            None => return None,
        }
    }
}

/// The attempt was cancelled: wait for core's next order, or answer now if the request ended.
/// A first-byte-timeout cancel waits for the report that the call is over before core retries.
fn cancelled(req: &Request, m: Option<ReqMsg>, mut guard: EndGuard) -> Result<Answer, EndGuard> {
    match m {
        Some(ReqMsg::Cancel(_, CancelReason::FirstByteTimeout)) => {
            guard.report(AttemptInput::Failed(UpstreamFailure::Timeout));
            Err(guard)
        }
        Some(ReqMsg::Reject(r)) => {
            guard.disarm();
            Ok(reject(req, &r))
        }
        None => {
            guard.disarm();
            Ok(error_answer(req.proto, 503, "the router is shutting down", None))
        }
        _ => Err(guard),
    }
}

/// The first non-empty data frame of a body.
async fn first_data(body: &mut Box<dyn BodyStream>) -> Result<Bytes, UpstreamFailure> {
    loop {
        match next_chunk(body).await {
            Some(Ok(data)) => {
                if !data.is_empty() {
                    return Ok(data);
                }
            }
            Some(Err(_)) => return Err(UpstreamFailure::Reset),
            None => return Err(UpstreamFailure::Protocol),
        }
    }
}

/// A node's error body, at most 64 KiB of it.
async fn read_error_body(mut body: Box<dyn BodyStream>) -> String {
    let mut out = Vec::new();
    while let Some(Ok(piece)) = next_chunk(&mut body).await {
        out.extend_from_slice(&piece);
        if out.len() >= 64 * 1024 {
            out.truncate(64 * 1024);
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The headers every routed answer carries: where it went and how, in herd's names and in
/// ollama-herd's (`X-Fleet-*`, herd-router.md §9.1) for its operators' scripts. `requested` is
/// the model the client asked for.
pub fn routed_headers(c: &Commit, addr: &NodeAddr, requested: &ModelName) -> Vec<(&'static str, String)> {
    let mut h = vec![
        (names::NODE_HEADER, addr.name.clone()),
        (names::MODEL_HEADER, c.model.as_str().to_string()),
        (names::ATTEMPTS_HEADER, c.attempts.to_string()),
        (names::SCORE_HEADER, format!("{:.1}", c.score)),
        (names::ROUTE_HEADER, c.route.as_str().to_string()),
        (names::REQUEST_ID_HEADER, c.request.0.to_string()),
        (names::FLEET_NODE_HEADER, addr.name.clone()),
        (names::FLEET_SERVED_MODEL_HEADER, c.model.as_str().to_string()),
        (names::FLEET_REQUESTED_MODEL_HEADER, requested.as_str().to_string()),
        (names::FLEET_FALLBACK_HEADER, (c.model != *requested).to_string()),
        (names::FLEET_BACKEND_HEADER, "ollama".to_string()),
        (names::FLEET_RETRIES_HEADER, c.attempts.saturating_sub(1).to_string()),
        (names::FLEET_SCORE_HEADER, format!("{}", c.score.round() as i64)),
        (names::FLEET_AFFINITY_HEADER, c.affinity.as_str().to_string()),
    ];
    if let Some((need, ctx)) = c.overflow {
        h.push((names::FLEET_CONTEXT_OVERFLOW_HEADER, format!("estimated_tokens={need}; context_length={ctx}")));
    }
    h
}

fn headers_for(answer: &mut Answer, c: &Commit, addr: &NodeAddr, req: &Request) {
    let requested = req.requested();
    let mut all: Vec<(&'static str, String)> = routed_headers(c, addr, requested);
    if let Some(r) = &req.resolution {
        // The client's own id, and how it became the requested model.
        all.push((names::REQUESTED_MODEL_HEADER, req.client_model.clone()));
        all.push((names::RESOLVED_BY_HEADER, r.by.as_str().to_string()));
    }
    for (k, v) in all {
        // Header values must be visible ASCII; a node name that is not is left out.
        if v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            answer.headers.push((k, v));
        }
    }
}

impl Request {
    /// The model the request asked for: an Anthropic id's local model once resolved, else the
    /// client's.
    fn requested(&self) -> &ModelName {
        self.resolution.as_ref().map_or(&self.spec.model, |r| &r.model)
    }

    /// The model an answer names: the client's own string (answers echo what was asked, an
    /// Anthropic id included), or the model that served when a fallback or substitute did.
    fn named_model(&self, served: &ModelName) -> String {
        if served == self.requested() {
            self.client_model.clone()
        } else {
            served.as_str().to_string()
        }
    }
}

/// What a translated or renamed answer is made with.
struct Naming {
    openai: OpenAiResponseConfig,
    anthropic: AnthropicResponseConfig,
    /// Renames a passed-through Anthropic answer to the client's model.
    echo: Option<ModelEcho>,
}

/// A Responses answer's config: what it repeats of the request, read from the client's bytes.
/// Built only for a Responses answer, as the other surfaces have nothing to read.
fn responses_config(req: &Request, openai: &OpenAiResponseConfig) -> ResponsesConfig {
    ResponsesConfig::for_request(&*openai.id, openai.created, &*openai.model, |k| req.index.value(&req.raw, k))
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces of a committed attempt
async fn answer(
    req: &Request,
    plan: Plan,
    include_usage: bool,
    (commit, addr): (Commit, Arc<NodeAddr>),
    upstream_type: Option<String>,
    first: Bytes,
    body: Box<dyn BodyStream>,
    guard: EndGuard,
    orders: Orders,
) -> Answer {
    let named = req.named_model(&commit.model);
    let id = plan.answer_id(commit.request.0);
    let mut openai = OpenAiResponseConfig::new(id.clone(), (req.rt.unix_ms() / 1000) as u64, named.clone());
    openai.include_usage = include_usage;
    let anthropic =
        AnthropicResponseConfig { id, model: named.clone(), input_tokens: req.spec.estimated_prompt_tokens };
    let echo = plan.echoes().then(|| ModelEcho::new(named));
    let (shaper, ctype) = match plan.answer_shape() {
        AnswerShape::PassStream(p) => (Shaper::Pass(StreamWatch::new(p), echo), p.stream_content_type()),
        AnswerShape::TranslateStream(NativeEndpoint::Chat) => {
            (Shaper::Chat(Box::new(OpenAiChatStream::new(openai))), names::SSE)
        }
        AnswerShape::TranslateStream(NativeEndpoint::Generate) => {
            (Shaper::Completion(Box::new(OpenAiCompletionStream::new(openai))), names::SSE)
        }
        AnswerShape::AnthropicStream => (Shaper::Anthropic(Box::new(AnthropicStream::new(anthropic))), names::SSE),
        AnswerShape::ResponsesStream => {
            (Shaper::Responses(Box::new(ResponsesStream::new(responses_config(req, &openai)))), names::SSE)
        }
        AnswerShape::Gather(how) => {
            let naming = Naming { openai, anthropic, echo };
            return aggregate(req, how, naming, (commit, &addr), upstream_type, first, body, guard, orders).await;
        }
    };
    let relay = Relay::new(body, first, shaper, guard, orders, req.rt.clone());
    let mut answer = Answer {
        status: 200,
        headers: vec![("content-type", ctype.to_string())],
        body: AnswerBody::Stream(Box::new(relay)),
    };
    if ctype == names::SSE {
        answer.headers.push(("cache-control", "no-cache".to_string()));
    }
    headers_for(&mut answer, &commit, &addr, req);
    answer
}

#[allow(clippy::too_many_arguments)]
async fn aggregate(
    req: &Request,
    how: Gathered,
    naming: Naming,
    (commit, addr): (Commit, &NodeAddr),
    upstream_type: Option<String>,
    first: Bytes,
    mut body: Box<dyn BodyStream>,
    mut guard: EndGuard,
    mut orders: Orders,
) -> Answer {
    enum Agg {
        Native(NativeAggregator),
        Chat(ChatCompletionAggregator),
        Text(TextCompletionAggregator),
        Anthropic(AnthropicAggregator),
        Responses(ResponsesAggregator),
        Raw(Vec<u8>),
    }
    let Naming { openai, anthropic, echo } = naming;
    let mut agg = match how {
        Gathered::Native(endpoint) => Agg::Native(NativeAggregator::new(endpoint)),
        Gathered::OpenAiChat => Agg::Chat(ChatCompletionAggregator::new(openai)),
        Gathered::OpenAiCompletion => Agg::Text(TextCompletionAggregator::new(openai)),
        Gathered::Anthropic => Agg::Anthropic(AnthropicAggregator::new(anthropic)),
        Gathered::Responses => Agg::Responses(ResponsesAggregator::new(responses_config(req, &openai))),
        Gathered::AsIs => Agg::Raw(Vec::new()),
    };
    let feed = |agg: &mut Agg, data: &[u8]| match agg {
        Agg::Native(a) => a.handle_bytes(data),
        Agg::Chat(a) => a.handle_bytes(data),
        Agg::Text(a) => a.handle_bytes(data),
        Agg::Anthropic(a) => a.handle_bytes(data),
        Agg::Responses(a) => a.handle_bytes(data),
        Agg::Raw(v) => v.extend_from_slice(data),
    };
    feed(&mut agg, &first);
    let mut last_progress = req.rt.now();
    guard.chunk_at(last_progress);
    let mut failed = false;
    loop {
        let frame = match race(next_chunk(&mut body), orders.cancelled()).await {
            Either::Left(f) => f,
            Either::Right(reason) => {
                // Core reaped the attempt (the node stalled) and already ended the request.
                guard.disarm();
                let status = UpstreamFailure::Timeout.status_after_commit();
                let mut answer = error_answer(req.proto, status, cancel_message(reason), None);
                headers_for(&mut answer, &commit, addr, req);
                return answer;
            }
        };
        let Some(frame) = frame else { break };
        match frame {
            Ok(data) => {
                feed(&mut agg, &data);
                let now = req.rt.now();
                guard.chunk_at(now);
                if now.saturating_since(last_progress) >= Duration::from_millis(500) {
                    last_progress = now;
                    guard.report(AttemptInput::Progress);
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let json_type = || JSON.to_string();
    let result: Result<(Bytes, String, herd_core::router::Usage), String> = match agg {
        _ if failed => Err("the node's connection failed mid-answer".to_string()),
        Agg::Native(a) => a.finish_json().map(|(b, u)| (Bytes::from(b), json_type(), u)).map_err(|e| e.to_string()),
        Agg::Chat(a) => a.finish().map(|(v, u)| (json_body(&v), json_type(), u)).map_err(|e| e.to_string()),
        Agg::Text(a) => a.finish().map(|(v, u)| (json_body(&v), json_type(), u)).map_err(|e| e.to_string()),
        Agg::Anthropic(a) => a.finish().map(|(v, u)| (json_body(&v), json_type(), u)).map_err(|e| e.to_string()),
        Agg::Responses(a) => a.finish().map(|(v, u)| (json_body(&v), json_type(), u)).map_err(|e| e.to_string()),
        Agg::Raw(v) => {
            let usage = herd_core::api::watch::body_usage(&v);
            let v = match &echo {
                Some(e) => e.whole(&v),
                None => v,
            };
            Ok((Bytes::from(v), upstream_type.unwrap_or_else(json_type), usage))
        }
    };
    match result {
        Ok((body, ctype, usage)) => {
            guard.end(AttemptInput::Finished(usage));
            let mut answer =
                Answer { status: 200, headers: vec![("content-type", ctype)], body: AnswerBody::Full(body) };
            headers_for(&mut answer, &commit, addr, req);
            answer
        }
        Err(message) => {
            let status = UpstreamFailure::Reset.status_after_commit();
            guard.end(AttemptInput::Failed(UpstreamFailure::Reset));
            let mut answer = error_answer(req.proto, status, &message, None);
            headers_for(&mut answer, &commit, addr, req);
            answer
        }
    }
}

fn json_body(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}
