//! Ollama's native `/api/*` endpoints (wire-api.md §3, §5, §9): chat and generate (also the
//! targets of the OpenAI translation), embeddings, and the model-management endpoints over the
//! fake's disk.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, BytesMut};
use herd_core::api::estimate::TokenTally;
use herd_core::api::ollama::{ChatRequest, GenerateRequest};
use herd_core::api::{ChatTurn, Options, Think};
use herd_core::ids::ModelName;
use herd_core::model::{is_thinking, size_from_name_gb};
use herd_core::translate::NativeEndpoint;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::engine::Timings;
use super::gen::{self, Output, Plan, PlanInput};
use super::models::{self, display, valid_name, DiskModel};
use super::reply::{self, error, go_syntax_error, go_type_error, Resp, Style, JSON, NDJSON};
use super::server::{Guard, Shared};
use super::text::{embedding, rfc3339, seed_of};

/// Weight size of a pulled model whose name says nothing, GB.
const UNKNOWN_PULL_GB: f64 = 4.0;

/// Parses a body as Go's decoder would, with its error wording: 400 `missing request body`, a
/// syntax error, or `json: cannot unmarshal ...` naming the field.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8], request: &str, style: Style) -> Result<T, Box<Resp>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(style, 400, "missing request body")));
    }
    match serde_json::from_slice::<T>(body) {
        Ok(t) => Ok(t),
        Err(e) if e.is_syntax() || e.is_eof() => Err(Box::new(error(style, 400, &go_syntax_error(&e, body)))),
        Err(e) => {
            let message = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => match herd_core::api::decode::<T>(&map) {
                    Err(herd_core::api::ApiError::WrongFieldType { field, .. }) if !field.is_empty() => {
                        go_type_error(request, &field, map.get(&field))
                    }
                    _ => e.to_string(),
                },
                Ok(other) => {
                    format!("json: cannot unmarshal {} into Go value of type api.{request}", json_kind(&other))
                }
                Err(_) => e.to_string(),
            };
            Err(Box::new(error(style, 400, &message)))
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        _ => "null",
    }
}

/// The model named `echo`, or the error answer (`400 invalid model name`, or 404 with
/// `not_found`'s message).
fn model_or(
    shared: &Shared,
    echo: &str,
    style: Style,
    not_found: impl FnOnce() -> String,
) -> Result<DiskModel, Box<Resp>> {
    if !valid_name(echo) {
        return Err(Box::new(error(style, 400, "invalid model name")));
    }
    shared.find_model(echo).ok_or_else(|| Box::new(error(style, 404, &not_found())))
}

/// `think`: the request's setting, else on for thinking models.
fn think(think: Option<&Think>, model: &ModelName, style: Style) -> Result<bool, Box<Resp>> {
    match think {
        None => Ok(is_thinking(model, None)),
        Some(t) => t.enabled().map_err(|_| {
            let v = match t {
                Think::Level(l) => format!("{l:?}"),
                Think::Bool(b) => b.to_string(),
            };
            let m =
                format!("invalid think value: {v} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)");
            Box::new(error(style, 400, &m))
        }),
    }
}

/// `options.num_predict` when positive; a wrongly typed option is Ollama's 500.
fn num_predict(options: Option<&Options>, style: Style) -> Result<Option<u32>, Box<Resp>> {
    let Some(o) = options else { return Ok(None) };
    o.num_ctx().map_err(|e| Box::new(error(style, 500, &e.to_string())))?;
    let n = o.num_predict().map_err(|e| Box::new(error(style, 500, &e.to_string())))?;
    Ok(n.filter(|&n| n > 0).map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Whether `keep_alive` is zero (`0`, `0.0`, `"0"`, `"0s"`).
fn keep_alive_zero(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => matches!(s.as_str(), "0" | "0s" | "0m" | "0h"),
        _ => false,
    }
}

/// 400 `"<model>" does not support <what>` for an embedding-only model.
fn refuse_embedding_model(m: &DiskModel, echo: &str, what: &str, style: Style) -> Option<Resp> {
    (models::capabilities(&m.name) == ["embedding"])
        .then(|| error(style, 400, &format!("{echo:?} does not support {what}")))
}

/// `POST /api/chat`.
pub(crate) async fn chat(shared: &Arc<Shared>, body: &[u8], guard: Guard) -> Resp {
    match parse::<ChatRequest>(body, "ChatRequest", Style::Ollama) {
        Ok(req) => run_chat(shared, req, Output::NativeChat, guard).await,
        Err(r) => *r,
    }
}

/// Runs a native chat request, answering in `out` (native, or OpenAI after translation).
pub(crate) async fn run_chat(shared: &Arc<Shared>, req: ChatRequest, out: Output, guard: Guard) -> Resp {
    let style = out.style();
    let echo = req.model.clone().unwrap_or_default();
    if echo.trim().is_empty() {
        return error(style, 400, "model is required");
    }
    let m = match model_or(shared, &echo, style, || format!("model '{echo}' not found")) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if let Some(r) = refuse_embedding_model(&m, &echo, "chat", style) {
        return r;
    }
    let messages = req.messages.as_deref().unwrap_or(&[]);
    if messages.is_empty() {
        return load(shared, &m, &echo, NativeEndpoint::Chat, keep_alive_zero(req.keep_alive.as_ref()), guard).await;
    }
    let (think, num_predict) =
        match (think(req.think.as_ref(), &m.name, style), num_predict(req.options.as_ref(), style)) {
            (Ok(t), Ok(n)) => (t, n),
            (Err(r), _) | (_, Err(r)) => return *r,
        };
    let mut tally = TokenTally::default();
    let mut seed_text = String::new();
    for msg in messages {
        msg.tally(&mut tally);
        seed_text.push_str(msg.content.as_deref().unwrap_or(""));
    }
    let tools = req.tools.as_deref().unwrap_or(&[]);
    tools.iter().for_each(|t| {
        tally.json(t);
    });
    let last_role = messages.last().and_then(|m| m.role.as_deref()).unwrap_or("user");
    let input = PlanInput {
        seed: seed_of(&seed_text),
        think,
        call: if last_role.eq_ignore_ascii_case("tool") { None } else { tools.first() },
        num_predict,
        default_tokens: shared.default_tokens(),
        format: req.format.as_ref(),
    };
    let (pieces, done_reason) = gen::pieces(&input);
    let stream = req.stream.unwrap_or(out == Output::NativeChat);
    let plan = Plan { echo, model: m.name, weights_gb: m.size_gb, pieces, prompt_tokens: tally.tokens(), done_reason };
    gen::execute(shared, plan, out, stream, guard).await
}

/// `POST /api/generate`.
pub(crate) async fn generate(shared: &Arc<Shared>, body: &[u8], guard: Guard) -> Resp {
    match parse::<GenerateRequest>(body, "GenerateRequest", Style::Ollama) {
        Ok(req) => run_generate(shared, req, Output::NativeGenerate, guard).await,
        Err(r) => *r,
    }
}

/// Runs a native generate request, answering in `out`.
pub(crate) async fn run_generate(shared: &Arc<Shared>, req: GenerateRequest, out: Output, guard: Guard) -> Resp {
    let style = out.style();
    let echo = req.model.clone().unwrap_or_default();
    if echo.trim().is_empty() {
        return error(style, 404, "model '' not found");
    }
    let m = match model_or(shared, &echo, style, || format!("model '{echo}' not found")) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if let Some(r) = refuse_embedding_model(&m, &echo, "generate", style) {
        return r;
    }
    let prompt = req.prompt.as_deref().unwrap_or("");
    if prompt.is_empty() && out == Output::NativeGenerate {
        let unload = keep_alive_zero(req.keep_alive.as_ref());
        return load(shared, &m, &echo, NativeEndpoint::Generate, unload, guard).await;
    }
    let has = |k: &str| req.extra.get(k).is_some_and(|v| !v.is_null());
    if req.raw == Some(true) && (req.system.is_some() || has("template") || has("context")) {
        return error(style, 400, "raw mode does not support template, system, or context");
    }
    let (think, num_predict) =
        match (think(req.think.as_ref(), &m.name, style), num_predict(req.options.as_ref(), style)) {
            (Ok(t), Ok(n)) => (t, n),
            (Err(r), _) | (_, Err(r)) => return *r,
        };
    let mut tally = TokenTally::default();
    tally.message().text(prompt).text(req.suffix.as_deref().unwrap_or(""));
    if let Some(system) = &req.system {
        tally.message().text(system);
    }
    tally.images(req.images.as_ref().map_or(0, Vec::len));
    let input = PlanInput {
        seed: seed_of(prompt),
        think,
        call: None,
        num_predict,
        default_tokens: shared.default_tokens(),
        format: req.format.as_ref(),
    };
    let (pieces, done_reason) = gen::pieces(&input);
    let stream = req.stream.unwrap_or(out == Output::NativeGenerate);
    let plan = Plan { echo, model: m.name, weights_gb: m.size_gb, pieces, prompt_tokens: tally.tokens(), done_reason };
    gen::execute(shared, plan, out, stream, guard).await
}

/// A load (or, with `unload`, an unload) request: one JSON object even when streaming.
async fn load(
    shared: &Arc<Shared>,
    m: &DiskModel,
    echo: &str,
    ep: NativeEndpoint,
    unload: bool,
    mut guard: Guard,
) -> Resp {
    let reason = if unload {
        shared.engine.unload(m.name.clone());
        "unload"
    } else {
        if let Err(r) = gen::run_embed(shared, &m.name, m.size_gb, 0, Style::Ollama, echo, false).await {
            return *r;
        }
        "load"
    };
    guard.complete();
    let mut o = json!({"model": echo, "created_at": rfc3339(SystemTime::now()), "done": true, "done_reason": reason});
    match ep {
        NativeEndpoint::Chat => o["message"] = json!({"role": "assistant", "content": ""}),
        NativeEndpoint::Generate => o["response"] = json!(""),
    }
    reply::json_value(200, &o)
}

/// Embeds `inputs` with model `echo`: the vectors and the job's timeline. An empty batch only
/// loads the model.
///
/// # Errors
/// The error answer in `style` (404 `model "x" not found, try pulling it first`, faults, ...).
pub(crate) async fn embed_vectors(
    shared: &Arc<Shared>,
    echo: &str,
    inputs: &[String],
    dims: Option<usize>,
    style: Style,
) -> Result<(Vec<Vec<f32>>, Timings), Box<Resp>> {
    if echo.trim().is_empty() {
        return Err(Box::new(error(style, 400, "model is required")));
    }
    let m = model_or(shared, echo, style, || format!("model \"{echo}\" not found, try pulling it first"))?;
    let mut tally = TokenTally::default();
    inputs.iter().for_each(|t| {
        tally.text(t);
    });
    let tokens = if inputs.is_empty() { 0 } else { tally.tokens() };
    let t = gen::run_embed(shared, &m.name, m.size_gb, tokens, style, echo, !inputs.is_empty()).await?;
    Ok((inputs.iter().map(|text| embedding(text, dims)).collect(), t))
}

/// Reads `/api/embed`'s `input`: a string (`""` is no input) or a list of strings.
fn embed_inputs(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Some(Vec::new()),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        Some(_) => None,
    }
}

/// Writes a float list as JSON.
fn write_floats(out: &mut BytesMut, v: impl Iterator<Item = f64>) {
    out.put_u8(b'[');
    for (i, x) in v.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        let _ = write!(out, "{x}");
    }
    out.put_u8(b']');
}

/// `POST /api/embed`.
pub(crate) async fn embed(shared: &Arc<Shared>, body: &[u8], mut guard: Guard) -> Resp {
    let req: Map<String, Value> = match parse(body, "EmbedRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let echo = req.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(inputs) = embed_inputs(req.get("input")) else {
        return error(Style::Ollama, 400, "invalid input type");
    };
    let dims = req.get("dimensions").and_then(Value::as_u64).map(|d| d as usize);
    let (vectors, t) = match embed_vectors(shared, &echo, &inputs, dims, Style::Ollama).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    guard.complete();
    let mut out = BytesMut::with_capacity(64 + vectors.len() * EMBED_BYTES);
    out.put_slice(b"{\"model\":");
    reply::write_json_str(&mut out, &echo);
    out.put_slice(b",\"embeddings\":[");
    for (i, v) in vectors.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_floats(&mut out, v.iter().map(|x| f64::from(*x)));
    }
    let _ = write!(
        out,
        "],\"total_duration\":{},\"load_duration\":{},\"prompt_eval_count\":{}}}",
        t.total.as_nanos(),
        t.load.as_nanos(),
        t.prompt_tokens
    );
    reply::bytes(200, JSON, out.freeze())
}

/// About how many bytes one 768-float vector takes as JSON.
const EMBED_BYTES: usize = 768 * 12;

/// `POST /api/embeddings` (legacy): one unnormalised float64 vector.
pub(crate) async fn embeddings(shared: &Arc<Shared>, body: &[u8], mut guard: Guard) -> Resp {
    let req: Map<String, Value> = match parse(body, "EmbeddingRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let echo = req.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or("");
    let inputs: Vec<String> = if prompt.is_empty() { Vec::new() } else { vec![prompt.to_string()] };
    let (vectors, _) = match embed_vectors(shared, &echo, &inputs, None, Style::Ollama).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    guard.complete();
    let mut out = BytesMut::with_capacity(32 + EMBED_BYTES);
    out.put_slice(b"{\"embedding\":");
    // Not normalised, as the legacy endpoint's vectors are not.
    write_floats(&mut out, vectors.first().into_iter().flatten().map(|x| f64::from(*x) * 7.5));
    out.put_u8(b'}');
    reply::bytes(200, JSON, out.freeze())
}

/// `GET /api/tags`.
pub(crate) fn tags(shared: &Shared) -> Resp {
    let models: Vec<Value> = shared.registry().newest_first().iter().map(models::tags_entry).collect();
    reply::json_value(200, &json!({ "models": models }))
}

/// `GET /api/ps`: the node's resident models (all disk models in fixed mode).
pub(crate) async fn ps(shared: &Shared) -> Resp {
    let (hb, _) = shared.engine.snapshot().await;
    let expires = rfc3339(SystemTime::now() + Duration::from_secs(300));
    let registry = shared.registry();
    let models: Vec<Value> = hb
        .ollama
        .models_loaded
        .iter()
        .map(|lm| {
            let disk = registry.find(lm.name.as_str()).cloned().unwrap_or_else(|| DiskModel {
                name: lm.name.clone(),
                size_gb: lm.size_gb,
                digest: super::text::digest(lm.name.as_str()),
                modified: SystemTime::now(),
            });
            let name = display(&lm.name);
            json!({
                "name": name, "model": name,
                "size": (lm.size_gb * models::GB) as u64,
                "digest": disk.digest,
                "details": models::details(&disk),
                "expires_at": expires,
                "size_vram": (lm.size_vram_gb.unwrap_or(0.0) * models::GB) as u64,
                "context_length": lm.context_length,
            })
        })
        .collect();
    reply::json_value(200, &json!({ "models": models }))
}

/// The `model` (or legacy `name`) field of a management body.
fn name_field(req: &Map<String, Value>) -> Option<String> {
    ["model", "name"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `POST /api/show`.
pub(crate) fn show(shared: &Shared, body: &[u8]) -> Resp {
    let req: Map<String, Value> = match parse(body, "ShowRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(name) = name_field(&req) else { return error(Style::Ollama, 400, "model is required") };
    match shared.find_model(&name) {
        Some(m) => reply::json_value(200, &models::show(&m, shared.context_length())),
        None => error(Style::Ollama, 404, &format!("model '{}' not found", display(&ModelName::new(&name)))),
    }
}

/// Progress lines (NDJSON), or only the last one when `stream` is false.
fn progress(req: &Map<String, Value>, lines: &[Value]) -> Resp {
    if req.get("stream").and_then(Value::as_bool) == Some(false) {
        return reply::json_value(200, lines.last().unwrap_or(&json!({"status": "success"})));
    }
    let mut out = BytesMut::with_capacity(lines.len() * 128).writer();
    for l in lines {
        let _ = serde_json::to_writer(&mut out, l);
        out.get_mut().put_u8(b'\n');
    }
    reply::bytes(200, NDJSON, out.into_inner().freeze())
}

/// `POST /api/pull`: any valid name succeeds and lands on disk.
pub(crate) fn pull(shared: &Shared, body: &[u8]) -> Resp {
    let req: Map<String, Value> = match parse(body, "PullRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(name) = name_field(&req) else { return error(Style::Ollama, 400, "model is required") };
    if !valid_name(&name) {
        return error(Style::Ollama, 400, "invalid model name");
    }
    let model = ModelName::new(&name);
    let gb = size_from_name_gb(&model).unwrap_or(UNKNOWN_PULL_GB);
    let d = super::text::digest(model.as_str());
    let total = (gb * models::GB) as u64;
    let layer = format!("pulling {}", &d[..12]);
    let lines = [
        json!({"status": "pulling manifest"}),
        json!({"status": layer, "digest": format!("sha256:{d}"), "total": total}),
        json!({"status": layer, "digest": format!("sha256:{d}"), "total": total, "completed": total}),
        json!({"status": "verifying sha256 digest"}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    shared.update_disk(|r| r.add(model, gb, SystemTime::now()));
    progress(&req, &lines)
}

/// `POST /api/push`: minimal success.
pub(crate) fn push(shared: &Shared, body: &[u8]) -> Resp {
    let req: Map<String, Value> = match parse(body, "PushRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(name) = name_field(&req) else { return error(Style::Ollama, 400, "model is required") };
    let Some(m) = shared.find_model(&name) else {
        return error(Style::Ollama, 404, &format!("model '{name}' not found"));
    };
    let total = m.size_bytes();
    let lines = [
        json!({"status": "retrieving manifest"}),
        json!({"status": format!("pushing {}", &m.digest[..12]), "digest": format!("sha256:{}", m.digest),
               "total": total, "completed": total}),
        json!({"status": "pushing manifest"}),
        json!({"status": "success"}),
    ];
    progress(&req, &lines)
}

/// `POST /api/create`: from an existing model (or files), minimal success.
pub(crate) fn create(shared: &Shared, body: &[u8]) -> Resp {
    let req: Map<String, Value> = match parse(body, "CreateRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(name) = name_field(&req) else { return error(Style::Ollama, 400, "model is required") };
    if !valid_name(&name) {
        return error(Style::Ollama, 400, "invalid model name");
    }
    let from = req.get("from").and_then(Value::as_str);
    if from.is_none() && !req.get("files").is_some_and(Value::is_object) {
        return error(Style::Ollama, 400, "neither 'from' or 'files' was specified");
    }
    let gb = match from.map(|f| (f, shared.find_model(f))) {
        Some((_, Some(m))) => m.size_gb,
        Some((f, None)) => size_from_name_gb(&ModelName::new(f)).unwrap_or(UNKNOWN_PULL_GB),
        None => UNKNOWN_PULL_GB,
    };
    let model = ModelName::new(&name);
    let d = super::text::digest(model.as_str());
    let lines = [
        json!({"status": format!("using existing layer sha256:{d}")}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    shared.update_disk(|r| r.add(model, gb, SystemTime::now()));
    progress(&req, &lines)
}

/// `POST /api/copy`: 200 with an empty body.
pub(crate) fn copy(shared: &Shared, body: &[u8]) -> Resp {
    let req: Map<String, Value> = match parse(body, "CopyRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let field = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (source, destination) = (field("source"), field("destination"));
    if !valid_name(&source) {
        return error(Style::Ollama, 400, &format!("source {source:?} is invalid"));
    }
    if !valid_name(&destination) {
        return error(Style::Ollama, 400, &format!("destination {destination:?} is invalid"));
    }
    let Some(m) = shared.find_model(&source) else {
        return error(Style::Ollama, 404, &format!("model {source:?} not found"));
    };
    shared.update_disk(|r| r.add(ModelName::new(&destination), m.size_gb, SystemTime::now()));
    reply::empty_ok()
}

/// `DELETE /api/delete`: 200 with an empty body.
pub(crate) fn delete(shared: &Shared, body: &[u8]) -> Resp {
    let req: Map<String, Value> = match parse(body, "DeleteRequest", Style::Ollama) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let name = name_field(&req).unwrap_or_default();
    if !valid_name(&name) {
        return error(Style::Ollama, 400, &format!("name {name:?} is invalid"));
    }
    let mut found = false;
    shared.update_disk(|r| found = r.remove(&name));
    if found {
        reply::empty_ok()
    } else {
        error(Style::Ollama, 404, &format!("model '{name}' not found"))
    }
}

/// `GET /api/version`.
pub(crate) fn version(shared: &Shared) -> Resp {
    reply::json_value(200, &json!({ "version": shared.spec.ollama_version }))
}

/// `HEAD|POST /api/blobs/:digest`.
pub(crate) fn blob(shared: &Shared, post: bool, digest: &str) -> Resp {
    let hex = digest.strip_prefix("sha256:").or_else(|| digest.strip_prefix("sha256-"));
    if !hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
        return error(Style::Ollama, 400, "invalid digest format");
    }
    let key = digest.replace('-', ":").to_ascii_lowercase();
    let mut blobs = shared.blobs.lock().unwrap_or_else(|e| e.into_inner());
    match (post, blobs.contains(&key)) {
        (false, true) | (true, true) => reply::empty_ok(),
        (false, false) => error(Style::Ollama, 404, &format!("blob {digest:?} not found")),
        (true, false) => {
            blobs.insert(key);
            let mut r = reply::empty_ok();
            *r.status_mut() = hyper::StatusCode::CREATED;
            r
        }
    }
}
