//! Translation between the OpenAI- and Anthropic-compatible surfaces and Ollama's native API, as
//! pure codecs: OpenAI request bodies become native ones ([`chat_request`], [`completion_request`]),
//! native NDJSON answers become OpenAI SSE events ([`OpenAiChatStream`], [`OpenAiCompletionStream`])
//! or one OpenAI or native object ([`ChatCompletionAggregator`], [`NativeAggregator`]), and
//! `/api/embed` answers become OpenAI or legacy embeddings ([`openai_embeddings_response`]).
//! Anthropic `/v1/messages` bodies become native chat ones ([`messages_request`]) and native
//! answers become Anthropic's named events ([`AnthropicStream`]) or one `message`
//! ([`AnthropicAggregator`]), for nodes whose Ollama has no `/v1/messages`. No IO, clocks or
//! randomness: ids and `created` come from the caller, and http(s) image URLs are handed back for
//! the adapter to fetch.
//!
//! Everything ollama-herd dropped is kept (herd-router.md §6.1, §7.3, §18 items 4, 6, 8): every
//! sampling parameter, `response_format`, tools and `tool_choice`, `stream_options`, reasoning
//! effort, thinking text (sent as `reasoning_content` by default, see [`ReasoningField`]), tool
//! calls with their `index`, one `id` and `created` for a whole stream, the usage chunk, and errors
//! (an upstream `{"error":...}` line or a truncated stream never turns into a success).
//!
//! A streaming `/v1/chat/completions` request, end to end:
//!
//! ```
//! use herd_core::api::openai;
//! use herd_core::translate::{chat_request, OpenAiChatStream, OpenAiResponseConfig, SamplingDefaults, SseEvent};
//!
//! let body = br#"{"model":"qwen3","stream":true,"temperature":0.7,"stop":"END",
//!     "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
//! let req: openai::ChatRequest = serde_json::from_slice(body).unwrap();
//! let translation = chat_request(req, SamplingDefaults::OllamaV1).unwrap();
//! assert!(translation.include_usage());
//! let native = translation.into_body().unwrap(); // POST this to the node's /api/chat
//! assert_eq!(native.options.as_ref().unwrap().0["temperature"], 0.7);
//!
//! let mut config = OpenAiResponseConfig::new("chatcmpl-1", 1_746_093_600, "qwen3");
//! config.include_usage = true;
//! let mut stream = OpenAiChatStream::new(config);
//! stream.handle_bytes(b"{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n");
//! stream.handle_bytes(b"{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,");
//! stream.handle_bytes(b"\"done_reason\":\"stop\",\"prompt_eval_count\":5,\"eval_count\":1}\n");
//! stream.handle_end();
//! let mut frames = Vec::new();
//! while let Some(event) = stream.poll_event() {
//!     event.encode(&mut frames); // `data: ...\n\n`, written to the client as it comes
//! }
//! let text = String::from_utf8(frames).unwrap();
//! assert_eq!(text.matches("data: ").count(), 5); // role, "Hi", finish, usage, [DONE]
//! assert!(text.ends_with("data: [DONE]\n\n"));
//! assert_eq!(stream.usage().unwrap().completion_tokens, 1);
//! ```

mod aggregate;
pub(crate) mod anthropic;
pub mod base64;
mod chunk;
mod embed;
mod error;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
mod messages;
mod named;
mod request;
pub mod responses;
mod scan;
mod shape;
mod stream;

#[cfg(test)]
mod tests;

pub use aggregate::{ChatCompletionAggregator, NativeAggregator, TextCompletionAggregator};
pub use anthropic::{
    messages_request, AnthropicAggregator, AnthropicEvent, AnthropicResponseConfig, AnthropicStream, StopReason,
};
pub use embed::{legacy_embeddings_response, openai_embeddings_response};
pub use error::{RequestError, ResponseError};
pub use request::{
    chat_request, completion_request, embedding_request, legacy_embed_request, ChatTranslation, CompletionTranslation,
    EmbeddingEncoding, EmbeddingTranslation, RemoteImage, SamplingDefaults,
};
pub use stream::{OpenAiChatStream, OpenAiCompletionStream};

/// The `system_fingerprint` on every OpenAI object, as Ollama writes it.
pub const SYSTEM_FINGERPRINT: &str = "fp_ollama";

/// Which native endpoint a stream of NDJSON chunks came from: the text is in `message.content` on
/// `/api/chat` and in `response` on `/api/generate`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NativeEndpoint {
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/generate`.
    Generate,
}

/// The field that carries thinking text in OpenAI chat messages and deltas.
///
/// Ollama's own `/v1` writes `reasoning`; most of the OpenAI-compatible ecosystem (DeepSeek, vLLM,
/// LiteLLM, Open WebUI) reads `reasoning_content`, which is herd's default. Sending both is
/// harmless (wire-api.md §10 item 25) but doubles the thinking bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasoningField {
    /// `reasoning_content` (DeepSeek's name, read by LiteLLM and Open WebUI).
    #[default]
    ReasoningContent,
    /// `reasoning` (Ollama's `/v1`).
    Reasoning,
    /// Both fields, with the same text.
    Both,
}

/// Why an OpenAI choice ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FinishReason {
    /// The model stopped by itself or on a stop sequence.
    Stop,
    /// `num_predict` or the context window ran out (native `done_reason: "length"`).
    Length,
    /// The model called tools (native `done_reason: "stop"` with tool calls).
    ToolCalls,
}

impl FinishReason {
    /// The OpenAI spelling: `stop`, `length` or `tool_calls`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        }
    }

    /// Maps a native `done_reason`. `length` stays `length`; anything else (`stop`, absent, or
    /// an unknown reason) is `tool_calls` when the answer called tools and `stop` otherwise.
    pub fn from_native(done_reason: Option<&str>, called_tools: bool) -> FinishReason {
        match done_reason {
            Some("length") => FinishReason::Length,
            _ if called_tools => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }
}

/// What every OpenAI object of one response shares, chosen by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiResponseConfig {
    /// The response id (`chatcmpl-...` or `cmpl-...`), the same on every chunk.
    pub id: String,
    /// Unix seconds, the same on every chunk.
    pub created: u64,
    /// The model as the client asked for it (responses echo the request's string).
    pub model: String,
    /// Streams only: send a usage chunk before `[DONE]` (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Where chat thinking text goes.
    pub reasoning_field: ReasoningField,
}

impl OpenAiResponseConfig {
    /// A config without the usage chunk, thinking in `reasoning_content`.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        OpenAiResponseConfig {
            id: id.into(),
            created,
            model: model.into(),
            include_usage: false,
            reasoning_field: ReasoningField::default(),
        }
    }
}

/// One server-sent event for an OpenAI client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseEvent {
    /// A `chat.completion.chunk` or `text_completion` object, as JSON text.
    Chunk(String),
    /// `{"error":{"message":...,"type":"api_error",...}}`, as JSON text. Always the last event of
    /// a failed stream (the OpenAI SDK raises `APIError` on it); no `[DONE]` follows.
    Error(String),
    /// `[DONE]`: always the last event of a successful stream.
    Done,
}

impl SseEvent {
    /// The `data:` payload.
    pub fn data(&self) -> &str {
        match self {
            SseEvent::Chunk(json) | SseEvent::Error(json) => json,
            SseEvent::Done => "[DONE]",
        }
    }

    /// Whether this event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, SseEvent::Error(_) | SseEvent::Done)
    }

    /// Appends the wire frame, `data: <payload>\n\n`, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(self.data().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// The wire frame, `data: <payload>\n\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data().len() + 8);
        self.encode(&mut out);
        out
    }
}
