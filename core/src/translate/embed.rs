//! `/api/embed` answers → OpenAI `/v1/embeddings` lists (wire-api.md §6.3), floats or base64
//! little-endian `f32` (what the OpenAI SDK asks for by default), and → legacy `/api/embeddings`
//! answers (`{"embedding": [...]}`, §3.4), which ollama-herd forwarded untranslated
//! (herd-router.md §18 item 17).

use serde::Serialize;
use serde_json::{Map, Value};

use super::base64::encode_f32_le;
use super::chunk::saturate;
use super::{EmbeddingEncoding, ResponseError};
use crate::router::Usage;

/// Reads `embeddings` (a list of number lists) and `prompt_eval_count` from an `/api/embed`
/// answer.
fn read(response: &Value) -> Result<(&[Value], u64), ResponseError> {
    let obj = response
        .as_object()
        .ok_or_else(|| ResponseError::Malformed { detail: "an embed response must be a JSON object".into() })?;
    match obj.get("error") {
        None | Some(Value::Null) => {}
        Some(Value::String(message)) => return Err(ResponseError::Upstream { message: message.clone() }),
        Some(other) => return Err(ResponseError::Upstream { message: other.to_string() }),
    }
    let vectors = obj
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| ResponseError::Malformed { detail: "embeddings must be a list".into() })?;
    let numeric = |v: &Value| v.as_array().is_some_and(|xs| xs.iter().all(Value::is_number));
    if !vectors.iter().all(numeric) {
        return Err(ResponseError::Malformed { detail: "each embedding must be a list of numbers".into() });
    }
    Ok((vectors, obj.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0)))
}

#[derive(Serialize)]
struct EmbeddingOut {
    object: &'static str,
    embedding: Value,
    index: usize,
}

#[derive(Serialize)]
struct EmbeddingUsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: &'a str,
    usage: EmbeddingUsageOut,
}

/// Translates an `/api/embed` answer into the OpenAI embeddings list for `model` (echoed as the
/// client sent it). With [`EmbeddingEncoding::Base64`] each vector becomes the base64 of its
/// values as little-endian `f32`; with [`EmbeddingEncoding::Float`] the numbers pass unchanged.
/// Also returns the token counts for the router (no completion tokens).
///
/// # Errors
/// [`ResponseError::Upstream`] for an `{"error": ...}` body, [`ResponseError::Malformed`] when
/// `embeddings` is not a list of number lists.
pub fn openai_embeddings_response(
    response: &Value,
    model: &str,
    encoding: EmbeddingEncoding,
) -> Result<(Value, Usage), ResponseError> {
    let (vectors, prompt_tokens) = read(response)?;
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let values = vector.as_array().map_or(&[][..], Vec::as_slice);
            let embedding = match encoding {
                EmbeddingEncoding::Float => Value::Array(values.to_vec()),
                EmbeddingEncoding::Base64 => {
                    // Ollama's vectors are float32 already; the f64 round trip is exact.
                    let floats: Vec<f32> = values.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect();
                    Value::String(encode_f32_le(&floats))
                }
            };
            EmbeddingOut { object: "embedding", embedding, index }
        })
        .collect();
    let out = ListOut {
        object: "list",
        data,
        model,
        usage: EmbeddingUsageOut { prompt_tokens, total_tokens: prompt_tokens },
    };
    let usage = Usage { prompt_tokens: saturate(prompt_tokens), completion_tokens: 0 };
    Ok((serde_json::to_value(&out).unwrap_or_default(), usage))
}

/// Translates an `/api/embed` answer (to a request made by [`super::legacy_embed_request`]) into
/// the legacy `/api/embeddings` answer: `{"embedding": <the first vector>}`, or `[]` when there is
/// none (an empty prompt only loads the model). Unlike a real legacy answer the vector is
/// L2-normalised: `/api/embed` always normalises.
///
/// # Errors
/// As [`openai_embeddings_response`].
pub fn legacy_embeddings_response(response: &Value) -> Result<Value, ResponseError> {
    let (vectors, _) = read(response)?;
    let mut out = Map::new();
    out.insert("embedding".into(), vectors.first().cloned().unwrap_or_else(|| Value::Array(Vec::new())));
    Ok(Value::Object(out))
}
