//! Anthropic ↔ native: the request a Claude client sends becomes an `/api/chat` body, and
//! Ollama's NDJSON becomes the named events and the `message` object the Anthropic SDK reads
//! (wire-api.md §7).

use serde_json::{json, Value};

use super::ndjson;
use crate::api::anthropic::MessagesRequest;
use crate::api::Think;
use crate::router::Usage;
use crate::translate::{
    messages_request, AnthropicAggregator, AnthropicEvent, AnthropicResponseConfig, AnthropicStream, RequestError,
    ResponseError, StopReason,
};

fn config() -> AnthropicResponseConfig {
    AnthropicResponseConfig { id: "msg_417".into(), model: "claude-sonnet-4-5".into(), input_tokens: 21 }
}

fn req(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

/// The events of a whole stream fed as `body` in pieces of `piece` bytes.
fn events(body: &[u8], piece: usize) -> (Vec<AnthropicEvent>, AnthropicStream) {
    let mut s = AnthropicStream::new(config());
    let mut out = Vec::new();
    for p in body.chunks(piece.max(1)) {
        s.handle_bytes(p);
        out.extend(std::iter::from_fn(|| s.poll_event()));
    }
    s.handle_end();
    out.extend(std::iter::from_fn(|| s.poll_event()));
    (out, s)
}

fn names(events: &[AnthropicEvent]) -> Vec<&str> {
    events.iter().map(|e| e.name).collect()
}

fn data(e: &AnthropicEvent) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// What Claude Code sends, as a native chat: system blocks joined (fingerprint constant), a tool
/// call and its result linked by id and name, thinking kept, options mapped, tools converted.
#[test]
fn a_claude_code_turn_becomes_a_native_chat() {
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cch=9f3a1b;"},
                   {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "use ls", "signature": "sig"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a.txt"}]},
                {"type": "text", "text": "and now?"}]}],
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {}}},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        "temperature": 0.2, "top_k": 40, "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"}
    });
    let native = messages_request(req(body), false).unwrap();
    let v = serde_json::to_value(&native).unwrap();
    assert_eq!(v["model"], "claude-sonnet-4-5");
    let m = v["messages"].as_array().unwrap();
    assert_eq!(m.len(), 5, "{v:#}");
    assert_eq!(m[0], json!({"role": "system", "content": "x-anthropic-billing-header: cch=0;\nYou are Claude Code."}));
    assert_eq!(m[1], json!({"role": "user", "content": "list the files"}));
    assert_eq!(m[2]["thinking"], "use ls");
    assert_eq!(m[2]["content"], "Listing.");
    assert_eq!(
        m[2]["tool_calls"],
        json!([{"id": "toolu_1", "function": {"index": 0, "name": "Bash", "arguments": {"command": "ls"}}}])
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "content": "a.txt", "tool_call_id": "toolu_1", "tool_name": "Bash"}),
        "a result comes before the rest of its turn"
    );
    assert_eq!(m[4], json!({"role": "user", "content": "and now?"}));
    assert_eq!(v["options"], json!({"temperature": 0.2, "top_k": 40, "stop": ["END"], "num_predict": 32000}));
    assert_eq!(
        v["tools"],
        json!([{"type": "function", "function": {"name": "Bash", "description": "run",
            "parameters": {"type": "object", "properties": {}}}}]),
        "server tools have no schema for a local model"
    );
    assert!(v.get("metadata").is_none() && v.get("think").is_none(), "{v}");
}

#[test]
fn thinking_goes_only_to_a_model_that_thinks() {
    let on = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 4000}});
    assert_eq!(messages_request(req(on.clone()), true).unwrap().think, Some(Think::Bool(true)));
    assert_eq!(messages_request(req(on), false).unwrap().think, None, "a native think:true would be a 400");
    let off = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "disabled"}});
    assert_eq!(messages_request(req(off), true).unwrap().think, Some(Think::Bool(false)));
    let effort = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
        "output_config": {"effort": "max"}});
    assert_eq!(messages_request(req(effort), true).unwrap().think, Some(Think::Level("high".into())));
}

#[test]
fn images_tool_choice_and_refusals() {
    let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}});
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it"}, image]}],
        "tools": [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b"}],
        "tool_choice": {"type": "tool", "name": "b"}});
    let v = serde_json::to_value(messages_request(req(body.clone()), false).unwrap()).unwrap();
    assert_eq!(v["messages"][0], json!({"role": "user", "content": "what is it", "images": ["iVBO"]}));
    assert_eq!(v["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["tools"][0]["function"]["name"], "b");
    assert_eq!(v["tools"][0]["function"]["parameters"], json!({"type": "object", "properties": {}}));
    let mut none = body.clone();
    none["tool_choice"] = json!({"type": "none"});
    assert!(messages_request(req(none), false).unwrap().tools.is_none());

    let url = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}}]}]});
    assert_eq!(messages_request(req(url), false), Err(RequestError::InvalidImage { message: 0, part: 0 }));
    let bad_input = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]});
    assert_eq!(messages_request(req(bad_input), false), Err(RequestError::InvalidToolCall { message: 0, call: 0 }));
    let hot =
        json!({"model": "m", "max_tokens": 5, "temperature": "hot", "messages": [{"role": "user", "content": "x"}]});
    assert!(matches!(messages_request(req(hot), false), Err(RequestError::WrongType { field: "temperature", .. })));
    let empty = json!({"model": "m", "max_tokens": 5, "messages": []});
    assert_eq!(messages_request(req(empty), false), Err(RequestError::EmptyField { field: "messages" }));
}

// ---------------------------------------------------------------------------------------------
// Streams.

const THINK_TEXT_TOOL: [&str; 5] = [
    r#"{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"Let me"},"done":false}"#,
    r#"{"model":"qwen3","message":{"role":"assistant","content":"","thinking":" see."},"done":false}"#,
    r#"{"model":"qwen3","message":{"role":"assistant","content":"Checking "},"done":false}"#,
    r#"{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    r#"{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":5}"#,
];

/// Thinking, text and a tool call, in order, indexed from 0, with the stop reason and usage,
/// whatever the pieces the bytes arrive in.
#[test]
fn a_stream_with_thinking_text_and_a_tool_call() {
    let body = ndjson(&THINK_TEXT_TOOL);
    let expected = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    let (whole, s) = events(&body, body.len());
    assert_eq!(names(&whole), expected);
    for piece in [1, 7, 64] {
        assert_eq!(events(&body, piece).0, whole, "pieces of {piece}");
    }
    let d: Vec<Value> = whole.iter().map(data).collect();
    assert_eq!(d[0]["message"]["id"], "msg_417");
    assert_eq!(d[0]["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(d[0]["message"]["usage"], json!({"input_tokens": 21, "output_tokens": 0}));
    assert_eq!(d[1]["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
    assert_eq!(d[2]["delta"], json!({"type": "thinking_delta", "thinking": "Let me"}));
    assert_eq!((d[4]["index"].clone(), d[5]["index"].clone()), (json!(0), json!(1)));
    assert_eq!(d[5]["content_block"], json!({"type": "text", "text": ""}));
    assert_eq!(d[6]["delta"], json!({"type": "text_delta", "text": "Checking "}));
    let tool = &d[8]["content_block"];
    assert_eq!(
        (tool["type"].as_str(), tool["name"].as_str(), &tool["input"]),
        (Some("tool_use"), Some("get_weather"), &json!({}))
    );
    assert!(tool["id"].as_str().is_some_and(|id| id.starts_with("toolu_") && id.len() == 30), "{tool}");
    assert_eq!(d[9]["delta"], json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Tokyo\"}"}));
    assert_eq!(d[10]["index"], 2);
    assert_eq!(d[11]["delta"], json!({"stop_reason": "tool_use", "stop_sequence": null}));
    assert_eq!(d[11]["usage"], json!({"input_tokens": 12, "output_tokens": 5}));
    assert_eq!(d[12], json!({"type": "message_stop"}));
    assert_eq!(s.usage(), Some(Usage { prompt_tokens: 12, completion_tokens: 5 }));
    assert_eq!(s.stop_reason(), Some(StopReason::ToolUse));
    assert!(s.is_finished() && s.error().is_none());
    // The frame on the wire.
    let mut frame = Vec::new();
    whole[12].encode(&mut frame);
    assert_eq!(frame, b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

#[test]
fn stop_reasons() {
    let text = |reason: &str| {
        let done = format!(r#"{{"message":{{"content":"x"}},"done":true,"done_reason":"{reason}","eval_count":1}}"#);
        let (ev, s) = events(&ndjson(&[&done]), 1000);
        (names(&ev).len(), s.stop_reason())
    };
    assert_eq!(text("stop"), (6, Some(StopReason::EndTurn)));
    assert_eq!(text("length"), (6, Some(StopReason::MaxTokens)));
    assert_eq!(StopReason::from_native(None, false), StopReason::EndTurn);
    assert_eq!(StopReason::from_native(Some("length"), true), StopReason::ToolUse);
    // An empty answer: the message opens and ends with no block.
    let (ev, _) = events(&ndjson(&[r#"{"message":{"content":""},"done":true}"#]), 1000);
    assert_eq!(names(&ev), ["message_start", "message_delta", "message_stop"]);
}

/// A cut stream, the node's own error line and a failure the adapter saw each end with one
/// `error` event, never `message_stop`; nothing follows.
#[test]
fn failures_end_with_one_error_event() {
    let cut = ndjson(&THINK_TEXT_TOOL[..3]);
    let (ev, s) = events(&cut, 5);
    assert_eq!(ev.last().map(|e| e.name), Some("error"));
    assert!(!names(&ev).contains(&"message_stop"));
    assert_eq!(s.error(), Some(&ResponseError::Truncated));
    let e = data(ev.last().unwrap());
    assert_eq!((e["type"].as_str(), e["error"]["type"].as_str()), (Some("error"), Some("api_error")));

    let mut lines = THINK_TEXT_TOOL[..2].to_vec();
    lines.push(r#"{"error":"llama runner process has terminated"}"#);
    lines.push(THINK_TEXT_TOOL[4]);
    let (ev, s) = events(&ndjson(&lines), 1000);
    assert_eq!(names(&ev).iter().filter(|n| **n == "error").count(), 1);
    assert_eq!(ev.last().map(|e| e.name), Some("error"));
    assert_eq!(s.ignored_chunks(), 1, "the done line after the error is dropped");
    assert!(data(ev.last().unwrap())["error"]["message"].as_str().unwrap().contains("runner"));

    // Nothing arrived at all: the client still gets a message_start and the error.
    let (ev, _) = events(b"", 1);
    assert_eq!(names(&ev), ["message_start", "error"]);
}

// ---------------------------------------------------------------------------------------------
// Gathered answers.

#[test]
fn a_gathered_message_has_its_blocks_in_order() {
    let mut agg = AnthropicAggregator::new(config());
    agg.handle_bytes(&ndjson(&THINK_TEXT_TOOL));
    let (v, usage) = agg.finish().unwrap();
    assert_eq!(usage, Usage { prompt_tokens: 12, completion_tokens: 5 });
    assert_eq!(
        (v["id"].as_str(), v["type"].as_str(), v["role"].as_str()),
        (Some("msg_417"), Some("message"), Some("assistant"))
    );
    assert_eq!(v["model"], "claude-sonnet-4-5");
    let c = v["content"].as_array().unwrap();
    assert_eq!(c[0], json!({"type": "thinking", "thinking": "Let me see.", "signature": ""}));
    assert_eq!(c[1], json!({"type": "text", "text": "Checking "}));
    assert_eq!((c[2]["type"].as_str(), &c[2]["input"]), (Some("tool_use"), &json!({"city": "Tokyo"})));
    // The streamed answer names the call the same.
    let (ev, _) = events(&ndjson(&THINK_TEXT_TOOL), 1000);
    assert_eq!(data(&ev[8])["content_block"]["id"], c[2]["id"]);
    assert_eq!((v["stop_reason"].as_str(), &v["stop_sequence"]), (Some("tool_use"), &Value::Null));
    assert_eq!(v["usage"], json!({"input_tokens": 12, "output_tokens": 5}));

    let mut cut = AnthropicAggregator::new(config());
    cut.handle_bytes(&ndjson(&THINK_TEXT_TOOL[..3]));
    assert_eq!(cut.finish().map(|_| ()), Err(ResponseError::Truncated));
}

#[test]
fn tool_arguments_as_strings_and_ids_as_sent() {
    let lines = [
        r#"{"message":{"content":"","tool_calls":[{"id":"call_7","function":{"name":"f","arguments":"{\"a\":1}"}},{"function":{"name":"g","arguments":"not json"}}]},"done":true,"eval_count":2}"#,
    ];
    let mut agg = AnthropicAggregator::new(config());
    agg.handle_bytes(&ndjson(&lines));
    let (v, _) = agg.finish().unwrap();
    assert_eq!(v["content"][0], json!({"type": "tool_use", "id": "call_7", "name": "f", "input": {"a": 1}}));
    assert_eq!(v["content"][1]["input"], json!({"_raw": "not json"}));
    assert_eq!(v["content"].as_array().map(Vec::len), Some(2), "no empty text block");
}
