//! The model an Anthropic answer names. Answers echo the model string the client sent (Ollama's
//! own rule, wire-api.md §1.4; ollama-herd names the client's Claude id too, herd-router.md
//! §7.4), so an SDK that asked for `claude-sonnet-4-5` reads `claude-sonnet-4-5` back; the model
//! that ran is in the `X-Herd-Model` and `X-Fleet-Served-Model` headers. A node sent the local
//! model an id resolved to names that one: [`ModelEcho`] puts the client's name back, in the
//! first event of a passed-through stream (`message_start`) or in a whole answer, and leaves
//! every other byte as the node wrote it.
//!
//! ```
//! use herd_core::api::echo::ModelEcho;
//!
//! let mut echo = ModelEcho::new("claude-sonnet-4-5");
//! let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"qwen3:8b\"}}\n\nevent: ping";
//! assert_eq!(echo.feed(&start[..20]), Some(Vec::new()), "held until the first event is whole");
//! let out = echo.feed(&start[20..]).unwrap();
//! assert!(String::from_utf8(out).unwrap().contains("\"model\":\"claude-sonnet-4-5\""));
//! assert_eq!(echo.feed(b": more"), None, "then every byte passes untouched");
//! ```

use serde_json::Value;

/// The most bytes held while waiting for the first event to end; a longer one passes unchanged.
pub const MAX_FIRST_EVENT_BYTES: usize = 64 * 1024;

/// Renames the model in one Anthropic answer.
#[derive(Clone, Debug)]
pub struct ModelEcho {
    model: String,
    /// The stream's first bytes, until its first event is whole; `None` after.
    pending: Option<Vec<u8>>,
}

impl ModelEcho {
    /// An echo of `model`, the name as the client sent it.
    pub fn new(model: impl Into<String>) -> Self {
        ModelEcho { model: model.into(), pending: Some(Vec::new()) }
    }

    /// Takes the next bytes of a stream: `None` to send them on as they are, or the bytes to send
    /// instead (empty while the first event is still being held).
    pub fn feed(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let pending = self.pending.as_mut()?;
        pending.extend_from_slice(data);
        let Some(end) = pending.windows(2).position(|w| w == b"\n\n") else {
            if pending.len() > MAX_FIRST_EVENT_BYTES {
                return self.pending.take();
            }
            return Some(Vec::new());
        };
        let held = self.pending.take().unwrap_or_default();
        let (first, rest) = held.split_at(end);
        let mut out = self.event(first);
        out.extend_from_slice(rest);
        Some(out)
    }

    /// The stream ended: whatever is still held (a first event that never ended), unchanged.
    pub fn finish(&mut self) -> Vec<u8> {
        self.pending.take().unwrap_or_default()
    }

    /// A whole (non-streamed) `message` with its top-level `model` renamed; anything that is not
    /// a JSON object with a string `model` is returned unchanged.
    pub fn whole(&self, body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut m)) if m.get("model").is_some_and(Value::is_string) => {
                m.insert("model".into(), Value::String(self.model.clone()));
                serde_json::to_vec(&m).unwrap_or_else(|_| body.to_vec())
            }
            _ => body.to_vec(),
        }
    }

    /// One event's lines (without the blank line that ends it), its `message_start` data renamed.
    fn event(&self, lines: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(lines.len() + self.model.len());
        for (i, line) in lines.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            match line.strip_prefix(b"data:").and_then(|d| self.renamed(d)) {
                Some(data) => {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&data);
                }
                None => out.extend_from_slice(line),
            }
        }
        out
    }

    /// A `message_start` payload with `message.model` renamed; `None` for anything else.
    fn renamed(&self, data: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(data.trim_ascii()).ok()?;
        if v.get("type").and_then(Value::as_str) != Some("message_start") {
            return None;
        }
        let model = v.get_mut("message")?.get_mut("model")?;
        if !model.is_string() {
            return None;
        }
        *model = Value::String(self.model.clone());
        serde_json::to_vec(&v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"qwen3:8b\",\"content\":[]}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn echoed(pieces: usize) -> Vec<u8> {
        let mut echo = ModelEcho::new("claude-sonnet-4-5");
        let mut out = Vec::new();
        for p in STREAM.chunks(pieces) {
            match echo.feed(p) {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => out.extend_from_slice(p),
            }
        }
        out.extend(echo.finish());
        out
    }

    #[test]
    fn only_the_first_event_changes_whatever_the_pieces() {
        let whole = echoed(STREAM.len());
        let expected = String::from_utf8(STREAM.to_vec()).unwrap().replacen(
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"qwen3:8b\",\"content\":[]}}",
            "data: {\"message\":{\"content\":[],\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\"},\"type\":\"message_start\"}",
            1,
        );
        assert_eq!(String::from_utf8(whole.clone()).unwrap(), expected);
        for n in [1, 2, 5, 17, 100] {
            assert_eq!(echoed(n), whole, "pieces of {n}");
        }
    }

    #[test]
    fn anything_else_passes_unchanged() {
        let mut echo = ModelEcho::new("c");
        let other = b"event: ping\ndata: {\"type\":\"ping\"}\n\nrest";
        assert_eq!(echo.feed(other), Some(other.to_vec()));
        // A first event that never ends is given back at the end, or once it is too long.
        let mut echo = ModelEcho::new("c");
        assert_eq!(echo.feed(b"event: message_start\ndata: {"), Some(Vec::new()));
        assert_eq!(echo.finish(), b"event: message_start\ndata: {".to_vec());
        let mut echo = ModelEcho::new("c");
        let long = vec![b'x'; MAX_FIRST_EVENT_BYTES + 1];
        assert_eq!(echo.feed(&long), Some(long.clone()));
        assert_eq!(echo.feed(b"\n\n"), None);
        // Whole answers.
        let echo = ModelEcho::new("claude-3-5-haiku");
        let v: Value = serde_json::from_slice(&echo.whole(br#"{"type":"message","model":"llama3.2"}"#)).unwrap();
        assert_eq!(v["model"], "claude-3-5-haiku");
        assert_eq!(echo.whole(b"not json"), b"not json".to_vec());
        assert_eq!(echo.whole(br#"{"error":"x"}"#), br#"{"error":"x"}"#.to_vec());
    }
}
