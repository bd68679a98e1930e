//! Aggregation into one object: OpenAI `chat.completion` / `text_completion` (wire-api.md
//! §6.1.1, §6.2) and the native final object (§3.1, §3.2) that ollama-herd got wrong
//! (herd-router.md §7.2, §18 item 4).

use serde_json::{json, Value};

use super::{config, ndjson};
use crate::translate::{
    ChatCompletionAggregator, NativeAggregator, NativeEndpoint, OpenAiResponseConfig, ResponseError,
    TextCompletionAggregator,
};

const WEATHER: [&str; 3] = [
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.1Z","message":{"role":"assistant","content":"","thinking":"User wants weather"},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.4Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_k3j9x0qa","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.5Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":600000000,"load_duration":10000000,"prompt_eval_count":120,"prompt_eval_duration":50000000,"eval_count":25,"eval_duration":400000000}"#,
];

const GENERATE: [&str; 3] = [
    r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.1Z","response":"The","done":false}"#,
    r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.2Z","response":" sky","done":false}"#,
    r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.3Z","response":"","done":true,"done_reason":"stop","context":[128006,882],"total_duration":812000000,"load_duration":15000000,"prompt_eval_count":11,"prompt_eval_duration":40000000,"eval_count":2,"eval_duration":30000000}"#,
];

fn native(endpoint: NativeEndpoint, lines: &[&str]) -> Result<Value, ResponseError> {
    let mut agg = NativeAggregator::new(endpoint);
    agg.handle_bytes(&ndjson(lines));
    agg.finish().map(|(v, _)| v)
}

#[test]
fn chat_completion_keeps_tool_calls_thinking_and_usage() {
    let mut agg = ChatCompletionAggregator::new(config(false));
    for line in WEATHER {
        agg.handle_line(line.as_bytes());
    }
    let (v, usage) = agg.finish().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (120, 25));
    assert_eq!(
        v,
        json!({"id": "chatcmpl-417", "object": "chat.completion", "created": 1_746_093_600, "model": "qwen3",
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "", "reasoning_content": "User wants weather",
                "tool_calls": [{"index": 0, "id": "call_k3j9x0qa", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}]}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 25, "total_tokens": 145}})
    );
}

#[test]
fn chat_completion_from_one_non_streamed_answer() {
    let whole = r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:01Z","message":{"role":"assistant","content":"Hello!"},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}"#;
    let mut agg = ChatCompletionAggregator::new(OpenAiResponseConfig::new("chatcmpl-417", 1_746_093_600, "llama3.2"));
    agg.handle_chunk(&serde_json::from_str(whole).unwrap());
    let (v, _) = agg.finish().unwrap();
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Hello!"}));
    assert_eq!((&v["choices"][0]["finish_reason"], &v["usage"]["total_tokens"]), (&json!("stop"), &json!(15)));
}

#[test]
fn chat_completion_failures() {
    let mut agg = ChatCompletionAggregator::new(config(false));
    agg.handle_bytes(&ndjson(&WEATHER[..2]));
    assert_eq!(agg.finish().unwrap_err(), ResponseError::Truncated);
    let mut agg = ChatCompletionAggregator::new(config(false));
    agg.handle_bytes(&ndjson(&[WEATHER[0], r#"{"error":"out of memory"}"#, WEATHER[2]]));
    let err = agg.finish().unwrap_err();
    assert_eq!(err, ResponseError::Upstream { message: "out of memory".into() });
    assert_eq!(err.http_status(), 502);
    let mut agg = ChatCompletionAggregator::new(config(false));
    agg.handle_bytes(WEATHER[2].as_bytes()); // no trailing newline: handled at finish
    assert!(agg.finish().is_ok());
    let mut agg = ChatCompletionAggregator::new(config(false));
    agg.handle_failure(ResponseError::Upstream { message: "connection reset".into() });
    assert!(agg.finish().is_err());
}

#[test]
fn text_completion() {
    let mut agg = TextCompletionAggregator::new(OpenAiResponseConfig::new("cmpl-233", 1_746_093_600, "llama3.2"));
    agg.handle_bytes(&ndjson(&GENERATE));
    let (v, _) = agg.finish().unwrap();
    assert_eq!(
        v,
        json!({"id": "cmpl-233", "object": "text_completion", "created": 1_746_093_600, "model": "llama3.2",
            "system_fingerprint": "fp_ollama",
            "choices": [{"text": "The sky", "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}})
    );
}

#[test]
fn native_chat_keeps_tool_calls_and_thinking() {
    let v = native(NativeEndpoint::Chat, &WEATHER).unwrap();
    let mut expected: Value = serde_json::from_str(WEATHER[2]).unwrap();
    expected["message"] = json!({"role": "assistant", "content": "", "thinking": "User wants weather",
        "tool_calls": [{"id": "call_k3j9x0qa", "function": {"index": 0, "name": "get_weather",
            "arguments": {"city": "Tokyo"}}}]});
    assert_eq!(v, expected, "the done chunk's metrics, with the whole message");
}

#[test]
fn native_generate_concatenates_and_keeps_context() {
    let v = native(NativeEndpoint::Generate, &GENERATE).unwrap();
    let mut expected: Value = serde_json::from_str(GENERATE[2]).unwrap();
    expected["response"] = json!("The sky");
    assert_eq!(v, expected);
}

#[test]
fn native_truncation_and_errors_are_not_success() {
    assert_eq!(native(NativeEndpoint::Chat, &WEATHER[..2]), Err(ResponseError::Truncated));
    assert_eq!(native(NativeEndpoint::Generate, &[]), Err(ResponseError::Truncated));
    let failed = native(NativeEndpoint::Generate, &[GENERATE[0], r#"{"error":"runner crashed"}"#]);
    assert_eq!(failed, Err(ResponseError::Upstream { message: "runner crashed".into() }));
}

#[test]
fn native_always_writes_both_counts() {
    let done = r#"{"model":"m","message":{"role":"assistant","content":"ok"},"done":true,"done_reason":"stop"}"#;
    let v = native(NativeEndpoint::Chat, &[done]).unwrap();
    assert_eq!((&v["prompt_eval_count"], &v["eval_count"]), (&json!(0), &json!(0)));
    assert_eq!(v["message"], json!({"role": "assistant", "content": "ok"}));
    let chunks = [
        r#"{"message":{"role":"assistant","content":"a","thinking":"t1"},"logprobs":[{"token":"a"}],"done":false}"#,
        r#"{"message":{"role":"assistant","content":"b","thinking":"t2"},"logprobs":[{"token":"b"}],"done":true}"#,
    ];
    let v = native(NativeEndpoint::Chat, &chunks).unwrap();
    assert_eq!(v["message"], json!({"role": "assistant", "content": "ab", "thinking": "t1t2"}));
    assert_eq!(v["logprobs"], json!([{"token": "a"}, {"token": "b"}]));
}

#[test]
fn a_json_array_line_is_not_a_chunk() {
    // serde reads a struct from an array as well; the fast path must not take one for an empty
    // text chunk (found by the `any_json_lines_keep_the_invariants` property).
    let body = b"[]\n{\"done\":true}\n";
    let mut data = vec![0u8];
    data.extend_from_slice(body);
    assert_eq!(crate::translate::fuzz::check_translate(&data), Ok(()));
    assert!(native(NativeEndpoint::Chat, &["[]", "{\"done\":true}"]).is_err());
}
