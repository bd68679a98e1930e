//! Native NDJSON streams (or one non-streamed native answer, which is a single done chunk) → one
//! object: an OpenAI `chat.completion` ([`ChatCompletionAggregator`]), a legacy
//! `text_completion` ([`TextCompletionAggregator`]) or the native final object
//! ([`NativeAggregator`]). All three keep tool calls and thinking, and none reports a success
//! without a `done: true` chunk (herd-router.md §18 item 4): `finish` answers
//! [`ResponseError::Truncated`] or the upstream's own error instead.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::chunk::{ndjson_input, parse_chunk, saturate, Chunk, Plain};
use super::shape::{
    tool_call, ChatChoiceOut, ChatMessageOut, LogprobsOut, ObjectOut, Reasoning, TextChoiceOut, UsageOut,
};
use super::{FinishReason, NativeEndpoint, OpenAiResponseConfig, ResponseError};
use crate::codec::ndjson::LineSplitter;
use crate::router::Usage;

/// What a stream of native chunks adds up to, up to the done chunk or the first failure.
#[derive(Clone, Debug)]
pub(super) struct Sum {
    pub(super) endpoint: NativeEndpoint,
    pub(super) lines: LineSplitter,
    pub(super) content: String,
    pub(super) thinking: String,
    pub(super) tool_calls: Vec<Value>,
    logprobs: Vec<Value>,
    /// The done chunk, read and as sent (an empty map when `rendered` holds the answer).
    done: Option<(Chunk, Map<String, Value>)>,
    error: Option<ResponseError>,
    /// Render the native final object straight from the done chunk's bytes where it can.
    pub(super) render: bool,
    /// The native final object, rendered when the done chunk arrived.
    rendered: Option<Vec<u8>>,
}

impl Sum {
    pub(super) fn new(endpoint: NativeEndpoint) -> Self {
        Sum {
            endpoint,
            lines: LineSplitter::default(),
            content: String::new(),
            thinking: String::new(),
            tool_calls: Vec::new(),
            logprobs: Vec::new(),
            done: None,
            error: None,
            render: false,
            rendered: None,
        }
    }

    /// Takes a done chunk without building a [`Value`] of it, and renders the native final
    /// object (what [`NativeAggregator::finish`] builds) as bytes at once: the chunk's members as
    /// sent, with the text, thinking, tool calls and logprobs of the whole answer, `done` and
    /// both counts. `None` (nothing changed) for any other line, and for a done chunk with
    /// anything unusual (a `message` that is not an object, an escaped key, an error); the line
    /// is then read whole as usual.
    pub(super) fn render_done(&mut self, line: &[u8]) -> Option<()> {
        if self.finished() {
            return None;
        }
        let top: BTreeMap<&str, &RawValue> = serde_json::from_slice(line).ok()?;
        if top.get("done").map(|d| d.get()) != Some("true") {
            return None;
        }
        let message: Option<BTreeMap<&str, &RawValue>> = match (self.endpoint, top.get("message")) {
            (NativeEndpoint::Chat, Some(m)) => Some(serde_json::from_str(m.get()).ok()?),
            (NativeEndpoint::Chat, None) => Some(BTreeMap::new()),
            (NativeEndpoint::Generate, _) => None,
        };
        // `parse_chunk` reads the chunk, from a value of only the members it reads (an error
        // steps aside: the whole-value path reports it).
        let values = |map: &BTreeMap<&str, &RawValue>, keys: &[&str]| -> Option<Map<String, Value>> {
            let mut out = Map::new();
            for &key in keys {
                if let Some(v) = map.get(key) {
                    out.insert(key.to_string(), serde_json::from_str(v.get()).ok()?);
                }
            }
            Some(out)
        };
        let text_keys = ["content", "response", "thinking", "tool_calls"];
        let mut read = values(&top, &["error", "done", "done_reason", "prompt_eval_count", "eval_count", "logprobs"])?;
        match &message {
            Some(m) => {
                read.insert("message".into(), Value::Object(values(m, &text_keys)?));
            }
            None => read.extend(values(&top, &text_keys)?),
        }
        let chunk = parse_chunk(&Value::Object(read), self.endpoint).ok()?;
        let content_key = match self.endpoint {
            NativeEndpoint::Chat => "content",
            NativeEndpoint::Generate => "response",
        };
        let (prompt, completion) = (chunk.prompt_tokens, chunk.completion_tokens);
        self.add_read(Ok(chunk), Map::new);
        // The answer's own pieces, in place of the chunk's.
        let string = |s: &str| serde_json::to_vec(s).unwrap_or_default();
        let values = |v: &[Value]| serde_json::to_vec(v).unwrap_or_default();
        let mut texts: Vec<(&str, Piece<'_>)> = vec![(content_key, Piece::Owned(string(&self.content)))];
        if !self.thinking.is_empty() {
            texts.push(("thinking", Piece::Owned(string(&self.thinking))));
        }
        if !self.tool_calls.is_empty() {
            texts.push(("tool_calls", Piece::Owned(values(&self.tool_calls))));
        }
        let replaced = [content_key, "thinking", "tool_calls"];
        let mut out: Vec<(&str, Piece<'_>)> = Vec::new();
        match &message {
            Some(m) => {
                let mut members: Vec<(&str, Piece<'_>)> =
                    m.iter().filter(|(k, _)| !replaced.contains(k)).map(|(k, v)| (*k, Piece::Raw(v.get()))).collect();
                if !m.get("role").is_some_and(|r| r.get().starts_with('"')) {
                    members.retain(|(k, _)| *k != "role");
                    members.push(("role", Piece::Raw("\"assistant\"")));
                }
                members.extend(texts);
                out.push(("message", Piece::Owned(object(members))));
            }
            None => out.extend(texts),
        }
        // Chat replaces `message`; generate the text members at the top.
        let skipped = ["logprobs", "done", "prompt_eval_count", "eval_count"];
        let own = |k: &str| if message.is_some() { k == "message" } else { replaced.contains(&k) };
        out.extend(top.iter().filter(|(k, _)| !skipped.contains(k) && !own(k)).map(|(k, v)| (*k, Piece::Raw(v.get()))));
        if !self.logprobs.is_empty() {
            out.push(("logprobs", Piece::Owned(values(&self.logprobs))));
        }
        out.push(("done", Piece::Raw("true")));
        out.push(("prompt_eval_count", Piece::Owned(prompt.to_string().into_bytes())));
        out.push(("eval_count", Piece::Owned(completion.to_string().into_bytes())));
        self.rendered = Some(object(out));
        Some(())
    }

    fn finished(&self) -> bool {
        self.done.is_some() || self.error.is_some()
    }

    pub(super) fn add(&mut self, value: &Value) {
        if !self.finished() {
            self.add_read(parse_chunk(value, self.endpoint), || value.as_object().cloned().unwrap_or_default());
        }
    }

    /// As [`Sum::add`], keeping the value itself as the done chunk (no copy).
    pub(super) fn add_owned(&mut self, value: Value) {
        if !self.finished() {
            let read = parse_chunk(&value, self.endpoint);
            let raw = || match value {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            self.add_read(read, raw);
        }
    }

    /// Adds a chunk as read; `raw` gives the value as sent, kept when it is the done chunk.
    fn add_read(&mut self, read: Result<Chunk, ResponseError>, raw: impl FnOnce() -> Map<String, Value>) {
        match read {
            Err(err) => self.error = Some(err),
            Ok(mut chunk) => {
                self.content.push_str(&chunk.content);
                self.thinking.push_str(&chunk.thinking);
                self.tool_calls.append(&mut chunk.tool_calls);
                self.logprobs.append(&mut chunk.logprobs);
                if chunk.done {
                    self.done = Some((chunk, raw()));
                }
            }
        }
    }

    /// Adds an ordinary chunk read on the fast path (text only, never the done chunk).
    pub(super) fn add_plain(&mut self, plain: &Plain<'_>) {
        if !self.finished() {
            self.content.push_str(&plain.content);
            self.thinking.push_str(&plain.thinking);
        }
    }

    pub(super) fn fail(&mut self, err: ResponseError) {
        if !self.finished() {
            self.error = Some(err);
        }
    }

    /// The sum once complete: the done chunk as read and as sent.
    pub(super) fn result(&mut self) -> Result<(Chunk, Map<String, Value>), ResponseError> {
        match (self.error.take(), self.done.take()) {
            (Some(err), _) => Err(err),
            (None, Some(done)) => Ok(done),
            (None, None) => Err(ResponseError::Truncated),
        }
    }
}

/// A member's value: as sent, or written here.
enum Piece<'a> {
    Raw(&'a str),
    Owned(Vec<u8>),
}

/// A JSON object of `members`, in key order (as a [`Map`] writes them). Keys are as read from
/// the chunk, where serde_json only borrows keys without escapes, or this module's own.
fn object(mut members: Vec<(&str, Piece<'_>)>) -> Vec<u8> {
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Piece::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
            Piece::Owned(bytes) => out.extend_from_slice(bytes),
        }
    }
    out.push(b'}');
    out
}

/// The methods the three aggregators share; `self.sum` is their [`Sum`].
macro_rules! aggregator_inputs {
    () => {
        /// Feeds one parsed native chunk. Chunks after the done chunk or a failure are ignored.
        pub fn handle_chunk(&mut self, chunk: &Value) {
            self.sum.add(chunk);
        }

        /// Reports a failure the adapter saw (a reset connection, a read timeout); `finish` will
        /// answer it unless the done chunk already came.
        pub fn handle_failure(&mut self, err: ResponseError) {
            self.sum.fail(err);
        }

        fn line_endpoint(&self) -> NativeEndpoint {
            self.sum.endpoint
        }

        fn handle_plain(&mut self, plain: Plain<'_>) {
            self.sum.add_plain(&plain);
        }

        fn handle_value(&mut self, value: Value) {
            self.sum.add_owned(value);
        }

        fn handle_raw(&mut self, line: &[u8]) -> bool {
            self.sum.render && self.sum.render_done(line).is_some()
        }

        ndjson_input!(sum.lines);
    };
}
pub(super) use aggregator_inputs;

pub(super) fn usage(done: &Chunk) -> Usage {
    Usage { prompt_tokens: saturate(done.prompt_tokens), completion_tokens: saturate(done.completion_tokens) }
}

/// The finished OpenAI object of type `object` with its one `choice` and the usage from the done
/// chunk, and the token counts for the router.
fn openai_object<C: Serialize>(
    config: &OpenAiResponseConfig,
    object: &'static str,
    choice: C,
    done: &Chunk,
) -> (Value, Usage) {
    let usage = usage(done);
    let object = ObjectOut::new(config, object, vec![choice], Some(UsageOut::from(usage)));
    (serde_json::to_value(&object).unwrap_or_default(), usage)
}

/// Adds native chunks up to one `/v1/chat/completions` answer (`object: "chat.completion"`):
/// the concatenated `content` (`""`, not `null`, when there are only tool calls, as Ollama
/// does), thinking under [`OpenAiResponseConfig::reasoning_field`], every tool call (`arguments`
/// as a JSON string), `logprobs`, the finish reason and `usage`.
#[derive(Clone, Debug)]
pub struct ChatCompletionAggregator {
    config: OpenAiResponseConfig,
    sum: Sum,
}

impl ChatCompletionAggregator {
    /// An empty aggregate for one response (`include_usage` is ignored: usage is always there).
    pub fn new(config: OpenAiResponseConfig) -> Self {
        ChatCompletionAggregator { config, sum: Sum::new(NativeEndpoint::Chat) }
    }

    aggregator_inputs!();

    /// The `chat.completion` object, and the token counts for the router.
    ///
    /// # Errors
    /// The upstream's error, a malformed line, or [`ResponseError::Truncated`] when the body
    /// ended without `done: true`.
    pub fn finish(mut self) -> Result<(Value, Usage), ResponseError> {
        self.flush_lines();
        let (done, _) = self.sum.result()?;
        let c = &self.config;
        let calls: Vec<_> = self
            .sum
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, call)| tool_call(call, saturate(i as u64), &c.id))
            .collect();
        let reason = FinishReason::from_native(done.done_reason.as_deref(), !calls.is_empty());
        let message = ChatMessageOut {
            role: Some("assistant"),
            content: Some(&self.sum.content),
            reasoning: Reasoning::new(c.reasoning_field, &self.sum.thinking),
            tool_calls: (!calls.is_empty()).then_some(calls),
        };
        let choice = ChatChoiceOut {
            index: 0,
            delta: None,
            message: Some(message),
            logprobs: LogprobsOut::new(&self.sum.logprobs),
            finish_reason: Some(reason.as_str()),
        };
        Ok(openai_object(c, "chat.completion", choice, &done))
    }
}

/// Adds native `/api/generate` chunks up to one legacy `/v1/completions` answer
/// (`object: "text_completion"`). Thinking and tool calls have no field there and are dropped.
#[derive(Clone, Debug)]
pub struct TextCompletionAggregator {
    config: OpenAiResponseConfig,
    sum: Sum,
}

impl TextCompletionAggregator {
    /// An empty aggregate for one response.
    pub fn new(config: OpenAiResponseConfig) -> Self {
        TextCompletionAggregator { config, sum: Sum::new(NativeEndpoint::Generate) }
    }

    aggregator_inputs!();

    /// The `text_completion` object, and the token counts for the router.
    ///
    /// # Errors
    /// As [`ChatCompletionAggregator::finish`].
    pub fn finish(mut self) -> Result<(Value, Usage), ResponseError> {
        self.flush_lines();
        let (done, _) = self.sum.result()?;
        let c = &self.config;
        let reason = FinishReason::from_native(done.done_reason.as_deref(), false);
        let choice = TextChoiceOut {
            text: &self.sum.content,
            index: 0,
            logprobs: LogprobsOut::new(&self.sum.logprobs),
            finish_reason: Some(reason.as_str()),
        };
        Ok(openai_object(c, "text_completion", choice, &done))
    }
}

/// Adds a native stream up to the object Ollama itself answers with `"stream": false`, for a
/// native client that did not ask to stream while herd streams from the node.
///
/// The result is the done chunk as sent (metrics, `done_reason`, `context`, ...) with the text
/// concatenated: on `/api/chat`, `message` keeps `role`, `content`, `thinking` and every
/// `tool_calls` entry (ollama-herd overwrote it with the text alone); on `/api/generate`,
/// `response`, `thinking` and `tool_calls`. `logprobs` entries are concatenated, and
/// `prompt_eval_count` / `eval_count` are always written, 0 included (LangChain only reports
/// usage when both are there; wire-api.md §10 item 31).
#[derive(Clone, Debug)]
pub struct NativeAggregator {
    sum: Sum,
}

impl NativeAggregator {
    /// An empty aggregate of a stream from `endpoint`.
    pub fn new(endpoint: NativeEndpoint) -> Self {
        let mut sum = Sum::new(endpoint);
        sum.render = true;
        NativeAggregator { sum }
    }

    /// [`NativeAggregator::finish`]'s object as JSON bytes, and the token counts. The same
    /// object (up to the order of keys inside members passed through as sent), usually written
    /// straight from the done chunk's bytes without building a [`Value`].
    ///
    /// # Errors
    /// As [`NativeAggregator::finish`].
    pub fn finish_json(mut self) -> Result<(Vec<u8>, Usage), ResponseError> {
        self.flush_lines();
        // Rendered only as the done chunk ended the answer: no failure can come before or after.
        match self.sum.rendered.take() {
            Some(bytes) => self.sum.result().map(|(done, _)| (bytes, usage(&done))),
            None => self.build().map(|(v, u)| (serde_json::to_vec(&v).unwrap_or_default(), u)),
        }
    }

    aggregator_inputs!();

    /// The native final object, and the token counts for the router.
    ///
    /// # Errors
    /// The upstream's error, a malformed line, or [`ResponseError::Truncated`] when the body
    /// ended without `done: true` (a client of the native API must not mistake a cut-off answer
    /// for a whole one).
    pub fn finish(mut self) -> Result<(Value, Usage), ResponseError> {
        self.flush_lines();
        match self.sum.rendered.take() {
            Some(bytes) => {
                let (done, _) = self.sum.result()?;
                let value = serde_json::from_slice(&bytes).map_err(|e| ResponseError::malformed(&e))?;
                Ok((value, usage(&done)))
            }
            None => self.build(),
        }
    }

    /// The final object built from the done chunk's value.
    fn build(mut self) -> Result<(Value, Usage), ResponseError> {
        let (done, mut out) = self.sum.result()?;
        let sum = &mut self.sum;
        let thinking = (!sum.thinking.is_empty()).then(|| Value::String(std::mem::take(&mut sum.thinking)));
        let calls = (!sum.tool_calls.is_empty()).then(|| Value::Array(std::mem::take(&mut sum.tool_calls)));
        let content = Value::String(std::mem::take(&mut sum.content));
        match sum.endpoint {
            NativeEndpoint::Chat => {
                let mut message = match out.remove("message") {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if !message.get("role").is_some_and(Value::is_string) {
                    message.insert("role".into(), "assistant".into());
                }
                message.insert("content".into(), content);
                set_or_remove(&mut message, "thinking", thinking);
                set_or_remove(&mut message, "tool_calls", calls);
                out.insert("message".into(), Value::Object(message));
            }
            NativeEndpoint::Generate => {
                out.insert("response".into(), content);
                set_or_remove(&mut out, "thinking", thinking);
                set_or_remove(&mut out, "tool_calls", calls);
            }
        }
        let logprobs = (!sum.logprobs.is_empty()).then(|| Value::Array(std::mem::take(&mut sum.logprobs)));
        set_or_remove(&mut out, "logprobs", logprobs);
        out.insert("done".into(), Value::Bool(true));
        out.insert("prompt_eval_count".into(), done.prompt_tokens.into());
        out.insert("eval_count".into(), done.completion_tokens.into());
        Ok((Value::Object(out), usage(&done)))
    }
}

fn set_or_remove(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            map.insert(key.into(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINES: &[&str] = &[
        r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"A"},"done":false}"#,
        r#"{"model":"m","message":{"role":"assistant","content":"b","thinking":"hm"},"done":false}"#,
        r#"{"model":"m","response":"r","thinking":"t","done":false}"#,
        r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"b":1,"a":2}}}]},"done":false}"#,
        r#"{"response":"x","tool_calls":[{"function":{"name":"g"}}],"done":false}"#,
        r#"{"response":"x","message":{"content":"y"},"logprobs":[{"token":"x","logprob":-0.5}],"done":false}"#,
        r#"{"error":"boom"}"#,
        r#"{not json"#,
        r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"Z"},"done_reason":"stop","done":true,"total_duration":5,"prompt_eval_count":10,"eval_count":3}"#,
        r#"{"model":"m","response":"R","done_reason":"length","done":true,"context":[1,2,3],"prompt_eval_count":4,"eval_count":2}"#,
        r#"{"message":null,"done":true,"eval_count":1}"#,
        r#"{"done":true}"#,
        r#"{"message":{"content":"c"},"done":true,"error":null,"prompt_eval_count":-1,"eval_count":1.5}"#,
        r#"{"message":{"role":5,"content":7,"thinking":"th","images":null},"done":true,"eval_count":1e2}"#,
        r#"{"message":{"role":"assistant","content":"\u003cp\u003e\n\"q\" é","tool_calls":"x"},"done":true,"prompt_eval_count":99999999999999999999}"#,
        r#"{"message":{"content":"c","tool_calls":[{"function":{"name":"h","arguments":{}}}]},"logprobs":[{"token":"c"}],"done":true,"done_reason":5}"#,
        r#"{"eval_count":1,"eval_count":2,"done":true,"extra":{"z":1,"a":[{"y":2,"b":3}]},"response":"r","thinking":""}"#,
        r#"{"mod\u0065l":"x","done":true,"message":{"content":"k"}}"#,
        r#"{"message":{"content":"a","content":"b"},"done":true,"response":"top","tool_calls":[1]}"#,
        r#"{"error":"late","done":true}"#,
        r#"{"done":true,"response":5,"thinking":null,"logprobs":"no"}"#,
        "   ",
    ];

    /// The object written from the done chunk's bytes is the object built from its value, for
    /// any sequence of lines, on both endpoints.
    #[test]
    fn rendered_done_matches_the_built_object() {
        let lines = proptest::collection::vec(0..LINES.len(), 0..7);
        let mut runner =
            proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 3000, ..Default::default() });
        let rendered = std::cell::Cell::new(0);
        runner
            .run(&(lines, any::<bool>(), any::<bool>()), |(picks, chat, unterminated)| {
                let endpoint = if chat { NativeEndpoint::Chat } else { NativeEndpoint::Generate };
                let mut body: Vec<u8> = picks.iter().flat_map(|&i| [LINES[i].as_bytes(), b"\n"].concat()).collect();
                if unterminated {
                    body.pop();
                }
                let mut fast = NativeAggregator::new(endpoint);
                let mut built = NativeAggregator { sum: Sum::new(endpoint) };
                fast.handle_bytes(&body);
                built.handle_bytes(&body);
                rendered.set(rendered.get() + usize::from(fast.sum.rendered.is_some()));
                let fast_value = fast.clone().finish();
                match (fast.finish_json(), built.finish()) {
                    (Ok((bytes, u1)), Ok((value, u2))) => {
                        let read: Value = serde_json::from_slice(&bytes).expect("valid JSON");
                        prop_assert_eq!(&read, &value, "{}", String::from_utf8_lossy(&body));
                        prop_assert_eq!(u1, u2);
                        prop_assert_eq!(fast_value.map(|(v, _)| v), Ok(value));
                    }
                    (Err(e1), Err(e2)) => prop_assert_eq!(e1, e2),
                    (a, b) => prop_assert!(false, "{:?} vs {:?} for {}", a, b, String::from_utf8_lossy(&body)),
                }
                Ok(())
            })
            .unwrap();
        assert!(rendered.get() > 500, "the rendered path ran {} times", rendered.get());
    }
}
