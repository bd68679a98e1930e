//! The Anthropic translators' part of the fuzz and property harness
//! ([`crate::translate::fuzz::check_translate`]): any bytes fed as NDJSON to [`AnthropicStream`]
//! and [`AnthropicAggregator`], and as JSON to [`messages_request`].
//!
//! Invariants: no panic; the same events however the body is split; `message_start` first and
//! only there; exactly one terminal event, last: `message_stop` exactly when a done chunk came
//! before any failure, `error` otherwise; blocks started at indexes 0, 1, 2… and stopped before
//! the next starts, each delta of its block's kind, at its index; `message_delta` just before
//! `message_stop`; every event named as its data's `type`; the aggregator succeeds exactly when
//! the stream does, with the same text, thinking, tool calls, stop reason and usage.

use serde_json::Value;

use super::{messages_request, AnthropicAggregator, AnthropicResponseConfig, AnthropicStream};
use crate::api::anthropic::MessagesRequest;
use crate::api::decode;
use crate::translate::fuzz::{reference_done, Violation};

fn ensure(ok: bool, invariant: &'static str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(Violation { invariant, detail: detail() })
    }
}

/// What an Anthropic stream said.
#[derive(Debug, Default, PartialEq)]
struct Said {
    text: String,
    thinking: String,
    tools: Vec<(Value, String)>,
    stop_reason: Option<String>,
    usage: Option<Value>,
    stopped: bool,
}

/// Checks the invariants of the module doc on `body` split in pieces of `piece` bytes.
///
/// # Errors
/// The first [`Violation`] found.
pub(crate) fn check_anthropic(body: &[u8], piece: usize) -> Result<(), Violation> {
    let config = AnthropicResponseConfig { id: "msg_fuzz".into(), model: "claude-fuzz".into(), input_tokens: 7 };
    let run = |feed: &dyn Fn(&mut AnthropicStream)| {
        let mut s = AnthropicStream::new(config.clone());
        feed(&mut s);
        s.handle_end();
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        (s, events)
    };
    let (mut stream, events) = run(&|s| s.handle_bytes(body));
    let (_, pieces) = run(&|s| body.chunks(piece.max(1)).for_each(|p| s.handle_bytes(p)));
    ensure(events == pieces, "anthropic: same events however split", || format!("{events:?}\n{pieces:?}"))?;
    stream.handle_bytes(b"{\"done\":true}\n");
    stream.handle_end();
    ensure(stream.poll_event().is_none(), "anthropic: nothing after the end", String::new)?;
    let said = read(&events)?;
    ensure(said.stopped == reference_done(body), "anthropic: message_stop exactly after a done chunk", || {
        format!("{events:?}")
    })?;
    let mut agg = AnthropicAggregator::new(config);
    agg.handle_bytes(body);
    match agg.finish() {
        Ok((v, usage)) => {
            let content = v["content"].as_array().cloned().unwrap_or_default();
            let block = |kind: &str, field: &str| -> String {
                let found = content.iter().find(|b| b["type"] == kind);
                found.and_then(|b| b[field].as_str()).unwrap_or("").to_string()
            };
            let tools: Vec<(Value, String)> = v["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| (b["id"].clone(), b["input"].to_string()))
                .collect();
            let same = said.stopped
                && block("text", "text") == said.text
                && block("thinking", "thinking") == said.thinking
                && tools == said.tools
                && v["stop_reason"].as_str() == said.stop_reason.as_deref()
                && Some(usage) == stream.usage()
                && said.usage.as_ref().is_some_and(|u| u["output_tokens"] == usage.completion_tokens);
            ensure(same, "anthropic: stream equals aggregate", || format!("{v}\n{said:?}"))
        }
        Err(err) => {
            ensure(!said.stopped, "anthropic: aggregate fails only when the stream does", || err.to_string())?;
            ensure(Some(&err) == stream.error(), "anthropic: same error", || format!("{err:?} {:?}", stream.error()))
        }
    }
}

/// Checks the event grammar and reads back what the events said.
fn read(events: &[super::AnthropicEvent]) -> Result<Said, Violation> {
    let terminal = events.iter().filter(|e| e.is_terminal()).count();
    ensure(terminal == 1, "anthropic: one terminal event", || format!("{events:?}"))?;
    ensure(events.last().is_some_and(|e| e.is_terminal()), "anthropic: terminal event last", || format!("{events:?}"))?;
    let mut said = Said { stopped: events.last().is_some_and(|e| e.name == "message_stop"), ..Said::default() };
    let mut open: Option<(u64, String)> = None;
    let mut next = 0u64;
    for (i, e) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(&e.data)
            .map_err(|err| Violation { invariant: "anthropic: data is JSON", detail: format!("{err}: {}", e.data) })?;
        ensure(v["type"] == e.name, "anthropic: event named as its type", || e.data.clone())?;
        ensure((e.name == "message_start") == (i == 0), "anthropic: message_start first, and only there", || {
            format!("{events:?}")
        })?;
        let index = v["index"].as_u64();
        match e.name {
            "content_block_start" => {
                ensure(open.is_none() && index == Some(next), "anthropic: blocks in order, one at a time", || {
                    format!("{events:?}")
                })?;
                let kind = v["content_block"]["type"].as_str().unwrap_or("").to_string();
                if kind == "tool_use" {
                    said.tools.push((v["content_block"]["id"].clone(), String::new()));
                }
                open = Some((next, kind));
            }
            "content_block_delta" => {
                let Some((at, kind)) = &open else {
                    return Err(Violation { invariant: "anthropic: deltas inside a block", detail: e.data.clone() });
                };
                ensure(index == Some(*at), "anthropic: delta at its block's index", || e.data.clone())?;
                let d = &v["delta"];
                match (kind.as_str(), d["type"].as_str().unwrap_or("")) {
                    ("text", "text_delta") => said.text.push_str(d["text"].as_str().unwrap_or("")),
                    ("thinking", "thinking_delta") => said.thinking.push_str(d["thinking"].as_str().unwrap_or("")),
                    ("tool_use", "input_json_delta") => {
                        if let Some(t) = said.tools.last_mut() {
                            t.1.push_str(d["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {
                        return Err(Violation {
                            invariant: "anthropic: delta of the block's kind",
                            detail: e.data.clone(),
                        })
                    }
                }
            }
            "content_block_stop" => {
                ensure(open.take().is_some_and(|(at, _)| index == Some(at)), "anthropic: stop the open block", || {
                    e.data.clone()
                })?;
                next += 1;
            }
            "message_delta" => {
                ensure(open.is_none(), "anthropic: blocks stopped before the end", || format!("{events:?}"))?;
                ensure(
                    events.get(i + 1).is_some_and(|n| n.name == "message_stop"),
                    "anthropic: message_delta last but one",
                    || format!("{events:?}"),
                )?;
                said.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_string);
                said.usage = Some(v["usage"].clone());
            }
            _ => {}
        }
    }
    ensure(said.stop_reason.is_some() == said.stopped, "anthropic: a stop reason exactly when stopped", String::new)?;
    // The tool inputs as JSON text, compared with the aggregate's after a parse.
    for t in &mut said.tools {
        t.1 = serde_json::from_str::<Value>(&t.1).map(|v| v.to_string()).unwrap_or_default();
    }
    Ok(said)
}

/// The request translator on `body` as a `/v1/messages` body: no panic, one native message per
/// conversation turn at least, every answer writable.
pub(crate) fn check_messages_request(body: &[u8]) -> Result<(), Violation> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    let Ok(req) = decode::<MessagesRequest>(&map) else { return Ok(()) };
    for thinks in [false, true] {
        if let Ok(native) = messages_request(req.clone(), thinks) {
            ensure(native.messages.as_ref().is_some_and(|m| !m.is_empty()), "anthropic: a conversation", String::new)?;
            ensure(thinks || native.think.is_none(), "anthropic: think only for a thinking model", String::new)?;
            ensure(serde_json::to_vec(&native).is_ok(), "anthropic: the body serialises", String::new)?;
        }
    }
    Ok(())
}
