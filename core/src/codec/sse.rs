//! Server-sent events (`text/event-stream`, OpenAI and Anthropic streams): a decoder following
//! the WHATWG "event stream interpretation" rules over bytes fed in any pieces, and the encoder.
//!
//! Decoding: lines end at CRLF, LF or CR; a UTF-8 BOM at the very start is dropped; `:` starts a
//! comment; `field: value` loses one space after the colon; `data` lines are joined with `\n`;
//! `event`, `id` and `retry` are kept; a blank line dispatches the event (none if it had no
//! `data`). Invalid UTF-8 becomes U+FFFD. An event cut off by the end of the stream is dropped,
//! as browsers do ([`SseDecoder::has_pending`] tells it happened).

use thiserror::Error;

/// The default [`SseDecoder`] limit: 16 MiB of lines per event.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, or `None` when absent or empty (browsers call that `message`).
    /// Anthropic streams name every event; OpenAI streams name none.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (OpenAI: one JSON object, or `[DONE]`).
    pub data: String,
    /// The last event ID when the event was dispatched (it persists across events), `None` when
    /// unset or reset by an empty `id:`.
    pub id: Option<String>,
}

/// Why an event stream could not be decoded. The decoder stays failed: every later call
/// returns the same error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SseError {
    /// One event's lines (comments aside, line endings excluded), or a single line, exceed the
    /// decoder's limit.
    #[error("SSE event longer than {limit} bytes")]
    EventTooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// Why an event could not be encoded. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SseEncodeError {
    /// The event name holds a CR or LF, which would end its line early.
    #[error("line break in SSE event name")]
    LineBreakInEventName,
}

/// Decodes one event stream fed in pieces.
#[derive(Clone, Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// The line being read.
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it ends nothing more.
    after_cr: bool,
    /// No line has ended yet (a BOM may open the stream).
    at_start: bool,
    /// Bytes of the current event's lines so far, comments excluded.
    event_bytes: usize,
    data: String,
    event_type: String,
    last_event_id: String,
    retry_ms: Option<u64>,
    failed: Option<SseError>,
}

impl SseDecoder {
    /// A decoder at the start of a stream, refusing events whose lines total more than
    /// `max_event_bytes` (line endings excluded; a comment line is held to the limit alone).
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event_bytes: 0,
            data: String::new(),
            event_type: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            failed: None,
        }
    }

    /// The last `retry:` value (milliseconds), if the stream sent one.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Whether an event has begun but not been dispatched: at the end of the stream this means
    /// it was cut off.
    pub fn has_pending(&self) -> bool {
        !self.line.is_empty() || !self.data.is_empty() || !self.event_type.is_empty()
    }

    /// Decodes `input`, appending every event it completes to `out` and keeping any partial
    /// line for the next call. Returns how many events were appended.
    ///
    /// # Errors
    ///
    /// [`SseError::EventTooLarge`] as soon as the current event is known to exceed the limit;
    /// events dispatched before it are already in `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<SseEvent>) -> Result<usize, SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let before = out.len();
        let mut rest = input;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            let segment = &rest[..pos];
            self.check(self.line.len() + segment.len())?;
            let line = if self.line.is_empty() { segment.to_vec() } else { self.take_line(segment) };
            self.process_line(&line, out);
            let crlf = rest[pos] == b'\r' && rest.get(pos + 1) == Some(&b'\n');
            if rest[pos] == b'\r' && pos + 1 == rest.len() {
                self.after_cr = true;
            }
            rest = &rest[pos + 1 + usize::from(crlf)..];
        }
        self.check(self.line.len() + rest.len())?;
        self.line.extend_from_slice(rest);
        Ok(out.len() - before)
    }

    fn take_line(&mut self, segment: &[u8]) -> Vec<u8> {
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(segment);
        line
    }

    /// Fails (for good) when the event so far plus a line of `line_len` bytes exceeds the limit.
    fn check(&mut self, line_len: usize) -> Result<(), SseError> {
        if self.event_bytes.saturating_add(line_len) > self.max_event_bytes {
            let e = SseError::EventTooLarge { limit: self.max_event_bytes };
            self.failed = Some(e.clone());
            self.line.clear();
            return Err(e);
        }
        Ok(())
    }

    fn process_line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = raw;
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        self.event_bytes += raw.len();
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => self.last_event_id = String::from_utf8_lossy(value).into_owned(),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits that overflow are ignored like any other unusable value.
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.event_bytes = 0;
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        out.push(SseEvent {
            event: (!event_type.is_empty()).then_some(event_type),
            data,
            id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
        });
    }
}

/// Appends one event to `out`: `event: <name>` when `event` is a non-empty name, one
/// `data: <line>` per line of `data` (split at CRLF, LF and CR, so a decoder gets `data` back
/// with its line endings as `\n`), and the blank line that dispatches it.
///
/// # Errors
///
/// [`SseEncodeError::LineBreakInEventName`] when the name holds a CR or LF.
pub fn encode_event(event: Option<&str>, data: &str, out: &mut Vec<u8>) -> Result<(), SseEncodeError> {
    if let Some(name) = event {
        if name.contains(['\r', '\n']) {
            return Err(SseEncodeError::LineBreakInEventName);
        }
        if !name.is_empty() {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
    }
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.push(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
    Ok(())
}
