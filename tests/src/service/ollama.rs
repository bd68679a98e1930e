//! A simulated Ollama machine on the in-memory network: real HTTP/1.1 bytes, Ollama's shapes for
//! `/api/chat`, `/api/generate`, `/api/embed`, `/v1/chat/completions`, `/v1/completions` and
//! `/v1/messages` (streamed token by token, one chunk per token, on the virtual clock), the
//! model lists, and a heartbeat to the router every few seconds. Its error envelopes are
//! herd-fake-ollama's (written from Ollama's), not the router's.
//!
//! Faults are drawn per request from the machine's seeded generator, among the kinds its swarm
//! enables: an error status before answering, a reset before the head, a reset or a clean close
//! mid-answer, a stall mid-answer. The machine logs what it did with each request, so the
//! checks can tell a complete answer from one the router must not pass off as complete.

use super::exec::Exec;
use super::net::{Net, SimConn};
use super::wire::{self, chunk, read_request, Request};
use bytes::BytesMut;
use herd_core::rng::{fnv1a, mix, Rng, FNV_OFFSET};
use herd_fake_ollama::reply::{error_value, Style};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Ollama's port.
pub const PORT: u16 = 11434;

/// The words a prompt is answered with: fixed by the prompt alone, so any machine and any
/// fallback model gives the same text, and a client can tell a whole answer from a cut one.
pub fn reply_tokens(prompt: &str) -> Vec<String> {
    let h = fnv1a(FNV_OFFSET, prompt.as_bytes());
    let n = 2 + (h % 14) as usize;
    (0..n).map(|i| format!("w{:04x} ", mix(h.wrapping_add(i as u64)) & 0xffff)).collect()
}

/// The whole answer to `prompt`.
pub fn reply_text(prompt: &str) -> String {
    reply_tokens(prompt).concat()
}

/// Which faults a machine may show (swarm testing: each machine gets a few kinds, so rare
/// combinations are reached), each with its chance per request in thousandths.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// A 500 or 503 with Ollama's error body, before answering.
    pub status_before: u32,
    /// The connection reset before any byte of an answer.
    pub reset_before: u32,
    /// The connection reset after some tokens.
    pub reset_mid: u32,
    /// The connection closed cleanly (no last chunk) after some tokens.
    pub close_mid: u32,
    /// No token for a long while after some tokens.
    pub stall_mid: u32,
}

/// A simulated machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Its name (the heartbeat's `node_id`).
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Models in memory (and on disk).
    pub models: Vec<String>,
    /// Parallel slots it reports.
    pub parallel: u32,
    /// Time to the first token.
    pub first_token: Duration,
    /// Time between tokens.
    pub token_every: Duration,
    /// Its faults.
    pub faults: Faults,
    /// How long a stall lasts.
    pub stall: Duration,
    /// Seed of its fault draws.
    pub seed: u64,
    /// The Ollama version it reports. Before 0.14.0 it has no `/v1/messages` (gin's 404).
    pub ollama_version: String,
    /// Whether its heartbeats say the window its models are loaded with (else core cannot pin
    /// `num_ctx`, and passes Anthropic requests to a recent Ollama's own `/v1/messages`).
    pub reports_context: bool,
}

impl MachineConfig {
    /// Whether its Ollama serves `/v1/messages` (0.14.0 on).
    pub fn serves_messages(&self) -> bool {
        let n: Vec<u64> = self.ollama_version.split('.').filter_map(|p| p.parse().ok()).collect();
        n.as_slice() >= [0, 14, 0].as_slice()
    }
}

/// What a machine did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Answered whole.
    Whole,
    /// An error status before answering.
    Status(u16),
    /// Reset before the head.
    ResetBefore,
    /// Cut (reset or closed) mid-answer.
    Cut,
    /// The router went away while it was answering (the router cancelled it).
    CallerGone,
}

/// One request a machine saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The prompt, when it had one.
    pub prompt: Option<String>,
    /// What happened.
    pub served: Served,
    /// When it ended.
    pub ended_at: herd_core::time::Instant,
    /// Whether a stall fault held it.
    pub stalled: bool,
}

/// The log of a machine.
#[derive(Debug, Default)]
pub struct MachineLog {
    /// Requests, in arrival order.
    pub seen: Vec<Seen>,
    /// Inference answers being written now.
    pub answering: usize,
    /// Heartbeats the router accepted.
    pub heartbeats_ok: u64,
}

/// A running machine: its log, and the switch that crashes it.
#[derive(Clone)]
pub struct Machine {
    /// Its configuration.
    pub config: Arc<MachineConfig>,
    /// What it did.
    pub log: Arc<Mutex<MachineLog>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Machine {
    /// Starts `config` on `net`: its listener, and its heartbeats to `router` every `every`.
    pub fn start(exec: &Exec, net: &Net, config: MachineConfig, router: SocketAddr, every: Duration) -> Machine {
        let m = Machine { config: Arc::new(config), log: Arc::default() };
        let listener = net.listen(SocketAddr::new(m.config.ip, PORT));
        let rng = Arc::new(Mutex::new(Rng::new(m.config.seed)));
        let (exec2, m2) = (exec.clone(), m.clone());
        exec.spawn(Box::pin(async move {
            loop {
                let (conn, _) = listener.accept().await;
                let (exec3, m3, rng) = (exec2.clone(), m2.clone(), rng.clone());
                exec2.spawn(Box::pin(async move { m3.serve(&exec3, conn, &rng).await }));
            }
        }));
        let (exec2, net2, m2) = (exec.clone(), net.clone(), m.clone());
        exec.spawn(Box::pin(async move {
            let rt = exec2.runtime();
            loop {
                if m2.heartbeat(&net2, router, &exec2).await {
                    lock(&m2.log).heartbeats_ok += 1;
                }
                rt.sleep(every).await;
            }
        }));
        m
    }

    fn heartbeat_body(&self, exec: &Exec) -> Vec<u8> {
        let c = &self.config;
        let spec = herd_fake_ollama::machine::MachineSpec {
            name: c.name.clone(),
            ram_gb: 64.0,
            gpu_vram_gb: vec![],
            bandwidth_gbps: 400.0,
            num_parallel: c.parallel,
            max_loaded_models: c.models.len() as u32 + 1,
            disk: c.models.iter().map(|m| (herd_core::ids::ModelName::new(m), 4.9)).collect(),
            preloaded: c.models.iter().map(|m| herd_core::ids::ModelName::new(m)).collect(),
            context_length: if c.reports_context { 8192 } else { 0 },
            load_gbps: 2.0,
            ollama_version: c.ollama_version.clone(),
        };
        let now = exec.now();
        let mut hb = herd_fake_ollama::machine::SimNode::new(spec, now).heartbeat(now);
        hb.node_id = c.name.clone();
        if !c.reports_context {
            hb.ollama.models_loaded.iter_mut().for_each(|m| m.context_length = 0);
        }
        hb.ollama_host = format!("http://{}:{PORT}", c.ip);
        hb.timestamp = (super::exec::EPOCH_UNIX_MS as f64 + now.as_micros() as f64 / 1000.0) / 1000.0;
        serde_json::to_vec(&hb).expect("a heartbeat serialises")
    }

    /// Posts one heartbeat; whether the router took it (200).
    async fn heartbeat(&self, net: &Net, router: SocketAddr, exec: &Exec) -> bool {
        let body = self.heartbeat_body(exec);
        let Ok(conn) = net.connect(self.config.ip, router.to_string()).await else { return false };
        let mut out = format!(
            "POST /heartbeat HTTP/1.1\r\nhost: {router}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        if wire::write_all(&conn, &out).await.is_err() {
            return false;
        }
        let mut buf = BytesMut::new();
        loop {
            match wire::parse_response_head(&mut buf) {
                Ok(Some(head)) => return head.status == 200,
                Ok(None) => {}
                Err(_) => return false,
            }
            match wire::fill(&conn, &mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return false,
            }
        }
    }

    async fn serve(&self, exec: &Exec, conn: SimConn, rng: &Mutex<Rng>) {
        let mut buf = BytesMut::new();
        loop {
            let req = match read_request(&conn, &mut buf).await {
                Ok(Some(r)) => r,
                _ => return,
            };
            let close = req.close();
            if !self.answer(exec, &conn, req, rng).await || close {
                return;
            }
        }
    }

    fn draw(&self, rng: &Mutex<Rng>, per_mille: u32) -> bool {
        per_mille > 0 && lock(rng).below(1000) < u64::from(per_mille)
    }

    /// Answers one request; whether the connection may carry another.
    async fn answer(&self, exec: &Exec, conn: &SimConn, req: Request, rng: &Mutex<Rng>) -> bool {
        let path = req.path.split('?').next().unwrap_or("").to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let style = if path.starts_with("/v1/messages") {
            Style::Anthropic
        } else if path.starts_with("/v1/") {
            Style::OpenAi
        } else {
            Style::Ollama
        };
        match (req.method.as_str(), path.as_str()) {
            ("GET", "/api/version") => {
                return send_json(conn, 200, &json!({ "version": self.config.ollama_version })).await
            }
            ("POST", "/v1/messages") if !self.config.serves_messages() => {
                // An Ollama from before the endpoint: gin's 404, logged so the checks see it.
                lock(&self.log).seen.push(Seen {
                    path,
                    prompt: prompt_of("/v1/messages", &body),
                    served: Served::Status(404),
                    ended_at: exec.now(),
                    stalled: false,
                });
                return send_raw(conn, 404, "text/plain", b"404 page not found").await;
            }
            ("GET", "/api/tags") => return send_json(conn, 200, &self.models(false)).await,
            ("GET", "/api/ps") => return send_json(conn, 200, &self.models(true)).await,
            ("POST", "/api/show") => {
                let model = body["model"].as_str().or(body["name"].as_str()).unwrap_or("").to_string();
                return if self.has(&model) {
                    send_json(conn, 200, &json!({ "details": { "family": "llama" }, "capabilities": ["completion"] }))
                        .await
                } else {
                    send_json(conn, 404, &error_value(style, 404, &format!("model '{model}' not found"))).await
                };
            }
            (
                "POST",
                "/api/chat"
                | "/api/generate"
                | "/api/embed"
                | "/v1/chat/completions"
                | "/v1/completions"
                | "/v1/messages",
            ) => {}
            _ => return send_raw(conn, 404, "text/plain", b"404 page not found").await,
        }
        let model = body["model"].as_str().unwrap_or("").to_string();
        let prompt = prompt_of(&path, &body);
        let mut seen = Seen {
            path: path.clone(),
            prompt: prompt.clone(),
            served: Served::Whole,
            ended_at: exec.now(),
            stalled: false,
        };
        if !self.has(&model) {
            seen.served = Served::Status(404);
            lock(&self.log).seen.push(seen);
            return send_json(conn, 404, &error_value(style, 404, &format!("model '{model}' not found"))).await;
        }
        let f = &self.config.faults;
        if self.draw(rng, f.reset_before) {
            seen.served = Served::ResetBefore;
            lock(&self.log).seen.push(seen);
            conn.reset();
            return false;
        }
        if self.draw(rng, f.status_before) {
            let status = if lock(rng).below(2) == 0 { 500 } else { 503 };
            let message = if status == 503 {
                "server busy, please try again.  maximum pending requests exceeded"
            } else {
                "llama runner process has terminated: exit status 2"
            };
            seen.served = Served::Status(status);
            lock(&self.log).seen.push(seen);
            return send_json(conn, status, &error_value(style, status, message)).await;
        }
        let rt = exec.runtime();
        if path == "/api/embed" {
            rt.sleep(self.config.first_token).await;
            lock(&self.log).seen.push(seen);
            let v = json!({ "model": model, "embeddings": [[0.1, 0.2, 0.3]], "prompt_eval_count": 3 });
            return send_json(conn, 200, &v).await;
        }
        let tokens = reply_tokens(prompt.as_deref().unwrap_or(""));
        // Where a mid-answer fault strikes, and which.
        let cut_at = 1 + lock(rng).below(tokens.len() as u64) as usize;
        let reset_cut = self.draw(rng, f.reset_mid);
        let close_cut = !reset_cut && self.draw(rng, f.close_mid);
        let stall = self.draw(rng, f.stall_mid);
        seen.stalled = stall;
        let stream = match style {
            Style::Ollama => body["stream"].as_bool().unwrap_or(true),
            _ => body["stream"].as_bool().unwrap_or(false),
        };
        let shape = Shape::new(&path, &model, &body);
        lock(&self.log).answering += 1;
        let index = {
            let mut log = lock(&self.log);
            log.seen.push(seen);
            log.seen.len() - 1
        };
        // The drawn mid-answer fault, where it strikes: a stall, then a reset or a close (the
        // answer cut), if drawn.
        let strike = || async {
            if stall {
                rt.sleep(self.config.stall).await;
            }
            if reset_cut {
                conn.reset();
            }
            reset_cut || close_cut
        };
        let served = async {
            rt.sleep(self.config.first_token).await;
            if !stream {
                // A node failing while it generates an answer it sends whole: before the head.
                if strike().await {
                    return Served::Cut;
                }
                let text = tokens.concat();
                return if send_json(conn, 200, &shape.whole(&text, tokens.len())).await {
                    Served::Whole
                } else {
                    Served::CallerGone
                };
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n\r\n",
                shape.content_type()
            );
            let mut first = head.into_bytes();
            let start = shape.start();
            if !start.is_empty() {
                // (An empty chunk would be the last one.)
                first.extend_from_slice(&chunk(&start));
            }
            if wire::write_all(conn, &first).await.is_err() {
                return Served::CallerGone;
            }
            for (i, t) in tokens.iter().enumerate() {
                if i > 0 {
                    rt.sleep(self.config.token_every).await;
                }
                // Reset, or closed without the last chunk.
                if i == cut_at && strike().await {
                    return Served::Cut;
                }
                if wire::write_all(conn, &chunk(&shape.token(t))).await.is_err() {
                    return Served::CallerGone;
                }
            }
            let mut end = chunk(&shape.end(tokens.len()));
            end.extend_from_slice(b"0\r\n\r\n");
            if wire::write_all(conn, &end).await.is_err() {
                return Served::CallerGone;
            }
            Served::Whole
        }
        .await;
        let keep = served == Served::Whole;
        let mut log = lock(&self.log);
        log.answering -= 1;
        log.seen[index].served = served;
        log.seen[index].ended_at = exec.now();
        keep
    }

    fn has(&self, model: &str) -> bool {
        let m = herd_core::ids::ModelName::new(model);
        self.config.models.iter().any(|x| herd_core::ids::ModelName::new(x) == m)
    }

    /// `/api/tags` (`loaded: false`) or `/api/ps` (`loaded: true`): every model, in Ollama's shape.
    fn models(&self, loaded: bool) -> Value {
        let models: Vec<Value> = self
            .config
            .models
            .iter()
            .map(|m| {
                let mut v = json!({
                    "name": m, "model": m,
                    "digest": format!("{:064x}", fnv1a(FNV_OFFSET, m.as_bytes())),
                    "details": { "format": "gguf", "family": "llama", "parameter_size": "8.0B", "quantization_level": "Q4_K_M" }
                });
                let extra = if loaded {
                    json!({ "size": 6_000_000_000u64, "size_vram": 6_000_000_000u64,
                            "expires_at": "2099-01-01T00:00:00Z", "context_length": 8192 })
                } else {
                    json!({ "size": 4_900_000_000u64, "modified_at": "2026-01-01T00:00:00Z" })
                };
                merge(&mut v, extra);
                v
            })
            .collect();
        json!({ "models": models })
    }
}

/// The prompt of an inference body: the last message's text, or `prompt`.
pub fn prompt_of(path: &str, body: &Value) -> Option<String> {
    match path {
        "/api/generate" | "/v1/completions" => body["prompt"].as_str().map(str::to_string),
        "/api/embed" => body["input"].as_str().map(str::to_string),
        _ => {
            let last = body["messages"].as_array()?.last()?;
            match &last["content"] {
                Value::String(s) => Some(s.clone()),
                Value::Array(parts) => {
                    Some(parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().concat())
                }
                _ => None,
            }
        }
    }
}

/// How an answer's pieces are written for one endpoint.
struct Shape {
    kind: Kind,
    model: String,
    include_usage: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
    OpenAiChat,
    OpenAiCompletion,
    Anthropic,
}

const CREATED_AT: &str = "2026-01-01T00:00:00.000000000Z";

impl Shape {
    fn new(path: &str, model: &str, body: &Value) -> Shape {
        let kind = match path {
            "/api/chat" => Kind::Chat,
            "/api/generate" => Kind::Generate,
            "/v1/chat/completions" => Kind::OpenAiChat,
            "/v1/completions" => Kind::OpenAiCompletion,
            _ => Kind::Anthropic,
        };
        let include_usage = body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
        Shape { kind, model: model.to_string(), include_usage }
    }

    fn content_type(&self) -> &'static str {
        match self.kind {
            Kind::Chat | Kind::Generate => "application/x-ndjson",
            _ => "text/event-stream",
        }
    }

    fn line(v: &Value) -> Vec<u8> {
        let mut out = serde_json::to_vec(v).expect("serialises");
        out.push(b'\n');
        out
    }

    fn sse(event: Option<&str>, v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(e) = event {
            out.extend_from_slice(format!("event: {e}\n").as_bytes());
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(v).expect("serialises"));
        out.extend_from_slice(b"\n\n");
        out
    }

    fn openai_chunk(&self, delta: Value, finish: Value) -> Value {
        match self.kind {
            Kind::OpenAiChat => json!({
                "id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1_767_225_600, "model": self.model,
                "system_fingerprint": "fp_ollama", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
            }),
            _ => json!({
                "id": "cmpl-7", "object": "text_completion", "created": 1_767_225_600, "model": self.model,
                "system_fingerprint": "fp_ollama",
                "choices": [{ "text": delta["content"].as_str().unwrap_or(""), "index": 0, "finish_reason": finish }]
            }),
        }
    }

    /// Written with the head: nothing for NDJSON, the opening events for Anthropic.
    fn start(&self) -> Vec<u8> {
        match self.kind {
            Kind::Anthropic => {
                let mut out = Self::sse(
                    Some("message_start"),
                    &json!({ "type": "message_start", "message": {
                        "id": "msg_7", "type": "message", "role": "assistant", "model": self.model, "content": [],
                        "stop_reason": null, "stop_sequence": null, "usage": { "input_tokens": 5, "output_tokens": 0 }
                    }}),
                );
                out.extend(Self::sse(
                    Some("content_block_start"),
                    &json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
                ));
                out
            }
            Kind::OpenAiChat => {
                Self::sse(None, &self.openai_chunk(json!({ "role": "assistant", "content": "" }), Value::Null))
            }
            _ => Vec::new(),
        }
    }

    fn token(&self, t: &str) -> Vec<u8> {
        match self.kind {
            Kind::Chat => Self::line(&json!({
                "model": self.model, "created_at": CREATED_AT,
                "message": { "role": "assistant", "content": t }, "done": false
            })),
            Kind::Generate => {
                Self::line(&json!({ "model": self.model, "created_at": CREATED_AT, "response": t, "done": false }))
            }
            Kind::OpenAiChat | Kind::OpenAiCompletion => {
                Self::sse(None, &self.openai_chunk(json!({ "role": "assistant", "content": t }), Value::Null))
            }
            Kind::Anthropic => Self::sse(
                Some("content_block_delta"),
                &json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": t } }),
            ),
        }
    }

    fn stats(n: usize) -> Value {
        json!({
            "done_reason": "stop", "total_duration": 1_000_000u64, "load_duration": 1000u64,
            "prompt_eval_count": 5, "prompt_eval_duration": 1000u64, "eval_count": n, "eval_duration": 1_000_000u64
        })
    }

    fn end(&self, n: usize) -> Vec<u8> {
        match self.kind {
            Kind::Chat | Kind::Generate => {
                let mut v = if self.kind == Kind::Chat {
                    json!({ "model": self.model, "created_at": CREATED_AT, "message": { "role": "assistant", "content": "" }, "done": true })
                } else {
                    json!({ "model": self.model, "created_at": CREATED_AT, "response": "", "done": true })
                };
                merge(&mut v, Self::stats(n));
                Self::line(&v)
            }
            Kind::OpenAiChat | Kind::OpenAiCompletion => {
                let mut out =
                    Self::sse(None, &self.openai_chunk(json!({ "role": "assistant", "content": "" }), json!("stop")));
                if self.include_usage {
                    let mut u = self.openai_chunk(json!({}), Value::Null);
                    u["choices"] = json!([]);
                    u["usage"] = json!({ "prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n });
                    out.extend(Self::sse(None, &u));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                out
            }
            Kind::Anthropic => {
                let mut out =
                    Self::sse(Some("content_block_stop"), &json!({ "type": "content_block_stop", "index": 0 }));
                out.extend(Self::sse(
                    Some("message_delta"),
                    &json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                             "usage": { "output_tokens": n } }),
                ));
                out.extend(Self::sse(Some("message_stop"), &json!({ "type": "message_stop" })));
                out
            }
        }
    }

    fn whole(&self, text: &str, n: usize) -> Value {
        match self.kind {
            Kind::Chat => {
                let mut v = json!({ "model": self.model, "created_at": CREATED_AT,
                    "message": { "role": "assistant", "content": text }, "done": true });
                merge(&mut v, Self::stats(n));
                v
            }
            Kind::Generate => {
                let mut v = json!({ "model": self.model, "created_at": CREATED_AT, "response": text, "done": true });
                merge(&mut v, Self::stats(n));
                v
            }
            Kind::OpenAiChat => json!({
                "id": "chatcmpl-7", "object": "chat.completion", "created": 1_767_225_600, "model": self.model,
                "system_fingerprint": "fp_ollama",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n }
            }),
            Kind::OpenAiCompletion => json!({
                "id": "cmpl-7", "object": "text_completion", "created": 1_767_225_600, "model": self.model,
                "system_fingerprint": "fp_ollama",
                "choices": [{ "text": text, "index": 0, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n }
            }),
            Kind::Anthropic => json!({
                "id": "msg_7", "type": "message", "role": "assistant", "model": self.model,
                "content": [{ "type": "text", "text": text }], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": { "input_tokens": 5, "output_tokens": n }
            }),
        }
    }
}

fn merge(v: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, extra) {
        a.extend(b);
    }
}

async fn send_json(conn: &SimConn, status: u16, v: &Value) -> bool {
    send_raw(conn, status, "application/json; charset=utf-8", &serde_json::to_vec(v).expect("serialises")).await
}

async fn send_raw(conn: &SimConn, status: u16, ctype: &str, body: &[u8]) -> bool {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
        wire::reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    wire::write_all(conn, &out).await.is_ok()
}
