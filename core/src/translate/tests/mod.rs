//! Worked examples built on wire-api.md §3, §6 and §11 (the Ollama streams and the bodies the
//! OpenAI SDK sends), and property tests over the whole translate module.

mod aggregate;
mod anthropic;
mod embed;
mod props;
mod request;
mod stream;

use serde_json::Value;

use super::{OpenAiResponseConfig, SseEvent};

/// The config of the worked examples: `chatcmpl-417`, created 1746093600, model `qwen3`.
fn config(include_usage: bool) -> OpenAiResponseConfig {
    let mut c = OpenAiResponseConfig::new("chatcmpl-417", 1_746_093_600, "qwen3");
    c.include_usage = include_usage;
    c
}

/// NDJSON bytes of the given lines.
fn ndjson(lines: &[&str]) -> Vec<u8> {
    lines.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))).collect()
}

/// Each event's payload parsed as JSON (`[DONE]` as the string "[DONE]").
fn payloads(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| match e {
            SseEvent::Done => Value::String("[DONE]".into()),
            other => serde_json::from_str(other.data()).unwrap(),
        })
        .collect()
}
