//! The OpenAI Responses API request body, `POST /v1/responses` (wire-api.md §6.5,
//! herd-router.md §11.4), the one Codex speaks, and its conversion to an OpenAI chat request,
//! which [`crate::translate::chat_request`] then turns into a native one.
//!
//! herd serves Responses statelessly, as Ollama does: `previous_response_id`, `conversation`
//! and `background` are refused with 400, and the client sends the whole conversation as `input`.
//!
//! Input items become chat messages:
//! - `instructions` → a leading `system` message;
//! - `message` items (and bare `{role, content}` ones): `input_text`, `output_text` and
//!   `refusal` parts become text, `input_image` (a `data:` URI or an http(s) URL) an image,
//!   `input_audio` audio; `input_file` and images by `file_id` are refused (nothing stores files);
//! - `function_call` → an assistant tool call (consecutive calls, and calls right after an
//!   assistant message, join that message), `function_call_output` → a `tool` message;
//! - `custom_tool_call` / `custom_tool_call_output`: the same, a custom tool's free text carried
//!   as a function's one string argument `input` (a custom tool becomes such a function);
//! - `reasoning` → the thinking of the next assistant message;
//! - `item_reference` is refused (stateless), any other type too, by name.
//!
//! Function tools become chat tools; custom tools become functions with the one `input`
//! argument, mapped back to `custom_tool_call` items on the way out; hosted tools (`web_search`,
//! `file_search`, ...) run on OpenAI's servers, not on a node, and are left out.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::estimate::TokenTally;
use super::openai::{ChatMessage, ChatRequest};
use super::spec::Draft;
use super::wire::{Content, HerdFields};
use super::{json_text, ApiError, DescribeContext, Surface, WireRequest};
use crate::request::RequestSpec;

/// `POST /v1/responses`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A string (one user message) or a list of input items; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<ResponsesInput>,
    /// The system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Stream named SSE events; absent means `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Output budget (→ `num_predict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Tool definitions, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required`, or `{"type":"function"|"custom","name":...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// `{"effort": ..., "summary": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Map<String, Value>>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Map<String, Value>>,
    /// End-user id; tags the request `user:<value>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// OpenAI's `metadata` (herd reads `metadata.tags`) and herd's own fields.
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field (`temperature`, `top_p`, `store`, `parallel_tool_calls`, ...), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `input` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponsesInput {
    /// One user message.
    Text(String),
    /// Input items, each checked by [`item_kind`].
    Items(Vec<Value>),
}

/// What an input item is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// A message (`type: "message"`, or a bare `{role, content}`).
    Message,
    /// A function call the model made.
    FunctionCall,
    /// A function call's result.
    FunctionCallOutput,
    /// A custom (free-text) tool call the model made.
    CustomToolCall,
    /// A custom tool call's result.
    CustomToolCallOutput,
    /// The model's reasoning.
    Reasoning,
}

/// Fields that need state herd does not keep, and why each is refused.
const STATEFUL: [(&str, &str); 3] = [
    ("previous_response_id", "herd's /v1/responses is stateless: send the whole conversation as input"),
    ("conversation", "herd's /v1/responses is stateless: send the whole conversation as input"),
    ("background", "herd answers every response in the foreground"),
];

fn bad_item(index: usize, detail: impl Into<String>) -> ApiError {
    ApiError::InvalidItem { index, detail: detail.into() }
}

fn str_field<'a>(item: &'a Value, index: usize, key: &str) -> Result<&'a str, ApiError> {
    item.get(key).and_then(Value::as_str).ok_or_else(|| bad_item(index, format!("{key} must be a string")))
}

/// Classifies and checks input item `index`: its type, and the fields that type needs.
///
/// # Errors
/// [`ApiError::InvalidItem`] for an item that is not an object, of an unknown type, or missing
/// a field; [`ApiError::Unsupported`] for an `item_reference`.
pub fn item_kind(index: usize, item: &Value) -> Result<ItemKind, ApiError> {
    let obj = item.as_object().ok_or_else(|| bad_item(index, "an input item must be an object"))?;
    let kind = match obj.get("type") {
        None | Some(Value::Null) if obj.contains_key("role") => "message",
        Some(Value::String(t)) => t.as_str(),
        None | Some(Value::Null) => return Err(bad_item(index, "an input item needs a type or a role")),
        Some(other) => return Err(bad_item(index, format!("type must be a string, not {}", json_text(other)))),
    };
    match kind {
        "message" => {
            let role = str_field(item, index, "role")?;
            if !matches!(role, "user" | "assistant" | "system" | "developer") {
                return Err(bad_item(index, format!("unknown role {role:?}")));
            }
            check_parts(index, "content", obj.get("content"))?;
            Ok(ItemKind::Message)
        }
        "function_call" | "custom_tool_call" => {
            str_field(item, index, "call_id")?;
            str_field(item, index, "name")?;
            if kind == "custom_tool_call" {
                str_field(item, index, "input")?;
                return Ok(ItemKind::CustomToolCall);
            }
            match obj.get("arguments") {
                None | Some(Value::String(_) | Value::Object(_)) => Ok(ItemKind::FunctionCall),
                Some(_) => Err(bad_item(index, "arguments must be a JSON string")),
            }
        }
        "function_call_output" | "custom_tool_call_output" => {
            str_field(item, index, "call_id")?;
            check_parts(index, "output", obj.get("output"))?;
            Ok(if kind == "function_call_output" {
                ItemKind::FunctionCallOutput
            } else {
                ItemKind::CustomToolCallOutput
            })
        }
        "reasoning" => Ok(ItemKind::Reasoning),
        "item_reference" => Err(ApiError::Unsupported {
            field: "item_reference",
            reason: "herd's /v1/responses is stateless: send the items themselves",
        }),
        other => Err(bad_item(index, format!("unsupported input item type {other:?}"))),
    }
}

/// Checks item `index`'s `field` (`content` or `output`): a string or a list of parts herd takes.
fn check_parts(index: usize, field: &str, value: Option<&Value>) -> Result<(), ApiError> {
    match value {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => parts.iter().enumerate().try_for_each(|(j, part)| check_part(index, j, part)),
        _ => Err(bad_item(index, format!("{field} must be a string or a list of parts"))),
    }
}

/// Checks content part `j` of input item `index`.
fn check_part(index: usize, j: usize, part: &Value) -> Result<(), ApiError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let need = |key: &str| {
        part.get(key)
            .and_then(Value::as_str)
            .map(|_| ())
            .ok_or_else(|| bad_item(index, format!("content[{j}] of type {kind:?} needs {key} as a string")))
    };
    match kind {
        "input_text" | "output_text" | "text" => need("text"),
        "refusal" => need("refusal"),
        "input_image" => {
            if part.get("file_id").is_some_and(|f| !f.is_null()) && part.get("image_url").is_none() {
                return Err(ApiError::Unsupported {
                    field: "input_image.file_id",
                    reason: "herd stores no files: send the image as a data URI or a URL",
                });
            }
            need("image_url")
        }
        "input_audio" => match part.get("input_audio") {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(bad_item(index, format!("content[{j}]: input_audio must be an object"))),
        },
        "input_file" => Err(ApiError::Unsupported {
            field: "input_file",
            reason: "herd stores no files and reads no documents: send the text",
        }),
        other => Err(bad_item(index, format!("content[{j}] has unsupported type {other:?}"))),
    }
}

/// The text of a reasoning item: its `content` texts, else its `summary` texts.
fn reasoning_text(item: &Value) -> String {
    let texts = |key: &str| -> Vec<&str> {
        item.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect())
            .unwrap_or_default()
    };
    let content = texts("content");
    if content.is_empty() {
        texts("summary").join("\n")
    } else {
        content.join("\n")
    }
}

/// Adds a part list (or string) to a tally; returns the number of images.
fn tally_parts(content: Option<&Value>, t: &mut TokenTally) -> usize {
    match content {
        Some(Value::String(s)) => {
            t.text(s);
            0
        }
        Some(Value::Array(parts)) => {
            let mut images = 0;
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_image") => images += 1,
                    Some("refusal") => {
                        t.text(p.get("refusal").and_then(Value::as_str).unwrap_or(""));
                    }
                    _ => {
                        t.text(p.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                }
            }
            t.images(images);
            images
        }
        _ => 0,
    }
}

impl ResponsesRequest {
    /// The field herd refuses because it needs state, if the body sets one.
    fn stateful_field(&self) -> Option<ApiError> {
        STATEFUL.iter().find_map(|&(field, reason)| match self.extra.get(field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(_) => Some(ApiError::Unsupported { field, reason }),
        })
    }

    /// The client's think setting from `reasoning.effort`.
    ///
    /// # Errors
    /// [`ApiError::InvalidValue`] for an effort Ollama refuses.
    pub fn think(&self) -> Result<Option<bool>, ApiError> {
        let effort = self.reasoning.as_ref().and_then(|r| r.get("effort")).and_then(Value::as_str);
        effort.map(|e| super::openai::effort_think("reasoning.effort", e)).transpose()
    }

    /// The request as an OpenAI chat request (the module doc says how).
    ///
    /// # Errors
    /// As [`WireRequest::describe`]: a missing model or input, an item or part herd cannot take.
    pub fn into_chat(self) -> Result<ChatRequest, ApiError> {
        if let Some(e) = self.stateful_field() {
            return Err(e);
        }
        let ResponsesRequest {
            model,
            input,
            instructions,
            stream,
            max_output_tokens,
            tools,
            tool_choice,
            reasoning,
            text,
            user,
            herd,
            mut extra,
        } = self;
        let input = input.ok_or(ApiError::MissingField { field: "input" })?;
        let mut messages = Vec::new();
        if let Some(text) = instructions.filter(|t| !t.is_empty()) {
            messages.push(chat_message("system", Some(Content::Text(text))));
        }
        match input {
            ResponsesInput::Text(text) => messages.push(chat_message("user", Some(Content::Text(text)))),
            ResponsesInput::Items(items) => {
                if items.is_empty() {
                    return Err(ApiError::EmptyField { field: "input" });
                }
                convert_items(items, &mut messages)?;
            }
        }
        let mut chat_extra = Map::new();
        for key in ["temperature", "top_p", "keep_alive", "options", "top_logprobs", "seed"] {
            if let Some(v) = extra.remove(key) {
                chat_extra.insert(key.into(), v);
            }
        }
        if let Some(choice) = tool_choice.and_then(chat_tool_choice) {
            chat_extra.insert("tool_choice".into(), choice);
        }
        if let Some(format) = text.as_ref().and_then(|t| t.get("format")).and_then(response_format) {
            chat_extra.insert("response_format".into(), format);
        }
        let tools: Vec<Value> = tools.iter().flatten().filter_map(chat_tool).collect();
        let reasoning = reasoning
            .and_then(|r| r.get("effort").filter(|e| !e.is_null()).cloned())
            .map(|effort| Map::from_iter([("effort".to_string(), effort)]));
        Ok(ChatRequest {
            model,
            messages: Some(messages),
            stream,
            max_tokens: max_output_tokens,
            max_completion_tokens: None,
            tools: (!tools.is_empty()).then_some(tools),
            reasoning_effort: None,
            reasoning,
            user,
            herd,
            extra: chat_extra,
        })
    }
}

fn chat_message(role: &str, content: Option<Content<super::openai::Part>>) -> ChatMessage {
    ChatMessage { role: Some(role.to_string()), content, ..ChatMessage::default() }
}

/// A part list (or string) as chat content; the item was checked by [`item_kind`] first.
fn chat_content(index: usize, content: Value) -> Result<Content<super::openai::Part>, ApiError> {
    let parts = match content {
        Value::String(s) => return Ok(Content::Text(s)),
        Value::Array(parts) => parts,
        _ => return Err(bad_item(index, "content must be a string or a list of parts")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, mut part) in parts.into_iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let chat = match kind.as_str() {
            "refusal" => json!({"type": "text", "text": part["refusal"].take()}),
            "input_image" => {
                let mut image = Map::new();
                image.insert("url".into(), part["image_url"].take());
                if let Some(detail) = part.get_mut("detail").map(Value::take).filter(|d| !d.is_null()) {
                    image.insert("detail".into(), detail);
                }
                json!({"type": "image_url", "image_url": image})
            }
            "input_audio" => json!({"type": "input_audio", "input_audio": part["input_audio"].take()}),
            _ => json!({"type": "text", "text": part["text"].take()}),
        };
        let parsed = serde_json::from_value(chat).map_err(|e| bad_item(index, format!("content[{j}]: {e}")))?;
        out.push(parsed);
    }
    Ok(Content::Parts(out))
}

/// Appends the chat messages of `items`.
fn convert_items(items: Vec<Value>, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    // Reasoning waiting for the assistant turn it belongs to.
    let mut thinking: Option<String> = None;
    // Whether the last message is an assistant turn tool calls may still join.
    let mut open_assistant = false;
    for (i, mut item) in items.into_iter().enumerate() {
        let kind = item_kind(i, &item)?;
        match kind {
            ItemKind::Message => {
                let role = item["role"].as_str().unwrap_or("user").to_string();
                let content = chat_content(i, item["content"].take())?;
                let mut m = chat_message(&role, Some(content));
                open_assistant = role == "assistant";
                if open_assistant {
                    if let Some(t) = thinking.take() {
                        m.extra.insert("reasoning_content".into(), Value::String(t));
                    }
                } else if role == "user" {
                    thinking = None;
                }
                out.push(m);
            }
            ItemKind::FunctionCall | ItemKind::CustomToolCall => {
                let call_id = item["call_id"].take();
                let name = item["name"].take();
                let arguments = if kind == ItemKind::CustomToolCall {
                    Value::String(json!({"input": item["input"].take()}).to_string())
                } else {
                    match item.get_mut("arguments").map(Value::take) {
                        Some(Value::String(s)) if s.trim().is_empty() => Value::String("{}".into()),
                        Some(Value::String(s)) => Value::String(s),
                        Some(obj @ Value::Object(_)) => Value::String(obj.to_string()),
                        _ => Value::String("{}".into()),
                    }
                };
                let call = json!({"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": arguments}});
                let joins = open_assistant && out.last().is_some_and(|m| m.role.as_deref() == Some("assistant"));
                if !joins {
                    out.push(chat_message("assistant", None));
                    open_assistant = true;
                }
                let last = out.last_mut().expect("an assistant message was just ensured");
                if let Some(t) = thinking.take() {
                    last.extra.entry("reasoning_content").or_insert(Value::String(t));
                }
                last.tool_calls.get_or_insert_with(Vec::new).push(call);
            }
            ItemKind::FunctionCallOutput | ItemKind::CustomToolCallOutput => {
                let call_id = item["call_id"].as_str().unwrap_or("").to_string();
                let content = chat_content(i, item["output"].take())?;
                let mut m = chat_message("tool", Some(content));
                m.tool_call_id = Some(call_id);
                out.push(m);
                open_assistant = false;
            }
            ItemKind::Reasoning => {
                let text = reasoning_text(&item);
                if !text.is_empty() {
                    thinking = Some(match thinking.take() {
                        Some(before) => format!("{before}\n{text}"),
                        None => text,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A Responses tool as a chat tool: functions as they are, custom tools as a function of one
/// string `input`; hosted tools (`None`) are left out.
fn chat_tool(tool: &Value) -> Option<Value> {
    let name = tool.get("name").and_then(Value::as_str).filter(|n| !n.is_empty())?;
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.to_string()));
    if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
        function.insert("description".into(), d.clone());
    }
    let parameters = match tool.get("type").and_then(Value::as_str) {
        Some("function") => match tool.get("parameters") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => json!({"type": "object", "properties": {}}),
        },
        Some("custom") => json!({"type": "object", "required": ["input"],
            "properties": {"input": {"type": "string", "description": "the tool's whole input, as free text"}}}),
        _ => return None,
    };
    function.insert("parameters".into(), parameters);
    Some(json!({"type": "function", "function": Value::Object(function)}))
}

/// `tool_choice` as chat writes it.
fn chat_tool_choice(choice: Value) -> Option<Value> {
    match &choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Some(choice),
        Value::Object(o) => match (o.get("type").and_then(Value::as_str), o.get("name").and_then(Value::as_str)) {
            (Some("function" | "custom"), Some(name)) => Some(json!({"type": "function", "function": {"name": name}})),
            (Some("allowed_tools"), _) => o.get("mode").filter(|m| m.is_string()).cloned(),
            _ => None,
        },
        _ => None,
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_object") => Some(json!({"type": "json_object"})),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => None,
    }
}

impl WireRequest for ResponsesRequest {
    const SURFACE: Surface = Surface::OpenAiResponses;

    /// `input` must be present and, as a list, non-empty, every item of a kind herd can carry;
    /// state-bound fields are refused. Counts instructions, every item (text, images, call
    /// arguments and outputs, reasoning) and the tool definitions; instructions and tools form
    /// the prefix key.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), self.stream, &self.herd, self.user.as_deref())?;
        if let Some(e) = self.stateful_field() {
            return Err(e);
        }
        let input = self.input.as_ref().ok_or(ApiError::MissingField { field: "input" })?;
        if let Some(text) = self.instructions.as_deref().filter(|t| !t.is_empty()) {
            d.tally.message();
            d.tally.text(text);
            d.prefix.system = vec![Cow::Borrowed(text)];
        }
        match input {
            ResponsesInput::Text(text) => {
                d.tally.message();
                d.tally.text(text);
            }
            ResponsesInput::Items(items) => {
                if items.is_empty() {
                    return Err(ApiError::EmptyField { field: "input" });
                }
                for (i, item) in items.iter().enumerate() {
                    match item_kind(i, item)? {
                        ItemKind::Message => {
                            d.tally.message();
                            d.has_images |= tally_parts(item.get("content"), &mut d.tally) > 0;
                        }
                        ItemKind::FunctionCall | ItemKind::CustomToolCall => {
                            d.tally.text(item["name"].as_str().unwrap_or(""));
                            d.tally.json(item.get("arguments").or(item.get("input")).unwrap_or(&Value::Null));
                        }
                        ItemKind::FunctionCallOutput | ItemKind::CustomToolCallOutput => {
                            d.tally.message();
                            d.has_images |= tally_parts(item.get("output"), &mut d.tally) > 0;
                        }
                        ItemKind::Reasoning => {
                            d.tally.text(&reasoning_text(item));
                        }
                    }
                }
            }
        }
        d.tools(self.tools.as_deref());
        d.max_output_tokens = self.max_output_tokens;
        d.think = self.think()?;
        d.finish(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{chat_request, SamplingDefaults};

    fn request(v: Value) -> ResponsesRequest {
        serde_json::from_value(v).unwrap()
    }

    /// The native body a Responses request becomes.
    fn native(v: Value) -> Value {
        let chat = request(v).into_chat().unwrap();
        serde_json::to_value(chat_request(chat, SamplingDefaults::OllamaV1).unwrap().into_body().unwrap()).unwrap()
    }

    #[test]
    fn a_codex_turn_becomes_a_native_conversation() {
        let body = json!({
            "model": "qwen3-coder", "instructions": "You are Codex.", "stream": true,
            "max_output_tokens": 300, "temperature": 0.2, "reasoning": {"effort": "low", "summary": "auto"},
            "tools": [
                {"type": "function", "name": "shell", "description": "run", "parameters": {"type": "object",
                    "properties": {"command": {"type": "array"}}}},
                {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar"}},
                {"type": "web_search"}
            ],
            "tool_choice": "auto", "store": false, "parallel_tool_calls": false,
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "list files"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "use ls"}]},
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
                {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
                {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a.txt"}]},
                {"role": "user", "content": "thanks"}
            ]
        });
        let n = native(body.clone());
        let m = n["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "system", "user", "assistant", "tool", "tool", "assistant", "user"]);
        assert_eq!(m[0]["content"], "You are Codex.");
        assert_eq!((m[2]["content"].as_str(), m[2]["images"][0].as_str()), (Some("list files"), Some("iVBORw0KGgo=")));
        // Both calls join one assistant turn, after its reasoning.
        assert_eq!(m[3]["thinking"], "use ls");
        assert_eq!(m[3]["tool_calls"][0]["function"]["arguments"], json!({"command": ["ls"]}));
        assert_eq!(m[3]["tool_calls"][1]["function"]["arguments"], json!({"input": "*** Begin Patch"}));
        assert_eq!((m[4]["tool_name"].as_str(), m[4]["content"].as_str()), (Some("shell"), Some("a.txt")));
        assert_eq!(m[5]["tool_name"], "apply_patch");
        // Tools: the function, the custom tool as a function of one string, no hosted tool.
        let tools = n["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[1]["function"]["parameters"]["properties"]["input"]["type"], "string");
        assert_eq!(
            (n["options"]["num_predict"].as_u64(), n["options"]["temperature"].as_f64()),
            (Some(300), Some(0.2))
        );
        assert_eq!(n["think"], "low");
        assert_eq!(n["stream"], true);
        let tools = request(body).tools.unwrap_or_default();
        assert_eq!(crate::translate::responses::custom_tool_names(&tools), ["apply_patch"]);
    }

    #[test]
    fn describe_counts_and_keys_like_chat() {
        let r = request(json!({"model": "m", "instructions": "sys", "input": "hello there",
            "max_output_tokens": 7, "reasoning": {"effort": "none"}, "metadata": {"tags": ["team:a"]}}));
        let spec = r.describe(&DescribeContext::default()).unwrap();
        assert_eq!(spec.kind, crate::request::RequestKind::Chat);
        assert_eq!((spec.max_output_tokens, spec.think, spec.stream), (Some(7), Some(false), false));
        assert!(spec.estimated_prompt_tokens > 0);
        assert!(spec.tags.iter().any(|t| t == "team:a"));
        let with_image = request(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/cat.png"}]}]}));
        assert!(with_image.describe(&DescribeContext::default()).unwrap().has_images);
    }

    #[test]
    fn refuses_what_needs_state_or_files_with_a_clear_400() {
        let refused = |v: Value| {
            let r = request(v);
            let e = r.describe(&DescribeContext::default()).unwrap_err();
            assert_eq!(e.http_status(), 400);
            assert_eq!(r.into_chat().unwrap_err(), e, "describe and the translation agree");
            e.to_string()
        };
        assert!(refused(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}))
            .starts_with("previous_response_id is not supported"));
        assert!(refused(json!({"model": "m", "input": "x", "conversation": "conv_1"})).contains("stateless"));
        assert!(refused(json!({"model": "m", "input": "x", "background": true})).starts_with("background"));
        assert_eq!(refused(json!({"model": "m"})), "input is required");
        assert_eq!(refused(json!({"model": "m", "input": []})), "input must not be empty");
        assert!(refused(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}))
            .starts_with("item_reference is not supported"));
        assert_eq!(
            refused(json!({"model": "m", "input": [{"type": "bogus"}]})),
            "input[0]: unsupported input item type \"bogus\""
        );
        assert!(refused(
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]})
        )
        .starts_with("input_file is not supported"));
        assert!(refused(json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]})).contains("call_id"));
        assert!(refused(json!({"model": "m", "input": [{"role": "robot", "content": "x"}]})).contains("robot"));
        // Background false and a null previous id are what SDKs send by default.
        let ok = request(json!({"model": "m", "input": "x", "background": false, "previous_response_id": null}));
        assert!(ok.describe(&DescribeContext::default()).is_ok());
    }

    #[test]
    fn formats_and_tool_choices_map_to_chat() {
        let n = native(json!({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "f"},
            "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "g"}],
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}}}));
        // Naming one function keeps only that tool.
        assert_eq!(n["tools"].as_array().unwrap().len(), 1);
        assert_eq!(n["format"], json!({"type": "object"}));
        let n = native(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}));
        assert_eq!(n["format"], "json");
        let n = native(
            json!({"model": "m", "input": "x", "tool_choice": "none", "tools": [{"type": "function", "name": "f"}]}),
        );
        assert!(n.get("tools").is_none());
    }
}
