//! The OpenAI-compatible `/v1` endpoints (wire-api.md §6), served the way Ollama's middleware
//! serves them: the request is translated to the native one with core's translators, run as a
//! native generation, and the native chunks are translated back (see `gen`).

use std::sync::Arc;

use herd_core::api::openai::{ChatRequest, CompletionRequest, EmbeddingRequest};
use herd_core::api::TextInput;
use herd_core::translate::{chat_request, completion_request, embedding_request, openai_embeddings_response};
use herd_core::translate::{RequestError, SamplingDefaults};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::gen::Output;
use super::models::{display, DiskModel};
use super::native::{embed_vectors, run_chat, run_generate};
use super::reply::{self, error, Resp, Style};
use super::server::{Guard, Shared};
use super::text::unix_secs;

/// Parses an OpenAI body; errors are 400 in the OpenAI envelope.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Resp>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(Style::OpenAi, 400, "missing request body")));
    }
    serde_json::from_slice(body).map_err(|e| Box::new(error(Style::OpenAi, 400, &e.to_string())))
}

fn bad(e: &RequestError) -> Resp {
    error(Style::OpenAi, e.http_status(), &e.to_string())
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(shared: &Arc<Shared>, body: &[u8], guard: Guard) -> Resp {
    let req: ChatRequest = match parse(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let translation = match chat_request(req, SamplingDefaults::OllamaV1) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    let include_usage = translation.include_usage();
    match translation.into_body() {
        Ok(native) => run_chat(shared, native, Output::OpenAiChat { include_usage }, guard).await,
        Err(e) => bad(&e),
    }
}

/// `POST /v1/completions`.
pub(crate) async fn completions(shared: &Arc<Shared>, body: &[u8], guard: Guard) -> Resp {
    let req: CompletionRequest = match parse(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match completion_request(req, SamplingDefaults::OllamaV1) {
        Ok(t) => {
            let out = Output::OpenAiCompletion { include_usage: t.include_usage };
            run_generate(shared, t.body, out, guard).await
        }
        Err(e) => bad(&e),
    }
}

/// `POST /v1/embeddings`: floats, or base64 little-endian `f32` when asked.
pub(crate) async fn embeddings(shared: &Arc<Shared>, body: &[u8], mut guard: Guard) -> Resp {
    let req: EmbeddingRequest = match parse(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let echo = req.model.clone().unwrap_or_default();
    let t = match embedding_request(req) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    let inputs: Vec<String> = t.body.input.as_ref().map(TextInput::texts).unwrap_or_default().to_vec();
    let dims = t.body.extra.get("dimensions").and_then(Value::as_u64).map(|d| d as usize);
    let (vectors, timings) = match embed_vectors(shared, &echo, &inputs, dims, Style::OpenAi).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let native = json!({"model": echo, "embeddings": vectors, "prompt_eval_count": timings.prompt_tokens});
    match openai_embeddings_response(&native, &echo, t.encoding) {
        Ok((v, _)) => {
            guard.complete();
            reply::json_value(200, &v)
        }
        Err(e) => error(Style::OpenAi, 500, &e.to_string()),
    }
}

fn model_object(id: &str, m: &DiskModel) -> Value {
    let name = display(&m.name);
    let owned_by = match name.split_once('/') {
        Some((ns, rest)) if !rest.contains('/') => ns.to_string(),
        _ => "library".to_string(),
    };
    json!({"id": id, "object": "model", "created": unix_secs(m.modified), "owned_by": owned_by})
}

/// `GET /v1/models`.
pub(crate) fn models(shared: &Shared) -> Resp {
    let data: Vec<Value> =
        shared.registry().newest_first().iter().map(|m| model_object(&display(&m.name), m)).collect();
    reply::json_value(200, &json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`: the id echoes the path.
pub(crate) fn model(shared: &Shared, id: &str) -> Resp {
    match shared.find_model(id) {
        Some(m) => reply::json_value(200, &model_object(id, &m)),
        None => {
            let shown = display(&herd_core::ids::ModelName::new(id));
            error(Style::OpenAi, 404, &format!("model '{shown}' not found"))
        }
    }
}
