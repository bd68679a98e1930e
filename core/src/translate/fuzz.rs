//! The fuzz and property harness of the translators: any bytes are fed, as NDJSON, to the
//! stream translators and the aggregators (whole, in pieces and line by line; the Anthropic
//! ones' invariants are in `anthropic::check`), and as JSON to the request translators and the
//! embeddings translators; [`check_translate`] says which
//! invariant broke, [`fuzz_translate`] panics on it (a fuzz target is a one-line shim over it).
//!
//! Invariants: no panic; the same events however the body is split; a chat stream starts with
//! the role chunk (and only that chunk has a role); every chunk carries the configured `id`,
//! `created`, `model` and `object`; exactly one terminal event, last: `[DONE]` exactly when a
//! done chunk came before any failure (a reference reading of the lines decides), an error event
//! otherwise; a usage chunk exactly when asked and done; the aggregators succeed exactly when the
//! stream does, with the same text, thinking, tool calls, finish reason and usage, or the same
//! error; base64 embeddings decode to the same `f32`s as the float ones.

use std::fmt;

use serde_json::Value;

use super::base64::decode_f32_le;
use super::{
    chat_request, completion_request, embedding_request, legacy_embed_request, legacy_embeddings_response,
    openai_embeddings_response, ChatCompletionAggregator, EmbeddingEncoding, NativeAggregator, NativeEndpoint,
    OpenAiChatStream, OpenAiCompletionStream, OpenAiResponseConfig, ReasoningField, SamplingDefaults, SseEvent,
    TextCompletionAggregator,
};
use crate::api::{decode, ollama, openai};

/// A broken invariant: which one, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// What was seen instead.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

fn ensure(ok: bool, invariant: &'static str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(Violation { invariant, detail: detail() })
    }
}

/// Fuzz entry: panics when [`check_translate`] finds a broken invariant.
pub fn fuzz_translate(data: &[u8]) {
    if let Err(v) = check_translate(data) {
        panic!("translate invariant broken: {v}");
    }
}

/// Checks every invariant of the module doc on `data`. The first byte picks the configuration
/// (bit 0: `include_usage`; bits 1–2: the reasoning field; bits 3–7: the piece size, 1–32
/// bytes); the rest is the body.
///
/// # Errors
/// The first [`Violation`] found.
pub fn check_translate(data: &[u8]) -> Result<(), Violation> {
    let (head, body) = data.split_first().map_or((0, &[][..]), |(h, b)| (*h, b));
    let mut config = OpenAiResponseConfig::new("chatcmpl-fuzz", 1_746_093_600, "m");
    config.include_usage = head & 1 == 1;
    config.reasoning_field = [ReasoningField::ReasoningContent, ReasoningField::Reasoning, ReasoningField::Both]
        [usize::from(head >> 1 & 3) % 3];
    let piece = 1 + usize::from(head >> 3);
    check_chat(body, &config, piece)?;
    check_completion(body, &config, piece)?;
    super::anthropic::check::check_anthropic(body, piece)?;
    check_requests(body)?;
    super::anthropic::check::check_messages_request(body)?;
    super::responses::check::check_responses(body, piece)?;
    super::responses::check::check_responses_request(body)?;
    check_embeddings(body)
}

/// The terminal outcome a plain reading of the lines expects: `true` when a done chunk comes
/// before anything that fails the stream.
pub fn reference_done(body: &[u8]) -> bool {
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(line) else { return false };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return false;
        }
        if chunk.get("done") == Some(&Value::Bool(true)) {
            return true;
        }
    }
    false
}

/// What a translated stream said, read back from its events.
#[derive(Debug, Default, PartialEq)]
pub struct StreamText {
    /// Concatenated content deltas (or legacy `text`).
    pub content: String,
    /// Concatenated thinking deltas.
    pub thinking: String,
    /// Every tool call sent.
    pub tool_calls: Vec<Value>,
    /// The finish reason sent.
    pub finish_reason: Option<String>,
    /// The usage chunk's `usage`.
    pub usage: Option<Value>,
    /// Whether it ended with `[DONE]`.
    pub done: bool,
}

/// Checks the framing invariants of `events` and reads back what they said.
///
/// # Errors
/// A [`Violation`] of the framing invariants.
pub fn read_events(events: &[SseEvent], config: &OpenAiResponseConfig, chat: bool) -> Result<StreamText, Violation> {
    let terminal = events.iter().filter(|e| e.is_terminal()).count();
    ensure(terminal == 1, "one terminal event", || format!("{terminal} in {events:?}"))?;
    ensure(events.last().is_some_and(SseEvent::is_terminal), "terminal event last", || format!("{events:?}"))?;
    let mut out = StreamText { done: events.last() == Some(&SseEvent::Done), ..StreamText::default() };
    for (i, event) in events.iter().enumerate() {
        let SseEvent::Chunk(json) = event else { continue };
        let v: Value = serde_json::from_str(json)
            .map_err(|e| Violation { invariant: "chunks are JSON", detail: format!("{e}: {json}") })?;
        let object = if chat { "chat.completion.chunk" } else { "text_completion" };
        let same = v["id"] == config.id.as_str()
            && v["created"] == config.created
            && v["model"] == config.model.as_str()
            && v["object"] == object;
        ensure(same, "one id, created, model and object", || json.clone())?;
        read_chunk(&v, i, chat, &mut out)?;
    }
    let usage_sent = out.usage.is_some();
    ensure(usage_sent == (out.done && config.include_usage), "usage chunk when asked", || format!("{events:?}"))?;
    ensure(out.finish_reason.is_some() == out.done, "finish chunk before [DONE]", || format!("{events:?}"))?;
    Ok(out)
}

fn read_chunk(v: &Value, i: usize, chat: bool, out: &mut StreamText) -> Result<(), Violation> {
    let Some(choices) = v["choices"].as_array() else {
        return Err(Violation { invariant: "choices is a list", detail: v.to_string() });
    };
    if choices.is_empty() {
        out.usage = Some(v["usage"].clone());
        return Ok(());
    }
    let choice = &choices[0];
    if let Some(reason) = choice["finish_reason"].as_str() {
        ensure(out.finish_reason.is_none(), "one finish chunk", || v.to_string())?;
        out.finish_reason = Some(reason.to_string());
    }
    if !chat {
        out.content.push_str(choice["text"].as_str().unwrap_or(""));
        return Ok(());
    }
    let delta = &choice["delta"];
    ensure(delta.get("role").is_some() == (i == 0), "role chunk first, and only there", || v.to_string())?;
    if i > 0 {
        out.content.push_str(delta["content"].as_str().unwrap_or(""));
    }
    let (rc, r) = (delta["reasoning_content"].as_str(), delta["reasoning"].as_str());
    ensure(rc.is_none() || r.is_none() || rc == r, "both reasoning fields agree", || v.to_string())?;
    out.thinking.push_str(rc.or(r).unwrap_or(""));
    out.tool_calls.extend(delta["tool_calls"].as_array().into_iter().flatten().cloned());
    Ok(())
}

/// Feeds `body` to a fresh chat stream three ways, checks they agree and that input after the
/// end is dropped; the stream and its events.
fn chat_events(
    body: &[u8],
    config: &OpenAiResponseConfig,
    piece: usize,
) -> Result<(OpenAiChatStream, Vec<SseEvent>), Violation> {
    let run = |feed: &dyn Fn(&mut OpenAiChatStream)| {
        let mut s = OpenAiChatStream::new(config.clone());
        feed(&mut s);
        s.handle_end();
        let events = drain(|| s.poll_event());
        (s, events)
    };
    let (mut stream, events) = run(&|s| s.handle_bytes(body));
    let (_, pieces) = run(&|s| body.chunks(piece).for_each(|p| s.handle_bytes(p)));
    let (_, lines) = run(&|s| body.split(|&b| b == b'\n').for_each(|l| s.handle_line(l)));
    ensure(events == pieces && events == lines, "chat: same events however split", || {
        format!("{events:?}\n{pieces:?}\n{lines:?}")
    })?;
    stream.handle_bytes(b"{\"done\":true}\n");
    stream.handle_end();
    ensure(stream.is_finished() && stream.poll_event().is_none(), "nothing after the end", String::new)?;
    Ok((stream, events))
}

fn drain(mut poll: impl FnMut() -> Option<SseEvent>) -> Vec<SseEvent> {
    std::iter::from_fn(&mut poll).collect()
}

fn check_chat(body: &[u8], config: &OpenAiResponseConfig, piece: usize) -> Result<(), Violation> {
    let (stream, events) = chat_events(body, config, piece)?;
    let text = read_events(&events, config, true)?;
    let expect_done = reference_done(body);
    ensure(text.done == expect_done, "chat: [DONE] exactly after a done chunk", || format!("{events:?}"))?;
    ensure(stream.usage().is_some() == text.done, "chat: usage known when done", String::new)?;
    let mut agg = ChatCompletionAggregator::new(config.clone());
    agg.handle_bytes(body);
    match agg.finish() {
        Ok((v, usage)) => {
            ensure(text.done, "chat: aggregate succeeds only when the stream does", || v.to_string())?;
            let message = &v["choices"][0]["message"];
            let thinking = message["reasoning_content"].as_str().or(message["reasoning"].as_str()).unwrap_or("");
            let same = message["content"] == text.content.as_str()
                && thinking == text.thinking
                && message["tool_calls"].as_array().map_or(&[][..], Vec::as_slice) == text.tool_calls.as_slice()
                && v["choices"][0]["finish_reason"].as_str() == text.finish_reason.as_deref()
                && Some(usage) == stream.usage();
            ensure(same, "chat: stream concatenated equals aggregate", || format!("{v}\n{text:?}"))?;
        }
        Err(err) => {
            ensure(!text.done, "chat: aggregate fails only when the stream does", || err.to_string())?;
            ensure(Some(&err) == stream.error(), "chat: same error", || format!("{err:?} vs {:?}", stream.error()))?;
        }
    }
    let mut native = NativeAggregator::new(NativeEndpoint::Chat);
    native.handle_bytes(body);
    match native.finish() {
        Ok((v, _)) => {
            let same = text.done
                && v["message"]["content"] == text.content.as_str()
                && v["message"]["thinking"].as_str().unwrap_or("") == text.thinking
                && v["message"]["tool_calls"].as_array().map_or(0, Vec::len) == text.tool_calls.len()
                && v["done"] == true;
            ensure(same, "native chat: same text as the stream", || format!("{v}\n{text:?}"))
        }
        Err(_) => ensure(!text.done, "native chat: fails only when the stream does", String::new),
    }
}

fn check_completion(body: &[u8], config: &OpenAiResponseConfig, piece: usize) -> Result<(), Violation> {
    let run = |feed: &dyn Fn(&mut OpenAiCompletionStream)| {
        let mut s = OpenAiCompletionStream::new(config.clone());
        feed(&mut s);
        s.handle_end();
        let events = drain(|| s.poll_event());
        (s, events)
    };
    let (stream, events) = run(&|s| s.handle_bytes(body));
    let (_, pieces) = run(&|s| body.chunks(piece).for_each(|p| s.handle_bytes(p)));
    ensure(events == pieces, "completion: same events however split", || format!("{events:?}\n{pieces:?}"))?;
    let text = read_events(&events, config, false)?;
    ensure(text.done == reference_done(body), "completion: [DONE] exactly after a done chunk", String::new)?;
    let mut agg = TextCompletionAggregator::new(config.clone());
    agg.handle_bytes(body);
    match agg.finish() {
        Ok((v, usage)) => {
            let same = text.done
                && v["choices"][0]["text"] == text.content.as_str()
                && v["choices"][0]["finish_reason"].as_str() == text.finish_reason.as_deref()
                && Some(usage) == stream.usage();
            ensure(same, "completion: stream concatenated equals aggregate", || format!("{v}\n{text:?}"))?;
        }
        Err(err) => ensure(Some(&err) == stream.error(), "completion: same error", || err.to_string())?,
    }
    let mut native = NativeAggregator::new(NativeEndpoint::Generate);
    native.handle_bytes(body);
    match native.finish() {
        Ok((v, _)) => {
            ensure(text.done && v["response"] == text.content.as_str(), "native generate: same text", || v.to_string())
        }
        Err(_) => ensure(!text.done, "native generate: fails only when the stream does", String::new),
    }
}

/// The request translators on `body` as each OpenAI request type: no panic, and what they
/// answer is consistent.
fn check_requests(body: &[u8]) -> Result<(), Violation> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    if let Ok(req) = decode::<openai::ChatRequest>(&map) {
        let n = req.messages.as_ref().map_or(0, Vec::len);
        for defaults in [SamplingDefaults::OllamaV1, SamplingDefaults::Modelfile] {
            let Ok(mut t) = chat_request(req.clone(), defaults) else { continue };
            ensure(t.body().messages.as_ref().map_or(0, Vec::len) == n, "one native message per message", String::new)?;
            let remote = t.remote_images().len();
            if remote > 0 {
                ensure(t.clone().into_body().is_err(), "unresolved images refuse the body", String::new)?;
                (0..remote)
                    .try_for_each(|i| t.resolve_image(i, b"img"))
                    .map_err(|e| Violation { invariant: "remote images resolve", detail: e.to_string() })?;
            }
            let native = t.into_body().map_err(|e| Violation { invariant: "resolved body", detail: e.to_string() })?;
            let _ = serde_json::to_vec(&native);
        }
    }
    if let Ok(req) = decode::<openai::CompletionRequest>(&map) {
        let _ = completion_request(req, SamplingDefaults::OllamaV1).map(|t| serde_json::to_vec(&t.body));
    }
    if let Ok(req) = decode::<openai::EmbeddingRequest>(&map) {
        let _ = embedding_request(req).map(|t| serde_json::to_vec(&t.body));
    }
    if let Ok(req) = decode::<ollama::EmbeddingsRequest>(&map) {
        let _ = serde_json::to_vec(&legacy_embed_request(req));
    }
    Ok(())
}

/// The embeddings translators on `body` as an `/api/embed` answer.
fn check_embeddings(body: &[u8]) -> Result<(), Violation> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    let floats = openai_embeddings_response(&v, "m", EmbeddingEncoding::Float);
    let coded = openai_embeddings_response(&v, "m", EmbeddingEncoding::Base64);
    let legacy = legacy_embeddings_response(&v);
    ensure(
        floats.is_ok() == coded.is_ok() && coded.is_ok() == legacy.is_ok(),
        "embeddings: same verdict",
        String::new,
    )?;
    let (Ok((floats, _)), Ok((coded, _))) = (floats, coded) else { return Ok(()) };
    let pairs = floats["data"].as_array().into_iter().flatten().zip(coded["data"].as_array().into_iter().flatten());
    for (f, c) in pairs {
        let want: Vec<u32> = f["embedding"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_bits())
            .collect();
        let got: Option<Vec<u32>> =
            c["embedding"].as_str().and_then(decode_f32_le).map(|xs| xs.into_iter().map(f32::to_bits).collect());
        ensure(got.as_ref() == Some(&want), "base64 decodes to the same f32s", || format!("{f} vs {c}"))?;
    }
    Ok(())
}
