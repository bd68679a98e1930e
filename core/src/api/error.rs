//! Why a client request body was refused before routing. Every variant carries the data a handler
//! needs to answer in its protocol's error envelope; none carries free-form prose of our own.

use thiserror::Error;

/// A request body that cannot be described for routing.
///
/// All variants are client errors: the adapter answers them with status [`ApiError::http_status`]
/// in the surface's error envelope (`{"error":"..."}` natively, `invalid_request_error` on OpenAI
/// and Anthropic).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApiError {
    /// The body was empty or only whitespace (Ollama: `missing request body`).
    #[error("missing request body")]
    EmptyBody,
    /// The body is not valid JSON. `message` is serde_json's description without its position.
    #[error("{message} at line {line} column {column}")]
    MalformedJson {
        /// What the JSON parser complained about.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The body is valid JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// The body has no `model` field (Ollama: `model is required`).
    #[error("model is required")]
    MissingModel,
    /// `model` is present but empty or only whitespace.
    #[error("model '' not found")]
    EmptyModel,
    /// `model` (or an entry of `fallback_models`) is not a possible model name.
    #[error("invalid model name {name:?}")]
    InvalidModelName {
        /// The name as the client sent it.
        name: String,
    },
    /// A known field has the wrong JSON type or shape. `detail` is serde's description.
    #[error("invalid value for field {field:?}: {detail}")]
    WrongFieldType {
        /// The top-level field that failed to decode (`messages`, `options`, ...).
        field: String,
        /// serde's description of the mismatch.
        detail: String,
    },
    /// An `options` entry the router reads has the wrong type
    /// (Ollama: `option "num_ctx" must be of type integer`).
    #[error("option {option:?} must be of type {expected}")]
    WrongOptionType {
        /// The option key.
        option: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
    },
    /// A field the surface requires is absent (OpenAI and Anthropic `messages`, Anthropic
    /// `max_tokens`, OpenAI embeddings `input`).
    #[error("{field} is required")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// A field the surface requires to be non-empty is empty.
    #[error("{field} must not be empty")]
    EmptyField {
        /// The empty field.
        field: &'static str,
    },
    /// The body holds more of something than the router's limits allow (`body::BodyLimits`).
    #[error("the request body holds more than {limit} {what}, the router's limit")]
    TooMany {
        /// What: `messages`, `content parts` or `JSON values`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A `/v1/responses` input item herd cannot read.
    #[error("input[{index}]: {detail}")]
    InvalidItem {
        /// Index in `input`.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A field or item herd does not serve, and why.
    #[error("{field} is not supported: {reason}")]
    Unsupported {
        /// The field, part or item type.
        field: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A field holds a value outside the set the upstream accepts (`think`, `reasoning_effort`,
    /// Anthropic `max_tokens: 0`).
    #[error("invalid value {value:?} for {field}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The offending value, as JSON text.
        value: String,
    },
}

impl ApiError {
    /// The HTTP status to answer with. Every variant is a client error and maps to 400, except an
    /// empty model name, which Ollama answers with 404 (`model '' not found`), and a body over one
    /// of the router's limits, 413.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::EmptyModel => 404,
            ApiError::TooMany { .. } => 413,
            _ => 400,
        }
    }

    /// Builds [`ApiError::MalformedJson`] or [`ApiError::NotAnObject`] from a parse failure of the
    /// whole body.
    pub(crate) fn from_body_error(err: &serde_json::Error) -> ApiError {
        use serde_json::error::Category;
        match err.classify() {
            Category::Data => ApiError::NotAnObject,
            Category::Io | Category::Syntax | Category::Eof => {
                let full = err.to_string();
                let suffix = format!(" at line {} column {}", err.line(), err.column());
                let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
                ApiError::MalformedJson { message, line: err.line(), column: err.column() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_keeps_position_apart_from_message() {
        let err = serde_json::from_slice::<serde_json::Value>(b"{\"model\": x}").unwrap_err();
        assert_eq!(
            ApiError::from_body_error(&err),
            ApiError::MalformedJson { message: "expected value".into(), line: 1, column: 11 }
        );
        let err = serde_json::from_slice::<serde_json::Value>(b"{\"model\":").unwrap_err();
        assert!(matches!(ApiError::from_body_error(&err), ApiError::MalformedJson { line: 1, .. }));
    }

    #[test]
    fn statuses() {
        assert_eq!(ApiError::EmptyModel.http_status(), 404);
        assert_eq!(ApiError::MissingModel.http_status(), 400);
        assert_eq!(ApiError::EmptyBody.to_string(), "missing request body");
        assert_eq!(
            ApiError::WrongOptionType { option: "num_ctx", expected: "integer" }.to_string(),
            "option \"num_ctx\" must be of type integer"
        );
    }
}
