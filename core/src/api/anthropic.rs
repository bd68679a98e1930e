//! The Anthropic-compatible `/v1/messages` request body (wire-api.md §7), plus herd's own
//! fields. Content is a string or a list of typed blocks; unknown block types are kept verbatim.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::estimate::TokenTally;
use super::spec::{extra_user, Draft};
use super::wire::{typed_parts, Content, HerdFields};
use super::{ApiError, DescribeContext, Surface, WireRequest};
use crate::request::RequestSpec;

/// `POST /v1/messages`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model as the client spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Output budget; required and positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The conversation; required and non-empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// The system prompt: a string or a list of text blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Content<Block>>,
    /// Stream named SSE events; absent means `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tool definitions (`{"name","description","input_schema"}`), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `{"type":"enabled"|"disabled", "budget_tokens": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    /// `{"effort": "low"|...}`, used when `thinking` is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Map<String, Value>>,
    /// Anthropic's `metadata` (herd reads `user_id` and `tags`) and herd's own fields.
    #[serde(flatten)]
    pub herd: HerdFields,
    /// Every other field (`temperature`, `top_p`, `top_k`, `stop_sequences`, `tool_choice`, ...),
    /// verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `thinking` request field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThinkingConfig {
    /// `enabled` or `disabled`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Every other field (`budget_tokens`), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A string or a list of blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content<Block>>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A content block.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// `{"type":"text","text":...}`.
    Text(TextBlock),
    /// `{"type":"image","source":{"type":"base64","media_type":...,"data":...}}`.
    Image(ImageBlock),
    /// `{"type":"tool_use","id":...,"name":...,"input":{...}}`.
    ToolUse(ToolUseBlock),
    /// `{"type":"tool_result","tool_use_id":...,"content":...,"is_error":...}`.
    ToolResult(ToolResultBlock),
    /// `{"type":"thinking","thinking":...,"signature":...}`.
    Thinking(ThinkingBlock),
    /// Any other block, the whole object (with its `type`) verbatim.
    Other(Map<String, Value>),
}

/// The fields of a `text` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    /// The text.
    pub text: String,
    /// Every other field (`cache_control`, `citations`), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of an `image` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    /// Where the image is (Ollama accepts `base64` sources only), verbatim.
    pub source: Value,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of a `tool_use` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    /// The call id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The arguments object, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of a `tool_result` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    /// The call this answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// The result: a string or blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content<Block>>,
    /// Whether the tool failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of a `thinking` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    /// The reasoning text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// The signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

typed_parts!(Block {
    "text" => Text,
    "image" => Image,
    "tool_use" => ToolUse,
    "tool_result" => ToolResult,
    "thinking" => Thinking,
});

impl Block {
    /// The text of a text block.
    pub fn text(&self) -> Option<&str> {
        match self {
            Block::Text(b) => Some(&b.text),
            _ => None,
        }
    }

    /// Adds this block to a token tally: text, reasoning, tool-call name and input JSON,
    /// tool-result content (recursively) and images. Unknown blocks are not counted.
    pub fn tally(&self, t: &mut TokenTally) {
        match self {
            Block::Text(b) => {
                t.text(&b.text);
            }
            Block::Image(_) => {
                t.images(1);
            }
            Block::ToolUse(b) => {
                t.text(b.name.as_deref().unwrap_or(""));
                if let Some(input) = &b.input {
                    t.json(input);
                }
            }
            Block::ToolResult(b) => tally_content(b.content.as_ref(), t),
            Block::Thinking(b) => {
                t.text(b.thinking.as_deref().unwrap_or(""));
            }
            Block::Other(_) => {}
        }
    }

    /// Whether this block is or contains (inside a tool result) an image.
    pub fn has_image(&self) -> bool {
        match self {
            Block::Image(_) => true,
            Block::ToolResult(b) => b.content.as_ref().is_some_and(|c| c.parts().iter().any(Block::has_image)),
            _ => false,
        }
    }
}

/// Adds string-or-blocks content to a tally.
fn tally_content(content: Option<&Content<Block>>, t: &mut TokenTally) {
    match content {
        None => {}
        Some(Content::Text(text)) => {
            t.text(text);
        }
        Some(Content::Parts(blocks)) => blocks.iter().for_each(|b| b.tally(t)),
    }
}

/// The system prompt's texts with Claude Code's per-request billing fingerprint (`cch=<hex>;`)
/// replaced by a constant, so that the prefix key stays stable across requests, as the prompt
/// prefix sent upstream does (herd-router.md §11.3).
pub fn stable_system_text(text: &str) -> Cow<'_, str> {
    const MARK: &str = "cch=";
    if !text.contains(MARK) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let after = &rest[i + MARK.len()..];
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..i + MARK.len()]);
        if hex > 0 && after.as_bytes().get(hex) == Some(&b';') {
            out.push('0');
            rest = &after[hex..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

impl MessagesRequest {
    /// `POST /v1/messages/count_tokens` (herd-router.md §9.4): the request checked as
    /// `/v1/messages` checks it, but for `max_tokens` (the counting API has none), and the
    /// estimate of its input tokens. herd has no tokenizer: this is herd's one estimator
    /// ([`TokenTally`]: about 4 characters a token, 4 per message, 150 per image) over the
    /// system prompt and every message's blocks (text, tool_use inputs, tool_result contents,
    /// thinking, images). Tool definitions are not counted, as ollama-herd does not count them.
    ///
    /// # Errors
    /// [`ApiError`] for a missing or invalid model, or missing or empty messages.
    pub fn count_tokens(&self) -> Result<u32, ApiError> {
        super::parse_model_name(self.model.as_deref().ok_or(ApiError::MissingModel)?)?;
        let messages = self.messages.as_deref().ok_or(ApiError::MissingField { field: "messages" })?;
        if messages.is_empty() {
            return Err(ApiError::EmptyField { field: "messages" });
        }
        let mut tally = TokenTally::default();
        if self.system.is_some() {
            tally.message();
            tally_content(self.system.as_ref(), &mut tally);
        }
        for m in messages {
            tally.message();
            tally_content(m.content.as_ref(), &mut tally);
        }
        Ok(tally.tokens())
    }

    /// The client's think setting: `thinking.type` (`enabled` / `disabled`), else the presence
    /// of a known `output_config.effort`.
    pub fn think(&self) -> Option<bool> {
        if let Some(kind) = self.thinking.as_ref().and_then(|t| t.kind.as_deref()) {
            return match kind {
                "enabled" | "adaptive" => Some(true),
                "disabled" => Some(false),
                _ => None,
            };
        }
        let effort = self.output_config.as_ref().and_then(|o| o.get("effort"));
        match effort.and_then(Value::as_str) {
            Some("low" | "medium" | "high" | "max" | "xhigh") => Some(true),
            _ => None,
        }
    }
}

impl WireRequest for MessagesRequest {
    const SURFACE: Surface = Surface::AnthropicMessages;

    /// `max_tokens` must be positive and `messages` non-empty (Ollama refuses both with 400).
    /// Counts system, messages, tool calls and results, images and tool definitions; `system` and
    /// the tools form the prefix key.
    fn describe(&self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let mut d = Draft::new(Self::SURFACE, self.model.as_deref(), self.stream, &self.herd, extra_user(&self.extra))?;
        let max_tokens = self.max_tokens.ok_or(ApiError::MissingField { field: "max_tokens" })?;
        if max_tokens == 0 {
            return Err(ApiError::InvalidValue { field: "max_tokens", value: "0".into() });
        }
        let messages = self.messages.as_deref().ok_or(ApiError::MissingField { field: "messages" })?;
        if messages.is_empty() {
            return Err(ApiError::EmptyField { field: "messages" });
        }
        if self.system.is_some() {
            d.tally.message();
            tally_content(self.system.as_ref(), &mut d.tally);
        }
        for m in messages {
            d.tally.message();
            tally_content(m.content.as_ref(), &mut d.tally);
            let blocks = m.content.as_ref().map_or(&[][..], Content::parts);
            d.has_images |= blocks.iter().any(Block::has_image);
        }
        d.tools(self.tools.as_deref());
        d.prefix.system = match &self.system {
            None => Vec::new(),
            Some(Content::Text(text)) => vec![stable_system_text(text)],
            Some(Content::Parts(blocks)) => blocks.iter().filter_map(Block::text).map(stable_system_text).collect(),
        };
        d.max_output_tokens = Some(max_tokens);
        d.think = self.think();
        d.finish(ctx)
    }
}
