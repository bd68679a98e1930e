//! Stream translation of the native streams of wire-api.md §3.1–3.2 into the SSE sequences of
//! §6.1.2, §6.1.3 and §6.2.

use serde_json::{json, Value};

use super::{config, ndjson, payloads};
use crate::translate::{
    FinishReason, OpenAiChatStream, OpenAiCompletionStream, OpenAiResponseConfig, ReasoningField, ResponseError,
    SseEvent,
};

fn chat_events(config: OpenAiResponseConfig, lines: &[&str]) -> (OpenAiChatStream, Vec<SseEvent>) {
    let mut s = OpenAiChatStream::new(config);
    s.handle_bytes(&ndjson(lines));
    s.handle_end();
    let events = std::iter::from_fn(|| s.poll_event()).collect();
    (s, events)
}

/// The `delta` of each chunk payload (`[DONE]` and errors as they are).
fn deltas(events: &[SseEvent]) -> Vec<Value> {
    payloads(events)
        .into_iter()
        .map(|p| match p.get("choices").and_then(|c| c.get(0)) {
            Some(choice) => json!({"delta": choice["delta"], "finish_reason": choice["finish_reason"]}),
            None => p,
        })
        .collect()
}

const HELLO: [&str; 3] = [
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.1Z","message":{"role":"assistant","content":"Hel"},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.2Z","message":{"role":"assistant","content":"lo!"},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.3Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1,"prompt_eval_count":12,"eval_count":3}"#,
];

/// wire-api.md §3.2: thinking, then a whole tool call, then the done chunk.
const WEATHER: [&str; 3] = [
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.1Z","message":{"role":"assistant","content":"","thinking":"User wants weather"},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.4Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_k3j9x0qa","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.5Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":600000000,"load_duration":10000000,"prompt_eval_count":120,"prompt_eval_duration":50000000,"eval_count":25,"eval_duration":400000000}"#,
];

#[test]
fn content_stream_with_usage() {
    let (s, events) = chat_events(config(true), &HELLO);
    let first = r#"{"id":"chatcmpl-417","object":"chat.completion.chunk","created":1746093600,"model":"qwen3","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    assert_eq!(events[0], SseEvent::Chunk(first.into()));
    assert_eq!(
        deltas(&events)[1..4],
        [
            json!({"delta": {"content": "Hel"}, "finish_reason": null}),
            json!({"delta": {"content": "lo!"}, "finish_reason": null}),
            json!({"delta": {}, "finish_reason": "stop"}),
        ]
    );
    let usage = r#"{"id":"chatcmpl-417","object":"chat.completion.chunk","created":1746093600,"model":"qwen3","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
    assert_eq!(events[4..], [SseEvent::Chunk(usage.into()), SseEvent::Done]);
    assert_eq!(s.usage().map(|u| (u.prompt_tokens, u.completion_tokens)), Some((12, 3)));
    assert_eq!((s.finish_reason(), s.error(), s.is_finished()), (Some(FinishReason::Stop), None, true));
    assert!(payloads(&events[..4]).iter().all(|p| p.get("usage").is_none()), "no usage key but on the usage chunk");
}

#[test]
fn thinking_and_tool_call_stream() {
    let (_, events) = chat_events(config(false), &WEATHER);
    let call = json!({"index": 0, "id": "call_k3j9x0qa", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}});
    assert_eq!(
        deltas(&events),
        [
            json!({"delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
            json!({"delta": {"reasoning_content": "User wants weather"}, "finish_reason": null}),
            json!({"delta": {"tool_calls": [call]}, "finish_reason": null}),
            json!({"delta": {}, "finish_reason": "tool_calls"}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn thinking_and_content_in_one_chunk_split_reasoning_first() {
    let both = r#"{"message":{"role":"assistant","content":"Hi","thinking":"greet"},"done":false}"#;
    let done = r#"{"message":{"role":"assistant","content":"."},"done":true,"done_reason":"stop"}"#;
    for (field, delta) in [
        (ReasoningField::Reasoning, json!({"reasoning": "greet"})),
        (ReasoningField::Both, json!({"reasoning_content": "greet", "reasoning": "greet"})),
    ] {
        let mut c = config(false);
        c.reasoning_field = field;
        let (_, events) = chat_events(c, &[both, done]);
        let d = deltas(&events);
        assert_eq!(d[1]["delta"], delta);
        assert_eq!(d[2]["delta"], json!({"content": "Hi"}));
        assert_eq!(d[3]["delta"], json!({"content": "."}), "the done chunk's own text comes before the finish");
        assert_eq!(d[4]["finish_reason"], "stop");
    }
}

#[test]
fn error_mid_stream_is_an_error_event_not_a_success() {
    let lines = [HELLO[0], r#"{"error":"llama runner process has terminated: exit status 2"}"#, HELLO[2]];
    let (s, events) = chat_events(config(true), &lines);
    assert_eq!(events.len(), 3, "role, Hel, error: nothing after, no [DONE]: {events:?}");
    assert_eq!(
        payloads(&events)[2],
        json!({"error": {"message": "llama runner process has terminated: exit status 2", "type": "api_error",
            "param": null, "code": null}})
    );
    assert!(matches!(events[2], SseEvent::Error(_)));
    assert_eq!(
        s.error(),
        Some(&ResponseError::Upstream { message: "llama runner process has terminated: exit status 2".into() })
    );
    assert_eq!((s.usage(), s.ignored_chunks()), (None, 1));
}

#[test]
fn length_stop_truncation_and_garbage() {
    let length =
        r#"{"message":{"role":"assistant","content":" and"},"done":true,"done_reason":"length","eval_count":1}"#;
    let (s, events) = chat_events(config(false), &[HELLO[0], length]);
    assert_eq!(deltas(&events)[3], json!({"delta": {}, "finish_reason": "length"}));
    assert_eq!(s.finish_reason(), Some(FinishReason::Length));

    let (s, events) = chat_events(config(true), &HELLO[..2]);
    assert_eq!(s.error(), Some(&ResponseError::Truncated));
    assert_eq!(payloads(&events)[3]["error"]["code"], "upstream_truncated");
    assert!(!events.contains(&SseEvent::Done));

    let (s, events) = chat_events(config(false), &[HELLO[0], "{\"message\": oops", HELLO[2]]);
    assert!(matches!(s.error(), Some(ResponseError::Malformed { .. })));
    assert_eq!(events.len(), 3);
}

#[test]
fn empty_answer_and_single_non_streamed_object() {
    let (_, events) = chat_events(config(false), &[HELLO[2]]);
    assert_eq!(
        deltas(&events),
        [
            json!({"delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
            json!({"delta": {}, "finish_reason": "stop"}),
            json!("[DONE]"),
        ]
    );
    // A "stream": false answer is one done chunk with all the text.
    let whole =
        r#"{"model":"qwen3","message":{"role":"assistant","content":"Hello!"},"done":true,"done_reason":"stop"}"#;
    let (_, events) = chat_events(config(false), &[whole]);
    assert_eq!(deltas(&events)[1]["delta"], json!({"content": "Hello!"}));
}

#[test]
fn tool_calls_without_ids_get_stable_indexed_ids() {
    let call = |name: &str| {
        format!(
            r#"{{"message":{{"role":"assistant","content":"","tool_calls":[{{"function":{{"name":"{name}","arguments":{{}}}}}}]}},"done":false}}"#
        )
    };
    let (a, b) = (call("a"), call("b"));
    let lines = [a.as_str(), b.as_str(), HELLO[2]];
    let (_, events) = chat_events(config(false), &lines);
    let d = deltas(&events);
    let (first, second) = (&d[1]["delta"]["tool_calls"][0], &d[2]["delta"]["tool_calls"][0]);
    assert_eq!((first["index"].as_u64(), second["index"].as_u64()), (Some(0), Some(1)));
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() == 13 && id != second["id"].as_str().unwrap(), "{id}");
    assert_eq!(first["function"]["arguments"], "{}");
    let (_, again) = chat_events(config(false), &lines);
    assert_eq!(events, again, "ids derive from the response id, not randomness");
}

#[test]
fn role_first_even_when_the_first_line_is_an_error() {
    let (_, events) = chat_events(config(false), &[r#"{"error":"model 'x' not found"}"#]);
    assert_eq!(deltas(&events)[0]["delta"]["role"], "assistant");
    assert_eq!(payloads(&events)[1]["error"]["message"], "model 'x' not found");
    let mut s = OpenAiChatStream::new(config(false));
    assert_eq!(s.poll_event(), None, "nothing before the first input");
    s.handle_failure(ResponseError::Upstream { message: "read timeout".into() });
    s.handle_end();
    assert_eq!(std::iter::from_fn(|| s.poll_event()).count(), 2);
}

#[test]
fn legacy_completion_stream() {
    // wire-api.md §3.1's generate stream.
    let lines = [
        r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.1Z","response":"The","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.2Z","response":" sky","thinking":"dropped","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.3Z","response":"","done":true,"done_reason":"stop","context":[1,2],"prompt_eval_count":11,"eval_count":2}"#,
    ];
    let mut c = OpenAiResponseConfig::new("cmpl-233", 1_746_093_600, "llama3.2");
    c.include_usage = true;
    let mut s = OpenAiCompletionStream::new(c);
    for piece in ndjson(&lines).chunks(7) {
        s.handle_bytes(piece);
    }
    s.handle_end();
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let first = r#"{"id":"cmpl-233","object":"text_completion","created":1746093600,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"text":"The","index":0,"logprobs":null,"finish_reason":null}]}"#;
    assert_eq!(events[0], SseEvent::Chunk(first.into()));
    let p = payloads(&events);
    let texts: Vec<_> =
        p[..3].iter().map(|c| (c["choices"][0]["text"].clone(), c["choices"][0]["finish_reason"].clone())).collect();
    assert_eq!(texts, [(json!("The"), Value::Null), (json!(" sky"), Value::Null), (json!(""), json!("stop"))]);
    assert_eq!(p[3]["choices"], json!([]));
    assert_eq!(p[3]["usage"], json!({"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}));
    assert_eq!(events[4], SseEvent::Done);
    assert!(p[..4].iter().all(|c| c["created"] == 1_746_093_600), "created is pinned, unlike Ollama's");
}

#[test]
fn logprobs_ride_on_the_content_delta() {
    let line = r#"{"message":{"role":"assistant","content":"Hi"},"logprobs":[{"token":"Hi","logprob":-0.01,"bytes":[72,105],"top_logprobs":[]}],"done":false}"#;
    let (_, events) = chat_events(config(false), &[line, HELLO[2]]);
    let p = payloads(&events);
    assert_eq!(p[1]["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
    assert!(p[2]["choices"][0].get("logprobs").is_none());
}

#[test]
fn sse_frames() {
    assert_eq!(SseEvent::Done.to_bytes(), b"data: [DONE]\n\n");
    let mut out = Vec::new();
    SseEvent::Chunk("{}".into()).encode(&mut out);
    SseEvent::Error("{\"error\":{}}".into()).encode(&mut out);
    assert_eq!(out, b"data: {}\n\ndata: {\"error\":{}}\n\n");
    assert!(SseEvent::Error(String::new()).is_terminal() && !SseEvent::Chunk(String::new()).is_terminal());
}

/// A fuzz finding (seven minutes of `cargo fuzz run translate`): a line fed alone may end in the
/// CR of its CRLF, which the byte splitter drops; `handle_line` must read it the same way.
#[test]
fn a_line_ending_in_cr_reads_as_the_same_line_split_anywhere() {
    let data = [0x4f, 0x22, 0x0d, 0x0a, 0x00, 0x45, 0x6c, 0x22, 0x0a, 0x31];
    assert_eq!(crate::translate::fuzz::check_translate(&data), Ok(()));
}
