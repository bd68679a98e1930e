//! The client protocols and their error envelopes (wire-api.md §1.2): every error a client of
//! the router sees is rendered here, before commit as a status and body, after commit as the
//! last line or event of a stream, so the two routers and every route agree.
//!
//! ```
//! use herd_core::api::{Protocol, Surface};
//!
//! let p = Protocol::of(Surface::OpenAiChat);
//! let body: serde_json::Value = serde_json::from_slice(&p.error_body(404, "model 'x' not found")).unwrap();
//! assert_eq!(body["error"]["type"], "not_found_error");
//! assert_eq!(Protocol::Ollama.stream_error("cut"), b"{\"error\":\"cut\"}\n");
//! ```

use super::Surface;
use serde_json::{json, Value};

/// Which protocol (and error envelope) a client speaks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Ollama's native API: `{"error":"..."}`; streams are NDJSON.
    Ollama,
    /// OpenAI's: `{"error":{"message","type","param","code"}}`; streams are SSE `data:` lines.
    OpenAi,
    /// Anthropic's: `{"type":"error","error":{"type","message"}}`; streams are named SSE events.
    Anthropic,
}

impl Protocol {
    /// The protocol of an inference surface.
    pub fn of(surface: Surface) -> Protocol {
        match surface {
            Surface::OllamaChat | Surface::OllamaGenerate | Surface::OllamaEmbed | Surface::OllamaEmbeddings => {
                Protocol::Ollama
            }
            Surface::OpenAiChat | Surface::OpenAiCompletions | Surface::OpenAiEmbeddings | Surface::OpenAiResponses => {
                Protocol::OpenAi
            }
            Surface::AnthropicMessages => Protocol::Anthropic,
        }
    }

    /// The protocol of a path the router serves: `/v1/messages` is Anthropic's, the rest of
    /// `/v1/` OpenAI's, everything else Ollama's (and the router's own `/fleet/*`).
    pub fn of_path(path: &str) -> Protocol {
        if path.starts_with("/v1/messages") {
            Protocol::Anthropic
        } else if path.starts_with("/v1/") {
            Protocol::OpenAi
        } else {
            Protocol::Ollama
        }
    }

    /// The error `type` for `status`. For the statuses Ollama itself answers (400, 404, 5xx)
    /// this is Ollama's own choice; the others are the router's refusals (keys, limits,
    /// saturation), named as the real APIs name them.
    pub fn error_type(self, status: u16) -> &'static str {
        match status {
            400 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 | 529 if self == Protocol::Anthropic => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The error body, as a JSON value.
    pub fn error_value(self, status: u16, message: &str) -> Value {
        match self {
            Protocol::Ollama => json!({ "error": message }),
            Protocol::OpenAi => json!({
                "error": { "message": message, "type": self.error_type(status), "param": null, "code": null }
            }),
            Protocol::Anthropic => json!({
                "type": "error",
                "error": { "type": self.error_type(status), "message": message }
            }),
        }
    }

    /// The error body, as bytes.
    pub fn error_body(self, status: u16, message: &str) -> Vec<u8> {
        serde_json::to_vec(&self.error_value(status, message)).unwrap_or_default()
    }

    /// The last line or event of a stream that failed after commit: an NDJSON `{"error":...}`
    /// line, an OpenAI `data:` event with an error object (the OpenAI SDK raises it), an
    /// Anthropic `event: error`.
    pub fn stream_error(self, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Protocol::Ollama => {
                serde_json::to_writer(&mut out, &json!({ "error": message })).unwrap_or_default();
                out.push(b'\n');
            }
            Protocol::OpenAi => {
                out.extend_from_slice(b"data: ");
                serde_json::to_writer(&mut out, &self.error_value(500, message)).unwrap_or_default();
                out.extend_from_slice(b"\n\n");
            }
            Protocol::Anthropic => {
                out.extend_from_slice(b"event: error\ndata: ");
                serde_json::to_writer(&mut out, &self.error_value(500, message)).unwrap_or_default();
                out.extend_from_slice(b"\n\n");
            }
        }
        out
    }

    /// The content type of this protocol's streams.
    pub fn stream_content_type(self) -> &'static str {
        match self {
            Protocol::Ollama => super::names::NDJSON,
            Protocol::OpenAi | Protocol::Anthropic => super::names::SSE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(Protocol::Ollama.error_value(404, "x"), json!({"error": "x"}));
        assert_eq!(Protocol::OpenAi.error_value(404, "x")["error"]["type"], "not_found_error");
        assert_eq!(Protocol::OpenAi.error_value(400, "x")["error"]["type"], "invalid_request_error");
        assert_eq!(Protocol::OpenAi.error_value(503, "x")["error"]["type"], "api_error");
        assert_eq!(Protocol::Anthropic.error_value(503, "x")["error"]["type"], "overloaded_error");
        assert_eq!(Protocol::Anthropic.error_value(503, "x")["type"], "error");
        assert_eq!(Protocol::Ollama.stream_error("x"), b"{\"error\":\"x\"}\n");
        assert!(Protocol::OpenAi.stream_error("x").starts_with(b"data: {\"error\""));
        assert!(Protocol::Anthropic.stream_error("x").starts_with(b"event: error\ndata: {"));
    }

    #[test]
    fn protocol_of_paths_and_surfaces() {
        assert_eq!(Protocol::of_path("/v1/messages"), Protocol::Anthropic);
        assert_eq!(Protocol::of_path("/v1/chat/completions"), Protocol::OpenAi);
        assert_eq!(Protocol::of_path("/api/chat"), Protocol::Ollama);
        assert_eq!(Protocol::of_path("/fleet/status"), Protocol::Ollama);
        for s in Surface::ALL {
            assert_eq!(Protocol::of(s), Protocol::of_path(s.path()), "{s:?}");
        }
    }
}
