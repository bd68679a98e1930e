//! A strict, single-pass reader for the ordinary chunks of a native stream: the lines that only
//! add text (`{"model":..,"created_at":..,"message":{"role":"assistant","content":"tok"},"done":false}`),
//! which are nearly every line of every answer. It finds `message.content` / `response` and the
//! thinking text in one walk over the bytes, borrowing them when they hold no escapes, and it
//! builds nothing else.
//!
//! It never decides anything on its own: when it answers, the line is well-formed JSON and
//! [`parse_chunk`](super::chunk::parse_chunk) would read the same text from it, with every other
//! field empty. Anything it is not sure of (the done chunk, tool calls, logprobs, an error, a
//! field of an unexpected type, a repeated field, an escaped key, a surrogate escape, a number
//! with an exponent or over 20 characters, deep nesting, bytes after the object) makes it step
//! aside with `None`, and the line is read whole instead.

use std::borrow::Cow;

use super::chunk::Plain;
use super::NativeEndpoint;

/// Deepest nesting skipped before stepping aside (serde_json itself refuses past 128).
const MAX_DEPTH: u32 = 64;

/// The text of an ordinary chunk, or `None` when the line must be read whole.
pub(crate) fn plain(line: &[u8], endpoint: NativeEndpoint) -> Option<Plain<'_>> {
    // Every string handed out below is a slice of valid UTF-8.
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scan { b: text.as_bytes(), i: 0 };
    let mut seen = Seen::default();
    let (mut message, mut response, mut thinking) = (None, None, None);
    s.ws();
    s.object(|s, key| match key? {
        b"message" => {
            seen.first(0)?;
            message = s.message()?;
            Some(())
        }
        b"response" => {
            seen.first(1)?;
            response = s.text()?;
            Some(())
        }
        b"thinking" => {
            seen.first(2)?;
            thinking = s.text()?;
            Some(())
        }
        // `false` or `null`: not the done chunk.
        b"done" => {
            seen.first(3)?;
            if s.literal(b"false") {
                Some(())
            } else {
                s.null()
            }
        }
        b"error" => seen.first(4).and_then(|()| s.null()),
        b"logprobs" => seen.first(5).and_then(|()| s.null()),
        b"tool_calls" => seen.first(6).and_then(|()| s.null()),
        _ => s.skip(0),
    })?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    let none = || Cow::Borrowed("");
    let (content, thinking) = match endpoint {
        NativeEndpoint::Chat => match message {
            Some((content, thinking)) => (content.unwrap_or_else(none), thinking.unwrap_or_else(none)),
            None => (none(), none()),
        },
        NativeEndpoint::Generate => (response.unwrap_or_else(none), thinking.unwrap_or_else(none)),
    };
    Some(Plain { content, thinking })
}

/// Which of a handful of keys an object has shown; a repeat makes the reader step aside.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    fn first(&mut self, bit: u8) -> Option<()> {
        let mask = 1 << bit;
        if self.0 & mask != 0 {
            return None;
        }
        self.0 |= mask;
        Some(())
    }
}

type Text<'a> = Option<Cow<'a, str>>;

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat_if(&mut self, c: u8) -> bool {
        let ok = self.peek() == Some(c);
        self.i += usize::from(ok);
        ok
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.eat_if(c).then_some(())
    }

    fn literal(&mut self, lit: &[u8]) -> bool {
        let ok = self.b[self.i..].starts_with(lit);
        if ok {
            self.i += lit.len();
        }
        ok
    }

    fn null(&mut self) -> Option<()> {
        self.literal(b"null").then_some(())
    }

    /// A string's raw contents (between the quotes) and whether it has escapes. Escapes are
    /// checked; a `\u` escape of a surrogate steps aside.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Straight to the next quote or backslash; nothing before it may be a control byte.
            let rest = &self.b[self.i..];
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[..at].iter().any(|&c| c < 0x20) {
                return None;
            }
            self.i += at;
            match self.peek()? {
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    return Some((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            let mut v: u32 = 0;
                            for &h in hex {
                                v = v * 16 + char::from(h).to_digit(16)?;
                            }
                            if (0xD800..0xE000).contains(&v) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                // memchr2 stops only at a quote or a backslash.
                _ => return None,
            }
        }
    }

    /// An object at the cursor, whose members' values `member` reads, given each key's raw bytes
    /// (`None` for a key with escapes).
    fn object(&mut self, mut member: impl FnMut(&mut Self, Option<&'a [u8]>) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat_if(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            let (start, end, escaped) = self.string()?;
            let b = self.b;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, (!escaped).then(|| &b[start..end]))?;
            self.ws();
            if !self.eat_if(b',') {
                return self.eat(b'}');
            }
        }
    }

    /// A string or `null`.
    fn text(&mut self) -> Option<Text<'a>> {
        if self.peek()? != b'"' {
            return self.null().map(|()| None);
        }
        let (start, end, escaped) = self.string()?;
        if !escaped {
            return Some(Some(Cow::Borrowed(std::str::from_utf8(&self.b[start..end]).ok()?)));
        }
        // Checked above; serde_json does the unescaping, quotes included.
        let owned: String = serde_json::from_slice(&self.b[start - 1..=end]).ok()?;
        Some(Some(Cow::Owned(owned)))
    }

    /// `message`: `null`, or an object whose `content` and `thinking` are strings or `null` and
    /// whose `tool_calls` is `null`.
    fn message(&mut self) -> Option<Option<(Text<'a>, Text<'a>)>> {
        if self.peek()? != b'{' {
            return self.null().map(|()| None);
        }
        let mut seen = Seen::default();
        let (mut content, mut thinking) = (None, None);
        self.object(|s, key| match key? {
            b"content" => {
                seen.first(0)?;
                content = s.text()?;
                Some(())
            }
            b"thinking" => {
                seen.first(1)?;
                thinking = s.text()?;
                Some(())
            }
            b"tool_calls" => seen.first(2).and_then(|()| s.null()),
            _ => s.skip(1),
        })?;
        Some(Some((content, thinking)))
    }

    /// Any JSON value, checked and passed over.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(|s, _| s.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat_if(b']') {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    if self.eat_if(b',') {
                        continue;
                    }
                    return self.eat(b']');
                }
            }
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.null(),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)?`, at most 20 characters: no exponent and nothing that
    /// could be out of range for serde_json.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        self.eat_if(b'-');
        let digits = |s: &mut Self| {
            let from = s.i;
            while matches!(s.peek(), Some(b'0'..=b'9')) {
                s.i += 1;
            }
            s.i - from
        };
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.eat_if(b'.') && digits(self) == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.i - start > 20 {
            return None;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::chunk::{parse_chunk, parse_line};

    fn read(line: &str, endpoint: NativeEndpoint) -> Option<(String, String)> {
        plain(line.as_bytes(), endpoint).map(|p| (p.content.into_owned(), p.thinking.into_owned()))
    }

    #[test]
    fn reads_what_ollama_sends() {
        let chat = r#"{"model":"qwen3:8b","created_at":"2025-05-01T10:00:00.123456Z","message":{"role":"assistant","content":"Hello"},"done":false}"#;
        assert_eq!(read(chat, NativeEndpoint::Chat), Some(("Hello".into(), String::new())));
        let escaped = r#"{"model":"m","message":{"role":"assistant","content":"\u003cthink\u003e\n\"hi\" é","thinking":"t"},"done":false}"#;
        assert_eq!(read(escaped, NativeEndpoint::Chat), Some(("<think>\n\"hi\" é".into(), "t".into())));
        let gen = r#"{"model":"m","created_at":"t","response":" world","thinking":null,"done":false}"#;
        assert_eq!(read(gen, NativeEndpoint::Generate), Some((" world".into(), String::new())));
        // Chat reads `message` only; generate the top level only.
        assert_eq!(read(gen, NativeEndpoint::Chat), Some((String::new(), String::new())));
        assert_eq!(read(chat, NativeEndpoint::Generate), Some((String::new(), String::new())));
        assert_eq!(read(" {} ", NativeEndpoint::Chat), Some((String::new(), String::new())));
        let nested =
            r#"{"x":[1,-2.5,0,{"a":[true,false,null,"s"]},[]],"y":{},"message":{"images":null,"content":"c"}}"#;
        assert_eq!(read(nested, NativeEndpoint::Chat), Some(("c".into(), String::new())));
    }

    #[test]
    fn steps_aside_when_not_sure() {
        let aside = [
            r#"{"message":{"content":"x"},"done":true}"#,
            r#"{"message":{"content":"x","tool_calls":[]}}"#,
            r#"{"tool_calls":[{"function":{"name":"f"}}],"response":"x"}"#,
            r#"{"logprobs":[],"response":"x"}"#,
            r#"{"error":"boom"}"#,
            r#"{"message":{"content":5}}"#,
            r#"{"message":"text"}"#,
            r#"{"done":"no"}"#,
            r#"{"response":"a","response":"b"}"#,
            r#"{"message":{"content":"a","content":"b"}}"#,
            r#"{"resp\u006fnse":"a"}"#,
            r#"{"response":"\ud83d\ude00"}"#,
            r#"{"n":1e5,"response":"a"}"#,
            r#"{"n":123456789012345678901,"response":"a"}"#,
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":-}"#,
            r#"{"response":"a"} x"#,
            r#"{"response":"a",}"#,
            r#"{"response":"a""#,
            r#"{"s":"tab	inside"}"#,
            r#"{"s":"\x"}"#,
            r#"[{"response":"a"}]"#,
            "",
        ];
        for line in aside {
            for endpoint in [NativeEndpoint::Chat, NativeEndpoint::Generate] {
                assert!(plain(line.as_bytes(), endpoint).is_none(), "{line}");
            }
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(70), "]".repeat(70));
        assert!(plain(deep.as_bytes(), NativeEndpoint::Chat).is_none());
        assert!(plain(b"{\"response\":\"\xff\"}", NativeEndpoint::Generate).is_none());
    }

    /// Whatever the reader answers, the whole-value reader agrees with.
    #[test]
    fn agrees_with_the_whole_value_reader() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let keys = ["message", "response", "thinking", "done", "error", "logprobs", "tool_calls", "content", "model"];
        let values = [
            "null",
            "true",
            "false",
            "0",
            "-1.5",
            "1e3",
            "\"\"",
            "\"tok\"",
            "\"a\\nb\\u00e9\\\"\"",
            "\"\\ud800\"",
            "[]",
            "[1,[2,{}]]",
            "{}",
            "{\"content\":\"c\"}",
            "{\"content\":\"c\",\"thinking\":\"t\"}",
            "{\"content\":null,\"tool_calls\":null}",
            "{\"tool_calls\":[]}",
            "{\"content\":1}",
            "\"x\"x",
            "nul",
        ];
        let pair = (0..keys.len(), 0..values.len());
        let line = proptest::collection::vec(pair, 0..6).prop_map(move |pairs| {
            let fields: Vec<String> = pairs.iter().map(|&(k, v)| format!("\"{}\":{}", keys[k], values[v])).collect();
            format!("{{{}}}", fields.join(","))
        });
        let mut runner = TestRunner::new(Config { cases: 4000, ..Config::default() });
        let answered = std::cell::Cell::new(0);
        runner
            .run(&line, |line| {
                for endpoint in [NativeEndpoint::Chat, NativeEndpoint::Generate] {
                    if let Some(p) = plain(line.as_bytes(), endpoint) {
                        answered.set(answered.get() + 1);
                        let v = parse_line(line.as_bytes()).expect("well-formed").expect("not blank");
                        let c = parse_chunk(&v, endpoint).expect("not an error");
                        prop_assert_eq!(&c.content, &p.content, "{}", line);
                        prop_assert_eq!(&c.thinking, &p.thinking, "{}", line);
                        prop_assert!(!c.done && c.tool_calls.is_empty() && c.logprobs.is_empty(), "{}", line);
                    }
                }
                Ok(())
            })
            .unwrap();
        // Not a vacuous agreement: the reader answers for a good share of the lines.
        assert!(answered.get() > 1000, "answered {}", answered.get());
    }
}
