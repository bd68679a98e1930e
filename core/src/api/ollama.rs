//! Ollama-native request bodies: `/api/chat`, `/api/generate`, `/api/embed` and the legacy
//! `/api/embeddings` (wire-api.md §3.1–3.4), plus herd's own fields (`fallback_models`,
//! `fallback`, `metadata.tags`: [`HerdFields`]).
//!
//! Every type keeps unknown fields in `extra`; explicit `null`s in known optional fields read as
//! absent (as Go's decoder treats them) and are not written back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::estimate::TokenTally;
use super::spec::{extra_user, Draft};
use super::wire::{ChatTurn, HerdFields, Options, TextInput, Think};
use super::{ApiError, DescribeContext, Surface, WireRequest};
use crate::request::RequestSpec;

/// `POST /api/chat`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model as the client spelled it (normalised only in the [`RequestSpec`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation; empty or absent means "just load the model".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// Tool definitions (`{"type":"function","function":{...}}`), kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// Stream the answer; absent means `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Runtime options (`num_ctx`, `num_predict`, `temperature`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// Seconds (number) or a duration string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Thinking on/off or a level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Think>,
    /// herd's own fields (`fallback_models`, `fallback`, `metadata`).
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field (`truncate`, `shift`, `logprobs`, ...), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One native chat message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool` (Ollama lower-cases it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The text; may be absent (the Python client drops empty strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Prior reasoning, for multi-turn with thinking models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Raw base64 images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Tool calls on assistant messages (`arguments` is an object), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// On `tool` messages: which tool produced this result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// On `tool` messages: the call this answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatTurn for Message {
    fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The content, if any.
    fn texts(&self) -> Vec<&str> {
        self.content.as_deref().into_iter().collect()
    }

    fn image_count(&self) -> usize {
        self.images.as_ref().map_or(0, Vec::len)
    }

    /// Counts the content, the reasoning, the tool calls and the images.
    fn tally(&self, t: &mut TokenTally) {
        t.message();
        t.text(self.content.as_deref().unwrap_or(""));
        t.text(self.thinking.as_deref().unwrap_or(""));
        for call in self.tool_calls.iter().flatten() {
            t.json(call);
        }
        t.images(self.image_count());
    }
}

/// `POST /api/generate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt; empty or absent means "just load the model".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Text after the insertion point (fill-in-the-middle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Overrides the Modelfile system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Raw base64 images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Stream the answer; absent means `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// No templating when true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<bool>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Runtime options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// Seconds (number) or a duration string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Thinking on/off or a level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Think>,
    /// herd's own fields (`fallback_models`, `fallback`, `metadata`).
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field (`template`, `context`, `truncate`, ...), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /api/embed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// One string or a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<TextInput>,
    /// Runtime options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// Seconds (number) or a duration string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// herd's own fields (`fallback_models`, `fallback`, `metadata`).
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field (`truncate`, `dimensions`, ...), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /api/embeddings` (legacy: `prompt` in, one unnormalised `embedding` out).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The text to embed; empty loads the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Runtime options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// Seconds (number) or a duration string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// herd's own fields (`fallback_models`, `fallback`, `metadata`).
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Reads `num_ctx` and the `num_predict` budget into the draft.
fn read_options(d: &mut Draft<'_>, options: Option<&Options>) -> Result<(), ApiError> {
    if let Some(o) = options {
        d.num_ctx = o.num_ctx()?;
        d.max_output_tokens = o.output_budget()?;
    }
    Ok(())
}

impl WireRequest for ChatRequest {
    const SURFACE: Surface = Surface::OllamaChat;

    /// Counts every message, image and tool definition; the leading `system` messages and the
    /// tools form the prefix key.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), self.stream, &self.herd, extra_user(&self.extra))?;
        d.chat(self.messages.as_deref().unwrap_or(&[]));
        d.tools(self.tools.as_deref());
        read_options(&mut d, self.options.as_ref())?;
        d.think = self.think.as_ref().map(Think::enabled).transpose()?;
        d.finish(ctx)
    }
}

impl WireRequest for GenerateRequest {
    const SURFACE: Surface = Surface::OllamaGenerate;

    /// Counts the prompt, suffix and system prompt (one message each when present) and images;
    /// `system` forms the prefix key.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), self.stream, &self.herd, extra_user(&self.extra))?;
        d.tally.message().text(self.prompt.as_deref().unwrap_or(""));
        d.tally.text(self.suffix.as_deref().unwrap_or(""));
        if let Some(system) = self.system.as_deref() {
            d.tally.message().text(system);
            d.prefix.system = vec![system.into()];
        }
        let images = self.images.as_ref().map_or(0, Vec::len);
        d.tally.images(images);
        d.has_images = images > 0;
        read_options(&mut d, self.options.as_ref())?;
        d.think = self.think.as_ref().map(Think::enabled).transpose()?;
        d.finish(ctx)
    }
}

impl WireRequest for EmbedRequest {
    const SURFACE: Surface = Surface::OllamaEmbed;

    /// Counts the characters of every input (no per-message overhead); never streams.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), None, &self.herd, extra_user(&self.extra))?;
        for text in self.input.as_ref().map_or(&[][..], TextInput::texts) {
            d.tally.text(text);
        }
        read_options(&mut d, self.options.as_ref())?;
        d.max_output_tokens = None;
        d.finish(ctx)
    }
}

impl WireRequest for EmbeddingsRequest {
    const SURFACE: Surface = Surface::OllamaEmbeddings;

    /// Counts the characters of `prompt`; never streams.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), None, &self.herd, extra_user(&self.extra))?;
        d.tally.text(self.prompt.as_deref().unwrap_or(""));
        read_options(&mut d, self.options.as_ref())?;
        d.max_output_tokens = None;
        d.finish(ctx)
    }
}
