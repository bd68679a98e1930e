//! The Responses translators' part of the fuzz and property harness
//! ([`crate::translate::fuzz::check_translate`]): any bytes fed as NDJSON to [`ResponsesStream`]
//! and [`ResponsesAggregator`], and as JSON to the request conversion.
//!
//! Invariants: no panic; the same events however the body is split; `response.created` then
//! `response.in_progress` first and only there; `sequence_number` 0, 1, 2… with no gap; every
//! event named as its data's `type`, every response object with the configured id; exactly one
//! terminal event, last: `response.completed` or `.incomplete` exactly when a done chunk came
//! before any failure, `response.failed` otherwise; items added at output indexes 0, 1, 2…, one
//! open at a time, every delta inside its own item and of its kind, each item done before the
//! next is added; the final response's output equals the items the stream finished; the
//! aggregator succeeds exactly when the stream does, with the same output, status and usage.

use serde_json::Value;

use super::{ResponsesAggregator, ResponsesConfig, ResponsesEvent, ResponsesStream};
use crate::api::decode;
use crate::api::responses::ResponsesRequest;
use crate::translate::fuzz::{reference_done, Violation};
use crate::translate::{chat_request, SamplingDefaults};

fn ensure(ok: bool, invariant: &'static str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(Violation { invariant, detail: detail() })
    }
}

/// Checks the invariants of the module doc on `body` split in pieces of `piece` bytes.
///
/// # Errors
/// The first [`Violation`] found.
pub(crate) fn check_responses(body: &[u8], piece: usize) -> Result<(), Violation> {
    let mut config = ResponsesConfig::new("resp_fuzz", 1_746_093_600, "m");
    config.custom_tools = vec!["apply_patch".into()];
    let run = |feed: &dyn Fn(&mut ResponsesStream)| {
        let mut s = ResponsesStream::new(config.clone());
        feed(&mut s);
        s.handle_end();
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        (s, events)
    };
    let (mut stream, events) = run(&|s| s.handle_bytes(body));
    let (_, pieces) = run(&|s| body.chunks(piece.max(1)).for_each(|p| s.handle_bytes(p)));
    ensure(events == pieces, "responses: same events however split", || format!("{events:?}\n{pieces:?}"))?;
    stream.handle_bytes(b"{\"done\":true}\n");
    stream.handle_end();
    ensure(stream.poll_event().is_none(), "responses: nothing after the end", String::new)?;
    let last = read(&events, &config)?;
    let succeeded = last["type"] != "response.failed";
    ensure(succeeded == reference_done(body), "responses: completed exactly after a done chunk", || {
        format!("{events:?}")
    })?;
    let mut agg = ResponsesAggregator::new(config);
    agg.handle_bytes(body);
    match agg.finish() {
        Ok((v, usage)) => {
            let streamed = &last["response"];
            let same = succeeded
                && digest(&v["output"]) == digest(&streamed["output"])
                && v["status"] == streamed["status"]
                && v["usage"] == streamed["usage"]
                && Some(usage) == stream.usage();
            ensure(same, "responses: stream equals aggregate", || format!("{v}\n{streamed}"))
        }
        Err(err) => {
            ensure(!succeeded, "responses: aggregate fails only when the stream does", || err.to_string())?;
            ensure(Some(&err) == stream.error(), "responses: same error", || format!("{err:?} {:?}", stream.error()))
        }
    }
}

/// What an output list says, ids and item boundaries aside: the answer text, the reasoning
/// text, and each call's type, call id, name and arguments or input.
fn digest(output: &Value) -> (String, String, Vec<Value>) {
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for item in output.as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => item["content"].as_array().into_iter().flatten().for_each(|p| {
                text.push_str(p["text"].as_str().unwrap_or(""));
            }),
            Some("reasoning") => item["summary"].as_array().into_iter().flatten().for_each(|p| {
                reasoning.push_str(p["text"].as_str().unwrap_or(""));
            }),
            _ => calls.push(serde_json::json!([
                item["type"],
                item["call_id"],
                item["name"],
                item["arguments"],
                item["input"]
            ])),
        }
    }
    (text, reasoning, calls)
}

/// Checks the event grammar; returns the terminal event's data.
fn read(events: &[ResponsesEvent], config: &ResponsesConfig) -> Result<Value, Violation> {
    let terminal = events.iter().filter(|e| e.is_terminal()).count();
    ensure(terminal == 1, "responses: one terminal event", || format!("{events:?}"))?;
    ensure(events.last().is_some_and(ResponsesEvent::is_terminal), "responses: terminal event last", || {
        format!("{events:?}")
    })?;
    // (output index, item type) of the open item.
    let mut open: Option<(u64, String)> = None;
    let mut done_items: Vec<Value> = Vec::new();
    let mut last = Value::Null;
    for (i, e) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(&e.data)
            .map_err(|err| Violation { invariant: "responses: data is JSON", detail: format!("{err}: {}", e.data) })?;
        ensure(v["type"] == e.name, "responses: event named as its type", || e.data.clone())?;
        ensure(v["sequence_number"] == i as u64, "responses: sequence numbers count up", || e.data.clone())?;
        let lifecycle = match i {
            0 => "response.created",
            1 => "response.in_progress",
            _ => "",
        };
        ensure(lifecycle.is_empty() || e.name == lifecycle, "responses: created, in_progress first", || {
            format!("{events:?}")
        })?;
        ensure(
            i < 2 || !matches!(e.name, "response.created" | "response.in_progress"),
            "responses: lifecycle events only first",
            || format!("{events:?}"),
        )?;
        if let Some(r) = v.get("response") {
            ensure(r["id"] == config.id.as_str(), "responses: one response id", || e.data.clone())?;
        }
        let index = v["output_index"].as_u64();
        let inside = |kind: &str| open.as_ref().is_some_and(|(at, k)| Some(*at) == index && k == kind);
        match e.name {
            "response.output_item.added" => {
                ensure(open.is_none() && index == Some(done_items.len() as u64), "responses: items in order", || {
                    format!("{events:?}")
                })?;
                open = Some((done_items.len() as u64, v["item"]["type"].as_str().unwrap_or("").to_string()));
            }
            "response.output_item.done" => {
                let kind = v["item"]["type"].as_str().unwrap_or("").to_string();
                ensure(inside(&kind), "responses: done the open item", || e.data.clone())?;
                open = None;
                done_items.push(v["item"].clone());
            }
            "response.output_text.delta"
            | "response.output_text.done"
            | "response.content_part.added"
            | "response.content_part.done" => {
                ensure(inside("message"), "responses: text inside a message", || e.data.clone())?;
            }
            "response.reasoning_summary_text.delta"
            | "response.reasoning_summary_text.done"
            | "response.reasoning_summary_part.added"
            | "response.reasoning_summary_part.done" => {
                ensure(inside("reasoning"), "responses: summary inside a reasoning item", || e.data.clone())?;
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                ensure(inside("function_call"), "responses: arguments inside a call", || e.data.clone())?;
            }
            "response.custom_tool_call_input.delta" | "response.custom_tool_call_input.done" => {
                ensure(inside("custom_tool_call"), "responses: input inside a custom call", || e.data.clone())?;
            }
            "response.completed" | "response.incomplete" => {
                ensure(open.is_none(), "responses: items done before the end", || format!("{events:?}"))?;
                ensure(
                    v["response"]["output"] == Value::Array(done_items.clone()),
                    "responses: output as streamed",
                    || e.data.clone(),
                )?;
                ensure(v["response"]["usage"].is_object(), "responses: usage at the end", || e.data.clone())?;
            }
            _ => {}
        }
        last = v;
    }
    Ok(last)
}

/// The request conversion on `body` as a `/v1/responses` body: no panic, a conversation that
/// the chat translator takes or refuses cleanly, every answer writable.
pub(crate) fn check_responses_request(body: &[u8]) -> Result<(), Violation> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    let Ok(req) = decode::<ResponsesRequest>(&map) else { return Ok(()) };
    if let Ok(chat) = req.into_chat() {
        ensure(chat.messages.as_ref().is_some_and(|m| !m.is_empty()), "responses: a conversation", String::new)?;
        if let Ok(t) = chat_request(chat, SamplingDefaults::OllamaV1) {
            ensure(serde_json::to_vec(t.body()).is_ok(), "responses: the body serialises", String::new)?;
        }
    }
    Ok(())
}
