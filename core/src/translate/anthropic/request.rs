//! Anthropic `/v1/messages` bodies → native `/api/chat` ones (wire-api.md §7, herd-router.md
//! §11.3 step 4), for a node whose Ollama does not serve `/v1/messages` itself.
//!
//! - `system` (a string or text blocks, joined with `\n`) becomes the first message, with Claude
//!   Code's per-request `cch=<hex>;` fingerprint made constant so the node's prompt cache holds;
//! - text blocks are joined with `\n`; base64 `image` blocks go to `images` (URL sources are
//!   refused, as Ollama refuses them); `tool_use` blocks become `tool_calls` (with their `id`);
//!   each `tool_result` becomes its own `tool` message (its text, its images, `tool_call_id`
//!   and the tool's name), before the rest of its turn; `thinking` blocks become `thinking`;
//!   other blocks (`redacted_thinking`, `document`, ...) are dropped;
//! - `max_tokens` → `options.num_predict`, `temperature`, `top_p`, `top_k` → options,
//!   `stop_sequences` → `options.stop`;
//! - client tools (`type` absent or `custom`) → function tools (`input_schema` → `parameters`);
//!   server tools (`web_search_*`, `bash_*`, ...) have no schema and are dropped;
//!   `tool_choice: none` removes the tools, `tool` keeps the named one;
//! - `thinking` / `output_config.effort` → `think`, only for a model that thinks: a native
//!   `think: true` to any other model is a 400, where `/v1/messages` silently drops it.

use serde_json::{json, Map, Value};

use crate::api::anthropic::{stable_system_text, Block, Message as AnthropicMessage, MessagesRequest};
use crate::api::ollama::{ChatRequest, Message};
use crate::api::{json_text, Content, Options, Think};
use crate::translate::RequestError;

/// Translates a `/v1/messages` body into an `/api/chat` body. `model_thinks` says whether the
/// model it goes to is a thinking model (the client's `thinking` is dropped otherwise).
///
/// # Errors
/// A [`RequestError`] for a missing model or messages, an empty conversation, a message without
/// content, an image that is not base64, a `tool_use` whose `input` is not an object, or a
/// sampling parameter of the wrong type.
pub fn messages_request(req: MessagesRequest, model_thinks: bool) -> Result<ChatRequest, RequestError> {
    let think = if model_thinks { native_think(&req) } else { None };
    let MessagesRequest {
        model,
        max_tokens,
        messages,
        system,
        stream,
        tools,
        thinking: _,
        output_config: _,
        herd: _,
        mut extra,
    } = req;
    let model = model.ok_or(RequestError::MissingField { field: "model" })?;
    let messages = messages.ok_or(RequestError::MissingField { field: "messages" })?;
    if messages.is_empty() {
        return Err(RequestError::EmptyField { field: "messages" });
    }
    let options = options(&mut extra, max_tokens)?;
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(text) = system.as_ref().map(system_text).filter(|t| !t.is_empty()) {
        out.push(Message { role: Some("system".into()), content: Some(text), ..Message::default() });
    }
    // (tool_use id, tool name) of every call so far, for the results that answer them.
    let mut calls: Vec<(String, String)> = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        convert(i, m, &mut out, &mut calls)?;
    }
    Ok(ChatRequest {
        model: Some(model),
        messages: Some(out),
        tools: native_tools(tools, extra.get("tool_choice")),
        stream: Some(stream.unwrap_or(false)),
        format: None,
        options: Some(Options(options)),
        keep_alive: None,
        think,
        herd: Default::default(),
        extra: Map::new(),
    })
}

/// The client's thinking as the native `think`: `thinking.type` `enabled` / `adaptive` → `true`,
/// `disabled` → `false`; else `output_config.effort` as a level (`max` and `xhigh` → `high`).
fn native_think(req: &MessagesRequest) -> Option<Think> {
    if req.thinking.as_ref().and_then(|t| t.kind.as_deref()).is_some() {
        return req.think().map(Think::Bool);
    }
    let effort = req.output_config.as_ref().and_then(|o| o.get("effort")).and_then(Value::as_str)?;
    let level = match effort {
        "low" | "medium" | "high" => effort,
        "max" | "xhigh" => "high",
        _ => return None,
    };
    Some(Think::Level(level.to_string()))
}

/// The native options: `num_predict` from `max_tokens`, the sampling parameters, `stop`.
fn options(extra: &mut Map<String, Value>, max_tokens: Option<u32>) -> Result<Map<String, Value>, RequestError> {
    let mut options = Map::new();
    for (field, native) in [("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")] {
        match extra.remove(field) {
            None | Some(Value::Null) => {}
            Some(n @ Value::Number(_)) => {
                options.insert(native.into(), n);
            }
            Some(_) => return Err(RequestError::WrongType { field, expected: "a number" }),
        }
    }
    match extra.remove("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            if let Some(bad) = list.iter().find(|s| !s.is_string()) {
                return Err(RequestError::InvalidValue { field: "stop_sequences", value: json_text(bad) });
            }
            if !list.is_empty() {
                options.insert("stop".into(), Value::Array(list));
            }
        }
        Some(_) => return Err(RequestError::WrongType { field: "stop_sequences", expected: "a list of strings" }),
    }
    if let Some(n) = max_tokens {
        options.insert("num_predict".into(), n.into());
    }
    Ok(options)
}

/// The system prompt's text blocks, joined with `\n`, fingerprint made constant.
fn system_text(system: &Content<Block>) -> String {
    match system {
        Content::Text(text) => stable_system_text(text).into_owned(),
        Content::Parts(blocks) => {
            blocks.iter().filter_map(Block::text).map(stable_system_text).collect::<Vec<_>>().join("\n")
        }
    }
}

/// Appends message `i` as native messages: its tool results first (one `tool` message each),
/// then the rest of the turn as one message.
fn convert(
    i: usize,
    m: AnthropicMessage,
    out: &mut Vec<Message>,
    calls: &mut Vec<(String, String)>,
) -> Result<(), RequestError> {
    let role = m.role;
    let blocks = match m.content {
        None => return Err(RequestError::NullContent { message: i }),
        Some(Content::Text(text)) => {
            out.push(Message { role, content: Some(text), ..Message::default() });
            return Ok(());
        }
        Some(Content::Parts(blocks)) => blocks,
    };
    let mut turn = Message { role, ..Message::default() };
    let (mut texts, mut images, mut tool_calls, mut thinking) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut results = 0usize;
    for (j, block) in blocks.into_iter().enumerate() {
        match block {
            Block::Text(b) => texts.push(b.text),
            Block::Image(b) => {
                images.push(base64_image(&b.source).ok_or(RequestError::InvalidImage { message: i, part: j })?)
            }
            Block::ToolUse(b) => {
                let input = match b.input {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(v @ Value::Object(_)) => v,
                    Some(_) => return Err(RequestError::InvalidToolCall { message: i, call: j }),
                };
                let name = b.name.unwrap_or_default();
                let mut call = Map::new();
                if let Some(id) = b.id.filter(|id| !id.is_empty()) {
                    calls.push((id.clone(), name.clone()));
                    call.insert("id".into(), Value::String(id));
                }
                let index = tool_calls.len();
                call.insert("function".into(), json!({"index": index, "name": name, "arguments": input}));
                tool_calls.push(Value::Object(call));
            }
            Block::ToolResult(b) => {
                let (text, result_images) = match b.content {
                    None => (String::new(), Vec::new()),
                    Some(Content::Text(t)) => (t, Vec::new()),
                    Some(Content::Parts(parts)) => {
                        let texts: Vec<&str> = parts.iter().filter_map(Block::text).collect();
                        let images = parts
                            .iter()
                            .filter_map(|p| match p {
                                Block::Image(img) => base64_image(&img.source),
                                _ => None,
                            })
                            .collect();
                        (texts.join("\n"), images)
                    }
                };
                let id = b.tool_use_id.filter(|id| !id.is_empty());
                let tool_name =
                    id.as_ref().and_then(|id| calls.iter().rev().find(|(c, _)| c == id)).map(|c| c.1.clone());
                out.push(Message {
                    role: Some("tool".into()),
                    content: Some(text),
                    images: (!result_images.is_empty()).then_some(result_images),
                    tool_name,
                    tool_call_id: id,
                    ..Message::default()
                });
                results += 1;
            }
            Block::Thinking(b) => thinking.extend(b.thinking.filter(|t| !t.is_empty())),
            Block::Other(_) => {}
        }
    }
    let has_rest = !texts.is_empty() || !images.is_empty() || !tool_calls.is_empty() || !thinking.is_empty();
    if has_rest || results == 0 {
        turn.content = Some(texts.join("\n"));
        turn.images = (!images.is_empty()).then_some(images);
        turn.tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
        turn.thinking = (!thinking.is_empty()).then(|| thinking.join("\n"));
        out.push(turn);
    }
    Ok(())
}

/// The data of a `{"type":"base64","media_type":...,"data":...}` source.
fn base64_image(source: &Value) -> Option<String> {
    if source.get("type").and_then(Value::as_str) != Some("base64") {
        return None;
    }
    source.get("data").and_then(Value::as_str).map(str::to_string)
}

/// Client tools as native function tools, after `tool_choice`.
fn native_tools(tools: Option<Vec<Value>>, choice: Option<&Value>) -> Option<Vec<Value>> {
    let choice_type = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
    if choice_type == Some("none") {
        return None;
    }
    let mut out: Vec<Value> = tools.unwrap_or_default().iter().filter_map(function_tool).collect();
    if choice_type == Some("tool") {
        let name = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
        let chosen: Vec<Value> =
            out.iter().filter(|t| t["function"]["name"].as_str() == name && name.is_some()).cloned().collect();
        if !chosen.is_empty() {
            out = chosen;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// One client tool as `{"type":"function","function":{"name","description","parameters"}}`;
/// `None` for a server tool or one without a name.
fn function_tool(tool: &Value) -> Option<Value> {
    let kind = tool.get("type").and_then(Value::as_str);
    if !matches!(kind, None | Some("custom")) {
        return None;
    }
    let name = tool.get("name").and_then(Value::as_str).filter(|n| !n.is_empty())?;
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.to_string()));
    if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
        function.insert("description".into(), d.clone());
    }
    let schema = match tool.get("input_schema") {
        Some(s @ Value::Object(_)) => s.clone(),
        _ => json!({"type": "object", "properties": {}}),
    };
    function.insert("parameters".into(), schema);
    Some(json!({"type": "function", "function": Value::Object(function)}))
}
