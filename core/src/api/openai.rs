//! OpenAI-compatible request bodies: `/v1/chat/completions`, `/v1/completions` and
//! `/v1/embeddings` (wire-api.md §6.1–6.3), plus herd's own fields.
//!
//! Only the fields the router reads are typed; everything else (`temperature`, `top_p`, `stop`,
//! `seed`, `response_format`, `tool_choice`, `stream_options`, `logprobs`, `encoding_format`,
//! `dimensions`, ...) stays in `extra`, verbatim, so nothing the client sent is lost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::estimate::TokenTally;
use super::spec::Draft;
use super::wire::{typed_parts, ChatTurn, Content, HerdFields, TextInput};
use super::{json_text, ApiError, DescribeContext, Surface, WireRequest};
use crate::request::RequestSpec;

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation; required and non-empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Stream the answer as SSE; absent means `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Output budget (Ollama maps it to `num_predict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The newer name of the output budget (Ollama ignores it; herd reads it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Tool definitions, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `none | minimal | low | medium | high | max | xhigh | ultra`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// `{"effort": ...}`, the other spelling of `reasoning_effort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Map<String, Value>>,
    /// End-user id; tags the request `user:<value>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// OpenAI's `metadata` (herd reads `metadata.tags`) and herd's own fields.
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A string or a list of parts; may be `null` on assistant messages with `tool_calls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content<Part>>,
    /// On `tool` messages: the tool's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Assistant tool calls (`arguments` is a JSON string), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// On `tool` messages: the call this answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Every other field (`reasoning`, ...), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatTurn for ChatMessage {
    fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The string content, or each text part.
    fn texts(&self) -> Vec<&str> {
        match &self.content {
            None => Vec::new(),
            Some(Content::Text(text)) => vec![text.as_str()],
            Some(Content::Parts(parts)) => parts.iter().filter_map(Part::text).collect(),
        }
    }

    /// Number of `image_url` parts.
    fn image_count(&self) -> usize {
        let parts = self.content.as_ref().map_or(&[][..], Content::parts);
        parts.iter().filter(|p| matches!(p, Part::ImageUrl(_))).count()
    }

    /// Counts the texts, the tool calls and the images.
    fn tally(&self, t: &mut TokenTally) {
        t.message();
        for text in self.texts() {
            t.text(text);
        }
        for call in self.tool_calls.iter().flatten() {
            t.json(call);
        }
        t.images(self.image_count());
    }
}

/// A content part. Unknown part types are kept as [`Part::Other`] and forwarded; Ollama itself
/// answers them with 400 `invalid message format`.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// `{"type":"text","text":...}`.
    Text(TextPart),
    /// `{"type":"image_url","image_url":{"url":"data:image/png;base64,..."}}`.
    ImageUrl(ImageUrlPart),
    /// `{"type":"input_audio","input_audio":{"data":...,"format":"wav"}}`.
    InputAudio(InputAudioPart),
    /// Any other part, the whole object (with its `type`) verbatim.
    Other(Map<String, Value>),
}

impl Part {
    /// The text of a text part.
    pub fn text(&self) -> Option<&str> {
        match self {
            Part::Text(p) => Some(&p.text),
            _ => None,
        }
    }
}

/// The fields of a `text` part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of an `image_url` part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageUrlPart {
    /// The image, as an object or (an Ollama extension) a bare string.
    pub image_url: ImageUrl,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An `image_url` value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    /// `"image_url": "data:..."`.
    Url(String),
    /// `"image_url": {"url": "data:...", "detail": ...}`.
    Object {
        /// A `data:` URI (Ollama refuses `http(s)` URLs).
        url: String,
        /// Every other field (`detail`), verbatim.
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
}

impl ImageUrl {
    /// The URL or data URI.
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Url(url) | ImageUrl::Object { url, .. } => url,
        }
    }
}

/// The fields of an `input_audio` part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputAudioPart {
    /// `{"data": "<base64>", "format": "wav"}`, verbatim.
    pub input_audio: Value,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

typed_parts!(Part { "text" => Text, "image_url" => ImageUrl, "input_audio" => InputAudio });

/// `POST /v1/completions` (legacy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt (Ollama accepts a string only; a batch is kept for the upstream to refuse).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<TextInput>,
    /// Text after the insertion point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Output budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stream the answer as SSE; absent means `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// End-user id; tags the request `user:<value>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// OpenAI's `metadata` (herd reads `metadata.tags`) and herd's own fields.
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/embeddings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// One string or a non-empty batch (token arrays are refused, as Ollama refuses them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<TextInput>,
    /// End-user id; tags the request `user:<value>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// OpenAI's `metadata` (herd reads `metadata.tags`) and herd's own fields.
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field (`encoding_format`, `dimensions`), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Maps an OpenAI reasoning effort to think on/off as Ollama does (`none` → off).
pub(crate) fn effort_think(field: &'static str, effort: &str) -> Result<bool, ApiError> {
    match effort {
        "none" => Ok(false),
        "minimal" | "low" | "medium" | "high" | "max" | "xhigh" | "ultra" => Ok(true),
        other => Err(ApiError::InvalidValue { field, value: json_text(&other) }),
    }
}

/// The smaller of two optional budgets.
fn min_budget(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl ChatRequest {
    /// The client's think setting from `reasoning_effort`, else `reasoning.effort`.
    ///
    /// # Errors
    /// [`ApiError::InvalidValue`] for an effort Ollama refuses (`invalid reasoning value`).
    pub fn think(&self) -> Result<Option<bool>, ApiError> {
        if let Some(effort) = &self.reasoning_effort {
            return effort_think("reasoning_effort", effort).map(Some);
        }
        let effort = self.reasoning.as_ref().and_then(|r| r.get("effort"));
        effort.and_then(Value::as_str).map(|e| effort_think("reasoning.effort", e)).transpose()
    }
}

impl WireRequest for ChatRequest {
    const SURFACE: Surface = Surface::OpenAiChat;

    /// `messages` must be non-empty. The budget is the smaller of `max_tokens` and
    /// `max_completion_tokens`; the leading `system` messages and the tools form the prefix key.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), self.stream, &self.herd, self.user.as_deref())?;
        let messages = self.messages.as_deref().ok_or(ApiError::MissingField { field: "messages" })?;
        if messages.is_empty() {
            return Err(ApiError::EmptyField { field: "messages" });
        }
        d.chat(messages);
        d.tools(self.tools.as_deref());
        d.max_output_tokens = min_budget(self.max_tokens, self.max_completion_tokens);
        d.think = self.think()?;
        d.finish(ctx)
    }
}

impl WireRequest for CompletionRequest {
    const SURFACE: Surface = Surface::OpenAiCompletions;

    /// Counts the prompt as one message plus the suffix.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), self.stream, &self.herd, self.user.as_deref())?;
        d.tally.message();
        for text in self.prompt.as_ref().map_or(&[][..], TextInput::texts) {
            d.tally.text(text);
        }
        d.tally.text(self.suffix.as_deref().unwrap_or(""));
        d.max_output_tokens = self.max_tokens;
        d.finish(ctx)
    }
}

impl WireRequest for EmbeddingRequest {
    const SURFACE: Surface = Surface::OpenAiEmbeddings;

    /// `input` is required and a batch must be non-empty (Ollama: 400 `invalid input`).
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), None, &self.herd, self.user.as_deref())?;
        let input = self.input.as_ref().ok_or(ApiError::MissingField { field: "input" })?;
        if input.texts().is_empty() {
            return Err(ApiError::EmptyField { field: "input" });
        }
        for text in input.texts() {
            d.tally.text(text);
        }
        d.finish(ctx)
    }
}
