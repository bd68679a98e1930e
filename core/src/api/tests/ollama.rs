//! Native surfaces: bodies as the `ollama` 0.6.3 Python client, Continue, Open WebUI and curl
//! send them (wire-api.md §10–11).

use serde_json::{json, Value};

use crate::api::ollama::{ChatRequest, EmbedRequest, GenerateRequest};
use crate::api::{decode, describe, parse_body, ApiError, DescribeContext, Surface, DEFAULT_PREFIX_MIN_TOKENS};
use crate::ids::ModelName;
use crate::request::{FallbackChoice, RequestKind, RequestSpec};

fn spec(surface: Surface, body: &str) -> RequestSpec {
    describe(surface, body.as_bytes(), &DescribeContext::default()).unwrap()
}

fn err(surface: Surface, body: &str) -> ApiError {
    describe(surface, body.as_bytes(), &DescribeContext::default()).unwrap_err()
}

/// Serialising the decoded body gives back exactly what the client sent.
fn round_trips<T: crate::api::WireRequest>(body: &str) {
    let original: Value = serde_json::from_str(body).unwrap();
    let decoded: T = decode(&parse_body(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&decoded).unwrap(), original);
}

#[test]
fn python_client_chat_without_stream_default() {
    let body =
        r#"{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"},{"role":"assistant"}],"tools":[]}"#;
    let s = spec(Surface::OllamaChat, body);
    assert_eq!(s.kind, RequestKind::Chat);
    assert_eq!(s.model, ModelName::new("m:latest"));
    assert!(!s.stream);
    // Two messages (4 tokens each), "hi" is 2 chars (0 tokens), no tools.
    assert_eq!(s.estimated_prompt_tokens, 8);
    assert!(!s.has_images);
    assert_eq!(s.think, None);
    assert_eq!(s.fallback, FallbackChoice::Default);
    assert_eq!(s.client, None);
    assert_eq!(s.session_key, None);
    assert_eq!(s.prefix_key, None);
    assert!(s.tags.is_empty());
    round_trips::<ChatRequest>(body);
}

#[test]
fn python_client_chat_with_image_options_and_think() {
    let body = r#"{"model":"m","stream":true,"options":{"num_ctx":2048},"format":"json","keep_alive":0.0,"messages":[{"role":"user","content":"hi","images":["iVBORw=="]}],"tools":[],"think":true}"#;
    let s = spec(Surface::OllamaChat, body);
    assert!(s.stream);
    assert_eq!(s.num_ctx, Some(2048));
    assert_eq!(s.max_output_tokens, None);
    assert!(s.has_images);
    assert_eq!(s.think, Some(true));
    assert_eq!(s.estimated_prompt_tokens, 4 + 150);
    round_trips::<ChatRequest>(body);
}

#[test]
fn continue_omits_stream_and_gets_the_native_default() {
    let body = r#"{"model":"qwen2.5-coder:7b","keep_alive":1800,"messages":[{"role":"user","content":"write a test"}],"options":{"num_predict":512,"temperature":0.2}}"#;
    let s = spec(Surface::OllamaChat, body);
    assert!(s.stream);
    assert_eq!(s.max_output_tokens, Some(512));
    assert_eq!(s.estimated_prompt_tokens, 4 + 12 / 4);
    round_trips::<ChatRequest>(body);
}

#[test]
fn tools_and_tool_calls_count_towards_the_estimate() {
    let tool = json!({"type":"function","function":{"name":"get_weather","description":"Weather for a city",
        "parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"}},"required":["city"]}}});
    let call = json!({"function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}});
    let body = json!({"model":"qwen3","messages":[
        {"role":"user","content":"Weather in Tokyo?"},
        {"role":"assistant","content":"","thinking":"User wants weather","tool_calls":[call]},
        {"role":"tool","tool_name":"get_weather","content":"22°C"}],
        "tools":[tool]});
    let s = spec(Surface::OllamaChat, &body.to_string());
    let chars = 17 + 18 + 4 + json_len(&call) + json_len(&tool);
    assert_eq!(s.estimated_prompt_tokens as usize, chars / 4 + 3 * 4);
    round_trips::<ChatRequest>(&body.to_string());
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).unwrap().chars().count()
}

#[test]
fn generate_and_load_only() {
    let s = spec(Surface::OllamaGenerate, r#"{"model":"m","stream":false,"prompt":"p"}"#);
    assert_eq!(s.kind, RequestKind::Generate);
    assert!(!s.stream);
    assert_eq!(s.estimated_prompt_tokens, 4);
    let s = spec(Surface::OllamaGenerate, r#"{"model":"m","stream":false}"#);
    assert_eq!(s.estimated_prompt_tokens, 4);
    let s = spec(Surface::OllamaGenerate, r#"{"model":"llama3.2","prompt":"Why?"}"#);
    assert!(s.stream, "generate streams by default");
}

#[test]
fn continue_autocomplete_generate_keeps_raw_and_suffix() {
    let body = r#"{"model":"qwen2.5-coder:1.5b","prompt":"fn main() {","suffix":"}","raw":true,"options":{"num_predict":128,"stop":["\n\n"]},"keep_alive":1800,"images":["aGk="],"template":"x"}"#;
    let s = spec(Surface::OllamaGenerate, body);
    assert_eq!(s.max_output_tokens, Some(128));
    assert!(s.has_images);
    assert_eq!(s.estimated_prompt_tokens, (11 + 1) / 4 + 4 + 150);
    round_trips::<GenerateRequest>(body);
}

#[test]
fn embed_and_legacy_embeddings() {
    let body = r#"{"model":"m","input":["a","b"],"dimensions":2}"#;
    let s = spec(Surface::OllamaEmbed, body);
    assert_eq!(s.kind, RequestKind::Embed);
    assert!(!s.stream);
    assert_eq!(s.estimated_prompt_tokens, 1);
    assert_eq!(s.tags, ["embed"]);
    round_trips::<EmbedRequest>(body);

    let body = r#"{"model":"all-minilm","prompt":"some text to embed here","options":{},"keep_alive":"5m"}"#;
    let s = spec(Surface::OllamaEmbeddings, body);
    assert_eq!(s.model.as_str(), "all-minilm:latest");
    assert_eq!(s.estimated_prompt_tokens, 23 / 4);
    round_trips::<crate::api::ollama::EmbeddingsRequest>(body);

    assert!(matches!(
        err(Surface::OllamaEmbed, r#"{"model":"m","input":5}"#),
        ApiError::WrongFieldType { field, .. } if field == "input"
    ));
}

#[test]
fn herd_fields_tags_and_session() {
    let body = r#"{"model":"llama3","messages":[],"fallback_models":["qwen3:8b","llama3:latest",""],
        "fallback":false,"metadata":{"tags":["proj-x","session:abc"]},"user":"bob"}"#;
    let ctx = DescribeContext {
        client: Some("10.0.0.7".into()),
        header_tags: vec!["team-a".into(), "proj-x".into()],
        ..DescribeContext::default()
    };
    let s = describe(Surface::OllamaChat, body.as_bytes(), &ctx).unwrap();
    assert_eq!(s.fallback_models, [ModelName::new("qwen3:8b")]);
    assert_eq!(s.fallback, FallbackChoice::Deny);
    assert_eq!(s.tags, ["proj-x", "session:abc", "team-a", "user:bob"]);
    assert_eq!(s.session_key.as_deref(), Some("session:abc"));
    assert_eq!(s.client.as_deref(), Some("10.0.0.7"));

    // The header wins over the body.
    let ctx = DescribeContext { fallback_header: Some(FallbackChoice::Allow), ..ctx };
    let s = describe(Surface::OllamaChat, body.as_bytes(), &ctx).unwrap();
    assert_eq!(s.fallback, FallbackChoice::Allow);

    // Without a session tag the key is client|model.
    let ctx = DescribeContext { client: Some("10.0.0.7".into()), ..DescribeContext::default() };
    let s = describe(Surface::OllamaChat, br#"{"model":"llama3"}"#, &ctx).unwrap();
    assert_eq!(s.session_key.as_deref(), Some("10.0.0.7|llama3:latest"));
    assert_eq!(s.fallback, FallbackChoice::Default);
}

#[test]
fn prefix_key_needs_a_long_system_prompt_plus_tools() {
    let long = "You are a careful assistant. ".repeat(300); // 8700 chars ≈ 2175 tokens
    let chat = |system: &str, user: &str, model: &str| {
        json!({"model": model, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user}]})
        .to_string()
    };
    let a = spec(Surface::OllamaChat, &chat(&long, "first question", "m"));
    let b = spec(Surface::OllamaChat, &chat(&long, "another question", "m"));
    assert!(a.prefix_key.is_some());
    assert_eq!(a.prefix_key, b.prefix_key);
    let c = spec(Surface::OllamaChat, &chat(&long, "first question", "m:7b"));
    assert_ne!(a.prefix_key, c.prefix_key);
    let short = spec(Surface::OllamaChat, &chat("Be brief.", "q", "m"));
    assert_eq!(short.prefix_key, None);

    // Tools alone can cross the threshold; the threshold comes from the context.
    let tools: Vec<Value> = (0..60)
        .map(|i| {
            json!({"type":"function","function":{"name":format!("tool_{i}"),
            "description":"x".repeat(120)}})
        })
        .collect();
    let body = json!({"model":"m","messages":[{"role":"user","content":"hi"}],"tools":tools}).to_string();
    assert!(spec(Surface::OllamaChat, &body).prefix_key.is_some());
    let strict = DescribeContext { prefix_min_tokens: 1_000_000, ..DescribeContext::default() };
    assert_eq!(describe(Surface::OllamaChat, body.as_bytes(), &strict).unwrap().prefix_key, None);
    assert_eq!(DescribeContext::default().prefix_min_tokens, DEFAULT_PREFIX_MIN_TOKENS);
}

#[test]
fn errors_are_typed() {
    let chat = Surface::OllamaChat;
    assert_eq!(err(chat, ""), ApiError::EmptyBody);
    assert_eq!(err(chat, " \n"), ApiError::EmptyBody);
    assert_eq!(err(chat, "[1]"), ApiError::NotAnObject);
    assert_eq!(err(chat, "\"x\""), ApiError::NotAnObject);
    assert!(matches!(err(chat, r#"{"model":"#), ApiError::MalformedJson { line: 1, column: 9, .. }));
    assert!(matches!(err(chat, "{\n  \"model\": 'm'\n}"), ApiError::MalformedJson { line: 2, column: 12, .. }));
    assert_eq!(err(chat, r#"{"messages":[]}"#), ApiError::MissingModel);
    assert_eq!(err(chat, r#"{"model":"  "}"#), ApiError::EmptyModel);
    assert_eq!(err(chat, r#"{"model":"m:"}"#), ApiError::InvalidModelName { name: "m:".into() });
    assert!(matches!(
        err(chat, r#"{"model":5}"#),
        ApiError::WrongFieldType { field, .. } if field == "model"
    ));
    assert!(matches!(
        err(chat, r#"{"model":"m","messages":[{"role":"user","content":7}]}"#),
        ApiError::WrongFieldType { field, detail } if field == "messages" && detail.contains("integer")
    ));
    assert!(matches!(
        err(chat, r#"{"model":"m","stream":"yes"}"#),
        ApiError::WrongFieldType { field, .. } if field == "stream"
    ));
    assert_eq!(
        err(chat, r#"{"model":"m","options":{"num_ctx":"big"}}"#),
        ApiError::WrongOptionType { option: "num_ctx", expected: "integer" }
    );
    assert_eq!(
        err(chat, r#"{"model":"m","think":"maximal"}"#),
        ApiError::InvalidValue { field: "think", value: "\"maximal\"".into() }
    );
    assert_eq!(
        err(chat, r#"{"model":"m","fallback_models":["ok","bad:"]}"#),
        ApiError::InvalidModelName { name: "bad:".into() }
    );
}

#[test]
fn nulls_read_as_absent() {
    let body = r#"{"model":"m","think":null,"options":null,"format":null,"messages":[{"role":"user","content":null,"images":null}]}"#;
    let s = spec(Surface::OllamaChat, body);
    assert_eq!(s.think, None);
    assert_eq!(s.num_ctx, None);
    assert!(s.stream);
}

#[test]
fn surfaces_know_their_paths_and_defaults() {
    for s in Surface::ALL {
        assert_eq!(Surface::from_path(s.path()), Some(s));
    }
    assert_eq!(Surface::from_path("/api/chat/"), Some(Surface::OllamaChat));
    assert_eq!(Surface::from_path("/api/tags"), None);
    assert!(Surface::OllamaChat.default_stream());
    assert!(Surface::OllamaGenerate.default_stream());
    assert!(!Surface::OpenAiChat.default_stream());
    assert!(!Surface::AnthropicMessages.default_stream());
    assert_eq!(Surface::OpenAiEmbeddings.kind(), RequestKind::Embed);
}
