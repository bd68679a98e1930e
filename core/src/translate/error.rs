//! Why a translation failed: [`RequestError`] for a client body the upstream cannot take (answered
//! 400 before any upstream call), [`ResponseError`] for an upstream answer that is not a success
//! (answered 502, or an error event once a stream has started).

use thiserror::Error;

use crate::codec::ndjson::NdjsonError;

/// An OpenAI request body that cannot become a native one. Messages follow Ollama's own where it
/// has one, so clients that match on them keep working.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    /// A required field is absent (`model`, `messages`, `prompt`, `input`, or a JSON schema).
    #[error("{field} is required")]
    MissingField {
        /// The field's path.
        field: &'static str,
    },
    /// A field that must not be empty is (`messages: []`, `input: []`).
    #[error("[] is too short - '{field}'")]
    EmptyField {
        /// The field.
        field: &'static str,
    },
    /// A message has `content: null` (or none) and no `tool_calls`.
    #[error("invalid message content type: <nil> (messages[{message}])")]
    NullContent {
        /// Index in `messages`.
        message: usize,
    },
    /// A content part of a type Ollama cannot take.
    #[error("invalid message format (messages[{message}].content[{part}] has type {kind:?})")]
    UnknownPart {
        /// Index in `messages`.
        message: usize,
        /// Index in that message's `content`.
        part: usize,
        /// The part's `type`, as JSON text when it is not a string.
        kind: String,
    },
    /// An `image_url` that is neither a base64 `data:image/...` URI nor an http(s) URL.
    #[error("invalid image input (messages[{message}].content[{part}])")]
    InvalidImage {
        /// Index in `messages`.
        message: usize,
        /// Index in that message's `content`.
        part: usize,
    },
    /// An `input_audio` part without a `data` string.
    #[error("invalid audio input (messages[{message}].content[{part}])")]
    InvalidAudio {
        /// Index in `messages`.
        message: usize,
        /// Index in that message's `content`.
        part: usize,
    },
    /// An assistant tool call that is not `{"function":{...}}` or whose `arguments` is not a JSON
    /// object (or a string holding one).
    #[error("invalid tool call arguments (messages[{message}].tool_calls[{call}])")]
    InvalidToolCall {
        /// Index in `messages`.
        message: usize,
        /// Index in that message's `tool_calls`.
        call: usize,
    },
    /// A field holds a value outside the accepted set (`reasoning_effort`, `response_format.type`,
    /// `encoding_format`, a `stop` entry).
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// The field's path.
        field: &'static str,
        /// The offending value, as JSON text.
        value: String,
    },
    /// A field has the wrong JSON type (`"temperature": "hot"`).
    #[error("invalid type for '{field}' field: expected {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `/v1/completions` with a batch of prompts (Ollama takes one string).
    #[error("prompt must be a single string, got a batch of {len}")]
    PromptBatch {
        /// Number of prompts in the batch.
        len: usize,
    },
    /// An http(s) image was neither fetched nor resolved before the body was taken (Ollama's own
    /// answer to image URLs).
    #[error("image URLs are not currently supported, please use base64 encoded data instead")]
    UnresolvedImage {
        /// Index in [`super::ChatTranslation::remote_images`].
        index: usize,
    },
    /// [`super::ChatTranslation::resolve_image`] was given an index it does not have.
    #[error("no remote image {index}")]
    NoSuchImage {
        /// The index asked for.
        index: usize,
    },
}

impl RequestError {
    /// The HTTP status to answer with: always 400 (the body is at fault).
    pub fn http_status(&self) -> u16 {
        400
    }
}

/// An upstream answer that is not a complete success.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ResponseError {
    /// The upstream said so: an `{"error": ...}` line (a runner failure mid-stream) or body.
    #[error("{message}")]
    Upstream {
        /// The upstream's message (JSON text when it was not a string).
        message: String,
    },
    /// A line or body that is not a JSON object of the expected shape.
    #[error("upstream sent a malformed response: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// An NDJSON line longer than the line splitter allows (16 MiB,
    /// [`DEFAULT_MAX_LINE_BYTES`](crate::codec::ndjson::DEFAULT_MAX_LINE_BYTES)).
    #[error("upstream sent a line longer than {limit_bytes} bytes")]
    LineTooLong {
        /// The limit.
        limit_bytes: usize,
    },
    /// The stream ended without a `done: true` chunk.
    #[error("upstream stream ended before the final chunk")]
    Truncated,
}

impl ResponseError {
    /// The HTTP status for a non-streaming answer: 502, the upstream failed.
    pub fn http_status(&self) -> u16 {
        502
    }

    /// The OpenAI error `code`: `null` for the upstream's own errors, else what went wrong.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ResponseError::Upstream { .. } => None,
            ResponseError::Malformed { .. } => Some("malformed_upstream_response"),
            ResponseError::LineTooLong { .. } => Some("upstream_line_too_long"),
            ResponseError::Truncated => Some("upstream_truncated"),
        }
    }

    /// Builds [`ResponseError::Malformed`] from a JSON parse failure.
    pub(crate) fn malformed(err: &serde_json::Error) -> ResponseError {
        ResponseError::Malformed { detail: err.to_string() }
    }
}

impl From<NdjsonError> for ResponseError {
    /// A line the NDJSON splitter refused: [`ResponseError::LineTooLong`].
    fn from(err: NdjsonError) -> Self {
        match err {
            NdjsonError::LineTooLong { limit } => ResponseError::LineTooLong { limit_bytes: limit },
        }
    }
}
