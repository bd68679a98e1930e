//! OpenAI request bodies → native ones (wire-api.md §6.1–6.3): `/v1/chat/completions` →
//! `/api/chat`, `/v1/completions` → `/api/generate`, `/v1/embeddings` → `/api/embed`, and legacy
//! `/api/embeddings` → `/api/embed`.
//!
//! Every parameter Ollama can use is kept (ollama-herd dropped all but `temperature` and
//! `max_tokens`, and lost an explicit `temperature: 0.7`): `temperature`, `top_p`, `seed`,
//! `presence_penalty`, `frequency_penalty`, `stop` (string or list), `max_tokens` and
//! `max_completion_tokens` (the smaller) as `options.num_predict`, `response_format` as `format`,
//! `tools` and `tool_choice`, `reasoning_effort` / `reasoning.effort` as `think`, `logprobs` and
//! `top_logprobs`. `stream_options.include_usage` is returned for the response translator.
//!
//! herd extensions a client may send in `extra_body`: `options` (native options, under the
//! OpenAI parameters) and `keep_alive`. herd's own fields (`fallback_models`, `metadata.tags`) are
//! read by [`crate::api::describe`] from the client's body and not copied.

use serde_json::{Map, Value};

use super::messages::convert_messages;
use super::RequestError;
use crate::api::ollama::{self, ChatRequest, EmbedRequest, GenerateRequest};
use crate::api::{json_text, openai, Options, TextInput, Think};

/// What absent `temperature` and `top_p` mean.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SamplingDefaults {
    /// As Ollama's own `/v1`: 1.0 for both (wire-api.md §10 item 24), so answers match a client
    /// talking to Ollama directly.
    #[default]
    OllamaV1,
    /// Leave them unset: the Modelfile's values (then Ollama's built-in ones) apply.
    Modelfile,
}

/// How the client wants embeddings encoded (`encoding_format`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EmbeddingEncoding {
    /// A list of numbers (absent or `"float"`).
    #[default]
    Float,
    /// Base64 of little-endian `f32` (`"base64"`, the OpenAI SDK's default).
    Base64,
}

/// An http(s) image of a chat message, for the adapter to fetch (no IO happens here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteImage {
    /// The URL as the client sent it.
    pub url: String,
    /// Index of the message in the translated body's `messages`.
    pub message: usize,
    /// Index in that message's `images`, where the fetched image goes.
    pub slot: usize,
}

/// A `/v1/chat/completions` body translated to `/api/chat`.
///
/// When [`remote_images`](Self::remote_images) is not empty, the adapter fetches each (or
/// refuses to) and hands the bytes to [`resolve_image`](Self::resolve_image);
/// [`into_body`](Self::into_body) refuses to give a body with an image still missing.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTranslation {
    body: ChatRequest,
    remote_images: Vec<RemoteImage>,
    resolved: Vec<bool>,
    include_usage: bool,
}

impl ChatTranslation {
    /// The native body so far (remote images are empty strings until resolved).
    pub fn body(&self) -> &ChatRequest {
        &self.body
    }

    /// The http(s) images to fetch, in message order.
    pub fn remote_images(&self) -> &[RemoteImage] {
        &self.remote_images
    }

    /// Whether the client asked for the usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// Puts the fetched bytes of remote image `index` in place, base64-encoded.
    ///
    /// # Errors
    /// [`RequestError::NoSuchImage`] for an index not in [`Self::remote_images`].
    pub fn resolve_image(&mut self, index: usize, bytes: &[u8]) -> Result<(), RequestError> {
        let remote = self.remote_images.get(index).ok_or(RequestError::NoSuchImage { index })?;
        let slot = self
            .body
            .messages
            .as_mut()
            .and_then(|m| m.get_mut(remote.message))
            .and_then(|m| m.images.as_mut())
            .and_then(|images| images.get_mut(remote.slot))
            .ok_or(RequestError::NoSuchImage { index })?;
        *slot = super::base64::encode(bytes);
        if let Some(done) = self.resolved.get_mut(index) {
            *done = true;
        }
        Ok(())
    }

    /// The native body to send.
    ///
    /// # Errors
    /// [`RequestError::UnresolvedImage`] while a remote image has not been resolved (the message
    /// is Ollama's own answer to image URLs, right for an adapter that does not fetch).
    pub fn into_body(self) -> Result<ChatRequest, RequestError> {
        match self.resolved.iter().position(|done| !done) {
            Some(index) => Err(RequestError::UnresolvedImage { index }),
            None => Ok(self.body),
        }
    }
}

/// Translates a `/v1/chat/completions` body into an `/api/chat` body. `stream` is written
/// explicitly (absent means `false` on `/v1`, `true` natively).
///
/// Messages: list content becomes one message (text parts joined with `\n`, `data:` images and
/// `input_audio` data in `images`, http(s) images left for the adapter), `developer` becomes
/// `system`, assistant `tool_calls` get their `arguments` parsed into objects, `tool` messages
/// get `tool_name` (from `name` or the earlier call with the same id), and an assistant's
/// `reasoning` / `reasoning_content` becomes `thinking`. `tool_choice: "none"` removes the tools;
/// naming one function keeps only that tool; `tool_choice` itself is forwarded.
///
/// # Errors
/// A [`RequestError`] for a missing model or messages, an empty conversation, a part or image
/// Ollama cannot take, unparsable tool-call arguments, or a parameter of the wrong type or value.
pub fn chat_request(req: openai::ChatRequest, defaults: SamplingDefaults) -> Result<ChatTranslation, RequestError> {
    let openai::ChatRequest {
        model,
        messages,
        stream,
        max_tokens,
        max_completion_tokens,
        tools,
        reasoning_effort,
        reasoning,
        user: _,
        herd: _,
        mut extra,
    } = req;
    let model = model.ok_or(RequestError::MissingField { field: "model" })?;
    let messages = messages.ok_or(RequestError::MissingField { field: "messages" })?;
    if messages.is_empty() {
        return Err(RequestError::EmptyField { field: "messages" });
    }
    let budget = match (max_tokens, max_completion_tokens) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let options = sampling_options(&mut extra, defaults, budget)?;
    let format = response_format(extra.remove("response_format"))?;
    let think = think(reasoning_effort, reasoning.as_ref())?;
    let include_usage = include_usage(extra.remove("stream_options"));
    let tools = choose_tools(tools, extra.get("tool_choice"));
    let converted = convert_messages(messages)?;
    let mut passed = Map::new();
    for key in ["tool_choice", "logprobs", "top_logprobs"] {
        pass(&mut extra, &mut passed, key);
    }
    let body = ChatRequest {
        model: Some(model),
        messages: Some(converted.messages),
        tools,
        stream: Some(stream.unwrap_or(false)),
        format,
        options: Some(options),
        keep_alive: non_null(extra.remove("keep_alive")),
        think,
        herd: Default::default(),
        extra: passed,
    };
    let resolved = vec![false; converted.remote.len()];
    Ok(ChatTranslation { body, remote_images: converted.remote, resolved, include_usage })
}

/// A `/v1/completions` body translated to `/api/generate`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionTranslation {
    /// The native body to send.
    pub body: GenerateRequest,
    /// Whether the client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Translates a legacy `/v1/completions` body into an `/api/generate` body: `prompt` (one string,
/// or a batch of exactly one), `suffix`, the sampling options as in [`chat_request`], and
/// `logprobs: N` as `logprobs: true, top_logprobs: N`. `echo`, `best_of`, `n` and `logit_bias`
/// are dropped, as Ollama ignores them.
///
/// # Errors
/// A [`RequestError`] for a missing model or prompt, a batch of prompts, or a parameter of the
/// wrong type or value.
pub fn completion_request(
    req: openai::CompletionRequest,
    defaults: SamplingDefaults,
) -> Result<CompletionTranslation, RequestError> {
    let openai::CompletionRequest { model, prompt, suffix, max_tokens, stream, user: _, herd: _, mut extra } = req;
    let model = model.ok_or(RequestError::MissingField { field: "model" })?;
    let prompt = match prompt.ok_or(RequestError::MissingField { field: "prompt" })? {
        TextInput::One(p) => p,
        TextInput::Batch(mut batch) if batch.len() == 1 => batch.remove(0),
        TextInput::Batch(batch) => return Err(RequestError::PromptBatch { len: batch.len() }),
    };
    let options = sampling_options(&mut extra, defaults, max_tokens)?;
    let mut passed = Map::new();
    match extra.remove("logprobs") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => {}
            Some(top) => {
                passed.insert("logprobs".into(), Value::Bool(true));
                passed.insert("top_logprobs".into(), top.min(20).into());
            }
            None => return Err(RequestError::WrongType { field: "logprobs", expected: "a non-negative integer" }),
        },
        Some(_) => return Err(RequestError::WrongType { field: "logprobs", expected: "a non-negative integer" }),
    }
    let body = GenerateRequest {
        model: Some(model),
        prompt: Some(prompt),
        suffix,
        stream: Some(stream.unwrap_or(false)),
        options: Some(options),
        keep_alive: non_null(extra.remove("keep_alive")),
        extra: passed,
        ..GenerateRequest::default()
    };
    Ok(CompletionTranslation { body, include_usage: include_usage(extra.remove("stream_options")) })
}

/// A `/v1/embeddings` body translated to `/api/embed`.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingTranslation {
    /// The native body to send.
    pub body: EmbedRequest,
    /// How to encode the answer ([`super::openai_embeddings_response`]).
    pub encoding: EmbeddingEncoding,
}

/// Translates a `/v1/embeddings` body into an `/api/embed` body. A single string becomes a batch
/// of one, so `""` still gets its vector (natively `""` only loads the model); `dimensions` is
/// kept.
///
/// # Errors
/// A [`RequestError`] for a missing model or input, an empty batch, an unknown
/// `encoding_format`, or `dimensions` that is not a positive integer.
pub fn embedding_request(req: openai::EmbeddingRequest) -> Result<EmbeddingTranslation, RequestError> {
    let openai::EmbeddingRequest { model, input, user: _, herd: _, mut extra } = req;
    let model = model.ok_or(RequestError::MissingField { field: "model" })?;
    let input = match input.ok_or(RequestError::MissingField { field: "input" })? {
        TextInput::One(text) => vec![text],
        TextInput::Batch(batch) if batch.is_empty() => return Err(RequestError::EmptyField { field: "input" }),
        TextInput::Batch(batch) => batch,
    };
    let encoding = match non_null(extra.remove("encoding_format")) {
        None => EmbeddingEncoding::Float,
        Some(Value::String(s)) if s == "float" => EmbeddingEncoding::Float,
        Some(Value::String(s)) if s == "base64" => EmbeddingEncoding::Base64,
        Some(other) => return Err(RequestError::InvalidValue { field: "encoding_format", value: json_text(&other) }),
    };
    let mut passed = Map::new();
    if let Some(dimensions) = non_null(extra.remove("dimensions")) {
        if !matches!(dimensions.as_u64(), Some(d) if d > 0) {
            return Err(RequestError::WrongType { field: "dimensions", expected: "a positive integer" });
        }
        passed.insert("dimensions".into(), dimensions);
    }
    let options = extension_options(&mut extra)?;
    let body = EmbedRequest {
        model: Some(model),
        input: Some(TextInput::Batch(input)),
        options: (!options.is_empty()).then_some(Options(options)),
        keep_alive: non_null(extra.remove("keep_alive")),
        herd: Default::default(),
        extra: passed,
    };
    Ok(EmbeddingTranslation { body, encoding })
}

/// Translates a legacy `/api/embeddings` body (`prompt`) into an `/api/embed` body (`input`),
/// keeping everything else; answer with [`super::legacy_embeddings_response`]. An empty or
/// absent prompt stays an empty input, which only loads the model, as natively.
pub fn legacy_embed_request(req: ollama::EmbeddingsRequest) -> EmbedRequest {
    let ollama::EmbeddingsRequest { model, prompt, options, keep_alive, herd, extra } = req;
    EmbedRequest { model, input: Some(TextInput::One(prompt.unwrap_or_default())), options, keep_alive, herd, extra }
}

/// `Some(v)` unless absent or `null`.
fn non_null(v: Option<Value>) -> Option<Value> {
    v.filter(|v| !v.is_null())
}

/// Moves `key` from `extra` to `out` unless absent or `null`.
fn pass(extra: &mut Map<String, Value>, out: &mut Map<String, Value>, key: &str) {
    if let Some(v) = non_null(extra.remove(key)) {
        out.insert(key.into(), v);
    }
}

/// `stream_options.include_usage == true`.
fn include_usage(stream_options: Option<Value>) -> bool {
    stream_options.and_then(|o| o.get("include_usage").and_then(Value::as_bool)).unwrap_or(false)
}

/// herd's `options` extension: native options the client sent in `extra_body`.
fn extension_options(extra: &mut Map<String, Value>) -> Result<Map<String, Value>, RequestError> {
    match non_null(extra.remove("options")) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(RequestError::WrongType { field: "options", expected: "an object" }),
    }
}

/// The native options: the extension's, then every OpenAI sampling parameter over them, then
/// the `defaults` where neither set a value.
fn sampling_options(
    extra: &mut Map<String, Value>,
    defaults: SamplingDefaults,
    budget: Option<u32>,
) -> Result<Options, RequestError> {
    let mut options = extension_options(extra)?;
    for field in ["temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"] {
        match non_null(extra.remove(field)) {
            None => {}
            Some(n @ Value::Number(_)) => {
                options.insert(field.into(), n);
            }
            Some(_) => return Err(RequestError::WrongType { field, expected: "a number" }),
        }
    }
    if defaults == SamplingDefaults::OllamaV1 {
        for field in ["temperature", "top_p"] {
            options.entry(field).or_insert(Value::from(1.0));
        }
    }
    match non_null(extra.remove("stop")) {
        None => {}
        Some(Value::String(s)) => {
            options.insert("stop".into(), Value::Array(vec![Value::String(s)]));
        }
        Some(Value::Array(list)) => {
            if let Some(bad) = list.iter().find(|s| !s.is_string()) {
                return Err(RequestError::InvalidValue { field: "stop", value: json_text(bad) });
            }
            options.insert("stop".into(), Value::Array(list));
        }
        Some(_) => return Err(RequestError::WrongType { field: "stop", expected: "a string or a list of strings" }),
    }
    if let Some(n) = budget {
        options.insert("num_predict".into(), n.into());
    }
    Ok(Options(options))
}

/// `response_format` as the native `format`.
fn response_format(v: Option<Value>) -> Result<Option<Value>, RequestError> {
    let Some(v) = non_null(v) else { return Ok(None) };
    let Value::Object(format) = v else {
        return Err(RequestError::WrongType { field: "response_format", expected: "an object" });
    };
    match format.get("type") {
        Some(Value::String(t)) if t == "text" => Ok(None),
        Some(Value::String(t)) if t == "json_object" => Ok(Some(Value::String("json".into()))),
        Some(Value::String(t)) if t == "json_schema" => match format.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema @ Value::Object(_)) => Ok(Some(schema.clone())),
            _ => Err(RequestError::MissingField { field: "response_format.json_schema.schema" }),
        },
        other => Err(RequestError::InvalidValue {
            field: "response_format.type",
            value: other.map_or_else(|| "null".into(), json_text),
        }),
    }
}

/// `reasoning_effort` (else `reasoning.effort`) as the native `think`, mapped as Ollama maps it.
fn think(effort: Option<String>, reasoning: Option<&Map<String, Value>>) -> Result<Option<Think>, RequestError> {
    let (field, effort) = match effort {
        Some(e) => ("reasoning_effort", e),
        None => match reasoning.and_then(|r| r.get("effort")).and_then(Value::as_str) {
            Some(e) => ("reasoning.effort", e.to_string()),
            None => return Ok(None),
        },
    };
    let level = match effort.as_str() {
        "none" => return Ok(Some(Think::Bool(false))),
        "minimal" => "low",
        "low" | "medium" | "high" | "max" => effort.as_str(),
        "xhigh" | "ultra" => "max",
        _ => return Err(RequestError::InvalidValue { field, value: json_text(&effort) }),
    };
    Ok(Some(Think::Level(level.to_string())))
}

/// The tools left after `tool_choice`: none for `"none"`, only the named function when one is
/// named and defined, else all of them.
fn choose_tools(tools: Option<Vec<Value>>, choice: Option<&Value>) -> Option<Vec<Value>> {
    fn function_name(v: &Value) -> Option<&str> {
        v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)
    }
    match choice {
        Some(Value::String(c)) if c == "none" => None,
        Some(named @ Value::Object(_)) => {
            let tools = tools?;
            let Some(name) = function_name(named) else { return Some(tools) };
            let chosen: Vec<Value> = tools.iter().filter(|t| function_name(t) == Some(name)).cloned().collect();
            Some(if chosen.is_empty() { tools } else { chosen })
        }
        _ => tools,
    }
}
