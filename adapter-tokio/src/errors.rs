//! Error answers in each client protocol's own envelope (wire-api.md §1.2), before commit as a
//! status and body, after commit as one last line or event of the stream.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;

/// The body type of every answer.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Which envelope a client expects.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `{"error":"..."}`.
    Ollama,
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON answer.
pub fn json_response(status: u16, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

/// A plain-text answer.
pub fn text_response(status: u16, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The `type` of an OpenAI or Anthropic error for `status`. For the statuses Ollama itself
/// answers (400, 404, 5xx) this is Ollama's own choice (wire-api.md §1.2); the others are the
/// router's own refusals (keys, limits, saturation), named as the real APIs name them.
fn error_type(proto: Proto, status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 if proto == Proto::Anthropic => "overloaded_error",
        _ => "api_error",
    }
}

/// The error body of `proto`.
pub fn error_value(proto: Proto, status: u16, message: &str) -> serde_json::Value {
    match proto {
        Proto::Ollama => json!({ "error": message }),
        Proto::OpenAi => json!({
            "error": { "message": message, "type": error_type(proto, status), "param": null, "code": null }
        }),
        Proto::Anthropic => json!({
            "type": "error",
            "error": { "type": error_type(proto, status), "message": message }
        }),
    }
}

/// An error answer before commit.
pub fn error_response(proto: Proto, status: u16, message: &str, retry_after: Option<Duration>) -> Response<Body> {
    let mut resp = json_response(status, &error_value(proto, status, message));
    if let Some(after) = retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    resp
}

/// The last line or event of a stream that failed after commit.
pub fn stream_error(proto: Proto, message: &str) -> Bytes {
    let mut out = Vec::new();
    match proto {
        Proto::Ollama => {
            serde_json::to_writer(&mut out, &json!({ "error": message })).unwrap_or_default();
            out.push(b'\n');
        }
        Proto::OpenAi => {
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut out, &error_value(proto, 500, message)).unwrap_or_default();
            out.extend_from_slice(b"\n\n");
        }
        Proto::Anthropic => {
            out.extend_from_slice(b"event: error\ndata: ");
            serde_json::to_writer(&mut out, &error_value(proto, 500, message)).unwrap_or_default();
            out.extend_from_slice(b"\n\n");
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(error_value(Proto::Ollama, 404, "x"), json!({"error": "x"}));
        assert_eq!(error_value(Proto::OpenAi, 404, "x")["error"]["type"], "not_found_error");
        assert_eq!(error_value(Proto::OpenAi, 400, "x")["error"]["type"], "invalid_request_error");
        assert_eq!(error_value(Proto::Anthropic, 503, "x")["error"]["type"], "overloaded_error");
        assert_eq!(error_value(Proto::Anthropic, 503, "x")["type"], "error");
        let r = error_response(Proto::Ollama, 429, "busy", Some(Duration::from_millis(1500)));
        assert_eq!(r.headers()[RETRY_AFTER], "2");
        assert_eq!(stream_error(Proto::Ollama, "x"), Bytes::from_static(b"{\"error\":\"x\"}\n"));
        assert!(stream_error(Proto::OpenAi, "x").starts_with(b"data: {\"error\""));
    }
}
