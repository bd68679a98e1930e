//! Native `/api/chat` answers → OpenAI Responses API answers (`POST /v1/responses`, wire-api.md
//! §6.5, herd-router.md §7.5): named SSE events as the answer streams ([`ResponsesStream`]), or
//! one `response` object ([`ResponsesAggregator`]). The request side is
//! [`crate::api::responses::ResponsesRequest::into_chat`] then [`super::chat_request`].
//!
//! A stream's events, each with its `type` and a `sequence_number` counting from 0:
//!
//! ```text
//! response.created, response.in_progress          on the first native chunk (status in_progress)
//! output_item.added {reasoning}                   ┐ thinking text: one reasoning item, its
//!   reasoning_summary_part.added, …text.delta*    │ summary streamed; closed (…text.done,
//!   …text.done, …part.done, output_item.done      ┘ …part.done, output_item.done) by a change
//! output_item.added {message}                     ┐ answer text: one message item with one
//!   content_part.added, output_text.delta*        │ output_text part
//!   output_text.done, content_part.done,          │
//!   output_item.done                              ┘
//! output_item.added {function_call}               ┐ each native tool call whole: its arguments
//!   function_call_arguments.delta, ….done         │ in one delta (custom tools: a
//!   output_item.done                              ┘ custom_tool_call, custom_tool_call_input.*)
//! response.completed                              on `done: true` (response.incomplete with
//!                                                 incomplete_details when the budget ran out)
//! ```
//!
//! or, on an `{"error":...}` line, a malformed line, a failure or an end before `done`, one
//! `response.failed` (status `failed`, `error.code` `server_error`) and nothing after it.

#[cfg(any(test, feature = "testing"))]
pub(crate) mod check;
mod gather;
mod stream;

pub use gather::ResponsesAggregator;
pub use stream::ResponsesStream;

use serde_json::{json, Map, Value};

use super::ResponseError;
use crate::router::Usage;

/// What every event of one Responses answer shares, chosen by the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponsesConfig {
    /// The response id (`resp_…`).
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model named in the answer (the client's own string).
    pub model: String,
    /// The request's fields a response object repeats ([`echo_fields`]).
    pub echo: Map<String, Value>,
    /// The custom tools' names: their calls go out as `custom_tool_call` items.
    pub custom_tools: Vec<String>,
}

impl ResponsesConfig {
    /// A config with OpenAI's defaults for every echoed field and no custom tools.
    pub fn new(id: impl Into<String>, created_at: u64, model: impl Into<String>) -> Self {
        Self::for_request(id, created_at, model, |_| None)
    }

    /// The config of an answer to a request whose top-level fields `field` gives, as sent: the
    /// fields it echoes ([`echo_fields`]) and its custom tools, `tools` read once.
    pub fn for_request(
        id: impl Into<String>,
        created_at: u64,
        model: impl Into<String>,
        field: impl Fn(&str) -> Option<Value>,
    ) -> Self {
        let echo = echo_fields(field);
        let custom_tools = custom_tool_names(echo["tools"].as_array().into_iter().flatten());
        ResponsesConfig { id: id.into(), created_at, model: model.into(), echo, custom_tools }
    }
}

/// The request fields a response object repeats, from `field` (a top-level field of the
/// request, as sent), each with OpenAI's default when absent: `instructions`,
/// `max_output_tokens`, `metadata`, `parallel_tool_calls`, `reasoning`, `temperature`, `text`,
/// `tool_choice`, `tools`, `top_p`, `user`; `store` is `false` (herd keeps no responses).
pub fn echo_fields(field: impl Fn(&str) -> Option<Value>) -> Map<String, Value> {
    let defaults = [
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("metadata", json!({})),
        ("parallel_tool_calls", json!(true)),
        ("reasoning", json!({"effort": null, "summary": null})),
        ("temperature", json!(1.0)),
        ("text", json!({"format": {"type": "text"}})),
        ("tool_choice", json!("auto")),
        ("tools", json!([])),
        ("top_p", json!(1.0)),
        ("user", Value::Null),
    ];
    let mut echo = Map::new();
    for (key, default) in defaults {
        echo.insert(key.into(), field(key).filter(|v| !v.is_null()).unwrap_or(default));
    }
    echo.insert("previous_response_id".into(), Value::Null);
    echo.insert("store".into(), json!(false));
    echo.insert("truncation".into(), json!("disabled"));
    echo
}

/// The names of the custom (free-text) tools among a request's `tools`, as sent: their calls go
/// back as `custom_tool_call` items.
pub fn custom_tool_names<'a>(tools: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    tools
        .into_iter()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("custom"))
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// One named server-sent event for a Responses client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponsesEvent {
    /// The event name, the same as its data's `type` (`response.created`, ...).
    pub name: &'static str,
    /// The `data:` payload, JSON text.
    pub data: String,
}

impl ResponsesEvent {
    /// Whether this event ends the stream (`response.completed`, `.incomplete` or `.failed`).
    pub fn is_terminal(&self) -> bool {
        matches!(self.name, "response.completed" | "response.incomplete" | "response.failed")
    }

    /// Appends the wire frame, `event: <name>\ndata: <payload>\n\n`, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::translate::named::encode_frame(self.name, &self.data, out);
    }
}

/// How a response ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    /// The model stopped by itself or called tools.
    Completed,
    /// The output budget or the context ran out (native `done_reason: "length"`).
    Incomplete,
}

impl ResponseStatus {
    /// From a native `done_reason`.
    pub fn from_native(done_reason: Option<&str>) -> ResponseStatus {
        match done_reason {
            Some("length") => ResponseStatus::Incomplete,
            _ => ResponseStatus::Completed,
        }
    }

    /// The `status` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Completed => "completed",
            ResponseStatus::Incomplete => "incomplete",
        }
    }
}

/// The part of the response id after `resp_`, for its items' ids.
fn id_suffix(id: &str) -> &str {
    id.strip_prefix("resp_").unwrap_or(id)
}

/// The id of output item `index` of kind `prefix` (`msg`, `rs`, `fc`, `ctc`).
pub(crate) fn item_id(config: &ResponsesConfig, prefix: &str, index: usize) -> String {
    format!("{prefix}_{}_{index}", id_suffix(&config.id))
}

/// A message item with one `output_text` part.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [output_text(text)]})
}

/// An `output_text` content part.
pub(crate) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A reasoning item whose summary is the thinking text.
pub(crate) fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
}

/// A native tool call as a `function_call` item (or `custom_tool_call`, for a custom tool: the
/// `input` argument as its free text), `status` completed. The call id is the native one, or
/// `call_` and 24 hex digits derived from the response id and the call's index (streamed and
/// gathered answers agree, no randomness). Arguments are written as a JSON string.
pub(crate) fn call_item(config: &ResponsesConfig, call: &Value, call_index: u32, output_index: usize) -> Value {
    let call_id = match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => crate::translate::named::derived_call_id("call_", &config.id, call_index),
    };
    let function = call.get("function");
    let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
    let arguments = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if config.custom_tools.iter().any(|c| c == name) {
        let parsed: Option<Value> = serde_json::from_str(&arguments).ok();
        let input = match parsed.as_ref().and_then(|a| a.get("input")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => arguments,
        };
        return json!({"id": item_id(config, "ctc", output_index), "type": "custom_tool_call",
            "status": "completed", "call_id": call_id, "name": name, "input": input});
    }
    json!({"id": item_id(config, "fc", output_index), "type": "function_call", "status": "completed",
        "call_id": call_id, "name": name, "arguments": arguments})
}

/// The `usage` object.
pub(crate) fn usage_value(u: Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u64::from(u.prompt_tokens) + u64::from(u.completion_tokens)})
}

/// The whole `response` object.
pub(crate) fn response_object(
    config: &ResponsesConfig,
    status: &str,
    output: Vec<Value>,
    usage: Option<Usage>,
    error: Option<&ResponseError>,
) -> Value {
    let mut r = Map::new();
    r.insert("id".into(), Value::String(config.id.clone()));
    r.insert("object".into(), json!("response"));
    r.insert("created_at".into(), json!(config.created_at));
    r.insert("status".into(), json!(status));
    r.insert("error".into(), error.map_or(Value::Null, |e| json!({"code": "server_error", "message": e.to_string()})));
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    r.insert("incomplete_details".into(), incomplete.unwrap_or(Value::Null));
    r.insert("model".into(), Value::String(config.model.clone()));
    r.insert("output".into(), Value::Array(output));
    for (k, v) in &config.echo {
        r.insert(k.clone(), v.clone());
    }
    r.insert("usage".into(), usage.map_or(Value::Null, usage_value));
    Value::Object(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ResponsesConfig {
        let mut c = ResponsesConfig::new("resp_9", 1_746_093_600, "qwen3");
        c.custom_tools = vec!["apply_patch".into()];
        c
    }

    fn run(body: &[u8]) -> (ResponsesStream, Vec<(String, Value)>) {
        let mut s = ResponsesStream::new(config());
        s.handle_bytes(body);
        s.handle_end();
        let events = std::iter::from_fn(|| s.poll_event())
            .map(|e| (e.name.to_string(), serde_json::from_str(&e.data).unwrap()))
            .collect();
        (s, events)
    }

    const THINK_TEXT_CALLS: &[u8] = b"{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hm\"},\"done\":false}
{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}
{\"message\":{\"role\":\"assistant\",\"content\":\" there\"},\"done\":false}
{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"shell\",\"arguments\":{\"command\":[\"ls\"]}}},{\"function\":{\"name\":\"apply_patch\",\"arguments\":{\"input\":\"*** Begin\"}}}]},\"done\":false}
{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":12,\"eval_count\":5}
";

    #[test]
    fn a_stream_of_reasoning_text_and_calls() {
        let (s, events) = run(THINK_TEXT_CALLS);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(
                (data["type"].as_str(), data["sequence_number"].as_u64()),
                (Some(name.as_str()), Some(i as u64))
            );
        }
        assert_eq!(events[0].1["response"]["status"], "in_progress");
        assert_eq!(events[12].1["text"], "Hi there");
        let done = &events[23].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["usage"]["total_tokens"], 17);
        let output = done["output"].as_array().unwrap();
        assert_eq!(output.len(), 4);
        assert_eq!(
            output[0],
            json!({"id": "rs_9_0", "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "hm"}]})
        );
        assert_eq!(output[1]["content"][0]["text"], "Hi there");
        assert_eq!(
            (output[2]["type"].as_str(), output[2]["arguments"].as_str()),
            (Some("function_call"), Some("{\"command\":[\"ls\"]}"))
        );
        assert!(output[2]["call_id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(
            output[3],
            json!({"id": "ctc_9_3", "type": "custom_tool_call", "status": "completed",
            "call_id": output[3]["call_id"], "name": "apply_patch", "input": "*** Begin"})
        );
        assert_eq!(s.usage().map(|u| (u.prompt_tokens, u.completion_tokens)), Some((12, 5)));
        // The aggregate says the same.
        let mut agg = ResponsesAggregator::new(config());
        agg.handle_bytes(THINK_TEXT_CALLS);
        let (whole, _) = agg.finish().unwrap();
        assert_eq!(whole["output"], done["output"]);
        assert_eq!(whole["object"], "response");
    }

    #[test]
    fn a_spent_budget_is_incomplete_and_a_cut_stream_fails() {
        let (s, events) = run(b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"message\":{\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"eval_count\":1}\n");
        let (name, last) = events.last().unwrap();
        assert_eq!((name.as_str(), last["response"]["status"].as_str()), ("response.incomplete", Some("incomplete")));
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(s.status(), Some(ResponseStatus::Incomplete));

        let (s, events) = run(b"{\"message\":{\"content\":\"par\"},\"done\":false}\n");
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["code"], "server_error");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "par");
        assert!(s.error().is_some() && s.usage().is_none());
        assert_eq!(events.iter().filter(|(n, _)| n.starts_with("response.completed")).count(), 0);

        let (_, events) = run(b"{\"error\":\"llama runner process has terminated\"}\n");
        assert_eq!(events.len(), 3, "created, in_progress, failed: {events:?}");
        assert_eq!(events[2].1["response"]["error"]["message"], "llama runner process has terminated");
        let mut agg = ResponsesAggregator::new(config());
        agg.handle_bytes(b"{\"message\":{\"content\":\"par\"},\"done\":false}\n");
        assert_eq!(agg.finish().unwrap_err(), ResponseError::Truncated);
    }

    #[test]
    fn echoes_the_request_with_openai_defaults() {
        let request = json!({"instructions": "sys", "tools": [{"type": "custom", "name": "apply_patch"}],
            "temperature": 0.3, "max_output_tokens": null});
        let echo = echo_fields(|k| request.get(k).cloned());
        assert_eq!((echo["instructions"].as_str(), echo["temperature"].as_f64()), (Some("sys"), Some(0.3)));
        assert_eq!((echo["max_output_tokens"].clone(), echo["top_p"].as_f64()), (Value::Null, Some(1.0)));
        assert_eq!((echo["store"].clone(), echo["tool_choice"].clone()), (json!(false), json!("auto")));
        assert_eq!(custom_tool_names(request["tools"].as_array().unwrap()), ["apply_patch"]);
        let config = ResponsesConfig::for_request("resp_1", 1, "m", |k| request.get(k).cloned());
        assert_eq!((config.custom_tools, config.echo), (vec!["apply_patch".to_string()], echo));
    }
}
