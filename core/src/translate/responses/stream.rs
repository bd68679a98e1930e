//! Native `/api/chat` NDJSON → Responses API named SSE events, as the answer streams (the event
//! order is drawn in the parent module).
//!
//! ```text
//!            first input                      done chunk
//!   Idle ───────────────────▶ Open ───────────────────────────▶ Done
//!    (nothing sent)     (created,           (open item closed, response.completed
//!                        in_progress, items)  or response.incomplete)
//!                                  │ error line, malformed line, handle_failure, end before done
//!                                  ▼
//!                                Failed (one response.failed, nothing after it)
//! ```

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::{
    call_item, item_id, message_item, output_text, reasoning_item, response_object, ResponseStatus, ResponsesConfig,
    ResponsesEvent,
};
use crate::codec::ndjson::LineSplitter;
use crate::router::Usage;
use crate::translate::chunk::{ndjson_input, parse_chunk, saturate, Chunk, Plain};
use crate::translate::named::{named_event_stream, Phase};
use crate::translate::{NativeEndpoint, ResponseError};

/// The output item being streamed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OpenItem {
    Reasoning { id: String, index: usize, text: String },
    Message { id: String, index: usize, text: String },
}

/// Translates one `/api/chat` NDJSON stream into `/v1/responses` SSE events.
///
/// Feed it with [`handle_chunk`](Self::handle_chunk), [`handle_line`](Self::handle_line) or
/// [`handle_bytes`](Self::handle_bytes), call [`handle_end`](Self::handle_end) when the body ends,
/// and drain [`poll_event`](Self::poll_event) after each call.
#[derive(Clone, Debug)]
pub struct ResponsesStream {
    config: ResponsesConfig,
    lines: LineSplitter,
    events: VecDeque<ResponsesEvent>,
    phase: Phase,
    sequence: u64,
    open: Option<OpenItem>,
    /// The finished output items, in order.
    output: Vec<Value>,
    tool_calls: u32,
    usage: Option<Usage>,
    status: Option<ResponseStatus>,
    error: Option<ResponseError>,
    ignored: usize,
}

impl ResponsesStream {
    /// A translator for one answer; nothing is queued until the first input.
    pub fn new(config: ResponsesConfig) -> Self {
        ResponsesStream {
            config,
            lines: LineSplitter::default(),
            events: VecDeque::new(),
            phase: Phase::Idle,
            sequence: 0,
            open: None,
            output: Vec::new(),
            tool_calls: 0,
            usage: None,
            status: None,
            error: None,
            ignored: 0,
        }
    }

    named_event_stream!(ResponsesEvent);

    /// How the response ended, once it did without failing.
    pub fn status(&self) -> Option<ResponseStatus> {
        self.status
    }

    /// Sends `response.created` and `response.in_progress` on the first input; `false` once
    /// finished.
    fn begin(&mut self) -> bool {
        if self.phase == Phase::Idle {
            let response = response_object(&self.config, "in_progress", Vec::new(), None, None);
            self.push("response.created", json!({"response": response.clone()}));
            self.push("response.in_progress", json!({"response": response}));
            self.phase = Phase::Open;
        }
        !self.is_finished()
    }

    /// Queues event `name` with `fields`, its `type` and the next `sequence_number` added.
    fn push(&mut self, name: &'static str, mut fields: Value) {
        if let Some(o) = fields.as_object_mut() {
            o.insert("type".into(), Value::String(name.into()));
            o.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        self.events.push_back(ResponsesEvent { name, data: fields.to_string() });
    }

    fn fail(&mut self, err: ResponseError) {
        let mut output = std::mem::take(&mut self.output);
        match self.open.take() {
            Some(OpenItem::Reasoning { id, text, .. }) => output.push(reasoning_item(&id, &text)),
            Some(OpenItem::Message { id, text, .. }) => output.push(message_item(&id, &text, "incomplete")),
            None => {}
        }
        let response = response_object(&self.config, "failed", output, None, Some(&err));
        self.push("response.failed", json!({ "response": response }));
        self.error = Some(err);
        self.phase = Phase::Failed;
    }

    /// The index the next output item takes.
    fn next_index(&self) -> usize {
        self.output.len() + usize::from(self.open.is_some())
    }

    /// Finishes the open item, if any: its done events, and it joins the output.
    fn close(&mut self, message_status: &str) {
        match self.open.take() {
            Some(OpenItem::Reasoning { id, index, text }) => {
                let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                self.push("response.reasoning_summary_text.done", done);
                let mut part = at;
                part["part"] = json!({"type": "summary_text", "text": text});
                self.push("response.reasoning_summary_part.done", part);
                let item = reasoning_item(&id, &text);
                self.push("response.output_item.done", json!({"output_index": index, "item": item.clone()}));
                self.output.push(item);
            }
            Some(OpenItem::Message { id, index, text }) => {
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.push("response.output_text.done", done);
                let mut part = at;
                part["part"] = output_text(&text);
                self.push("response.content_part.done", part);
                let item = message_item(&id, &text, message_status);
                self.push("response.output_item.done", json!({"output_index": index, "item": item.clone()}));
                self.output.push(item);
            }
            None => {}
        }
    }

    fn reasoning_delta(&mut self, delta: &str) {
        if !matches!(self.open, Some(OpenItem::Reasoning { .. })) {
            self.close("completed");
            let index = self.next_index();
            let id = item_id(&self.config, "rs", index);
            let item = json!({"id": id, "type": "reasoning", "summary": []});
            self.push("response.output_item.added", json!({"output_index": index, "item": item}));
            self.push(
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}}),
            );
            self.open = Some(OpenItem::Reasoning { id, index, text: String::new() });
        }
        if let Some(OpenItem::Reasoning { id, index, text }) = &mut self.open {
            text.push_str(delta);
            let fields = json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": delta});
            self.push("response.reasoning_summary_text.delta", fields);
        }
    }

    fn text_delta(&mut self, delta: &str) {
        if !matches!(self.open, Some(OpenItem::Message { .. })) {
            self.close("completed");
            let index = self.next_index();
            let id = item_id(&self.config, "msg", index);
            let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant",
                "content": []});
            self.push("response.output_item.added", json!({"output_index": index, "item": item}));
            let part = output_text("");
            self.push(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
            );
            self.open = Some(OpenItem::Message { id, index, text: String::new() });
        }
        if let Some(OpenItem::Message { id, index, text }) = &mut self.open {
            text.push_str(delta);
            let fields =
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []});
            self.push("response.output_text.delta", fields);
        }
    }

    fn call(&mut self, call: &Value) {
        self.close("completed");
        let index = self.next_index();
        let item = call_item(&self.config, call, self.tool_calls, index);
        self.tool_calls = self.tool_calls.saturating_add(1);
        let id = item["id"].clone();
        let custom = item["type"] == "custom_tool_call";
        let (field, delta_name, done_name) = if custom {
            ("input", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done")
        } else {
            ("arguments", "response.function_call_arguments.delta", "response.function_call_arguments.done")
        };
        let whole = item[field].clone();
        let mut added = item.clone();
        added[field] = json!("");
        added["status"] = json!("in_progress");
        self.push("response.output_item.added", json!({"output_index": index, "item": added}));
        self.push(delta_name, json!({"item_id": id, "output_index": index, "delta": whole}));
        let mut done = json!({"item_id": id, "output_index": index});
        done[field] = whole;
        if !custom {
            done["name"] = item["name"].clone();
        }
        self.push(done_name, done);
        self.push("response.output_item.done", json!({"output_index": index, "item": item.clone()}));
        self.output.push(item);
    }

    fn translate(&mut self, chunk: &Chunk) {
        if !chunk.thinking.is_empty() {
            self.reasoning_delta(&chunk.thinking);
        }
        if !chunk.content.is_empty() {
            self.text_delta(&chunk.content);
        }
        for call in &chunk.tool_calls {
            self.call(call);
        }
        if chunk.done {
            let status = ResponseStatus::from_native(chunk.done_reason.as_deref());
            self.close(status.as_str());
            let usage = Usage {
                prompt_tokens: saturate(chunk.prompt_tokens),
                completion_tokens: saturate(chunk.completion_tokens),
            };
            let output = std::mem::take(&mut self.output);
            let response = response_object(&self.config, status.as_str(), output, Some(usage), None);
            let name = match status {
                ResponseStatus::Completed => "response.completed",
                ResponseStatus::Incomplete => "response.incomplete",
            };
            self.push(name, json!({ "response": response }));
            self.usage = Some(usage);
            self.status = Some(status);
            self.phase = Phase::Done;
        }
    }
}
