//! Response building: the one body type every handler returns (whole, or a stream that can be
//! cut), content types, the three error envelopes (native, OpenAI, Anthropic) and the error
//! strings Ollama uses (wire-api.md §1.2, §9).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::text::seed_of;

/// Ollama's answer when its queue is full (`OLLAMA_MAX_QUEUE`).
pub(crate) const BUSY: &str = "server busy, please try again.  maximum pending requests exceeded";
/// What a runner crash looks like to a client.
pub(crate) const RUNNER_DIED: &str = "llama runner process has terminated: exit status 2";

pub(crate) const JSON: &str = "application/json; charset=utf-8";
pub(crate) const NDJSON: &str = "application/x-ndjson";
pub(crate) const SSE: &str = "text/event-stream";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// The error a streamed body returns to make hyper drop the connection mid-body (the client sees a
/// chunked body without its terminating chunk).
#[derive(Debug, thiserror::Error)]
#[error("stream cut by an injected fault")]
pub(crate) struct Cut;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, Cut>> + Send>>;

/// Every response body of the fake.
pub(crate) enum FakeBody {
    /// A whole body (`Content-Length`), taken on the first poll.
    Full(Option<Bytes>),
    /// A chunked body, one frame per item; an `Err` aborts the connection.
    Stream(ChunkStream),
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        match &mut *self {
            FakeBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            FakeBody::Stream(s) => s.as_mut().poll_next(cx).map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FakeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FakeBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            FakeBody::Full(None) => SizeHint::with_exact(0),
            FakeBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// The response type of every handler.
pub(crate) type Resp = Response<FakeBody>;

/// A whole body with `status` and `content_type`.
pub(crate) fn bytes(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(FakeBody::Full(Some(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON body.
pub(crate) fn json_value(status: u16, v: &Value) -> Resp {
    let mut buf = BytesMut::with_capacity(256).writer();
    let _ = serde_json::to_writer(&mut buf, v);
    bytes(status, JSON, buf.into_inner().freeze())
}

/// `200` with an empty body (copy, delete).
pub(crate) fn empty_ok() -> Resp {
    let mut r = Response::new(FakeBody::Full(None));
    *r.status_mut() = StatusCode::OK;
    r
}

/// A streamed body of `content_type`; SSE streams also get `Cache-Control: no-cache`.
pub(crate) fn stream(content_type: &'static str, s: ChunkStream) -> Resp {
    let mut r = Response::new(FakeBody::Stream(s));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == SSE {
        r.headers_mut().insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    r
}

/// `404 page not found`, gin's answer to an unknown path.
pub(crate) fn not_found_page() -> Resp {
    bytes(404, TEXT, "404 page not found")
}

/// `405 method not allowed`.
pub(crate) fn method_not_allowed() -> Resp {
    bytes(405, TEXT, "405 method not allowed")
}

/// Which error envelope a surface uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Native `/api/*`: `{"error":"..."}`.
    Ollama,
    /// `/v1/*` (Ollama's OpenAI layer).
    OpenAi,
    /// `/v1/messages` (Ollama's Anthropic layer).
    Anthropic,
}

/// The error body Ollama writes in `style`'s envelope (wire-api.md §1.2). Written here from
/// Ollama's middleware, not taken from the router, so the two are checked against each other.
pub fn error_value(style: Style, status: u16, message: &str) -> Value {
    match style {
        Style::Ollama => json!({ "error": message }),
        // Ollama's OpenAI layer knows three types, chosen from the status.
        Style::OpenAi => {
            let kind = match status {
                400 => "invalid_request_error",
                404 => "not_found_error",
                _ => "api_error",
            };
            json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
        }
        Style::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                _ => "api_error",
            };
            json!({
                "type": "error",
                "error": { "type": kind, "message": message },
                "request_id": format!("req_{:016x}{:08x}", seed_of(message), u32::from(status)),
            })
        }
    }
}

/// An error answer in `style`'s envelope.
pub(crate) fn error(style: Style, status: u16, message: &str) -> Resp {
    json_value(status, &error_value(style, status, message))
}

/// The message Ollama sends with an injected `status` for a request on `model`.
pub(crate) fn status_message(status: u16, model: &str) -> String {
    match status {
        503 => BUSY.to_string(),
        500 => RUNNER_DIED.to_string(),
        404 => format!("model '{model}' not found"),
        499 => "request canceled".to_string(),
        429 => "too many requests".to_string(),
        other => {
            StatusCode::from_u16(other).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_ascii_lowercase()
        }
    }
}

/// Go's `encoding/json` wording for a body that is not JSON, from serde's error (the offending
/// character is read from `body` at the error's position).
pub(crate) fn go_syntax_error(err: &serde_json::Error, body: &[u8]) -> String {
    if err.is_eof() {
        return "unexpected EOF".into();
    }
    let line_start = body.split(|&b| b == b'\n').take(err.line().saturating_sub(1)).map(|l| l.len() + 1).sum::<usize>();
    let at = line_start + err.column().saturating_sub(1);
    match body.get(at).or_else(|| body.last()) {
        Some(&c) if c.is_ascii_graphic() => format!("invalid character '{}' looking for beginning of value", c as char),
        Some(&c) => format!("invalid character '\\x{c:02x}' looking for beginning of value"),
        None => "unexpected EOF".into(),
    }
}

/// Go's wording for a field of the wrong type, e.g. `json: cannot unmarshal number into Go struct
/// field ChatRequest.messages of type []api.Message`.
pub(crate) fn go_type_error(request: &str, field: &str, value: Option<&Value>) -> String {
    let found = match value {
        Some(Value::Bool(_)) => "bool",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
        Some(Value::Null) | None => "null",
    };
    let want = match field {
        "messages" => "[]api.Message",
        "stream" | "raw" | "truncate" | "shift" | "logprobs" => "bool",
        "options" => "map[string]interface {}",
        "tools" => "api.Tools",
        "images" => "[]api.ImageData",
        "context" => "[]int",
        "think" => "api.ThinkValue",
        _ => "string",
    };
    format!("json: cannot unmarshal {found} into Go struct field {request}.{field} of type {want}")
}

/// Writes `s` as a JSON string (quotes included) the way gin does: `<`, `>` and `&` as `\u003c`
/// and so on, control characters escaped.
pub(crate) fn write_json_str(out: &mut BytesMut, s: &str) {
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            b'<' => b"\\u003c",
            b'>' => b"\\u003e",
            b'&' => b"\\u0026",
            0..=0x1f => {
                out.put_slice(&bytes[start..i]);
                out.put_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(esc);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_like_gin() {
        let mut out = BytesMut::new();
        write_json_str(&mut out, "a\"b\\c\n<&>\u{1}é");
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#""a\"b\\c\n\u003c\u0026\u003e\u0001é""#);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n<&>\u{1}é");
    }

    #[test]
    fn go_error_wording() {
        let body = b"{\"model\": x}";
        let err = serde_json::from_slice::<Value>(body).unwrap_err();
        assert_eq!(go_syntax_error(&err, body), "invalid character 'x' looking for beginning of value");
        let err = serde_json::from_slice::<Value>(b"{\"model\":").unwrap_err();
        assert_eq!(go_syntax_error(&err, b"{\"model\":"), "unexpected EOF");
        assert_eq!(
            go_type_error("ChatRequest", "messages", Some(&json!(1))),
            "json: cannot unmarshal number into Go struct field ChatRequest.messages of type []api.Message"
        );
        assert_eq!(status_message(503, "m"), BUSY);
        assert_eq!(status_message(502, "m"), "bad gateway");
    }
}
