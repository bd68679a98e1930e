//! Native NDJSON streams (or one non-streamed native answer, which is a single done chunk) → one
//! object: an OpenAI `chat.completion` ([`ChatCompletionAggregator`]), a legacy
//! `text_completion` ([`TextCompletionAggregator`]) or the native final object
//! ([`NativeAggregator`]). All three keep tool calls and thinking, and none reports a success
//! without a `done: true` chunk (herd-router.md §18 item 4): `finish` answers
//! [`ResponseError::Truncated`] or the upstream's own error instead.

use serde::Serialize;
use serde_json::{Map, Value};

use super::chunk::{ndjson_input, parse_chunk, saturate, Chunk, Plain};
use super::shape::{
    tool_call, ChatChoiceOut, ChatMessageOut, LogprobsOut, ObjectOut, Reasoning, TextChoiceOut, UsageOut,
};
use super::{FinishReason, NativeEndpoint, OpenAiResponseConfig, ResponseError};
use crate::codec::ndjson::LineSplitter;
use crate::router::Usage;

/// What a stream of native chunks adds up to, up to the done chunk or the first failure.
#[derive(Clone, Debug)]
struct Sum {
    endpoint: NativeEndpoint,
    lines: LineSplitter,
    content: String,
    thinking: String,
    tool_calls: Vec<Value>,
    logprobs: Vec<Value>,
    /// The done chunk, read and as sent.
    done: Option<(Chunk, Map<String, Value>)>,
    error: Option<ResponseError>,
}

impl Sum {
    fn new(endpoint: NativeEndpoint) -> Self {
        Sum {
            endpoint,
            lines: LineSplitter::default(),
            content: String::new(),
            thinking: String::new(),
            tool_calls: Vec::new(),
            logprobs: Vec::new(),
            done: None,
            error: None,
        }
    }

    fn finished(&self) -> bool {
        self.done.is_some() || self.error.is_some()
    }

    fn add(&mut self, value: &Value) {
        if !self.finished() {
            self.add_read(parse_chunk(value, self.endpoint), || value.as_object().cloned().unwrap_or_default());
        }
    }

    /// As [`Sum::add`], keeping the value itself as the done chunk (no copy).
    fn add_owned(&mut self, value: Value) {
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
    fn add_plain(&mut self, plain: &Plain<'_>) {
        if !self.finished() {
            self.content.push_str(&plain.content);
            self.thinking.push_str(&plain.thinking);
        }
    }

    fn fail(&mut self, err: ResponseError) {
        if !self.finished() {
            self.error = Some(err);
        }
    }

    /// The sum once complete: the done chunk as read and as sent.
    fn result(&mut self) -> Result<(Chunk, Map<String, Value>), ResponseError> {
        match (self.error.take(), self.done.take()) {
            (Some(err), _) => Err(err),
            (None, Some(done)) => Ok(done),
            (None, None) => Err(ResponseError::Truncated),
        }
    }
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

        ndjson_input!(sum.lines);
    };
}

fn usage(done: &Chunk) -> Usage {
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
        NativeAggregator { sum: Sum::new(endpoint) }
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
