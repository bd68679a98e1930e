//! The OpenAI-compatible and Anthropic-compatible endpoints.

use herd_core::translate::base64::decode_f32_le;
use serde_json::{json, Value};

use super::{fast, get, post};
use crate::text::EMBEDDING_DIM;

const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","description":"Weather",
    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]"#;

fn chunks(events: &[(Option<String>, String)]) -> Vec<Value> {
    events.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect()
}

#[tokio::test]
async fn openai_chat_stream() {
    let h = fast().await;
    let body = r#"{"model":"qwen3:8b","stream":true,"stream_options":{"include_usage":true},
                   "messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&h, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    assert!(events.iter().all(|(name, _)| name.is_none()));
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks = chunks(&events);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    assert!(chunks.iter().all(|c| c["id"] == id && c["object"] == "chat.completion.chunk" && c["model"] == "qwen3:8b"));
    assert!(chunks.iter().all(|c| c["created"] == chunks[0]["created"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1..].iter().all(|c| c["choices"][0]["delta"].get("role").is_none()));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 16);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(text.split(' ').count(), 16);
}

#[tokio::test]
async fn openai_chat_non_stream_and_tools() {
    let h = fast().await;
    let v = post(
        &h,
        "/v1/chat/completions",
        r#"{"model":"qwen3:8b","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await
    .json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "qwen3:8b");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], v["usage"]["prompt_tokens"].as_u64().unwrap() + 3);

    let body = format!(r#"{{"model":"qwen3:8b","tools":{TOOLS},"messages":[{{"role":"user","content":"weather?"}}]}}"#);
    let v = post(&h, "/v1/chat/completions", &body).await.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!((&call["type"], &call["function"]["name"]), (&json!("function"), &json!("get_weather")));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));

    let body =
        format!(r#"{{"model":"qwen3:8b","stream":true,"tools":{TOOLS},"messages":[{{"role":"user","content":"w"}}]}}"#);
    let chunks = chunks(&post(&h, "/v1/chat/completions", &body).await.events());
    let delta = chunks.iter().find_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().cloned()).unwrap();
    assert_eq!(delta[0]["index"], 0);
    assert!(delta[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    let r = post(&h, "/v1/chat/completions", r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "model 'nope' not found", "type": "not_found_error", "param": null, "code": null}})
    );
    let r = post(&h, "/v1/chat/completions", r#"{"model":"qwen3:8b","messages":[]}"#).await;
    assert_eq!((r.status, &r.json()["error"]["type"]), (400, &json!("invalid_request_error")));
}

#[tokio::test]
async fn openai_completions_embeddings_models() {
    let h = fast().await;
    let v = post(&h, "/v1/completions", r#"{"model":"qwen3:8b","prompt":"Paris is"}"#).await.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let events = post(&h, "/v1/completions", r#"{"model":"qwen3:8b","prompt":"p","stream":true}"#).await.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert_eq!(chunks(&events).len(), 17);

    let v = post(&h, "/v1/embeddings", r#"{"model":"nomic-embed-text","input":"hello","encoding_format":"base64"}"#)
        .await
        .json();
    assert_eq!((&v["object"], &v["data"][0]["object"]), (&json!("list"), &json!("embedding")));
    let floats = decode_f32_le(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
    assert_eq!(floats.len(), EMBEDDING_DIM);
    let v = post(&h, "/v1/embeddings", r#"{"model":"nomic-embed-text","input":["a","b"]}"#).await.json();
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), EMBEDDING_DIM);

    let v = get(&h, "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    assert!(v["data"].as_array().unwrap().iter().any(|m| m["id"] == "qwen3:8b" && m["owned_by"] == "library"));
    assert_eq!(get(&h, "/v1/models/qwen3:8b").await.json()["id"], "qwen3:8b");
    let r = get(&h, "/v1/models/nope").await;
    assert_eq!((r.status, &r.json()["error"]["message"]), (404, &json!("model 'nope:latest' not found")));
}

#[tokio::test]
async fn anthropic_messages() {
    let h = fast().await;
    let body = r#"{"model":"qwen3:8b","max_tokens":100,"stream":true,"system":"be brief",
                   "messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&h, "/v1/messages", body).await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names[..2], ["message_start", "content_block_start"]);
    assert!(names[2..18].iter().all(|n| *n == "content_block_delta"));
    assert_eq!(names[18..], ["content_block_stop", "message_delta", "message_stop"]);
    for (name, data) in &events {
        assert_eq!(serde_json::from_str::<Value>(data).unwrap()["type"], name.as_deref().unwrap());
    }
    let delta: Value = serde_json::from_str(&events[19].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 16);

    let tools = r#"[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]"#;
    let body = format!(
        r#"{{"model":"qwen3:8b","max_tokens":50,"tools":{tools},"messages":[{{"role":"user","content":"w"}}]}}"#
    );
    let v = post(&h, "/v1/messages", &body).await.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!((&block["type"], &block["input"]), (&json!("tool_use"), &json!({"city": "Paris"})));

    let r = post(&h, "/v1/messages", r#"{"model":"qwen3:8b","messages":[{"role":"user","content":"x"}]}"#).await;
    assert_eq!(r.status, 400);
    let err = r.json();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["message"], "max_tokens is required and must be positive");
    assert!(err["request_id"].as_str().unwrap().starts_with("req_"));
}

/// An Ollama from before 0.14.0 has no `/v1/messages`: gin's plain-text 404, whatever the body,
/// while its native chat answers as usual; it reports its version.
#[tokio::test]
async fn an_old_ollama_has_no_messages_endpoint() {
    use std::time::Duration;
    let mut spec = super::spec(super::DISK, &[], 4);
    spec.ollama_version = "0.13.5".into();
    let h =
        super::start(spec, crate::Timing::Fixed { first_token: Duration::ZERO, token_interval: Duration::ZERO }).await;
    let body = r#"{"model":"qwen3:8b","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&h, "/v1/messages", body).await;
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(get(&h, "/v1/messages").await.status, 404);
    assert_eq!(get(&h, "/api/version").await.json(), json!({"version": "0.13.5"}));
    let chat =
        post(&h, "/api/chat", r#"{"model":"qwen3:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#)
            .await;
    assert_eq!(chat.status, 200);
    assert_eq!(h.stats().requests.get("/v1/messages"), Some(&2), "counted like any request: {:?}", h.stats());
    // A pre-release of 0.14.0 is older too; later releases have it.
    for (version, has) in [("0.14.0-rc1", false), ("0.14.0", true), ("v0.20.1", true)] {
        let mut spec = super::spec(super::DISK, &[], 4);
        spec.ollama_version = version.into();
        let h =
            super::start(spec, crate::Timing::Fixed { first_token: Duration::ZERO, token_interval: Duration::ZERO })
                .await;
        assert_eq!(post(&h, "/v1/messages", body).await.status == 200, has, "{version}");
    }
}
