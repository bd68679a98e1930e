//! The Anthropic-compatible `/v1/messages` (wire-api.md §7): the request read into a [`Plan`],
//! the named-event SSE stream (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`) and the non-streamed `message` object. Core has no Anthropic translator, so
//! the format is written here, block by block as Ollama's middleware does.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use herd_core::api::anthropic::{Block, MessagesRequest};
use herd_core::api::estimate::TokenTally;
use herd_core::api::Content;
use herd_core::ids::ModelName;
use herd_core::model::is_thinking;
use serde_json::{json, Value};

use super::engine::Timings;
use super::gen::{self, Output, Piece, Plan, PlanInput};
use super::reply::{error, Resp, Style};
use super::server::{Guard, Shared};
use super::text::{digest, seed_of};

/// `POST /v1/messages`.
pub(crate) async fn messages(shared: &Arc<Shared>, body: &[u8], guard: Guard) -> Resp {
    let bad = |m: &str| error(Style::Anthropic, 400, m);
    if body.iter().all(u8::is_ascii_whitespace) {
        return bad("missing request body");
    }
    let req: MessagesRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad(&e.to_string()),
    };
    let Some(echo) = req.model.clone().filter(|m| !m.trim().is_empty()) else {
        return bad("model is required");
    };
    if req.max_tokens.is_none_or(|n| n == 0) {
        return bad("max_tokens is required and must be positive");
    }
    let messages = req.messages.as_deref().unwrap_or(&[]);
    if messages.is_empty() {
        return bad("messages is required");
    }
    let Some(model) = shared.find_model(&echo) else {
        return error(Style::Anthropic, 404, &format!("model '{echo}' not found"));
    };
    let mut tally = TokenTally::default();
    let mut seed_text = String::new();
    if let Some(system) = &req.system {
        tally.message();
        tally_content(system, &mut tally, &mut seed_text);
    }
    for m in messages {
        tally.message();
        if let Some(c) = &m.content {
            tally_content(c, &mut tally, &mut seed_text);
        }
    }
    let tools: Vec<Value> = req.tools.clone().unwrap_or_default();
    for t in &tools {
        tally.json(t);
    }
    let last_is_result = messages
        .last()
        .and_then(|m| m.content.as_ref())
        .is_some_and(|c| c.parts().iter().any(|b| matches!(b, Block::ToolResult(_))));
    let think = req.think().unwrap_or_else(|| is_thinking(&ModelName::new(&echo), None));
    let input = PlanInput {
        seed: seed_of(&seed_text),
        think,
        call: if last_is_result { None } else { tools.first() },
        num_predict: None,
        default_tokens: shared.default_tokens().min(req.max_tokens.unwrap_or(1) as usize),
        format: None,
    };
    let (pieces, mut reason) = gen::pieces(&input);
    if req.max_tokens.is_some_and(|n| n as usize <= shared.default_tokens()) && input.call.is_none() {
        reason = "length";
    }
    let plan = Plan {
        echo,
        model: model.name,
        weights_gb: model.size_gb,
        pieces,
        prompt_tokens: tally.tokens(),
        done_reason: reason,
    };
    gen::execute(shared, plan, Output::Anthropic, req.stream.unwrap_or(false), guard).await
}

/// Adds string-or-blocks content to the tally and its text to the seed.
fn tally_content(c: &Content<Block>, tally: &mut TokenTally, seed: &mut String) {
    match c {
        Content::Text(t) => {
            tally.text(t);
            seed.push_str(t);
        }
        Content::Parts(blocks) => {
            for b in blocks {
                b.tally(tally);
                if let Some(t) = b.text() {
                    seed.push_str(t);
                }
            }
        }
    }
}

/// `stop_reason` for a native `done_reason`: any tool call gives `tool_use`.
fn stop_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        _ if called => "tool_use",
        "stop" => "end_turn",
        "length" => "max_tokens",
        _ => "stop_sequence",
    }
}

fn message_id(plan: &Plan) -> String {
    format!("msg_{}", &digest(&format!("{}{:?}", plan.echo, plan.pieces.first()))[..24])
}

/// The non-streamed `message` object: blocks in order thinking, text, tool_use.
pub(crate) fn message(plan: &Plan, t: &Timings) -> Value {
    let (mut thinking, mut text, mut calls) = (String::new(), String::new(), Vec::new());
    for p in &plan.pieces {
        match p {
            Piece::Thinking(w) => thinking.push_str(w),
            Piece::Content(c) => text.push_str(c),
            Piece::ToolCall(v) => calls.push(tool_use(v)),
        }
    }
    let mut content = Vec::new();
    if !thinking.is_empty() {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let called = !calls.is_empty();
    content.extend(calls);
    json!({
        "id": message_id(plan),
        "type": "message",
        "role": "assistant",
        "model": plan.echo,
        "content": content,
        "stop_reason": stop_reason(plan.done_reason, called),
        "stop_sequence": null,
        "usage": {"input_tokens": t.prompt_tokens, "output_tokens": t.eval_count},
    })
}

/// A native tool call as a `tool_use` block.
fn tool_use(call: &Value) -> Value {
    let f = &call["function"];
    json!({"type": "tool_use", "id": call["id"], "name": f["name"], "input": f["arguments"]})
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
}

/// Writes one streamed answer as Anthropic's named SSE events.
pub(crate) struct AnthropicStream {
    start: Option<Value>,
    open: Option<Open>,
    index: u32,
    called: bool,
}

fn event(name: &str, data: &Value, out: &mut BytesMut) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    let _ = serde_json::to_writer(out.writer(), data);
    out.put_slice(b"\n\n");
}

impl AnthropicStream {
    /// A stream for `plan`; `message_start` goes out with the first piece.
    pub fn new(plan: &Plan) -> Self {
        let start = json!({"type": "message_start", "message": {
            "id": message_id(plan), "type": "message", "role": "assistant", "model": plan.echo,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": 0}}});
        AnthropicStream { start: Some(start), open: None, index: 0, called: false }
    }

    fn begin(&mut self, out: &mut BytesMut) {
        if let Some(start) = self.start.take() {
            event("message_start", &start, out);
        }
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            event("content_block_stop", &json!({"type": "content_block_stop", "index": self.index}), out);
            self.index += 1;
        }
    }

    fn ensure(&mut self, kind: Open, out: &mut BytesMut) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let block = match kind {
            Open::Thinking => json!({"type": "thinking", "thinking": ""}),
            Open::Text => json!({"type": "text", "text": ""}),
        };
        let start = json!({"type": "content_block_start", "index": self.index, "content_block": block});
        event("content_block_start", &start, out);
        self.open = Some(kind);
    }

    /// The events for one piece.
    pub fn piece(&mut self, p: &Piece, out: &mut BytesMut) {
        self.begin(out);
        let delta = |index: u32, delta: Value| json!({"type": "content_block_delta", "index": index, "delta": delta});
        match p {
            Piece::Thinking(w) => {
                self.ensure(Open::Thinking, out);
                let d = delta(self.index, json!({"type": "thinking_delta", "thinking": w}));
                event("content_block_delta", &d, out);
            }
            Piece::Content(c) => {
                self.ensure(Open::Text, out);
                let d = delta(self.index, json!({"type": "text_delta", "text": c}));
                event("content_block_delta", &d, out);
            }
            Piece::ToolCall(v) => {
                self.close(out);
                let mut block = tool_use(v);
                let input = block["input"].take().to_string();
                block["input"] = json!({});
                let start = json!({"type": "content_block_start", "index": self.index, "content_block": block});
                event("content_block_start", &start, out);
                let d = delta(self.index, json!({"type": "input_json_delta", "partial_json": input}));
                event("content_block_delta", &d, out);
                event("content_block_stop", &json!({"type": "content_block_stop", "index": self.index}), out);
                self.index += 1;
                self.called = true;
            }
        }
    }

    /// `content_block_stop` for the open block, `message_delta` and `message_stop`.
    pub fn done(&mut self, t: &Timings, reason: &str, out: &mut BytesMut) {
        self.begin(out);
        self.close(out);
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(reason, self.called), "stop_sequence": null},
            "usage": {"input_tokens": t.prompt_tokens, "output_tokens": t.eval_count}});
        event("message_delta", &delta, out);
        event("message_stop", &json!({"type": "message_stop"}), out);
    }

    /// An `error` event (the stream then ends).
    pub fn error(&mut self, message: &str, out: &mut BytesMut) {
        event("error", &json!({"type": "error", "error": {"type": "api_error", "message": message}}), out);
    }
}
