//! The one prompt-token estimator herd uses everywhere: routing, context fit, prefix affinity.
//!
//! ollama-herd had three estimators that disagreed and ignored tool definitions and system prompts
//! (herd-router.md §18, weakness 9). This one counts every piece of text a backend will template
//! into the prompt: message contents, text parts, system prompts, prior reasoning, tool calls and
//! the JSON of tool definitions.

use serde_json::Value;

/// Characters per estimated token.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens added per message for role markers and template framing (ollama-herd: 16 characters).
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;
/// Tokens added per image (ollama-herd's figure).
pub const IMAGE_TOKENS: u64 = 150;

/// A running count of what a prompt contains; [`TokenTally::tokens`] turns it into an estimate.
///
/// The estimate is `chars / 4 + 4 × messages + 150 × images`, at least 1, where `chars` counts
/// Unicode scalar values (as Python's `len` does) and JSON is measured in its compact form.
///
/// ```
/// use herd_core::api::estimate::TokenTally;
/// let mut t = TokenTally::default();
/// t.message().text("Why is the sky blue?"); // 20 chars
/// t.message().images(1);
/// assert_eq!(t.tokens(), 20 / 4 + 2 * 4 + 150);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenTally {
    chars: u64,
    messages: u64,
    images: u64,
}

impl TokenTally {
    /// Adds the characters of `text`.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.chars = self.chars.saturating_add(count_chars(text));
        self
    }

    /// Adds the length of `value` written as compact JSON (tool definitions, tool-call arguments).
    pub fn json(&mut self, value: &Value) -> &mut Self {
        self.chars = self.chars.saturating_add(json_chars(value));
        self
    }

    /// Counts one message (adds the per-message overhead).
    pub fn message(&mut self) -> &mut Self {
        self.messages = self.messages.saturating_add(1);
        self
    }

    /// Counts `n` images.
    pub fn images(&mut self, n: usize) -> &mut Self {
        self.images = self.images.saturating_add(n as u64);
        self
    }

    /// Characters counted so far.
    pub fn chars(&self) -> u64 {
        self.chars
    }

    /// True when nothing has been counted.
    pub fn is_empty(&self) -> bool {
        *self == TokenTally::default()
    }

    /// The estimate in tokens: `chars / 4 + 4 × messages + 150 × images`, at least 1, saturating
    /// at `u32::MAX`.
    pub fn tokens(&self) -> u32 {
        let total = (self.chars / CHARS_PER_TOKEN)
            .saturating_add(self.messages.saturating_mul(MESSAGE_OVERHEAD_TOKENS))
            .saturating_add(self.images.saturating_mul(IMAGE_TOKENS));
        u32::try_from(total).unwrap_or(u32::MAX).max(1)
    }
}

/// Unicode scalar values in `text`.
fn count_chars(text: &str) -> u64 {
    text.chars().count() as u64
}

/// Characters of `value` in compact JSON, computed without building the string.
pub fn json_chars(value: &Value) -> u64 {
    match value {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => n.to_string().len() as u64,
        Value::String(s) => string_chars(s),
        Value::Array(items) => {
            let commas = items.len().saturating_sub(1) as u64;
            items.iter().fold(2 + commas, |acc, v| acc.saturating_add(json_chars(v)))
        }
        Value::Object(map) => {
            let commas = map.len().saturating_sub(1) as u64;
            map.iter().fold(2 + commas, |acc, (k, v)| {
                acc.saturating_add(string_chars(k)).saturating_add(1).saturating_add(json_chars(v))
            })
        }
    }
}

/// Characters of `s` written as a JSON string literal, quotes and escapes included.
fn string_chars(s: &str) -> u64 {
    s.chars().fold(2u64, |acc, c| {
        let n = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            _ => 1,
        };
        acc.saturating_add(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_tally_is_one_token() {
        assert_eq!(TokenTally::default().tokens(), 1);
        assert!(TokenTally::default().is_empty());
    }

    #[test]
    fn worked_example_chat_with_image() {
        // {"role":"user","content":"hi","images":["iVBORw=="]} + an assistant turn without content.
        let mut t = TokenTally::default();
        t.message().text("hi").images(1);
        t.message();
        assert_eq!(t.tokens(), 2 * 4 + 150); // "hi" is 2 chars: 0 tokens
    }

    #[test]
    fn chars_are_unicode_scalars_not_bytes() {
        let mut t = TokenTally::default();
        t.text("22°C ☀️"); // 7 scalars, 12 bytes
        assert_eq!(t.chars(), 7);
    }

    #[test]
    fn json_chars_matches_serde_json() {
        let tool = json!({"type":"function","function":{"name":"get_weather",
            "description":"Weather for a city \"now\"\n\u{1}",
            "parameters":{"type":"object","properties":{"city":{"type":["string","null"]}},
            "required":["city"], "n": -1.5e3, "b": [true, false, null], "e": {}, "a": []}}});
        let s = serde_json::to_string(&tool).unwrap();
        assert_eq!(json_chars(&tool), s.chars().count() as u64);
    }

    #[test]
    fn tools_count_towards_the_estimate() {
        let tool = json!({"type":"function","function":{"name":"get_weather"}});
        let mut t = TokenTally::default();
        t.json(&tool);
        assert_eq!(t.chars(), serde_json::to_string(&tool).unwrap().len() as u64);
        assert_eq!(t.tokens(), (t.chars() / 4) as u32);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let mut t = TokenTally::default();
        t.images(usize::MAX).images(usize::MAX);
        assert_eq!(t.tokens(), u32::MAX);
    }
}
