//! Reading Ollama's NDJSON answers: [`ndjson_input`] feeds body bytes through the codec's
//! [`LineSplitter`](crate::codec::ndjson::LineSplitter) (16 MiB line limit, CRLF and blank lines
//! tolerated), and [`parse_chunk`] reads the fields translation needs from one chunk of
//! `/api/chat` or `/api/generate` (wire-api.md §3.1, §3.2). Missing or mistyped fields read as
//! empty; only a line that is not a JSON object, or one with an `error`, fails.

use serde_json::Value;
use std::borrow::Cow;

use super::{NativeEndpoint, ResponseError};

/// One NDJSON line of a native answer, read for translation.
#[cfg(test)]
pub(crate) enum Line<'a> {
    /// Blank: skipped.
    Blank,
    /// An ordinary chunk, read without a [`Value`]: exactly the text [`parse_chunk`] would give
    /// (its other fields empty), borrowed from the line where it has no escapes.
    Plain(Plain<'a>),
    /// Anything else (the done chunk, tool calls, logprobs, an error, odd types): the whole value.
    Value(Value),
}

/// The text of an ordinary chunk: `message.content` / `response` and the thinking.
#[derive(Debug, PartialEq)]
pub(crate) struct Plain<'a> {
    pub content: Cow<'a, str>,
    pub thinking: Cow<'a, str>,
}

impl Plain<'_> {
    /// The chunk [`parse_chunk`] reads from the same line.
    pub fn into_chunk(self) -> Chunk {
        Chunk { content: self.content.into_owned(), thinking: self.thinking.into_owned(), ..Chunk::default() }
    }
}

/// Reads one NDJSON line. Most chunks of a stream only add text; those take the fast path.
/// Everything else (and anything the fast path's types do not fit) is parsed whole, so the
/// result never differs from [`parse_line`] then [`parse_chunk`].
///
/// # Errors
/// As [`parse_line`].
#[cfg(test)]
pub(crate) fn read_line<'a>(line: &'a [u8], endpoint: NativeEndpoint) -> Result<Line<'a>, ResponseError> {
    if let Some(plain) = super::scan::plain(line, endpoint) {
        return Ok(Line::Plain(plain));
    }
    Ok(match parse_line(line)? {
        Some(v) => Line::Value(v),
        None => Line::Blank,
    })
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

/// Adds `handle_line` and `handle_bytes` to a type with a
/// [`LineSplitter`](crate::codec::ndjson::LineSplitter) at `self.$field` and
/// `handle_chunk(&Value)` / `handle_failure(ResponseError)` methods, and private
/// `line_endpoint()`, `handle_plain(Plain)` for the lines [`scan::plain`](super::scan::plain)
/// reads, `handle_raw(&[u8]) -> bool` for a type's own reading of the other lines (true: taken)
/// and `handle_value(Value)` for the rest, plus a private `flush_lines` that feeds the unterminated
/// last line at the end of the body. A line over the splitter's limit fails the answer with
/// [`ResponseError::LineTooLong`]; the splitter then refuses everything, and `handle_failure`
/// ignores the repeats (the answer already failed).
macro_rules! ndjson_input {
    ($($field:ident).+) => {
        /// Feeds one NDJSON line (without its `\n`; the `\r` of a CRLF ending is dropped, as
        /// [`handle_bytes`](Self::handle_bytes) drops it). Blank lines are skipped; a line that is
        /// not JSON fails the answer with [`ResponseError::Malformed`](crate::translate::ResponseError).
        pub fn handle_line(&mut self, line: &[u8]) {
            self.handle_split_line(line.strip_suffix(b"\r").unwrap_or(line));
        }

        /// Handles one line the splitter already cut (its CRLF's `\r` dropped).
        fn handle_split_line(&mut self, line: &[u8]) {
            // Most lines only add text: read them in one pass, without building a value.
            if let Some(plain) = $crate::translate::scan::plain(line, self.line_endpoint()) {
                self.handle_plain(plain);
                return;
            }
            if self.handle_raw(line) {
                return;
            }
            match $crate::translate::chunk::parse_line(line) {
                Ok(Some(value)) => self.handle_value(value),
                Ok(None) => {}
                Err(err) => self.handle_failure(err),
            }
        }

        /// Feeds body bytes as they arrive, split anywhere; whole lines are handled at once,
        /// without copying those that lie whole inside `data`.
        pub fn handle_bytes(&mut self, data: &[u8]) {
            // The splitter is lent out while its lines are handled (they borrow from it).
            let mut lines = std::mem::take(&mut self.$($field).+);
            let split = lines.feed_with(data, |line| self.handle_split_line(line));
            self.$($field).+ = lines;
            if let Err(err) = split {
                self.handle_failure(err.into());
            }
        }

        /// Handles the last line when the body did not end with `\n`.
        fn flush_lines(&mut self) {
            match self.$($field).+.finish() {
                Ok(Some(rest)) => self.handle_split_line(&rest),
                Ok(None) => {}
                Err(err) => self.handle_failure(err.into()),
            }
        }
    };
}
pub(crate) use ndjson_input;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ndjson::DEFAULT_MAX_LINE_BYTES;
    use crate::translate::{NativeAggregator, OpenAiChatStream, OpenAiResponseConfig, SseEvent};
    use serde_json::json;

    /// The fast path reads exactly what the full reader reads, or steps aside.
    #[test]
    fn plain_lines_read_as_the_full_reader_reads_them() {
        let lines: &[&[u8]] = &[
            br#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"Hi"},"done":false}"#,
            br#"{"message":{"role":"assistant","content":"a \"quoted\" \u00e9 word","thinking":"hmm"},"done":false}"#,
            br#"{"response":"tok","thinking":"t","done":false}"#,
            br#"{"message":{"content":""}}"#,
            br#"{"message":null,"response":null,"error":null}"#,
            br#"{"message":{"content":"x"},"done":true,"eval_count":3}"#,
            br#"{"message":{"content":"x","tool_calls":[{"function":{"name":"f","arguments":{}}}]}}"#,
            br#"{"response":"x","tool_calls":[{"function":{"name":"f"}}]}"#,
            br#"{"message":{"content":"x"},"logprobs":[{"token":"x"}]}"#,
            br#"{"error":"boom"}"#,
            br#"{"message":{"content":5}}"#,
            br#"{"done":"yes","response":"x"}"#,
            br#"{"response":"a","response":"b"}"#,
            br#"[1,2]"#,
            b"   ",
            b"{not json",
        ];
        for line in lines {
            for endpoint in [NativeEndpoint::Chat, NativeEndpoint::Generate] {
                let full = parse_line(line).map(|v| v.map(|v| parse_chunk(&v, endpoint)));
                match read_line(line, endpoint) {
                    Ok(Line::Plain(c)) => {
                        assert_eq!(full, Ok(Some(Ok(c.into_chunk()))), "{}", String::from_utf8_lossy(line));
                    }
                    Ok(Line::Value(v)) => assert_eq!(full, Ok(Some(parse_chunk(&v, endpoint)))),
                    Ok(Line::Blank) => assert_eq!(full, Ok(None)),
                    Err(e) => assert_eq!(full, Err(e)),
                }
            }
        }
        // The common case takes the fast path.
        assert!(matches!(read_line(lines[0], NativeEndpoint::Chat), Ok(Line::Plain(_))));
        assert!(matches!(read_line(lines[5], NativeEndpoint::Chat), Ok(Line::Value(_))));
    }

    #[test]
    fn splits_lines_across_pushes() {
        // Split anywhere, CRLF, blank lines, and an unterminated last line handled at the end.
        let body = b"{\"response\":\"a\"}\r\n\n  \r\n{\"response\":\"b\"}\n{\"response\":\"\",\"done\":true}";
        for piece in 1..=body.len() {
            let mut agg = NativeAggregator::new(NativeEndpoint::Generate);
            body.chunks(piece).for_each(|p| agg.handle_bytes(p));
            let (out, _) = agg.finish().unwrap();
            assert_eq!((&out["response"], &out["done"]), (&json!("ab"), &json!(true)), "pieces of {piece}");
        }
    }

    #[test]
    fn long_lines_fail_once() {
        let too_long = ResponseError::LineTooLong { limit_bytes: DEFAULT_MAX_LINE_BYTES };
        let mut s = OpenAiChatStream::new(OpenAiResponseConfig::new("chatcmpl-1", 1, "qwen3"));
        s.handle_bytes(b"{\"message\":{\"content\":\"ok\"},\"done\":false}\n");
        s.handle_bytes(&vec![b' '; DEFAULT_MAX_LINE_BYTES + 1]);
        s.handle_bytes(b"\n{\"done\":true}\n");
        s.handle_end();
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(events.len(), 3, "role, content, one error: {events:?}");
        assert!(matches!(events[2], SseEvent::Error(_)));
        assert_eq!(s.error(), Some(&too_long));
        // A line exactly at the limit (its CRLF excluded) passes; one byte more fails at its `\n`.
        let at_limit = |extra: usize| {
            let mut agg = NativeAggregator::new(NativeEndpoint::Generate);
            let mut line = b"{\"done\":true}".to_vec();
            line.resize(DEFAULT_MAX_LINE_BYTES + extra, b' ');
            line.extend_from_slice(b"\r\n");
            agg.handle_bytes(&line);
            agg.finish().map(|_| ())
        };
        assert_eq!(at_limit(0), Ok(()));
        assert_eq!(at_limit(1), Err(too_long));
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
