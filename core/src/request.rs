//! What the router needs to know about one client request, independent of its wire protocol.
//! The `api` module builds a [`RequestSpec`] from an Ollama, OpenAI or Anthropic body.

use crate::ids::ModelName;

/// The kind of work a request asks for; it decides which models may serve it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    /// A chat with messages (`/api/chat`, `/v1/chat/completions`, `/v1/messages`).
    #[default]
    Chat,
    /// A single prompt completion (`/api/generate`, `/v1/completions`).
    Generate,
    /// Embeddings (`/api/embed`, `/api/embeddings`, `/v1/embeddings`).
    Embed,
}

/// Whether this request may be served by a substitute model (VRAM-aware fallback).
///
/// Set from ollama-herd's `X-Fleet-No-Fallback` header or the body's `fallback` field.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FallbackChoice {
    /// Follow the router's configuration.
    #[default]
    Default,
    /// Allow substitution even if the router's default is off.
    Allow,
    /// Strict mode: only the named model (and the client's own `fallback_models`).
    Deny,
}

/// The protocol-independent description of one request, as the router scores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestSpec {
    /// What kind of work.
    pub kind: RequestKind,
    /// The requested model, normalised.
    pub model: ModelName,
    /// The client's own fallback list (`fallback_models`), in order of preference.
    pub fallback_models: Vec<ModelName>,
    /// Estimated prompt tokens, tools and system prompt included.
    pub estimated_prompt_tokens: u32,
    /// The client's output budget (`num_predict`, `max_tokens`, `max_completion_tokens`).
    pub max_output_tokens: Option<u32>,
    /// The context window the client asked for (`options.num_ctx`).
    pub num_ctx: Option<u32>,
    /// The request carries images (never served by a non-vision substitute).
    pub has_images: bool,
    /// Some of its images are remote (`image_url` with an http(s) URL) and the adapter fetched
    /// them: the request is translated to the native API, which takes them inline.
    pub remote_images: bool,
    /// The client's `think` setting, when given.
    pub think: Option<bool>,
    /// Whether the client asked for a streamed answer.
    pub stream: bool,
    /// Per-request fallback choice.
    pub fallback: FallbackChoice,
    /// Who is asking (usually the client IP); used for the per-client cap. `None` = anonymous.
    pub client: Option<String>,
    /// Session affinity key (a `session:` tag, else client+model), if any.
    pub session_key: Option<String>,
    /// Prefix affinity key: a hash of the model, long system prompt and tools, if long enough.
    pub prefix_key: Option<u64>,
    /// Request tags for per-project accounting.
    pub tags: Vec<String>,
    /// The model id as an Anthropic client named it (`claude-sonnet-4-5`), on `/v1/messages`
    /// only: the router resolves it to a local model before routing
    /// ([`crate::policy::anthropic::resolve`]), and `model` becomes that model.
    pub anthropic_model: Option<String>,
}

impl Default for ModelName {
    fn default() -> Self {
        ModelName::new("")
    }
}

impl RequestSpec {
    /// A chat request for `model` with every other field at its default; handy in tests.
    pub fn chat(model: &str) -> Self {
        RequestSpec { kind: RequestKind::Chat, model: ModelName::new(model), stream: true, ..RequestSpec::default() }
    }
}
