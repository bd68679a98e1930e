//! Error answers in each client protocol's own envelope (wire-api.md §1.2), before commit as a
//! status and body, after commit as one last line or event of the stream.

use crate::{Answer, AnswerBody};
use bytes::Bytes;

use std::time::Duration;

/// Which envelope a client expects: core's [`Protocol`](herd_core::api::Protocol), which renders
/// every error body.
pub use herd_core::api::Protocol as Proto;

/// The content type of JSON answers.
pub use herd_core::api::names::JSON;

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
        headers: vec![("content-type", herd_core::api::names::TEXT.to_string())],
        body: AnswerBody::Full(Bytes::from_static(text.as_bytes())),
    }
}

/// An error answer before commit.
pub fn error_answer(proto: Proto, status: u16, message: &str, retry_after: Option<Duration>) -> Answer {
    let mut answer = json_answer(status, &proto.error_value(status, message));
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
    Bytes::from(proto.stream_error(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        let r = error_answer(Proto::Ollama, 429, "busy", Some(Duration::from_millis(1500)));
        assert_eq!(r.header("retry-after"), Some("2"));
    }
}
