//! Anthropic `/v1/messages`: bodies shaped like the Anthropic SDK's and Claude Code's.

use serde_json::{json, Value};

use crate::api::anthropic::{stable_system_text, Block, MessagesRequest};
use crate::api::{decode, describe, parse_body, ApiError, DescribeContext, Surface};
use crate::request::RequestSpec;

fn spec(body: &str) -> RequestSpec {
    describe(Surface::AnthropicMessages, body.as_bytes(), &DescribeContext::default()).unwrap()
}

fn err(body: &str) -> ApiError {
    describe(Surface::AnthropicMessages, body.as_bytes(), &DescribeContext::default()).unwrap_err()
}

fn decoded(body: &Value) -> MessagesRequest {
    decode(&parse_body(body.to_string().as_bytes()).unwrap()).unwrap()
}

/// A Claude Code-like request: billing fingerprint in the system prompt, long tool schemas, a
/// tool round trip with an image in the result, prior thinking and an unknown block type.
fn claude_code(cch: &str, question: &str) -> Value {
    let tools: Vec<Value> = ["Bash", "Read", "Edit", "Grep"]
        .iter()
        .map(|name| {
            json!({"name": name, "description": "d".repeat(2000),
            "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}})
        })
        .collect();
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [
            {"type": "text", "text": format!("x-anthropic-billing-header: cc_version=2.1; cch={cch};")},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "look at the file", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/a.png"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
                    {"type": "text", "text": "ok"}
                ]},
                {"type": "document", "source": {"type": "text", "data": "kept verbatim"}}
            ]}
        ],
        "tools": tools,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "metadata": {"user_id": "user_abc", "tags": ["cc"]},
        "temperature": 1,
        "tool_choice": {"type": "auto"}
    })
}

#[test]
fn claude_code_request_is_described() {
    let body = claude_code("9f3a1", "What is in /a.png?");
    let s = spec(&body.to_string());
    assert!(s.stream);
    assert_eq!(s.max_output_tokens, Some(32000));
    assert!(s.has_images, "an image inside a tool_result counts");
    assert_eq!(s.think, Some(true));
    assert_eq!(s.tags, ["cc", "user:user_abc"]);
    assert!(s.prefix_key.is_some());
    assert!(s.estimated_prompt_tokens > 2000, "tool definitions are counted");
}

#[test]
fn estimate_counts_every_block() {
    let body = json!({"model": "m", "max_tokens": 10, "system": "sys!",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "abcd"},
            {"type": "tool_use", "name": "ab", "input": {"k": 1}},
            {"type": "tool_result", "content": "result"},
            {"type": "thinking", "thinking": "hmm"},
            {"type": "image", "source": {}}]}]});
    // system message + one user message; chars: 4 + 4 + 2 + len({"k":1})=7 + 6 + 3 = 26.
    assert_eq!(spec(&body.to_string()).estimated_prompt_tokens, 26 / 4 + 2 * 4 + 150);
}

#[test]
fn billing_fingerprint_does_not_change_the_prefix_key() {
    let a = spec(&claude_code("9f3a1", "first").to_string());
    let b = spec(&claude_code("0b77c2", "second").to_string());
    assert_eq!(a.prefix_key, b.prefix_key);
    assert_eq!(stable_system_text("a cch=9f3a1; b cch=zz; cch=12;"), "a cch=0; b cch=zz; cch=0;");
    assert_eq!(stable_system_text("no mark"), "no mark");
    assert_eq!(stable_system_text("cch="), "cch=");
}

#[test]
fn round_trip_keeps_every_block_and_field() {
    let body = claude_code("9f3a1", "q");
    let req = decoded(&body);
    assert_eq!(serde_json::to_value(&req).unwrap(), body);
    let blocks = req.messages.as_ref().unwrap()[2].content.as_ref().unwrap();
    assert!(matches!(blocks.parts(), [Block::ToolResult(_), Block::Other(_)]));
}

#[test]
fn thinking_settings() {
    let with = |extra: Value| {
        let mut body = json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        spec(&body.to_string()).think
    };
    assert_eq!(with(json!({})), None);
    assert_eq!(with(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})), Some(true));
    assert_eq!(with(json!({"thinking": {"type": "disabled"}})), Some(false));
    assert_eq!(with(json!({"output_config": {"effort": "high"}})), Some(true));
    assert_eq!(with(json!({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}})), Some(false));
}

#[test]
fn required_fields() {
    assert_eq!(
        err(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
        ApiError::MissingField { field: "max_tokens" }
    );
    assert_eq!(
        err(r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#),
        ApiError::InvalidValue { field: "max_tokens", value: "0".into() }
    );
    assert_eq!(err(r#"{"model":"m","max_tokens":5,"messages":[]}"#), ApiError::EmptyField { field: "messages" });
    assert_eq!(err(r#"{"model":"m","max_tokens":5}"#), ApiError::MissingField { field: "messages" });
    assert_eq!(err(r#"{"max_tokens":5,"messages":[]}"#), ApiError::MissingModel);
    assert!(matches!(
        err(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}"#),
        ApiError::WrongFieldType { field, .. } if field == "messages"
    ));
    assert!(matches!(
        err(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":7}"#),
        ApiError::WrongFieldType { field, .. } if field == "system"
    ));
}

#[test]
fn plain_sdk_request() {
    let body = r#"{"model":"claude-3-5-haiku-latest","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}"#;
    let s = spec(body);
    assert!(!s.stream);
    assert_eq!(s.model.as_str(), "claude-3-5-haiku-latest:latest");
    assert_eq!(s.estimated_prompt_tokens, 13 / 4 + 4);
    assert_eq!(s.prefix_key, None);
    assert!(!s.has_images);
}

/// `count_tokens`: the same estimate over system and messages, without the tool definitions and
/// without `max_tokens` (the counting API has none); the same refusals otherwise.
#[test]
fn count_tokens_is_the_estimate_without_tools() {
    let body = json!({"model": "claude-sonnet-4-5", "system": "sys!",
        "tools": [{"name": "big", "description": "x".repeat(4000), "input_schema": {}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "abcd"},
            {"type": "tool_use", "name": "ab", "input": {"k": 1}},
            {"type": "tool_result", "content": "result"},
            {"type": "thinking", "thinking": "hmm"},
            {"type": "image", "source": {}}]}]});
    assert_eq!(decoded(&body).count_tokens(), Ok(26 / 4 + 2 * 4 + 150));
    assert_eq!(
        decoded(&json!({"messages": [{"role": "user", "content": "hi"}]})).count_tokens(),
        Err(ApiError::MissingModel)
    );
    assert!(decoded(&json!({"model": "m", "messages": []})).count_tokens().is_err());
    assert!(decoded(&json!({"model": "m"})).count_tokens().is_err());
    assert!(decoded(&json!({"model": "bad name", "messages": [{"role": "user", "content": "x"}]}))
        .count_tokens()
        .is_err());
}
