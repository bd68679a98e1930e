//! Newline-delimited JSON (Ollama's native streams, `application/x-ndjson`): a splitter that
//! turns body bytes, fed in whatever pieces they arrive, into complete lines, and the one-line
//! encoder. Lines are bytes: JSON parsing (and UTF-8 checking) is the caller's step.
//!
//! A line ends at `\n`; one `\r` before it is dropped (`\r\n`). Empty lines are skipped, since
//! Ollama never sends them and the Python client would fail on them (wire-api §10, trap 8).

use thiserror::Error;

/// The default [`LineSplitter`] limit: 16 MiB, far above any stream line Ollama writes
/// (a final `/api/generate` line with a long `context` is well under 1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Why a stream could not be split.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NdjsonError {
    /// A line (its `\r\n` or `\n` excluded) is longer than the splitter's limit. The splitter stays
    /// failed: every later call returns this error.
    #[error("NDJSON line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
}

/// Why a line could not be encoded. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LineEncodeError {
    /// The line is empty; readers skip empty lines, so it would vanish.
    #[error("empty NDJSON line")]
    Empty,
    /// The line holds a CR or LF, which would split it.
    #[error("line break at byte {at} of an NDJSON line")]
    LineBreak {
        /// Index of the first CR or LF.
        at: usize,
    },
}

/// Splits an NDJSON byte stream into lines. One per stream; lines never span streams.
#[derive(Clone, Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    /// The unterminated tail of the input so far.
    partial: Vec<u8>,
    failed: Option<NdjsonError>,
}

impl Default for LineSplitter {
    /// A splitter with the [`DEFAULT_MAX_LINE_BYTES`] limit.
    fn default() -> Self {
        LineSplitter::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter refusing lines longer than `max_line_bytes` (line ending excluded).
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter { max_line_bytes, partial: Vec::new(), failed: None }
    }

    /// Bytes buffered of a line not yet terminated (at most the limit plus one).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Splits `input`, appending every line it completes to `out` (without its line ending; empty
    /// lines skipped) and keeping the unterminated rest for the next call. Returns how many lines
    /// were appended.
    ///
    /// # Errors
    ///
    /// [`NdjsonError::LineTooLong`] as soon as a line is known to exceed the limit; lines completed
    /// before it are already in `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Vec<u8>>) -> Result<usize, NdjsonError> {
        self.feed_with(input, |line| out.push(line.to_vec()))
    }

    /// As [`LineSplitter::feed`], but hands each completed line to `on_line` as a borrowed
    /// slice: a line that lies whole inside `input` is not copied.
    ///
    /// # Errors
    ///
    /// As [`LineSplitter::feed`]; lines completed before the error were handed over.
    pub fn feed_with(&mut self, input: &[u8], mut on_line: impl FnMut(&[u8])) -> Result<usize, NdjsonError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut count = 0;
        let mut rest = input;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (segment, tail) = (&rest[..pos], &rest[pos + 1..]);
            rest = tail;
            let ends_cr = segment.last().or(self.partial.last()) == Some(&b'\r');
            let len = self.partial.len() + segment.len() - usize::from(ends_cr);
            self.check(len)?;
            if self.partial.is_empty() {
                if len > 0 {
                    on_line(&segment[..len]);
                    count += 1;
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(segment);
            line.truncate(len);
            if !line.is_empty() {
                on_line(&line);
                count += 1;
            }
            // Keep the buffer's room for the next line that spans pieces.
            line.clear();
            self.partial = line;
        }
        // A trailing CR may be the first half of CRLF, so it does not count yet.
        let partial_len = self.partial.len() + rest.len();
        self.check(partial_len - usize::from(rest.last().or(self.partial.last()) == Some(&b'\r')))?;
        self.partial.extend_from_slice(rest);
        Ok(count)
    }

    /// Ends the stream: returns the last line if it was not terminated by `\n` (Ollama always
    /// terminates; a caller may treat a missing final newline as a truncated stream). The
    /// splitter is empty afterwards.
    ///
    /// # Errors
    ///
    /// The splitter's earlier error, if it failed.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, NdjsonError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let line = strip_cr(std::mem::take(&mut self.partial));
        Ok((!line.is_empty()).then_some(line))
    }

    /// Fails (for good) when a line of `len` content bytes exceeds the limit.
    fn check(&mut self, len: usize) -> Result<(), NdjsonError> {
        if len > self.max_line_bytes {
            let e = NdjsonError::LineTooLong { limit: self.max_line_bytes };
            self.failed = Some(e.clone());
            self.partial.clear();
            return Err(e);
        }
        Ok(())
    }
}

fn strip_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// Appends `line` and its `\n` to `out`.
///
/// # Errors
///
/// [`LineEncodeError`] when `line` is empty or holds a CR or LF.
pub fn encode_line(line: &[u8], out: &mut Vec<u8>) -> Result<(), LineEncodeError> {
    if line.is_empty() {
        return Err(LineEncodeError::Empty);
    }
    if let Some(at) = line.iter().position(|&b| b == b'\r' || b == b'\n') {
        return Err(LineEncodeError::LineBreak { at });
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    Ok(())
}
