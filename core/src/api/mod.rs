//! Client wire formats (Ollama native, OpenAI-compatible, Anthropic-compatible) and their
//! description as a protocol-independent [`RequestSpec`] for routing.
//!
//! Every request type keeps the fields it does not know in an `extra` map, so re-serialising a
//! parsed body loses nothing the client sent (ollama-herd dropped `top_p`, `stop`, `seed`, `tools`,
//! ...). The one entry point adapters need is [`describe`]:
//!
//! ```
//! use herd_core::api::{describe, DescribeContext, Surface};
//! use herd_core::request::RequestKind;
//!
//! let body = br#"{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"tools":[]}"#;
//! let ctx = DescribeContext { client: Some("10.0.0.7".into()), ..DescribeContext::default() };
//! let spec = describe(Surface::OllamaChat, body, &ctx).unwrap();
//! assert_eq!(spec.kind, RequestKind::Chat);
//! assert_eq!(spec.model.as_str(), "m:latest");
//! assert!(!spec.stream);
//! assert_eq!(spec.session_key.as_deref(), Some("10.0.0.7|m:latest"));
//! ```
//!
//! Adapters that also forward the body parse it once with [`parse_body`], describe it with
//! [`describe_object`] and reshape it with [`patch::apply_patch`].
//!
//! What [`describe`] fills, on every surface:
//! - `model` validated and normalised ([`parse_model_name`]); `fallback_models` likewise, without
//!   empties or duplicates, at most [`MAX_FALLBACK_MODELS`];
//! - `estimated_prompt_tokens` from the one [`estimate::TokenTally`] (tools and system included);
//! - `max_output_tokens` from `options.num_predict` (≥ 0), OpenAI `max_tokens` /
//!   `max_completion_tokens` (the smaller) or Anthropic `max_tokens`; `num_ctx` from
//!   `options.num_ctx` (native only: `/v1` cannot set it);
//! - `stream` with the surface's default ([`Surface::default_stream`]); `think`; `has_images`;
//! - `fallback`: [`DescribeContext::fallback_header`] if set, else body `fallback: true/false`;
//! - `tags` (herd-node.md §4, de-duplicated, at most [`MAX_TAGS`]): body `metadata.tags`, header
//!   tags, `user` as `user:<v>`, Anthropic `metadata.user_id` as `user:<id>`, and `embed` on
//!   embedding surfaces (ollama-herd's route-added tag);
//! - `session_key`: the first `session:<id>` tag, else `"<client>|<model>"` for a known client;
//! - `prefix_key` ([`prefix_key`]) when the leading system prompt plus tools estimate to at least
//!   [`DescribeContext::prefix_min_tokens`].

pub mod anthropic;
pub mod body;
pub mod cors;
pub mod echo;
mod error;
pub mod estimate;
pub mod image_url;
pub mod names;
pub mod ollama;
pub mod openai;
pub mod patch;
pub mod plan;
mod protocol;
pub mod responses;
pub mod routes;
mod spec;
pub mod watch;
pub mod wire;

#[cfg(test)]
mod tests;

pub use error::ApiError;
pub use protocol::Protocol;
pub(crate) use spec::request_tags;
pub use spec::{
    parse_model_name, parse_no_fallback_header, parse_tags_header, prefix_key, DEFAULT_PREFIX_MIN_TOKENS,
    MAX_FALLBACK_MODELS, MAX_MODEL_NAME_BYTES, MAX_TAGS, MAX_TAG_BYTES,
};
pub use wire::{ChatTurn, Content, HerdFields, Options, TextInput, Think};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::request::{FallbackChoice, RequestKind, RequestSpec};

/// Which client API a body arrived on; decides its type, its kind and its default `stream`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Surface {
    /// `POST /api/chat`.
    OllamaChat,
    /// `POST /api/generate`.
    OllamaGenerate,
    /// `POST /api/embed`.
    OllamaEmbed,
    /// `POST /api/embeddings` (legacy).
    OllamaEmbeddings,
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// `POST /v1/completions` (legacy).
    OpenAiCompletions,
    /// `POST /v1/embeddings`.
    OpenAiEmbeddings,
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /v1/responses` (OpenAI's Responses API, Codex's).
    OpenAiResponses,
}

impl Surface {
    /// Every surface, in declaration order.
    pub const ALL: [Surface; 9] = [
        Surface::OllamaChat,
        Surface::OllamaGenerate,
        Surface::OllamaEmbed,
        Surface::OllamaEmbeddings,
        Surface::OpenAiChat,
        Surface::OpenAiCompletions,
        Surface::OpenAiEmbeddings,
        Surface::AnthropicMessages,
        Surface::OpenAiResponses,
    ];

    /// The request path this surface is served on.
    pub fn path(self) -> &'static str {
        match self {
            Surface::OllamaChat => "/api/chat",
            Surface::OllamaGenerate => "/api/generate",
            Surface::OllamaEmbed => "/api/embed",
            Surface::OllamaEmbeddings => "/api/embeddings",
            Surface::OpenAiChat => "/v1/chat/completions",
            Surface::OpenAiCompletions => "/v1/completions",
            Surface::OpenAiEmbeddings => "/v1/embeddings",
            Surface::AnthropicMessages => "/v1/messages",
            Surface::OpenAiResponses => "/v1/responses",
        }
    }

    /// Its name in traces and metrics (`ollama_chat`, `openai_chat`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Surface::OllamaChat => "ollama_chat",
            Surface::OllamaGenerate => "ollama_generate",
            Surface::OllamaEmbed => "ollama_embed",
            Surface::OllamaEmbeddings => "ollama_embeddings",
            Surface::OpenAiChat => "openai_chat",
            Surface::OpenAiCompletions => "openai_completions",
            Surface::OpenAiEmbeddings => "openai_embeddings",
            Surface::AnthropicMessages => "anthropic_messages",
            Surface::OpenAiResponses => "openai_responses",
        }
    }

    /// The surface served on `path` (a trailing `/` is ignored), if any.
    pub fn from_path(path: &str) -> Option<Surface> {
        let path = path.strip_suffix('/').unwrap_or(path);
        Surface::ALL.into_iter().find(|s| s.path() == path)
    }

    /// The kind of work requests on this surface ask for.
    pub fn kind(self) -> RequestKind {
        match self {
            Surface::OllamaChat | Surface::OpenAiChat | Surface::AnthropicMessages | Surface::OpenAiResponses => {
                RequestKind::Chat
            }
            Surface::OllamaGenerate | Surface::OpenAiCompletions => RequestKind::Generate,
            Surface::OllamaEmbed | Surface::OllamaEmbeddings | Surface::OpenAiEmbeddings => RequestKind::Embed,
        }
    }

    /// What an absent `stream` means (wire-api.md §1.5): `true` on native chat and generate,
    /// `false` on the OpenAI and Anthropic paths; embeddings never stream.
    pub fn default_stream(self) -> bool {
        matches!(self, Surface::OllamaChat | Surface::OllamaGenerate)
    }
}

/// What the adapter knows about a request besides its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeContext {
    /// Who is asking (usually the peer IP); `None` or empty = anonymous.
    pub client: Option<String>,
    /// Tags from the `X-Herd-Tags` header, already split ([`parse_tags_header`]).
    pub header_tags: Vec<String>,
    /// The `X-Fleet-No-Fallback` header, parsed ([`parse_no_fallback_header`]); it wins over the
    /// body's `fallback` field.
    pub fallback_header: Option<FallbackChoice>,
    /// The system prompt plus tools must estimate to at least this many tokens for a prefix key.
    pub prefix_min_tokens: u32,
}

impl Default for DescribeContext {
    fn default() -> Self {
        DescribeContext {
            client: None,
            header_tags: Vec::new(),
            fallback_header: None,
            prefix_min_tokens: DEFAULT_PREFIX_MIN_TOKENS,
        }
    }
}

/// A client request type of one surface.
pub trait WireRequest: Serialize + DeserializeOwned {
    /// The surface this type is the body of.
    const SURFACE: Surface;

    /// Describes the request for routing.
    ///
    /// # Errors
    /// [`ApiError`] when a field the router reads is missing or invalid.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError>;
}

/// Parses a body into a JSON object. The `Content-Type` does not matter: Ollama parses every body
/// as JSON.
///
/// # Errors
/// [`ApiError::EmptyBody`], [`ApiError::MalformedJson`] or [`ApiError::NotAnObject`].
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::EmptyBody);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::from_body_error(&e))
}

/// Decodes a parsed body into a request type.
///
/// # Errors
/// [`ApiError::WrongFieldType`] naming the first top-level field (in map order) that does not
/// decode, with serde's description of why.
pub fn decode<T: DeserializeOwned>(body: &Map<String, Value>) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|whole| {
        // serde's message does not say which field failed; try each field alone to find it.
        // Every request type has only optional fields, so a lone valid field always decodes.
        body.iter()
            .find_map(|(key, value)| {
                let mut one = Map::new();
                one.insert(key.clone(), value.clone());
                T::deserialize(&one)
                    .err()
                    .map(|e| ApiError::WrongFieldType { field: key.clone(), detail: e.to_string() })
            })
            .unwrap_or_else(|| ApiError::WrongFieldType { field: String::new(), detail: whole.to_string() })
    })
}

/// Parses and describes a body that arrived on `surface`.
///
/// # Errors
/// Any [`ApiError`]: bad JSON, a missing or invalid model, a field of the wrong type, or a value
/// the upstream would refuse.
pub fn describe(surface: Surface, body: &[u8], ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
    describe_object(surface, &parse_body(body)?, ctx)
}

/// Describes an already parsed body that arrived on `surface`.
///
/// # Errors
/// As [`describe`], minus the JSON syntax errors.
pub fn describe_object(
    surface: Surface,
    body: &Map<String, Value>,
    ctx: &DescribeContext,
) -> Result<RequestSpec, ApiError> {
    fn run<T: WireRequest>(body: &Map<String, Value>, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        decode::<T>(body)?.describe(ctx)
    }
    match surface {
        Surface::OllamaChat => run::<ollama::ChatRequest>(body, ctx),
        Surface::OllamaGenerate => run::<ollama::GenerateRequest>(body, ctx),
        Surface::OllamaEmbed => run::<ollama::EmbedRequest>(body, ctx),
        Surface::OllamaEmbeddings => run::<ollama::EmbeddingsRequest>(body, ctx),
        Surface::OpenAiChat => run::<openai::ChatRequest>(body, ctx),
        Surface::OpenAiCompletions => run::<openai::CompletionRequest>(body, ctx),
        Surface::OpenAiEmbeddings => run::<openai::EmbeddingRequest>(body, ctx),
        Surface::AnthropicMessages => run::<anthropic::MessagesRequest>(body, ctx),
        Surface::OpenAiResponses => run::<responses::ResponsesRequest>(body, ctx),
    }
}

/// Describes a body held as sent, indexed by [`body::BodyIndex::new`]: each request type is
/// decoded straight from the bytes, and dropped once described.
///
/// # Errors
/// As [`describe_object`].
pub fn describe_indexed(
    surface: Surface,
    body: &[u8],
    index: &body::BodyIndex,
    ctx: &DescribeContext,
) -> Result<RequestSpec, ApiError> {
    fn run<T: WireRequest>(
        body: &[u8],
        index: &body::BodyIndex,
        ctx: &DescribeContext,
    ) -> Result<RequestSpec, ApiError> {
        index.decode::<T>(body)?.describe(ctx)
    }
    match surface {
        Surface::OllamaChat => run::<ollama::ChatRequest>(body, index, ctx),
        Surface::OllamaGenerate => run::<ollama::GenerateRequest>(body, index, ctx),
        Surface::OllamaEmbed => run::<ollama::EmbedRequest>(body, index, ctx),
        Surface::OllamaEmbeddings => run::<ollama::EmbeddingsRequest>(body, index, ctx),
        Surface::OpenAiChat => run::<openai::ChatRequest>(body, index, ctx),
        Surface::OpenAiCompletions => run::<openai::CompletionRequest>(body, index, ctx),
        Surface::OpenAiEmbeddings => run::<openai::EmbeddingRequest>(body, index, ctx),
        Surface::AnthropicMessages => run::<anthropic::MessagesRequest>(body, index, ctx),
        Surface::OpenAiResponses => run::<responses::ResponsesRequest>(body, index, ctx),
    }
}

/// A JSON value as compact text, for error data.
pub(crate) fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
