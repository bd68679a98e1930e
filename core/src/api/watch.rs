//! The one reader of a passed-through stream's ending: whether a node's answer (NDJSON, OpenAI
//! SSE, Anthropic SSE) ended with its end marker, its own error, or not at all, and the token
//! counts it carried; and the counts of a whole (gathered) answer. The router relays the bytes
//! untouched and feeds them here; only a bounded tail is kept.
//!
//! ```
//! use herd_core::api::watch::{StreamEnd, StreamWatch};
//! use herd_core::api::Protocol;
//!
//! let mut w = StreamWatch::new(Protocol::Ollama);
//! w.feed(b"{\"response\":\"hi\",\"done\":false}\n{\"done\":true,\"prompt_eval_count\":3,");
//! assert_eq!(w.end(), StreamEnd::Truncated, "the last line is not whole yet");
//! w.feed(b"\"eval_count\":1}\n");
//! assert!(matches!(w.end(), StreamEnd::Done(u) if u.prompt_tokens == 3 && u.completion_tokens == 1));
//! ```

use super::Protocol;
use crate::router::Usage;

/// The longest final line kept to read the token counts from.
const MAX_TAIL_BYTES: usize = 256 * 1024;
/// Bytes kept before the last line, for the events before the last (Anthropic's usage).
const TAIL_WINDOW: usize = 4096;

/// Watches a passed-through stream of one protocol.
pub struct StreamWatch {
    proto: Protocol,
    tail: Tail,
}

impl StreamWatch {
    /// A watcher for a stream in `proto`'s format.
    pub fn new(proto: Protocol) -> StreamWatch {
        StreamWatch { proto, tail: Tail::default() }
    }

    /// The protocol watched.
    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// Takes the next bytes of the stream (in any pieces).
    pub fn feed(&mut self, data: &[u8]) {
        self.tail.feed(data);
    }

    /// What the stream said so far, read as its ending.
    #[must_use]
    pub fn end(&self) -> StreamEnd {
        match self.proto {
            Protocol::Ollama => ndjson_ending(&self.tail),
            Protocol::OpenAi => openai_ending(&self.tail),
            Protocol::Anthropic => anthropic_ending(&self.tail),
        }
    }
}

/// The token counts of a whole (non-streamed) answer: OpenAI's and Anthropic's `usage`, or
/// Ollama's `prompt_eval_count` / `eval_count`.
pub fn body_usage(body: &[u8]) -> Usage {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    if let Some(u) = v.get("usage") {
        return Usage {
            prompt_tokens: count(u, "prompt_tokens").max(count(u, "input_tokens")),
            completion_tokens: count(u, "completion_tokens").max(count(u, "output_tokens")),
        };
    }
    Usage { prompt_tokens: count(&v, "prompt_eval_count"), completion_tokens: count(&v, "eval_count") }
}

/// The bytes since the last complete line but one: enough to read the final line at the end.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    events: u64,
}

impl Tail {
    fn feed(&mut self, data: &[u8]) {
        self.events += data.iter().filter(|&&b| b == b'\n').count() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() <= TAIL_WINDOW {
            return;
        }
        // Keep the last few KiB, and the whole last complete line however long (a generate
        // answer's final line carries its `context` array).
        let body = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let last_line = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let cut = last_line.min(self.buf.len() - TAIL_WINDOW);
        self.buf.drain(..cut);
        if self.buf.len() > MAX_TAIL_BYTES {
            let cut = self.buf.len() - MAX_TAIL_BYTES;
            self.buf.drain(..cut);
        }
    }
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.buf.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace))
    }
}

/// What the end of a passed-through stream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// It ended with its protocol's end marker (`done: true`, `[DONE]`, `message_stop`), with
    /// the token counts it carried.
    Done(Usage),
    /// The node reported its own error in the stream; the client already has it.
    Error,
    /// It stopped without either: the node cut it short.
    Truncated,
}

fn count(v: &serde_json::Value, key: &str) -> u32 {
    v.get(key).and_then(serde_json::Value::as_u64).map_or(0, |n| n.min(u32::MAX as u64) as u32)
}

fn ndjson_ending(tail: &Tail) -> StreamEnd {
    let Some(line) = tail.lines().last() else { return StreamEnd::Truncated };
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(v) if v.get("done").and_then(serde_json::Value::as_bool) == Some(true) => StreamEnd::Done(Usage {
            prompt_tokens: count(&v, "prompt_eval_count"),
            completion_tokens: count(&v, "eval_count"),
        }),
        Ok(v) => match v.get("error") {
            Some(_) => StreamEnd::Error,
            None => StreamEnd::Truncated,
        },
        Err(_) => StreamEnd::Truncated,
    }
}

fn openai_ending(tail: &Tail) -> StreamEnd {
    let mut usage = None;
    let mut done = false;
    for line in tail.lines() {
        let Some(data) = line.strip_prefix(b"data:") else { continue };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            done = true;
            continue;
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
            if v.get("error").is_some() {
                return StreamEnd::Error;
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                usage = Some(Usage {
                    prompt_tokens: count(u, "prompt_tokens"),
                    completion_tokens: count(u, "completion_tokens"),
                });
            }
        }
    }
    if !done {
        return StreamEnd::Truncated;
    }
    // Without the usage chunk, count the content events (role and finish chunks excluded).
    StreamEnd::Done(usage.unwrap_or(Usage {
        prompt_tokens: 0,
        completion_tokens: (tail.events / 2).saturating_sub(3).min(u32::MAX as u64) as u32,
    }))
}

fn anthropic_ending(tail: &Tail) -> StreamEnd {
    let mut stop = false;
    let mut usage = Usage::default();
    for line in tail.lines() {
        if line.starts_with(b"event: message_stop") {
            stop = true;
        }
        if line.starts_with(b"event: error") {
            return StreamEnd::Error;
        }
        if let Some(data) = line.strip_prefix(b"data:") {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) {
                if let Some(u) = v.get("usage") {
                    usage.completion_tokens = usage.completion_tokens.max(count(u, "output_tokens"));
                    usage.prompt_tokens = usage.prompt_tokens.max(count(u, "input_tokens"));
                }
            }
        }
    }
    if stop {
        StreamEnd::Done(usage)
    } else {
        StreamEnd::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(proto: Protocol, pieces: &[&[u8]]) -> StreamEnd {
        let mut w = StreamWatch::new(proto);
        for p in pieces {
            w.feed(p);
        }
        w.end()
    }

    #[test]
    fn endings_of_each_protocol() {
        let done = b"{\"done\":true,\"prompt_eval_count\":5,\"eval_count\":7}\n";
        assert_eq!(
            end_of(Protocol::Ollama, &[done]),
            StreamEnd::Done(Usage { prompt_tokens: 5, completion_tokens: 7 })
        );
        assert_eq!(end_of(Protocol::Ollama, &[b"{\"error\":\"x\"}\n"]), StreamEnd::Error);
        assert_eq!(end_of(Protocol::Ollama, &[b"{\"done\":false}\n"]), StreamEnd::Truncated);
        assert_eq!(end_of(Protocol::Ollama, &[]), StreamEnd::Truncated);
        let sse = b"data: {\"choices\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        assert_eq!(end_of(Protocol::OpenAi, &[sse]), StreamEnd::Done(Usage { prompt_tokens: 2, completion_tokens: 3 }));
        assert_eq!(end_of(Protocol::OpenAi, &[b"data: {\"error\":{}}\n\n"]), StreamEnd::Error);
        assert_eq!(end_of(Protocol::OpenAi, &[b"data: {\"choices\":[]}\n\n"]), StreamEnd::Truncated);
        let msg = b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":4}}\n\nevent: message_stop\ndata: {}\n\n";
        assert_eq!(
            end_of(Protocol::Anthropic, &[msg]),
            StreamEnd::Done(Usage { prompt_tokens: 0, completion_tokens: 4 })
        );
        assert_eq!(end_of(Protocol::Anthropic, &[b"event: error\ndata: {}\n\n"]), StreamEnd::Error);
    }

    #[test]
    fn a_long_stream_keeps_a_bounded_tail_and_its_last_line() {
        let mut w = StreamWatch::new(Protocol::Ollama);
        for _ in 0..10_000 {
            w.feed(b"{\"response\":\"token\",\"done\":false}\n");
        }
        w.feed(b"{\"done\":true,\"eval_count\":10000}\n");
        assert!(w.tail.buf.len() <= TAIL_WINDOW + 64);
        assert_eq!(w.end(), StreamEnd::Done(Usage { prompt_tokens: 0, completion_tokens: 10_000 }));
    }

    #[test]
    fn whole_answers_usage() {
        assert_eq!(
            body_usage(b"{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}"),
            Usage { prompt_tokens: 1, completion_tokens: 2 }
        );
        assert_eq!(
            body_usage(b"{\"prompt_eval_count\":3,\"eval_count\":4}"),
            Usage { prompt_tokens: 3, completion_tokens: 4 }
        );
        assert_eq!(body_usage(b"not json"), Usage::default());
    }

    #[test]
    fn tail_keeps_the_last_line_across_splits() {
        let body = b"{\"a\":1}\n{\"b\":2}\n{\"done\":true,\"prompt_eval_count\":7,\"eval_count\":3}\n";
        for cut in 1..body.len() {
            let mut t = StreamWatch::new(Protocol::Ollama);
            t.feed(&body[..cut]);
            t.feed(&body[cut..]);
            match t.end() {
                StreamEnd::Done(u) => assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3)),
                _ => panic!("cut {cut}"),
            }
        }
    }

    #[test]
    fn ndjson_error_line_and_truncation() {
        let mut t = StreamWatch::new(Protocol::Ollama);
        t.feed(b"{\"a\":1}\n{\"error\":\"boom\"}\n");
        assert!(matches!(t.end(), StreamEnd::Error));
        let mut t = StreamWatch::new(Protocol::Ollama);
        t.feed(b"{\"a\":1}\n{\"b\":");
        assert!(matches!(t.end(), StreamEnd::Truncated));
    }

    #[test]
    fn openai_usage_chunk_and_done() {
        let mut t = StreamWatch::new(Protocol::OpenAi);
        t.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
        match t.end() {
            StreamEnd::Done(u) => assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 9)),
            _ => panic!(),
        }
        let mut t = StreamWatch::new(Protocol::OpenAi);
        t.feed(b"data: {\"choices\":[]}\n\n");
        assert!(matches!(t.end(), StreamEnd::Truncated));
    }

    #[test]
    fn anthropic_stop_event() {
        let mut t = StreamWatch::new(Protocol::Anthropic);
        t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        match t.end() {
            StreamEnd::Done(u) => assert_eq!(u.completion_tokens, 5),
            _ => panic!(),
        }
    }
}
