//! Clients on the in-memory network, and what they check in every answer: exactly one complete
//! answer, with the whole text the machines give for the prompt, or exactly one error in the
//! client's protocol (before the answer, or as the protocol's error element inside a stream),
//! and never an end-of-answer marker after a failure.

use super::net::{Net, SimConn};
use super::ollama::reply_text;
use super::wire::{self, Dechunk, ResponseHead};
use bytes::BytesMut;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/chat`.
    Chat,
    /// `/api/generate`.
    Generate,
    /// `/v1/chat/completions`.
    OpenAiChat,
    /// `/v1/completions`.
    OpenAiCompletion,
    /// `/v1/messages`.
    Anthropic,
    /// `/v1/responses` (drawn in place of some OpenAI chat calls, not from [`Kind::ALL`]).
    Responses,
    /// `/api/embed`.
    Embed,
    /// `GET /api/tags`.
    Tags,
    /// `GET /api/ps`.
    Ps,
}

impl Kind {
    /// Every kind, for draws.
    pub const ALL: [Kind; 8] = [
        Kind::Chat,
        Kind::Generate,
        Kind::OpenAiChat,
        Kind::OpenAiCompletion,
        Kind::Anthropic,
        Kind::Embed,
        Kind::Tags,
        Kind::Ps,
    ];

    /// Whether the router routes it to one machine (and traces it).
    pub fn is_inference(self) -> bool {
        !matches!(self, Kind::Tags | Kind::Ps)
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Chat => "/api/chat",
            Kind::Generate => "/api/generate",
            Kind::OpenAiChat => "/v1/chat/completions",
            Kind::OpenAiCompletion => "/v1/completions",
            Kind::Anthropic => "/v1/messages",
            Kind::Responses => "/v1/responses",
            Kind::Embed => "/api/embed",
            Kind::Tags => "/api/tags",
            Kind::Ps => "/api/ps",
        }
    }

    fn proto(self) -> Proto {
        match self {
            Kind::OpenAiChat | Kind::OpenAiCompletion | Kind::Responses => Proto::OpenAi,
            Kind::Anthropic => Proto::Anthropic,
            _ => Proto::Ollama,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Ollama,
    OpenAi,
    Anthropic,
}

/// When a client leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Stays to the end.
    Never,
    /// Closes before the answer's head arrives.
    BeforeHead,
    /// Closes once this many body bytes arrived.
    AfterBytes(usize),
}

/// One client request.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its number: sent as the `c<id>` tag, so its trace can be found.
    pub id: u64,
    /// What it asks.
    pub kind: Kind,
    /// Streamed or not.
    pub stream: bool,
    /// The model.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// When it leaves.
    pub leave: Leave,
}

/// What a client got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A complete answer (status 200) with the right text.
    Answer,
    /// An error before the answer, in the client's protocol.
    Error(u16),
    /// A streamed answer that ended with the protocol's error element.
    StreamError,
    /// The client left.
    Left,
}

/// The bytes of `call`'s request.
pub fn request_bytes(call: &Call, router: SocketAddr) -> Vec<u8> {
    let user = json!([{ "role": "user", "content": call.prompt }]);
    let body = match call.kind {
        Kind::Chat => json!({ "model": call.model, "messages": user, "stream": call.stream }),
        Kind::Generate => json!({ "model": call.model, "prompt": call.prompt, "stream": call.stream }),
        Kind::OpenAiChat => json!({ "model": call.model, "messages": user, "stream": call.stream }),
        Kind::OpenAiCompletion => json!({ "model": call.model, "prompt": call.prompt, "stream": call.stream }),
        Kind::Anthropic => {
            json!({ "model": call.model, "max_tokens": 256, "messages": user, "stream": call.stream })
        }
        Kind::Responses => json!({ "model": call.model, "input": user, "stream": call.stream }),
        Kind::Embed => json!({ "model": call.model, "input": call.prompt }),
        Kind::Tags | Kind::Ps => Value::Null,
    };
    // Every third call that does not stream names an output budget, so the router takes its
    // answer from the node whole (`retry.unstreamed_max_tokens`); the machines' replies are
    // shorter than it.
    let mut body = body;
    if call.id % 3 == 0 && !call.stream {
        match call.kind {
            Kind::Chat | Kind::Generate => body["options"] = json!({ "num_predict": 200 }),
            Kind::OpenAiChat | Kind::OpenAiCompletion => body["max_tokens"] = json!(200),
            Kind::Responses => body["max_output_tokens"] = json!(200),
            _ => {}
        }
    }
    let mut head = if call.kind.is_inference() {
        format!("POST {} HTTP/1.1\r\nhost: {router}\r\nx-herd-tags: c{}\r\n", call.kind.path(), call.id)
    } else {
        format!("GET {} HTTP/1.1\r\nhost: {router}\r\n", call.kind.path())
    };
    if call.kind == Kind::Anthropic {
        head.push_str("anthropic-version: 2023-06-01\r\n");
    }
    let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).expect("serialises") };
    if !body.is_empty() {
        head.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Sends `call` from host `from` to the router and checks what comes back.
///
/// # Errors
///
/// What the client saw breaks a promise (the message says which).
pub async fn run(net: &Net, from: IpAddr, router: SocketAddr, call: &Call) -> Result<Got, String> {
    let conn = net.connect(from, router.to_string()).await.map_err(|e| format!("cannot reach the router: {e}"))?;
    wire::write_all(&conn, &request_bytes(call, router)).await.map_err(|e| format!("sending: {e}"))?;
    if call.leave == Leave::BeforeHead {
        // Leaves at once: the router may be queueing or answering it.
        drop(conn);
        return Ok(Got::Left);
    }
    let mut buf = BytesMut::new();
    let head = loop {
        if let Some(h) = wire::parse_response_head(&mut buf).map_err(|e| e.to_string())? {
            break h;
        }
        match wire::fill(&conn, &mut buf).await {
            Ok(0) => return Err("the router closed the connection without an answer".into()),
            Err(e) => return Err(format!("the connection failed before an answer: {e}")),
            Ok(_) => {}
        }
    };
    let (body, complete) = match read_body(&conn, &head, &mut buf, call.leave).await? {
        Some(b) => b,
        None => return Ok(Got::Left),
    };
    if !complete {
        return Err(format!("the answer was cut off (status {}, {} bytes)", head.status, body.len()));
    }
    check(call, &head, &body)
}

/// The body, and whether its framing ended properly; `None` when the client left.
async fn read_body(
    conn: &SimConn,
    head: &ResponseHead,
    buf: &mut BytesMut,
    leave: Leave,
) -> Result<Option<(Vec<u8>, bool)>, String> {
    let chunked = head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = head.header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
    if !chunked && length.is_none() {
        return Err(format!("an answer with neither length nor chunks: {:?}", head.headers));
    }
    let mut out = Vec::new();
    let mut dechunk = Dechunk::default();
    loop {
        if chunked {
            dechunk.feed(buf, &mut out).map_err(|e| format!("bad chunked framing: {e}"))?;
            if dechunk.done {
                return Ok(Some((out, true)));
            }
        } else {
            let want = length.unwrap_or(0);
            let take = (want - out.len()).min(buf.len());
            out.extend_from_slice(&buf.split_to(take));
            if out.len() == want {
                return Ok(Some((out, true)));
            }
        }
        if let Leave::AfterBytes(n) = leave {
            if out.len() >= n {
                return Ok(None);
            }
        }
        match wire::fill(conn, buf).await {
            Ok(0) | Err(_) => return Ok(Some((out, false))),
            Ok(_) => {}
        }
    }
}

fn check(call: &Call, head: &ResponseHead, body: &[u8]) -> Result<Got, String> {
    let proto = call.kind.proto();
    let shown = || String::from_utf8_lossy(body).chars().take(300).collect::<String>();
    if head.status >= 400 {
        let v: Value =
            serde_json::from_slice(body).map_err(|_| format!("error {} not JSON: {}", head.status, shown()))?;
        let ok = match proto {
            Proto::Ollama => v["error"].is_string(),
            Proto::OpenAi => v["error"]["message"].is_string() && v["error"]["type"].is_string(),
            Proto::Anthropic => {
                v["type"] == "error" && v["error"]["type"].is_string() && v["error"]["message"].is_string()
            }
        };
        return if ok {
            Ok(Got::Error(head.status))
        } else {
            Err(format!("error {} not in {proto:?}'s envelope: {}", head.status, shown()))
        };
    }
    if head.status != 200 {
        return Err(format!("status {} for {:?}", head.status, call.kind));
    }
    let expected = reply_text(&call.prompt);
    let json = || serde_json::from_slice::<Value>(body).map_err(|e| format!("answer not JSON ({e}): {}", shown()));
    match call.kind {
        Kind::Tags | Kind::Ps => {
            return if json()?["models"].is_array() { Ok(Got::Answer) } else { Err(format!("no models: {}", shown())) }
        }
        Kind::Embed => {
            return if json()?["embeddings"].is_array() {
                Ok(Got::Answer)
            } else {
                Err(format!("no embeddings: {}", shown()))
            }
        }
        _ => {}
    }
    let streamed = head
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream") || c.starts_with("application/x-ndjson"));
    if call.stream != streamed {
        return Err(format!("asked stream={} and got content-type {:?}", call.stream, head.header("content-type")));
    }
    let (text, ended, failed) = if !call.stream {
        let v = json()?;
        let text = match call.kind {
            Kind::Chat => v["message"]["content"].as_str(),
            Kind::Generate => v["response"].as_str(),
            Kind::OpenAiChat => v["choices"][0]["message"]["content"].as_str(),
            Kind::OpenAiCompletion => v["choices"][0]["text"].as_str(),
            Kind::Responses if v["status"] != "completed" => None,
            Kind::Responses => v["output"][0]["content"][0]["text"].as_str(),
            _ => v["content"][0]["text"].as_str(),
        };
        let done = match call.kind {
            Kind::Chat | Kind::Generate => v["done"] == true,
            _ => true,
        };
        (text.ok_or_else(|| format!("no text in {}", shown()))?.to_string(), done, false)
    } else {
        match proto {
            Proto::Ollama => ndjson(call.kind, body)?,
            Proto::OpenAi if call.kind == Kind::Responses => responses_sse(body)?,
            Proto::OpenAi => openai_sse(call.kind, body)?,
            Proto::Anthropic => anthropic_sse(body)?,
        }
    };
    match (ended, failed) {
        (true, false) if text == expected => Ok(Got::Answer),
        (true, false) => Err(format!("a complete answer with the wrong text: {text:?}, not {expected:?}")),
        (false, true) => Ok(Got::StreamError),
        (true, true) => Err(format!("an end marker and an error in one answer: {}", shown())),
        (false, false) => Err(format!("a stream that ended with neither its end nor an error: {}", shown())),
    }
}

/// (text, ended with done, had an error line); a line after the end is a violation.
fn ndjson(kind: Kind, body: &[u8]) -> Result<(String, bool, bool), String> {
    let (mut text, mut ended, mut failed) = (String::new(), false, false);
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if ended || failed {
            return Err(format!("a line after the stream ended: {}", String::from_utf8_lossy(line)));
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| format!("stream line not JSON ({e})"))?;
        if v.get("error").is_some() {
            failed = true;
            continue;
        }
        let piece = if kind == Kind::Chat { v["message"]["content"].as_str() } else { v["response"].as_str() };
        text.push_str(piece.unwrap_or(""));
        ended = v["done"] == true;
    }
    Ok((text, ended, failed))
}

/// The `data:` payloads and `event:` names of an SSE body.
fn sse_events(body: &[u8]) -> Result<Vec<(Option<String>, String)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "SSE not UTF-8".to_string())?;
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut event = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        out.push((event, data));
    }
    Ok(out)
}

fn openai_sse(kind: Kind, body: &[u8]) -> Result<(String, bool, bool), String> {
    let (mut text, mut ended, mut failed) = (String::new(), false, false);
    for (_, data) in sse_events(body)? {
        if ended || failed {
            return Err(format!("an event after the stream ended: {data}"));
        }
        if data == "[DONE]" {
            ended = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).map_err(|e| format!("SSE data not JSON ({e}): {data}"))?;
        if v.get("error").is_some() {
            failed = true;
            continue;
        }
        let piece = if kind == Kind::OpenAiChat {
            v["choices"][0]["delta"]["content"].as_str()
        } else {
            v["choices"][0]["text"].as_str()
        };
        text.push_str(piece.unwrap_or(""));
    }
    Ok((text, ended, failed))
}

/// A Responses stream: `response.completed` ends it, `response.failed` is its error element;
/// the sequence numbers count up from 0 and the completed response holds the streamed text.
fn responses_sse(body: &[u8]) -> Result<(String, bool, bool), String> {
    let (mut text, mut ended, mut failed) = (String::new(), false, false);
    for (i, (event, data)) in sse_events(body)?.into_iter().enumerate() {
        if ended || failed {
            return Err(format!("an event after the stream ended: {event:?} {data}"));
        }
        let v: Value = serde_json::from_str(&data).map_err(|e| format!("SSE data not JSON ({e}): {data}"))?;
        if event.as_deref() != v["type"].as_str() || v["sequence_number"] != i as u64 {
            return Err(format!("event {i} misnamed or out of sequence: {event:?} {data}"));
        }
        match v["type"].as_str().unwrap_or("") {
            "response.failed" => failed = true,
            "response.completed" => {
                ended = true;
                let whole = v["response"]["output"][0]["content"][0]["text"].as_str();
                if whole != Some(text.as_str()) {
                    return Err(format!("the completed response says {whole:?}, the deltas {text:?}"));
                }
            }
            "response.output_text.delta" => text.push_str(v["delta"].as_str().unwrap_or("")),
            _ => {}
        }
    }
    Ok((text, ended, failed))
}

fn anthropic_sse(body: &[u8]) -> Result<(String, bool, bool), String> {
    let (mut text, mut ended, mut failed) = (String::new(), false, false);
    for (event, data) in sse_events(body)? {
        if ended || failed {
            return Err(format!("an event after the stream ended: {event:?} {data}"));
        }
        let v: Value = serde_json::from_str(&data).map_err(|e| format!("SSE data not JSON ({e}): {data}"))?;
        let kind = event.as_deref().or(v["type"].as_str()).unwrap_or("");
        match kind {
            "error" => failed = true,
            "message_stop" => ended = true,
            "content_block_delta" => text.push_str(v["delta"]["text"].as_str().unwrap_or("")),
            _ => {}
        }
    }
    Ok((text, ended, failed))
}
