//! Native `/api/chat` NDJSON → one Anthropic `message` (a client that did not ask to stream,
//! while herd streams from the node): blocks in the order thinking, text, tool_use, the stop
//! reason and the node's counts. No `done: true`, no message: [`AnthropicAggregator::finish`]
//! answers the upstream's error or [`ResponseError::Truncated`] instead (herd-router.md §7.4:
//! 502).

use serde_json::{json, Value};

use super::{tool_use_block, AnthropicResponseConfig, StopReason};
use crate::router::Usage;
use crate::translate::aggregate::{aggregator_inputs, usage, Sum};
use crate::translate::chunk::{ndjson_input, saturate, Plain};
use crate::translate::{NativeEndpoint, ResponseError};

/// Adds native chat chunks up to one `/v1/messages` answer (`type: "message"`).
#[derive(Clone, Debug)]
pub struct AnthropicAggregator {
    config: AnthropicResponseConfig,
    sum: Sum,
}

impl AnthropicAggregator {
    /// An empty aggregate for one answer.
    pub fn new(config: AnthropicResponseConfig) -> Self {
        AnthropicAggregator { config, sum: Sum::new(NativeEndpoint::Chat) }
    }

    aggregator_inputs!();

    /// The `message` object, and the token counts for the router.
    ///
    /// # Errors
    /// The upstream's error, a malformed line, or [`ResponseError::Truncated`] when the body
    /// ended without `done: true`.
    pub fn finish(mut self) -> Result<(Value, Usage), ResponseError> {
        self.flush_lines();
        let (done, _) = self.sum.result()?;
        let c = &self.config;
        let mut content = Vec::new();
        if !self.sum.thinking.is_empty() {
            content.push(json!({"type": "thinking", "thinking": self.sum.thinking, "signature": ""}));
        }
        if !self.sum.content.is_empty() {
            content.push(json!({"type": "text", "text": self.sum.content}));
        }
        let calls = &self.sum.tool_calls;
        content.extend(calls.iter().enumerate().map(|(i, call)| tool_use_block(call, saturate(i as u64), &c.id)));
        let stop = StopReason::from_native(done.done_reason.as_deref(), !calls.is_empty());
        let usage = usage(&done);
        let message = json!({
            "id": c.id, "type": "message", "role": "assistant", "model": c.model, "content": content,
            "stop_reason": stop.as_str(), "stop_sequence": null,
            "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
        });
        Ok((message, usage))
    }
}
