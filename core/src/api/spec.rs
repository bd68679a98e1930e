//! Turns what every surface has in common (model, herd's own body fields, tags, estimates) into a
//! [`RequestSpec`]: model validation, fallback lists, request tagging (herd-node.md §4), session
//! and prefix affinity keys (herd-router.md §2.5) and the per-request fallback choice (§3).

use std::borrow::Cow;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::estimate::TokenTally;
use super::wire::{ChatTurn, HerdFields};
use super::{ApiError, DescribeContext, Surface};
use crate::ids::ModelName;
use crate::request::{FallbackChoice, RequestKind, RequestSpec};

/// Default for [`DescribeContext::prefix_min_tokens`] (ollama-herd's threshold).
pub const DEFAULT_PREFIX_MIN_TOKENS: u32 = 2000;
/// At most this many tags are kept per request; later ones are dropped.
pub const MAX_TAGS: usize = 32;
/// Tags longer than this many bytes are dropped.
pub const MAX_TAG_BYTES: usize = 256;
/// At most this many client `fallback_models` are kept; later ones are dropped.
pub const MAX_FALLBACK_MODELS: usize = 16;
/// Model names longer than this many bytes are refused.
pub const MAX_MODEL_NAME_BYTES: usize = 1024;

/// Reads ollama-herd's `X-Fleet-No-Fallback` header: `true|1|yes|on` → [`FallbackChoice::Deny`]
/// (strict mode), `false|0|no|off` → [`FallbackChoice::Allow`], anything else → `None` (the body's
/// `fallback` field or the router default applies). Case-insensitive, surrounding spaces ignored.
pub fn parse_no_fallback_header(value: &str) -> Option<FallbackChoice> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "true" | "1" | "yes" | "on" => Some(FallbackChoice::Deny),
        "false" | "0" | "no" | "off" => Some(FallbackChoice::Allow),
        _ => None,
    }
}

/// Splits an `X-Herd-Tags` header value: comma-separated, each tag trimmed, empty ones dropped.
pub fn parse_tags_header(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Validates and normalises a client model name.
///
/// Only names no server could accept are refused: empty, longer than [`MAX_MODEL_NAME_BYTES`],
/// containing whitespace or control characters, an empty path segment (`/m`, `a//m`), or an empty
/// name or tag in the last segment (`m:`, `:tag`). Ollama answers those with 400
/// `invalid model name`.
///
/// # Errors
/// [`ApiError::EmptyModel`] or [`ApiError::InvalidModelName`].
pub fn parse_model_name(raw: &str) -> Result<ModelName, ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::EmptyModel);
    }
    let invalid = || ApiError::InvalidModelName { name: raw.to_string() };
    if name.len() > MAX_MODEL_NAME_BYTES || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    if name.split('/').any(str::is_empty) {
        return Err(invalid());
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if let Some((base, tag)) = last.rsplit_once(':') {
        if base.is_empty() || tag.is_empty() {
            return Err(invalid());
        }
    }
    Ok(ModelName::new(name))
}

/// The prefix-affinity key: the first 8 bytes (big-endian) of the SHA-256 of the canonical JSON
/// `{"model":…,"system":[…],"tools":[…]}` (object keys sorted, no spaces).
///
/// Two requests with the same model, leading system prompt and tool definitions get the same key
/// whatever order the client wrote the tool schemas' keys in.
pub fn prefix_key(model: &ModelName, system: &[&str], tools: &[Value]) -> u64 {
    let mut out = String::new();
    out.push_str("{\"model\":");
    write_str(model.as_str(), &mut out);
    out.push_str(",\"system\":[");
    for (i, s) in system.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(s, &mut out);
    }
    out.push_str("],\"tools\":[");
    for (i, tool) in tools.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_canonical(tool, &mut out);
    }
    out.push_str("]}");
    let digest = Sha256::digest(out.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Writes `v` as JSON with object keys sorted, whatever order the map iterates in.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::String(s) => write_str(s, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Writes `s` as a JSON string literal.
fn write_str(s: &str, out: &mut String) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

/// The leading system prompt and tools, for the prefix key.
#[derive(Default)]
pub(crate) struct PrefixSource<'a> {
    /// System prompt texts, in order.
    pub system: Vec<Cow<'a, str>>,
    /// Tool definitions as sent.
    pub tools: &'a [Value],
}

/// A request description before the parts shared by every surface are resolved.
pub(crate) struct Draft<'a> {
    pub surface: Surface,
    pub model: ModelName,
    /// The model as sent, trimmed.
    pub raw_model: &'a str,
    pub herd: &'a HerdFields,
    /// The body's `user` (OpenAI's field, or a string `user` on any other surface).
    pub user: Option<&'a str>,
    pub tally: TokenTally,
    pub max_output_tokens: Option<u32>,
    pub num_ctx: Option<u32>,
    pub has_images: bool,
    pub think: Option<bool>,
    pub stream: bool,
    pub prefix: PrefixSource<'a>,
}

impl<'a> Draft<'a> {
    /// A draft with nothing counted yet, for a validated `model`; an absent `stream` takes the
    /// surface's default.
    pub fn new(
        surface: Surface,
        model: Option<&'a str>,
        stream: Option<bool>,
        herd: &'a HerdFields,
        user: Option<&'a str>,
    ) -> Result<Self, ApiError> {
        let raw_model = model.ok_or(ApiError::MissingModel)?;
        let model = parse_model_name(raw_model)?;
        Ok(Draft {
            surface,
            model,
            raw_model: raw_model.trim(),
            herd,
            user,
            tally: TokenTally::default(),
            max_output_tokens: None,
            num_ctx: None,
            has_images: false,
            think: None,
            stream: stream.unwrap_or(surface.default_stream()),
            prefix: PrefixSource::default(),
        })
    }

    /// Counts chat `messages` and notes their images; the leading `system` messages' texts form
    /// the prefix key's system part.
    pub fn chat<M: ChatTurn>(&mut self, messages: &'a [M]) {
        for m in messages {
            m.tally(&mut self.tally);
            self.has_images |= m.image_count() > 0;
        }
        self.prefix.system = messages.iter().take_while(|m| m.is_system()).flat_map(M::texts).map(Into::into).collect();
    }

    /// Counts the tool definitions, which also form the prefix key's tools part.
    pub fn tools(&mut self, tools: Option<&'a [Value]>) {
        let tools = tools.unwrap_or(&[]);
        for tool in tools {
            self.tally.json(tool);
        }
        self.prefix.tools = tools;
    }

    /// Resolves the shared parts against `ctx`.
    pub fn finish(self, ctx: &DescribeContext) -> Result<RequestSpec, ApiError> {
        let model = self.model;
        let kind = self.surface.kind();
        let fallback_models = fallback_list(&model, self.herd.fallback_models.as_deref().unwrap_or(&[]))?;
        let metadata_user_id = self.surface == Surface::AnthropicMessages;
        let tags = collect_tags(kind, self.herd.metadata.as_ref(), self.user, metadata_user_id, &ctx.header_tags);
        let client = ctx.client.clone().filter(|c| !c.is_empty());
        let session_key = tags
            .iter()
            .find(|t| t.len() > "session:".len() && t.starts_with("session:"))
            .cloned()
            .or_else(|| client.as_ref().map(|c| format!("{c}|{model}")));
        let prefix_key = prefix_of(&model, &self.prefix, ctx.prefix_min_tokens);
        let fallback = ctx.fallback_header.unwrap_or(match self.herd.fallback {
            Some(true) => FallbackChoice::Allow,
            Some(false) => FallbackChoice::Deny,
            None => FallbackChoice::Default,
        });
        Ok(RequestSpec {
            kind,
            model,
            fallback_models,
            estimated_prompt_tokens: self.tally.tokens(),
            max_output_tokens: self.max_output_tokens,
            num_ctx: self.num_ctx,
            has_images: self.has_images,
            remote_images: false,
            think: self.think,
            stream: self.stream,
            fallback,
            client,
            session_key,
            prefix_key,
            tags,
            anthropic_model: (self.surface == Surface::AnthropicMessages).then(|| self.raw_model.to_string()),
        })
    }
}

/// A body's `user` when it is a string, on surfaces whose request type keeps it in `extra`.
pub(crate) fn extra_user(extra: &Map<String, Value>) -> Option<&str> {
    extra.get("user").and_then(Value::as_str)
}

/// Normalises the client's fallback list: empty names skipped, duplicates (and the primary)
/// removed, at most [`MAX_FALLBACK_MODELS`] kept.
fn fallback_list(primary: &ModelName, raw: &[String]) -> Result<Vec<ModelName>, ApiError> {
    let mut out: Vec<ModelName> = Vec::new();
    for name in raw.iter().filter(|n| !n.trim().is_empty()) {
        let name = parse_model_name(name)?;
        if name != *primary && !out.contains(&name) && out.len() < MAX_FALLBACK_MODELS {
            out.push(name);
        }
    }
    Ok(out)
}

/// The prefix key when the system prompt and tools are long enough to be worth pinning.
fn prefix_of(model: &ModelName, src: &PrefixSource<'_>, min_tokens: u32) -> Option<u64> {
    let mut tally = TokenTally::default();
    for s in &src.system {
        tally.text(s);
    }
    for tool in src.tools {
        tally.json(tool);
    }
    if tally.chars() == 0 || tally.tokens() < min_tokens {
        return None;
    }
    let system: Vec<&str> = src.system.iter().map(|s| s.as_ref()).collect();
    Some(prefix_key(model, &system, src.tools))
}

/// Request tags, in ollama-herd's order, de-duplicated: `metadata.tags`, the header tags, `user`
/// as `user:<value>`, `metadata.user_id` as `user:<id>` (when `metadata_user_id`: Anthropic),
/// then `embed` for embeddings.
fn collect_tags(
    kind: RequestKind,
    metadata: Option<&Map<String, Value>>,
    user: Option<&str>,
    metadata_user_id: bool,
    header: &[String],
) -> Vec<String> {
    let mut tags = request_tags(metadata, user, metadata_user_id, header);
    if kind == RequestKind::Embed {
        push_tag(&mut tags, "embed");
    }
    tags
}

/// The tags a request names, whatever its kind: `metadata.tags`, the header tags, `user` as
/// `user:<value>`, and `metadata.user_id` as `user:<id>` when `metadata_user_id`; de-duplicated,
/// at most [`MAX_TAGS`] of at most [`MAX_TAG_BYTES`] each.
pub(crate) fn request_tags(
    metadata: Option<&Map<String, Value>>,
    user: Option<&str>,
    metadata_user_id: bool,
    header: &[String],
) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let meta_tags = metadata.and_then(|m| m.get("tags"));
    for v in meta_tags.and_then(Value::as_array).into_iter().flatten() {
        if let Some(tag) = tag_text(v) {
            push_tag(&mut tags, &tag);
        }
    }
    for tag in header {
        push_tag(&mut tags, tag);
    }
    if let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) {
        push_tag(&mut tags, &format!("user:{user}"));
    }
    if metadata_user_id {
        let id = metadata.and_then(|m| m.get("user_id"));
        if let Some(id) = id.and_then(Value::as_str).map(str::trim).filter(|u| !u.is_empty()) {
            push_tag(&mut tags, &format!("user:{id}"));
        }
    }
    tags
}

/// Adds `tag` (trimmed) unless it is empty, too long, already there, or the list is full.
fn push_tag(tags: &mut Vec<String>, tag: &str) {
    let tag = tag.trim();
    if !tag.is_empty() && tag.len() <= MAX_TAG_BYTES && tags.len() < MAX_TAGS && !tags.iter().any(|t| t == tag) {
        tags.push(tag.to_string());
    }
}

/// A `metadata.tags` entry as text: strings as they are, numbers and booleans as JSON text;
/// `null`, arrays and objects are dropped.
fn tag_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_fallback_header_values() {
        for v in ["true", "1", "yes", "on", " TRUE ", "On"] {
            assert_eq!(parse_no_fallback_header(v), Some(FallbackChoice::Deny), "{v}");
        }
        for v in ["false", "0", "no", "off", "OFF"] {
            assert_eq!(parse_no_fallback_header(v), Some(FallbackChoice::Allow), "{v}");
        }
        for v in ["", "maybe", "2", "y"] {
            assert_eq!(parse_no_fallback_header(v), None, "{v}");
        }
    }

    #[test]
    fn tags_header_is_split_and_trimmed() {
        assert_eq!(parse_tags_header(" proj-a, session:42 ,,team"), ["proj-a", "session:42", "team"]);
        assert!(parse_tags_header(" , ").is_empty());
    }

    #[test]
    fn model_names() {
        assert_eq!(parse_model_name(" llama3 ").unwrap().as_str(), "llama3:latest");
        assert_eq!(parse_model_name("hf.co/org/m:Q4_K_M").unwrap().as_str(), "hf.co/org/m:Q4_K_M");
        assert_eq!(parse_model_name("registry.io:5000/x/y").unwrap().as_str(), "registry.io:5000/x/y:latest");
        assert_eq!(parse_model_name("  "), Err(ApiError::EmptyModel));
        for bad in ["m:", ":tag", "/m", "a//m", "a/", "two words", "m\u{0}"] {
            assert_eq!(parse_model_name(bad), Err(ApiError::InvalidModelName { name: bad.into() }), "{bad:?}");
        }
        assert!(parse_model_name(&"m".repeat(MAX_MODEL_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn prefix_key_ignores_tool_key_order() {
        let m = ModelName::new("qwen3");
        let a = [json!({"type":"function","function":{"name":"f","parameters":{"a":1,"b":2}}})];
        let b = [json!({"function":{"parameters":{"b":2,"a":1},"name":"f"},"type":"function"})];
        assert_eq!(prefix_key(&m, &["sys"], &a), prefix_key(&m, &["sys"], &b));
        assert_ne!(prefix_key(&m, &["sys"], &a), prefix_key(&m, &["sys2"], &a));
        assert_ne!(prefix_key(&m, &["sys"], &a), prefix_key(&ModelName::new("qwen3:8b"), &["sys"], &a));
    }

    #[test]
    fn prefix_key_is_the_first_eight_bytes_of_sha256() {
        let m = ModelName::new("m");
        let canonical = r#"{"model":"m:latest","system":["s"],"tools":[{"a":[1,"x",null],"b":true}]}"#;
        let digest = Sha256::digest(canonical.as_bytes());
        let want = u64::from_be_bytes(digest[..8].try_into().unwrap());
        let tool = json!({"b": true, "a": [1, "x", null]});
        assert_eq!(prefix_key(&m, &["s"], &[tool]), want);
    }

    #[test]
    fn tags_merge_in_order_without_duplicates() {
        let meta = json!({"tags": ["proj", "", 7, true, null, ["x"], "proj"], "user_id": "u1"});
        let header = vec!["session:9".to_string(), "proj".to_string()];
        assert_eq!(
            collect_tags(RequestKind::Embed, meta.as_object(), Some("alice"), true, &header),
            ["proj", "7", "true", "session:9", "user:alice", "user:u1", "embed"]
        );
    }

    #[test]
    fn tags_are_bounded() {
        let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let long = "x".repeat(MAX_TAG_BYTES + 1);
        let mut header = vec![long];
        header.extend(many);
        let tags = collect_tags(RequestKind::Chat, None, None, false, &header);
        assert_eq!(tags.len(), MAX_TAGS);
        assert_eq!(tags[0], "t0");
    }

    #[test]
    fn fallback_list_normalises_and_dedupes() {
        let primary = ModelName::new("a");
        let raw: Vec<String> = ["b", "", "a:latest", "b:latest", "c:7b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(fallback_list(&primary, &raw).unwrap(), [ModelName::new("b"), ModelName::new("c:7b")]);
        assert!(fallback_list(&primary, &["x:".to_string()]).is_err());
    }
}
