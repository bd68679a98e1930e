//! OpenAI surfaces: bodies as `openai` 3.57.0 sends them (wire-api.md §6, §11), and the fields
//! ollama-herd dropped.

use serde_json::{json, Value};

use crate::api::openai::{ChatRequest, CompletionRequest, EmbeddingRequest, ImageUrl, Part};
use crate::api::{decode, describe, parse_body, ApiError, Content, DescribeContext, Surface};
use crate::request::{RequestKind, RequestSpec};

fn spec(surface: Surface, body: &str) -> RequestSpec {
    describe(surface, body.as_bytes(), &DescribeContext::default()).unwrap()
}

fn err(surface: Surface, body: &str) -> ApiError {
    describe(surface, body.as_bytes(), &DescribeContext::default()).unwrap_err()
}

fn round_trips<T: crate::api::WireRequest>(body: &str) -> T {
    let original: Value = serde_json::from_str(body).unwrap();
    let decoded: T = decode(&parse_body(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&decoded).unwrap(), original);
    decoded
}

const WEATHER_TOOL: &str = r#"{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}"#;

#[test]
fn sdk_streaming_chat_with_usage_and_tools() {
    let body = format!(
        r#"{{"model":"m","stream":true,"messages":[{{"role":"user","content":"hi"}}],"stream_options":{{"include_usage":true}},"tools":[{WEATHER_TOOL}]}}"#
    );
    let s = spec(Surface::OpenAiChat, &body);
    assert_eq!(s.kind, RequestKind::Chat);
    assert!(s.stream);
    let tool_chars = WEATHER_TOOL.chars().count() as u32;
    assert_eq!(s.estimated_prompt_tokens, (2 + tool_chars) / 4 + 4);
    let req: ChatRequest = round_trips(&body);
    assert_eq!(req.extra["stream_options"], json!({"include_usage": true}));
}

#[test]
fn sdk_non_streaming_chat_has_no_stream_key() {
    let s = spec(Surface::OpenAiChat, r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    assert!(!s.stream, "/v1 defaults to not streaming");
    assert_eq!(s.max_output_tokens, None);
    assert_eq!(s.think, None);
}

#[test]
fn every_parameter_ollama_herd_dropped_survives() {
    let body = r#"{"model":"llama3.2","messages":[
        {"role":"system","content":"Be terse."},
        {"role":"user","content":[{"type":"text","text":"What is this?","cache_control":{"type":"ephemeral"}},
                                  {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw==","detail":"low"}},
                                  {"type":"image_url","image_url":"data:image/jpeg;base64,/9j/"},
                                  {"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}},
                                  {"type":"refusal","refusal":"no"}]},
        {"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}],"reasoning":"thought"},
        {"role":"tool","tool_call_id":"call_1","name":"get_weather","content":"22C"}],
        "temperature":0.7,"top_p":0.9,"stop":["\n\n","END"],"seed":42,"presence_penalty":0.5,
        "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"},"strict":true}},
        "tool_choice":"auto","parallel_tool_calls":false,"stream_options":{"include_usage":true},
        "max_tokens":900,"max_completion_tokens":600,"logprobs":true,"top_logprobs":2,"n":1,
        "user":"u-17","metadata":{"tags":["eval"]},"reasoning_effort":"none","store":false,
        "fallback_models":["qwen3"],"fallback":true}"#;
    let req: ChatRequest = round_trips(body);
    let user = &req.messages.as_ref().unwrap()[1];
    let parts = user.content.as_ref().unwrap().parts();
    assert!(matches!(&parts[0], Part::Text(p) if p.text == "What is this?" && p.extra.contains_key("cache_control")));
    assert!(matches!(&parts[1], Part::ImageUrl(p) if matches!(p.image_url, ImageUrl::Object { .. })));
    assert!(matches!(&parts[2], Part::ImageUrl(p) if p.image_url.url() == "data:image/jpeg;base64,/9j/"));
    assert!(matches!(&parts[3], Part::InputAudio(_)));
    assert!(matches!(&parts[4], Part::Other(m) if m["refusal"] == "no"));

    let s = spec(Surface::OpenAiChat, body);
    assert!(s.has_images);
    assert_eq!(s.max_output_tokens, Some(600), "the tighter budget wins");
    assert_eq!(s.think, Some(false));
    assert_eq!(s.tags, ["eval", "user:u-17"]);
    assert_eq!(s.fallback, crate::request::FallbackChoice::Allow);
    assert_eq!(s.fallback_models.len(), 1);
    let call =
        json!({"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}});
    let call_chars = serde_json::to_string(&call).unwrap().len() as u32;
    let chars = 9 + 13 + call_chars + 3;
    assert_eq!(s.estimated_prompt_tokens, chars / 4 + 4 * 4 + 2 * 150);
}

#[test]
fn null_content_with_tool_calls_reads_as_absent() {
    let body = r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#;
    let req: ChatRequest = decode(&parse_body(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(req.messages.unwrap()[0].content, None);
}

#[test]
fn reasoning_effort_maps_like_ollama() {
    let with = |effort: &str| {
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"reasoning_effort":"{effort}"}}"#)
    };
    assert_eq!(spec(Surface::OpenAiChat, &with("high")).think, Some(true));
    assert_eq!(spec(Surface::OpenAiChat, &with("minimal")).think, Some(true));
    assert_eq!(spec(Surface::OpenAiChat, &with("none")).think, Some(false));
    assert_eq!(
        err(Surface::OpenAiChat, &with("huge")),
        ApiError::InvalidValue { field: "reasoning_effort", value: "\"huge\"".into() }
    );
    let nested = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning":{"effort":"none"}}"#;
    assert_eq!(spec(Surface::OpenAiChat, nested).think, Some(false));
}

#[test]
fn system_parts_and_strings_give_the_same_prefix_key() {
    let long = "Rules. ".repeat(1200);
    let as_string = json!({"model":"m","messages":[{"role":"system","content":long},{"role":"user","content":"a"}]});
    let as_parts = json!({"model":"m","messages":[{"role":"system","content":[{"type":"text","text":long}]},{"role":"user","content":"b"}]});
    let a = spec(Surface::OpenAiChat, &as_string.to_string()).prefix_key;
    let b = spec(Surface::OpenAiChat, &as_parts.to_string()).prefix_key;
    assert!(a.is_some());
    assert_eq!(a, b);
}

#[test]
fn chat_errors() {
    let chat = Surface::OpenAiChat;
    assert_eq!(err(chat, r#"{"messages":[]}"#), ApiError::MissingModel);
    assert_eq!(err(chat, r#"{"model":"m"}"#), ApiError::MissingField { field: "messages" });
    assert_eq!(err(chat, r#"{"model":"m","messages":[]}"#), ApiError::EmptyField { field: "messages" });
    assert!(matches!(
        err(chat, r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"#),
        ApiError::WrongFieldType { field, detail } if field == "messages" && detail.contains("text")
    ));
    assert!(matches!(
        err(chat, r#"{"model":"m","messages":[{"role":"user","content":{"a":1}}]}"#),
        ApiError::WrongFieldType { field, .. } if field == "messages"
    ));
    assert!(matches!(
        err(chat, r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#),
        ApiError::WrongFieldType { field, .. } if field == "max_tokens"
    ));
}

#[test]
fn legacy_completions() {
    let body =
        r#"{"model":"m","prompt":"The capital of France is","suffix":".","max_tokens":5,"temperature":0,"echo":false}"#;
    let s = spec(Surface::OpenAiCompletions, body);
    assert_eq!(s.kind, RequestKind::Generate);
    assert!(!s.stream);
    assert_eq!(s.max_output_tokens, Some(5));
    assert_eq!(s.estimated_prompt_tokens, (24 + 1) / 4 + 4);
    round_trips::<CompletionRequest>(body);
}

#[test]
fn embeddings_as_the_sdk_sends_them() {
    let body = r#"{"model":"m","input":"hello","encoding_format":"base64"}"#;
    let s = spec(Surface::OpenAiEmbeddings, body);
    assert_eq!(s.kind, RequestKind::Embed);
    assert!(!s.stream);
    assert_eq!(s.estimated_prompt_tokens, 1);
    assert_eq!(s.tags, ["embed"]);
    let req: EmbeddingRequest = round_trips(body);
    assert_eq!(req.extra["encoding_format"], "base64");

    let batch = r#"{"model":"m","input":["alpha beta","gamma"],"dimensions":256,"user":"x"}"#;
    assert_eq!(spec(Surface::OpenAiEmbeddings, batch).tags, ["user:x", "embed"]);
    assert_eq!(err(Surface::OpenAiEmbeddings, r#"{"model":"m","input":[]}"#), ApiError::EmptyField { field: "input" });
    assert_eq!(err(Surface::OpenAiEmbeddings, r#"{"model":"m"}"#), ApiError::MissingField { field: "input" });
    assert!(matches!(
        err(Surface::OpenAiEmbeddings, r#"{"model":"m","input":[[1,2,3]]}"#),
        ApiError::WrongFieldType { field, .. } if field == "input"
    ));
}

#[test]
fn content_model_is_faithful() {
    let c: Content<Part> = serde_json::from_value(json!("plain")).unwrap();
    assert_eq!(c, Content::Text("plain".into()));
    let c: Content<Part> = serde_json::from_value(json!([{"type": "text", "text": "a"}, {"type": 3}])).unwrap();
    assert!(matches!(c.parts(), [Part::Text(_), Part::Other(_)]));
    assert_eq!(serde_json::to_value(&c).unwrap(), json!([{"type": "text", "text": "a"}, {"type": 3}]));
}
