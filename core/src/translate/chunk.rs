//! Reading Ollama's NDJSON answers: [`LineBuffer`] splits body bytes into lines with a limit on
//! line length, and [`parse_chunk`] reads the fields translation needs from one chunk of
//! `/api/chat` or `/api/generate` (wire-api.md §3.1, §3.2). Missing or mistyped fields read as
//! empty; only a line that is not a JSON object, or one with an `error`, fails.

use serde_json::Value;

use super::{NativeEndpoint, ResponseError};

/// A push splitter for NDJSON bodies: feed bytes as they arrive, split anywhere; take whole lines.
///
/// A line longer than the limit fails once with [`ResponseError::LineTooLong`]; after that the
/// buffer drops everything (the stream it came from is broken).
#[derive(Clone, Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the current line in `buf`.
    start: usize,
    /// Bytes of the current line already searched for `\n`.
    scanned: usize,
    max_line_bytes: usize,
    failed: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new(LineBuffer::DEFAULT_MAX_LINE_BYTES)
    }
}

impl LineBuffer {
    /// The default line limit, 16 MiB: far above any chunk Ollama writes.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

    /// A buffer that refuses lines longer than `max_line_bytes` (not counting the `\n`).
    pub fn new(max_line_bytes: usize) -> Self {
        LineBuffer { buf: Vec::new(), start: 0, scanned: 0, max_line_bytes, failed: false }
    }

    /// Appends bytes as they came off the wire; call [`LineBuffer::next_line`] until `None`.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole line without its `\n`, or `None` until more bytes arrive.
    ///
    /// # Errors
    /// [`ResponseError::LineTooLong`], once, when a line grows past the limit.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, ResponseError>> {
        if self.failed {
            return None;
        }
        let from = self.start + self.scanned;
        let found = self.buf.get(from..).and_then(|rest| rest.iter().position(|&b| b == b'\n'));
        match found {
            Some(offset) => {
                let end = from + offset;
                if end - self.start > self.max_line_bytes {
                    return Some(Err(self.fail()));
                }
                let line = self.buf.get(self.start..end).map(<[u8]>::to_vec).unwrap_or_default();
                self.start = end + 1;
                self.scanned = 0;
                Some(Ok(line))
            }
            None => {
                // Forget the consumed lines so the buffer only ever holds one partial line.
                self.buf.drain(..self.start.min(self.buf.len()));
                self.start = 0;
                self.scanned = self.buf.len();
                (self.buf.len() > self.max_line_bytes).then(|| Err(self.fail()))
            }
        }
    }

    /// At the end of the body: the last line if it had no `\n` (Ollama always writes one).
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        let rest = self.buf.split_off(self.start.min(self.buf.len()));
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        (!self.failed && !rest.is_empty()).then_some(rest)
    }

    fn fail(&mut self) -> ResponseError {
        self.failed = true;
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
        ResponseError::LineTooLong { limit_bytes: self.max_line_bytes }
    }
}

/// Parses one NDJSON line; `Ok(None)` for a blank line.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<Value>, ResponseError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(line).map(Some).map_err(|e| ResponseError::malformed(&e))
}

/// What one native chunk adds to an answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Chunk {
    /// `message.content` (chat) or `response` (generate).
    pub content: String,
    /// `message.thinking` (chat) or `thinking` (generate).
    pub thinking: String,
    /// Whole tool calls (`{"id":..,"function":{"name":..,"arguments":{..}}}`), as sent.
    pub tool_calls: Vec<Value>,
    /// `logprobs` entries, as sent.
    pub logprobs: Vec<Value>,
    /// `done: true`.
    pub done: bool,
    /// `done_reason`.
    pub done_reason: Option<String>,
    /// `prompt_eval_count` (0 when absent: Go omits zeros).
    pub prompt_tokens: u64,
    /// `eval_count`.
    pub completion_tokens: u64,
}

/// Reads a native chunk.
///
/// # Errors
/// [`ResponseError::Upstream`] for a line with a non-null `error`, [`ResponseError::Malformed`]
/// for a value that is not an object.
pub(crate) fn parse_chunk(v: &Value, endpoint: NativeEndpoint) -> Result<Chunk, ResponseError> {
    let obj =
        v.as_object().ok_or_else(|| ResponseError::Malformed { detail: "a chunk must be a JSON object".into() })?;
    match obj.get("error") {
        None | Some(Value::Null) => {}
        Some(Value::String(message)) => return Err(ResponseError::Upstream { message: message.clone() }),
        Some(other) => return Err(ResponseError::Upstream { message: other.to_string() }),
    }
    // Chat keeps its text in `message`; generate at the top level.
    let body = match endpoint {
        NativeEndpoint::Chat => obj.get("message"),
        NativeEndpoint::Generate => Some(v),
    };
    let text = |key: &str| body.and_then(|b| b.get(key)).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |value: Option<&Value>| value.and_then(Value::as_array).cloned().unwrap_or_default();
    let count = |key: &str| obj.get(key).and_then(Value::as_u64).unwrap_or(0);
    Ok(Chunk {
        content: text(match endpoint {
            NativeEndpoint::Chat => "content",
            NativeEndpoint::Generate => "response",
        }),
        thinking: text("thinking"),
        tool_calls: list(body.and_then(|b| b.get("tool_calls"))),
        logprobs: list(obj.get("logprobs")),
        done: obj.get("done").and_then(Value::as_bool).unwrap_or(false),
        done_reason: obj.get("done_reason").and_then(Value::as_str).map(str::to_string),
        prompt_tokens: count("prompt_eval_count"),
        completion_tokens: count("eval_count"),
    })
}

/// `n` as a `u32`, saturating.
pub(crate) fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Adds `handle_line` and `handle_bytes` to a type with a [`LineBuffer`] at `self.$field` and
/// `handle_chunk(&Value)` / `handle_failure(ResponseError)` methods, plus a private
/// `flush_lines` that feeds the unterminated last line at the end of the body.
macro_rules! ndjson_input {
    ($($field:ident).+) => {
        /// Feeds one NDJSON line (without its `\n`). Blank lines are skipped; a line that is not
        /// JSON fails the answer with [`ResponseError::Malformed`](crate::translate::ResponseError).
        pub fn handle_line(&mut self, line: &[u8]) {
            match $crate::translate::chunk::parse_line(line) {
                Ok(Some(value)) => self.handle_chunk(&value),
                Ok(None) => {}
                Err(err) => self.handle_failure(err),
            }
        }

        /// Feeds body bytes as they arrive, split anywhere; whole lines are handled at once.
        pub fn handle_bytes(&mut self, data: &[u8]) {
            self.$($field).+.push(data);
            while let Some(line) = self.$($field).+.next_line() {
                match line {
                    Ok(line) => self.handle_line(&line),
                    Err(err) => self.handle_failure(err),
                }
            }
        }

        /// Handles the last line when the body did not end with `\n`.
        fn flush_lines(&mut self) {
            if let Some(rest) = self.$($field).+.take_rest() {
                self.handle_line(&rest);
            }
        }
    };
}
pub(crate) use ndjson_input;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drain(b: &mut LineBuffer) -> Vec<Result<Vec<u8>, ResponseError>> {
        std::iter::from_fn(|| b.next_line()).collect()
    }

    #[test]
    fn splits_lines_across_pushes() {
        let mut b = LineBuffer::default();
        b.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(drain(&mut b), vec![Ok(b"{\"a\":1}".to_vec())]);
        b.push(b":2}\n\n{\"c\":3}");
        assert_eq!(drain(&mut b), vec![Ok(b"{\"b\":2}".to_vec()), Ok(Vec::new())]);
        assert_eq!(b.take_rest(), Some(b"{\"c\":3}".to_vec()));
        assert_eq!(b.take_rest(), None);
    }

    #[test]
    fn long_lines_fail_once() {
        let mut b = LineBuffer::new(4);
        b.push(b"1234\n12345");
        assert_eq!(drain(&mut b), vec![Ok(b"1234".to_vec()), Err(ResponseError::LineTooLong { limit_bytes: 4 })]);
        b.push(b"\nok\n");
        assert!(drain(&mut b).is_empty());
        assert_eq!(b.take_rest(), None);
        let mut b = LineBuffer::new(4);
        b.push(b"123456\n");
        assert_eq!(drain(&mut b), vec![Err(ResponseError::LineTooLong { limit_bytes: 4 })]);
    }

    #[test]
    fn reads_chat_and_generate_chunks() {
        let chat = json!({"model":"qwen3","message":{"role":"assistant","content":"","thinking":"hm",
            "tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":true,"done_reason":"stop",
            "prompt_eval_count":120,"eval_count":25});
        let c = parse_chunk(&chat, NativeEndpoint::Chat).unwrap();
        assert_eq!((c.thinking.as_str(), c.tool_calls.len(), c.done), ("hm", 1, true));
        assert_eq!((c.prompt_tokens, c.completion_tokens, c.done_reason.as_deref()), (120, 25, Some("stop")));
        let gen = json!({"response":"The","thinking":"t","done":false});
        let c = parse_chunk(&gen, NativeEndpoint::Generate).unwrap();
        assert_eq!((c.content.as_str(), c.thinking.as_str(), c.done), ("The", "t", false));
        assert_eq!(parse_chunk(&gen, NativeEndpoint::Chat).unwrap().content, "");
    }

    #[test]
    fn errors_and_garbage() {
        let e = parse_chunk(&json!({"error":"llama runner process has terminated"}), NativeEndpoint::Chat);
        assert_eq!(e, Err(ResponseError::Upstream { message: "llama runner process has terminated".into() }));
        let e = parse_chunk(&json!({"error":{"code":1}}), NativeEndpoint::Chat);
        assert_eq!(e, Err(ResponseError::Upstream { message: "{\"code\":1}".into() }));
        assert!(parse_chunk(&json!({"error":null,"done":true}), NativeEndpoint::Chat).unwrap().done);
        assert!(matches!(parse_chunk(&json!([1]), NativeEndpoint::Chat), Err(ResponseError::Malformed { .. })));
        assert_eq!(parse_line(b"  \r"), Ok(None));
        assert!(matches!(parse_line(b"{\"a\""), Err(ResponseError::Malformed { .. })));
    }
}
