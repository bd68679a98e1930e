//! Translation between Anthropic's Messages API and Ollama's native chat, for nodes whose Ollama
//! predates its own `/v1/messages` (herd-router.md §7.4, §11.3; wire-api.md §7): the request
//! ([`messages_request`]), the streamed answer as named SSE events ([`AnthropicStream`]) and the
//! whole answer as one `message` ([`AnthropicAggregator`]). Pure, as the OpenAI translators are:
//! the message id, the model echoed and the input-token estimate come from the caller.
//!
//! A stream's events, in order:
//!
//! ```text
//! message_start                         on the first native chunk (usage: the estimate, 0 out)
//! content_block_start {thinking}        ┐ thinking_delta per chunk with thinking text
//! content_block_start {text}            ┤ text_delta per chunk with text (a change of kind
//! content_block_stop                    ┘ closes the open block, indexes count up from 0)
//! content_block_start {tool_use}        ┐ each native tool call whole: `input: {}`, one
//! content_block_delta {input_json_delta}│ `input_json_delta` with the arguments' JSON, stop
//! content_block_stop                    ┘
//! message_delta {stop_reason, usage}    on `done: true`: tool_use / max_tokens / end_turn,
//! message_stop                          the node's prompt_eval_count and eval_count
//! ```
//!
//! or, on an `{"error":...}` line, a malformed line, a failure or an end before `done`, one
//! `error` event (`api_error`) and nothing after it: never a `message_stop` for a cut answer.

#[cfg(any(test, feature = "testing"))]
pub(crate) mod check;
mod gather;
mod request;
mod stream;

pub use gather::AnthropicAggregator;
pub use request::messages_request;
pub use stream::AnthropicStream;

use serde_json::{json, Map, Value};

use super::ResponseError;

/// What every event of one Anthropic answer shares, chosen by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnthropicResponseConfig {
    /// The message id (`msg_…`).
    pub id: String,
    /// The model named in the answer (the client's own model id: answers echo what was asked).
    pub model: String,
    /// `message_start`'s `usage.input_tokens`: an estimate, as the real count comes at the end.
    pub input_tokens: u32,
}

/// One named server-sent event for an Anthropic client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnthropicEvent {
    /// The event name (`message_start`, `content_block_delta`, ..., `error`).
    pub name: &'static str,
    /// The `data:` payload, JSON text.
    pub data: String,
}

impl AnthropicEvent {
    fn new(name: &'static str, data: &Value) -> Self {
        AnthropicEvent { name, data: data.to_string() }
    }

    /// Whether this event ends the stream (`message_stop` or `error`).
    pub fn is_terminal(&self) -> bool {
        matches!(self.name, "message_stop" | "error")
    }

    /// Appends the wire frame, `event: <name>\ndata: <payload>\n\n`, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::translate::named::encode_frame(self.name, &self.data, out);
    }
}

/// Why an Anthropic message ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model stopped by itself (native `done_reason: "stop"`, or none).
    EndTurn,
    /// `num_predict` or the context ran out (`done_reason: "length"`).
    MaxTokens,
    /// The model called tools.
    ToolUse,
}

impl StopReason {
    /// Anthropic's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ToolUse => "tool_use",
        }
    }

    /// Maps a native `done_reason`: any tool call gives `tool_use` (as Ollama's own converter
    /// does), `length` gives `max_tokens`, anything else `end_turn`.
    pub fn from_native(done_reason: Option<&str>, called_tools: bool) -> StopReason {
        match done_reason {
            _ if called_tools => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::EndTurn,
        }
    }
}

/// A native tool call as a `tool_use` block: its own id, or `toolu_` and 24 hex digits derived
/// from the message id and the call's index (streamed and gathered answers agree, no randomness);
/// `arguments` as the `input` object (a string holding JSON is parsed; anything else that is not
/// an object is kept as `{"_raw": <text>}`, as ollama-herd does).
pub(crate) fn tool_use_block(call: &Value, index: u32, message_id: &str) -> Value {
    let id = match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => crate::translate::named::derived_call_id("toolu_", message_id, index),
    };
    let function = call.get("function");
    let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
    let input = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({ "_raw": s }),
        },
        Some(other) => json!({ "_raw": other.to_string() }),
    };
    json!({"type": "tool_use", "id": id, "name": name, "input": input})
}

/// The `error` event's payload: Anthropic's envelope, `api_error`.
pub(crate) fn error_payload(err: &ResponseError) -> Value {
    crate::api::Protocol::Anthropic.error_value(500, &err.to_string())
}
