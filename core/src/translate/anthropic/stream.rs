//! Native `/api/chat` NDJSON → Anthropic's named SSE events, as the answer streams (the event
//! order is drawn in the parent module).
//!
//! ```text
//!            first input                      done chunk
//!   Idle ───────────────────▶ Open ───────────────────────────▶ Done
//!    (nothing sent)     (message_start,   (open block stopped, message_delta, message_stop)
//!                        blocks)   │
//!                                  │ error line, malformed line, handle_failure, end before done
//!                                  ▼
//!                                Failed (one `error` event, nothing after it)
//! ```

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::{error_payload, tool_use_block, AnthropicEvent, AnthropicResponseConfig, StopReason};
use crate::codec::ndjson::LineSplitter;
use crate::router::Usage;
use crate::translate::chunk::{ndjson_input, parse_chunk, saturate, Chunk, Plain};
use crate::translate::named::{named_event_stream, Phase};
use crate::translate::{NativeEndpoint, ResponseError};

/// The kind of the content block that is open.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
}

/// Translates one `/api/chat` NDJSON stream into `/v1/messages` SSE events.
///
/// Feed it with [`handle_chunk`](Self::handle_chunk), [`handle_line`](Self::handle_line) or
/// [`handle_bytes`](Self::handle_bytes), call [`handle_end`](Self::handle_end) when the body ends,
/// and drain [`poll_event`](Self::poll_event) after each call.
#[derive(Clone, Debug)]
pub struct AnthropicStream {
    config: AnthropicResponseConfig,
    lines: LineSplitter,
    events: VecDeque<AnthropicEvent>,
    phase: Phase,
    open: Option<Open>,
    /// The index of the next block.
    index: u32,
    tool_calls: u32,
    usage: Option<Usage>,
    stop: Option<StopReason>,
    error: Option<ResponseError>,
    ignored: usize,
}

impl AnthropicStream {
    /// A translator for one answer; nothing is queued until the first input.
    pub fn new(config: AnthropicResponseConfig) -> Self {
        AnthropicStream {
            config,
            lines: LineSplitter::default(),
            events: VecDeque::new(),
            phase: Phase::Idle,
            open: None,
            index: 0,
            tool_calls: 0,
            usage: None,
            stop: None,
            error: None,
            ignored: 0,
        }
    }

    named_event_stream!(AnthropicEvent);

    /// The stop reason sent, once the stream completed.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Sends `message_start` on the first input; `false` once finished.
    fn begin(&mut self) -> bool {
        if self.phase == Phase::Idle {
            let c = &self.config;
            let start = json!({"type": "message_start", "message": {
                "id": c.id, "type": "message", "role": "assistant", "model": c.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": c.input_tokens, "output_tokens": 0}}});
            self.push("message_start", &start);
            self.phase = Phase::Open;
        }
        !self.is_finished()
    }

    fn push(&mut self, name: &'static str, data: &Value) {
        self.events.push_back(AnthropicEvent::new(name, data));
    }

    fn fail(&mut self, err: ResponseError) {
        self.push("error", &error_payload(&err));
        self.error = Some(err);
        self.phase = Phase::Failed;
    }

    /// Stops the open block, if any.
    fn close(&mut self) {
        if self.open.take().is_some() {
            self.push("content_block_stop", &json!({"type": "content_block_stop", "index": self.index}));
            self.index += 1;
        }
    }

    /// Opens a block of `kind` unless one is open already.
    fn ensure(&mut self, kind: Open) {
        if self.open == Some(kind) {
            return;
        }
        self.close();
        let block = match kind {
            Open::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Open::Text => json!({"type": "text", "text": ""}),
        };
        self.push(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = Some(kind);
    }

    fn delta(&mut self, delta: Value) {
        self.push("content_block_delta", &json!({"type": "content_block_delta", "index": self.index, "delta": delta}));
    }

    fn translate(&mut self, chunk: &Chunk) {
        if !chunk.thinking.is_empty() {
            self.ensure(Open::Thinking);
            self.delta(json!({"type": "thinking_delta", "thinking": chunk.thinking}));
        }
        if !chunk.content.is_empty() {
            self.ensure(Open::Text);
            self.delta(json!({"type": "text_delta", "text": chunk.content}));
        }
        for call in &chunk.tool_calls {
            self.close();
            let mut block = tool_use_block(call, self.tool_calls, &self.config.id);
            let input = block["input"].take().to_string();
            block["input"] = json!({});
            self.push(
                "content_block_start",
                &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
            );
            self.delta(json!({"type": "input_json_delta", "partial_json": input}));
            self.push("content_block_stop", &json!({"type": "content_block_stop", "index": self.index}));
            self.index += 1;
            self.tool_calls = self.tool_calls.saturating_add(1);
        }
        if chunk.done {
            self.close();
            let usage = Usage {
                prompt_tokens: saturate(chunk.prompt_tokens),
                completion_tokens: saturate(chunk.completion_tokens),
            };
            let stop = StopReason::from_native(chunk.done_reason.as_deref(), self.tool_calls > 0);
            let delta = json!({"type": "message_delta",
                "delta": {"stop_reason": stop.as_str(), "stop_sequence": null},
                "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}});
            self.push("message_delta", &delta);
            self.push("message_stop", &json!({"type": "message_stop"}));
            self.usage = Some(usage);
            self.stop = Some(stop);
            self.phase = Phase::Done;
        }
    }
}
