//! Error answers in each client protocol's own envelope (wire-api.md §1.2), before commit as a
//! status and body, after commit as one last line or event of the stream.

use crate::{Answer, AnswerBody};
use bytes::Bytes;
use serde_json::json;
use std::time::Duration;

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

/// The content type of JSON answers.
pub const JSON: &str = "application/json; charset=utf-8";

/// A JSON answer.
pub fn json_answer(status: u16, value: &serde_json::Value) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", JSON.to_string())],
        body: AnswerBody::Full(Bytes::from(serde_json::to_vec(value).unwrap_or_default())),
    }
}

/// A plain-text answer.
pub fn text_answer(status: u16, text: &'static str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "text/plain; charset=utf-8".to_string())],
        body: AnswerBody::Full(Bytes::from_static(text.as_bytes())),
    }
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
pub fn error_answer(proto: Proto, status: u16, message: &str, retry_after: Option<Duration>) -> Answer {
    let mut answer = json_answer(status, &error_value(proto, status, message));
    if let Some(after) = retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        answer.headers.push(("retry-after", secs.to_string()));
    }
    answer
}

/// The answer to a body over the size limit.
pub fn too_large(proto: Proto, max_body_bytes: usize) -> Answer {
    error_answer(
        proto,
        413,
        &format!("request body is larger than the limit of {} MiB (HERD_MAX_BODY_MB)", max_body_bytes >> 20),
        None,
    )
}

/// The answer to a body that did not arrive in time.
pub fn body_timeout(proto: Proto) -> Answer {
    error_answer(proto, 408, "the request body was not received in time", None)
}

/// The answer to a body that could not be read.
pub fn body_unreadable(proto: Proto) -> Answer {
    error_answer(proto, 400, "the request body could not be read", None)
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
        let r = error_answer(Proto::Ollama, 429, "busy", Some(Duration::from_millis(1500)));
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(stream_error(Proto::Ollama, "x"), Bytes::from_static(b"{\"error\":\"x\"}\n"));
        assert!(stream_error(Proto::OpenAi, "x").starts_with(b"data: {\"error\""));
    }
}
