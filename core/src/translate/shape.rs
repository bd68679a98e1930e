//! The OpenAI objects herd writes (wire-api.md §6.1–6.2), as ordered `Serialize` structs shared by
//! the stream translators and the aggregators, so a streamed and an aggregated answer are built
//! from the same pieces.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{OpenAiResponseConfig, ReasoningField, ResponseError, SYSTEM_FINGERPRINT};
use crate::router::Usage;

/// `usage`: prompt and completion tokens and their sum.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct UsageOut {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        let (p, c) = (u64::from(u.prompt_tokens), u64::from(u.completion_tokens));
        UsageOut { prompt_tokens: p, completion_tokens: c, total_tokens: p + c }
    }
}

/// One tool call in OpenAI's shape: `arguments` is a JSON string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ToolCallOut {
    pub index: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut,
}

/// The `function` of a [`ToolCallOut`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct FunctionOut {
    pub name: String,
    pub arguments: String,
}

/// Converts a native tool call (`arguments` an object) to OpenAI's shape. A call without an `id`
/// gets one derived from the response id and its index, so streamed and aggregated answers agree
/// and no randomness is needed.
pub(crate) fn tool_call(call: &Value, index: u32, response_id: &str) -> ToolCallOut {
    let id = match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => derived_call_id(response_id, index),
    };
    let function = call.get("function");
    let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    let arguments = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    ToolCallOut { index, id, kind: "function", function: FunctionOut { name, arguments } }
}

/// `call_` and 8 hex digits of SHA-256 over the response id and the call's index.
fn derived_call_id(response_id: &str, index: u32) -> String {
    let digest = Sha256::new().chain_update(response_id.as_bytes()).chain_update(index.to_le_bytes()).finalize();
    let mut id = String::from("call_");
    for b in digest.iter().take(4) {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Thinking text under the configured field name(s).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Reasoning<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<&'a str>,
}

impl<'a> Reasoning<'a> {
    /// `text` under `field`; nothing when `text` is empty.
    pub fn new(field: ReasoningField, text: &'a str) -> Self {
        if text.is_empty() {
            return Reasoning::default();
        }
        let (content, plain) = match field {
            ReasoningField::ReasoningContent => (true, false),
            ReasoningField::Reasoning => (false, true),
            ReasoningField::Both => (true, true),
        };
        Reasoning { reasoning_content: content.then_some(text), reasoning: plain.then_some(text) }
    }
}

/// A chat `delta` (streams) or `message` (non-streaming).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ChatMessageOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(flatten)]
    pub reasoning: Reasoning<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

/// `logprobs` of a choice: `{"content": [...]}` (native entries already have OpenAI's shape).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LogprobsOut<'a> {
    pub content: &'a [Value],
}

impl<'a> LogprobsOut<'a> {
    /// `None` when there are no entries.
    pub fn new(entries: &'a [Value]) -> Option<Self> {
        (!entries.is_empty()).then_some(LogprobsOut { content: entries })
    }
}

/// A chat choice: `delta` in chunks, `message` in a `chat.completion`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ChatChoiceOut<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<ChatMessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<LogprobsOut<'a>>,
    pub finish_reason: Option<&'static str>,
}

/// A legacy completion choice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct TextChoiceOut<'a> {
    pub text: &'a str,
    pub index: u32,
    pub logprobs: Option<LogprobsOut<'a>>,
    pub finish_reason: Option<&'static str>,
}

/// A whole OpenAI object (`chat.completion[.chunk]`, `text_completion`); `C` is the choice type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ObjectOut<'a, C> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: &'static str,
    pub choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageOut>,
}

impl<'a, C> ObjectOut<'a, C> {
    /// An object of type `object` with the response's `id`, `created` and `model` from `config`.
    pub fn new(
        config: &'a OpenAiResponseConfig,
        object: &'static str,
        choices: Vec<C>,
        usage: Option<UsageOut>,
    ) -> Self {
        ObjectOut {
            id: &config.id,
            object,
            created: config.created,
            model: &config.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        }
    }
}

/// The `data:` payload of an error event (wire-api.md §6.1.2): the OpenAI error envelope.
pub(crate) fn error_payload(err: &ResponseError) -> String {
    serde_json::json!({
        "error": {"message": err.to_string(), "type": "api_error", "param": null, "code": err.code()}
    })
    .to_string()
}

/// JSON text of a value we built; our shapes always serialise.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
