//! Native NDJSON streams → OpenAI SSE streams (wire-api.md §6.1.2, §6.1.3, §6.2): one
//! translator per response, fed native chunks as they arrive and drained of [`SseEvent`]s.
//!
//! Every stream has the same shape (the private `Phase`):
//!
//! ```text
//!            first input                 done chunk
//!   Idle ───────────────────▶ Open ─────────────────────▶ Done
//!    (nothing sent)     (role chunk,   (finish chunk, usage chunk if asked, [DONE])
//!                        deltas)  │
//!                                 │ error line, malformed line, handle_failure, end before done
//!                                 ▼
//!                               Failed (one error event, no [DONE])
//! ```
//!
//! One `id` and one `created` (from [`OpenAiResponseConfig`]) are on every chunk; nothing is
//! emitted after `Done` or `Failed` (later input is counted and dropped).

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::Value;

use super::chunk::{ndjson_input, parse_chunk, saturate, Chunk, Plain};
use super::shape::{
    error_payload, to_json, tool_call, ChatChoiceOut, ChatMessageOut, LogprobsOut, ObjectOut, Reasoning, TextChoiceOut,
    UsageOut,
};
use super::{FinishReason, NativeEndpoint, OpenAiResponseConfig, ResponseError, SseEvent};
use crate::codec::ndjson::LineSplitter;
use crate::router::Usage;

/// Where a stream is (see the module diagram).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Open,
    Done,
    Failed,
}

/// What both stream translators share: framing, phase, the event queue and the outcome.
#[derive(Clone, Debug)]
struct Core {
    config: OpenAiResponseConfig,
    lines: LineSplitter,
    events: VecDeque<SseEvent>,
    phase: Phase,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    error: Option<ResponseError>,
    ignored: usize,
}

impl Core {
    fn new(config: OpenAiResponseConfig) -> Self {
        Core {
            config,
            lines: LineSplitter::default(),
            events: VecDeque::new(),
            phase: Phase::Idle,
            usage: None,
            finish: None,
            error: None,
            ignored: 0,
        }
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }

    /// Reads one native chunk from `endpoint` if the stream is still `open`; a dropped chunk is
    /// counted, a malformed one fails the stream.
    fn accept(&mut self, open: bool, chunk: &Value, endpoint: NativeEndpoint) -> Option<Chunk> {
        if !open {
            self.ignored += 1;
            return None;
        }
        match parse_chunk(chunk, endpoint) {
            Ok(chunk) => Some(chunk),
            Err(err) => {
                self.fail(err);
                None
            }
        }
    }

    /// [`Core::accept`] for a chunk read on the fast path (it cannot fail).
    fn accept_plain(&mut self, open: bool) -> bool {
        if !open {
            self.ignored += 1;
        }
        open
    }

    /// Queues one chunk event: an object of type `object` with its one `choice`.
    fn push<C: Serialize>(&mut self, object: &'static str, choice: C) {
        let json = to_json(&ObjectOut::new(&self.config, object, vec![choice], None));
        self.events.push_back(SseEvent::Chunk(json));
    }

    fn fail(&mut self, err: ResponseError) {
        self.events.push_back(SseEvent::Error(error_payload(&err)));
        self.error = Some(err);
        self.phase = Phase::Failed;
    }

    /// Records the outcome and queues the usage chunk (if asked) and `[DONE]`.
    fn complete(&mut self, usage_chunk: impl FnOnce(&OpenAiResponseConfig, UsageOut) -> String, chunk: &Chunk) {
        let usage = Usage {
            prompt_tokens: saturate(chunk.prompt_tokens),
            completion_tokens: saturate(chunk.completion_tokens),
        };
        if self.config.include_usage {
            let json = usage_chunk(&self.config, UsageOut::from(usage));
            self.events.push_back(SseEvent::Chunk(json));
        }
        self.events.push_back(SseEvent::Done);
        self.usage = Some(usage);
        self.phase = Phase::Done;
    }
}

/// The query and drain methods both translators share.
macro_rules! stream_outputs {
    () => {
        /// The next event to send, in order; `None` until more input arrives.
        #[must_use]
        pub fn poll_event(&mut self) -> Option<SseEvent> {
            self.core.events.pop_front()
        }

        /// Whether the last event (`[DONE]` or an error) has been queued.
        pub fn is_finished(&self) -> bool {
            self.core.finished()
        }

        /// Token counts from the done chunk, once the stream completed.
        pub fn usage(&self) -> Option<Usage> {
            self.core.usage
        }

        /// The finish reason sent, once the stream completed.
        pub fn finish_reason(&self) -> Option<FinishReason> {
            self.core.finish
        }

        /// Why the stream failed, if it did.
        pub fn error(&self) -> Option<&ResponseError> {
            self.core.error.as_ref()
        }

        /// Chunks that arrived after the stream had finished and were dropped.
        pub fn ignored_chunks(&self) -> usize {
            self.core.ignored
        }

        /// Reports a failure the adapter saw (a reset connection, a read timeout): queues the error
        /// event unless the stream already finished.
        pub fn handle_failure(&mut self, err: ResponseError) {
            if self.begin() {
                self.core.fail(err);
            }
        }

        /// The upstream body ended: handles a last unterminated line, then fails the stream with
        /// [`ResponseError::Truncated`] if no done chunk came. Call it once per body.
        pub fn handle_end(&mut self) {
            self.flush_lines();
            self.handle_failure(ResponseError::Truncated);
        }
    };
}

/// Translates one `/api/chat` NDJSON stream into `/v1/chat/completions` SSE events.
///
/// Feed it with [`handle_chunk`](Self::handle_chunk), [`handle_line`](Self::handle_line) or
/// [`handle_bytes`](Self::handle_bytes), call [`handle_end`](Self::handle_end) when the body ends,
/// and drain [`poll_event`](Self::poll_event) after each call. The events:
/// 1. a role chunk, `delta: {"role":"assistant","content":""}`, first of all;
/// 2. per native chunk: a thinking delta (see [`super::ReasoningField`]), then a content and
///    tool-call delta (each call whole, with its stream-wide `index`, `id`, `type`);
/// 3. on `done: true`: a finish chunk (`delta: {}`, `finish_reason` stop / length / tool_calls),
///    the usage chunk (`choices: []`) when [`OpenAiResponseConfig::include_usage`], then `[DONE]`;
/// 4. or, on an `{"error":...}` line, a malformed line or an early end: one error event, no
///    `[DONE]`.
#[derive(Clone, Debug)]
pub struct OpenAiChatStream {
    core: Core,
    tool_calls: u32,
}

impl OpenAiChatStream {
    /// A translator for one response; nothing is queued until the first input.
    pub fn new(config: OpenAiResponseConfig) -> Self {
        OpenAiChatStream { core: Core::new(config), tool_calls: 0 }
    }

    /// Feeds one parsed native chunk.
    pub fn handle_chunk(&mut self, chunk: &Value) {
        let open = self.begin();
        if let Some(chunk) = self.core.accept(open, chunk, NativeEndpoint::Chat) {
            self.deltas(&chunk);
        }
    }

    fn line_endpoint(&self) -> NativeEndpoint {
        NativeEndpoint::Chat
    }

    fn handle_plain(&mut self, plain: Plain<'_>) {
        let open = self.begin();
        if self.core.accept_plain(open) {
            self.deltas(&plain.into_chunk());
        }
    }

    fn handle_value(&mut self, value: Value) {
        self.handle_chunk(&value);
    }

    fn handle_raw(&mut self, _line: &[u8]) -> bool {
        false
    }

    ndjson_input!(core.lines);
    stream_outputs!();

    /// Opens the stream with the role chunk on the first input; `false` once finished.
    fn begin(&mut self) -> bool {
        if self.core.phase == Phase::Idle {
            let role = ChatMessageOut { role: Some("assistant"), content: Some(""), ..ChatMessageOut::default() };
            self.push(role, None, None);
            self.core.phase = Phase::Open;
        }
        !self.core.finished()
    }

    fn push(&mut self, delta: ChatMessageOut<'_>, logprobs: Option<LogprobsOut<'_>>, finish: Option<FinishReason>) {
        let choice = ChatChoiceOut {
            index: 0,
            delta: Some(delta),
            message: None,
            logprobs,
            finish_reason: finish.map(FinishReason::as_str),
        };
        self.core.push("chat.completion.chunk", choice);
    }

    fn deltas(&mut self, chunk: &Chunk) {
        if !chunk.thinking.is_empty() {
            let reasoning = Reasoning::new(self.core.config.reasoning_field, &chunk.thinking);
            self.push(ChatMessageOut { reasoning, ..ChatMessageOut::default() }, None, None);
        }
        let calls: Vec<_> = chunk
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let index = self.tool_calls.saturating_add(saturate(i as u64));
                tool_call(call, index, &self.core.config.id)
            })
            .collect();
        self.tool_calls = self.tool_calls.saturating_add(saturate(calls.len() as u64));
        if !chunk.content.is_empty() || !calls.is_empty() || !chunk.logprobs.is_empty() {
            let delta = ChatMessageOut {
                content: (!chunk.content.is_empty()).then_some(chunk.content.as_str()),
                tool_calls: (!calls.is_empty()).then_some(calls),
                ..ChatMessageOut::default()
            };
            self.push(delta, LogprobsOut::new(&chunk.logprobs), None);
        }
        if chunk.done {
            let reason = FinishReason::from_native(chunk.done_reason.as_deref(), self.tool_calls > 0);
            self.push(ChatMessageOut::default(), None, Some(reason));
            self.core.finish = Some(reason);
            self.core.complete(usage_chunk::<ChatChoiceOut<'_>>("chat.completion.chunk"), chunk);
        }
    }
}

/// Builds the usage chunk (`choices: []`) for objects of type `object`.
fn usage_chunk<C: Serialize>(object: &'static str) -> impl FnOnce(&OpenAiResponseConfig, UsageOut) -> String {
    move |c, usage| {
        let out: ObjectOut<'_, C> = ObjectOut::new(c, object, Vec::new(), Some(usage));
        to_json(&out)
    }
}

/// Translates one `/api/generate` NDJSON stream into legacy `/v1/completions` SSE events.
///
/// The same driving as [`OpenAiChatStream`]; the events are `text_completion` objects: one per
/// native chunk with text, a final one with `text: ""` and the `finish_reason`, the usage chunk
/// (`choices: []`) when asked, then `[DONE]`. There is no role chunk, `created` stays the same on
/// every chunk (Ollama's does not), and thinking text and tool calls are dropped: the legacy
/// object has no field for them.
#[derive(Clone, Debug)]
pub struct OpenAiCompletionStream {
    core: Core,
}

impl OpenAiCompletionStream {
    /// A translator for one response; nothing is queued until the first input.
    pub fn new(config: OpenAiResponseConfig) -> Self {
        OpenAiCompletionStream { core: Core::new(config) }
    }

    /// Feeds one parsed native chunk.
    pub fn handle_chunk(&mut self, chunk: &Value) {
        let open = self.begin();
        if let Some(chunk) = self.core.accept(open, chunk, NativeEndpoint::Generate) {
            self.texts(&chunk);
        }
    }

    fn line_endpoint(&self) -> NativeEndpoint {
        NativeEndpoint::Generate
    }

    fn handle_plain(&mut self, plain: Plain<'_>) {
        let open = self.begin();
        if self.core.accept_plain(open) {
            self.texts(&plain.into_chunk());
        }
    }

    fn handle_value(&mut self, value: Value) {
        self.handle_chunk(&value);
    }

    fn handle_raw(&mut self, _line: &[u8]) -> bool {
        false
    }

    ndjson_input!(core.lines);
    stream_outputs!();

    fn begin(&mut self) -> bool {
        if self.core.phase == Phase::Idle {
            self.core.phase = Phase::Open;
        }
        !self.core.finished()
    }

    fn push(&mut self, text: &str, logprobs: &[Value], finish: Option<FinishReason>) {
        let choice = TextChoiceOut {
            text,
            index: 0,
            logprobs: LogprobsOut::new(logprobs),
            finish_reason: finish.map(FinishReason::as_str),
        };
        self.core.push("text_completion", choice);
    }

    fn texts(&mut self, chunk: &Chunk) {
        if !chunk.content.is_empty() || !chunk.logprobs.is_empty() {
            self.push(&chunk.content, &chunk.logprobs, None);
        }
        if chunk.done {
            let reason = FinishReason::from_native(chunk.done_reason.as_deref(), false);
            self.push("", &[], Some(reason));
            self.core.finish = Some(reason);
            self.core.complete(usage_chunk::<TextChoiceOut<'_>>("text_completion"), chunk);
        }
    }
}
