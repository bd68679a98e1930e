//! Native `/api/chat` NDJSON → one Responses API `response` object (a client that did not ask to
//! stream, while herd streams from the node): output items in the order reasoning, message,
//! calls, the status and the node's counts. No `done: true`, no response:
//! [`ResponsesAggregator::finish`] answers the upstream's error or [`ResponseError::Truncated`]
//! instead (a 502 for the client).

use serde_json::Value;

use super::{call_item, item_id, message_item, reasoning_item, response_object, ResponseStatus, ResponsesConfig};
use crate::router::Usage;
use crate::translate::aggregate::{aggregator_inputs, usage, Sum};
use crate::translate::chunk::{ndjson_input, saturate, Plain};
use crate::translate::{NativeEndpoint, ResponseError};

/// Adds native chat chunks up to one `/v1/responses` answer (`object: "response"`).
#[derive(Clone, Debug)]
pub struct ResponsesAggregator {
    config: ResponsesConfig,
    sum: Sum,
}

impl ResponsesAggregator {
    /// An empty aggregate for one answer.
    pub fn new(config: ResponsesConfig) -> Self {
        ResponsesAggregator { config, sum: Sum::new(NativeEndpoint::Chat) }
    }

    aggregator_inputs!();

    /// The `response` object, and the token counts for the router.
    ///
    /// # Errors
    /// The upstream's error, a malformed line, or [`ResponseError::Truncated`] when the body
    /// ended without `done: true`.
    pub fn finish(mut self) -> Result<(Value, Usage), ResponseError> {
        self.flush_lines();
        let (done, _) = self.sum.result()?;
        let c = &self.config;
        let status = ResponseStatus::from_native(done.done_reason.as_deref());
        let mut output = Vec::new();
        if !self.sum.thinking.is_empty() {
            output.push(reasoning_item(&item_id(c, "rs", output.len()), &self.sum.thinking));
        }
        if !self.sum.content.is_empty() {
            output.push(message_item(&item_id(c, "msg", output.len()), &self.sum.content, status.as_str()));
        }
        for (i, call) in self.sum.tool_calls.iter().enumerate() {
            let index = output.len();
            output.push(call_item(c, call, saturate(i as u64), index));
        }
        let usage = usage(&done);
        Ok((response_object(c, status.as_str(), output, Some(usage), None), usage))
    }
}
