//! Chunked transfer coding (RFC 9112 §7.1): an incremental decoder that copies chunk data out of
//! whatever pieces the bytes arrive in and says where the body ends, and the two encoder calls.
//! Strict about CRLF everywhere (no bare LF), so it agrees with any other strict parser about where
//! a body ends. Extensions are checked and skipped; trailers are checked, bounded and dropped.
//!
//! ```text
//!  Size --hex--> Size --SP/HTAB--> SizeWs --';'--> Ext --CR--> SizeLf --LF--> Data(n) ...
//!   Data(0) --CR--> DataLf --LF--> Size            size 0: SizeLf --LF--> TrailerStart
//!   TrailerStart --CR--> EndLf --LF--> Done         TrailerStart --byte--> Trailer --CRLF--> TrailerStart
//! ```

use super::Status;
use thiserror::Error;

/// Limits on a chunked body's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Most bytes in a chunk-size line, extensions included, CRLF excluded (default 4096).
    pub max_size_line_bytes: usize,
    /// Most bytes of trailer fields, line endings excluded (default 16 KiB).
    pub max_trailer_bytes: usize,
    /// Most decoded body bytes, or no limit (default: none; the caller bounds request bodies).
    pub max_body_bytes: Option<u64>,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        ChunkedLimits { max_size_line_bytes: 4096, max_trailer_bytes: 16 * 1024, max_body_bytes: None }
    }
}

/// Why a chunked body is malformed. The decoder stays failed: every later call returns the same
/// error, and the connection cannot be reused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ChunkedError {
    /// A byte that cannot appear in the chunk-size part of a size line (including a line with no
    /// hex digit at all, or a bare LF).
    #[error("invalid byte 0x{byte:02x} in chunk size")]
    InvalidSize {
        /// The offending byte.
        byte: u8,
    },
    /// The chunk size does not fit in 64 bits.
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    /// A chunk-size line longer than [`ChunkedLimits::max_size_line_bytes`].
    #[error("chunk size line longer than {limit} bytes")]
    SizeLineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A control byte (or bare LF) inside a chunk extension.
    #[error("invalid byte 0x{byte:02x} in chunk extension")]
    InvalidExtension {
        /// The offending byte.
        byte: u8,
    },
    /// A CR not followed by LF at the end of a size or trailer line.
    #[error("expected LF after CR, found 0x{byte:02x}")]
    MissingLf {
        /// The byte found instead of LF.
        byte: u8,
    },
    /// Chunk data not followed by CRLF (the chunk was longer than its size said).
    #[error("expected CRLF after chunk data, found 0x{byte:02x}")]
    MissingDataCrlf {
        /// The byte found instead.
        byte: u8,
    },
    /// A bare LF or a control byte in a trailer field.
    #[error("invalid byte 0x{byte:02x} in trailer")]
    InvalidTrailer {
        /// The offending byte.
        byte: u8,
    },
    /// Trailer fields longer than [`ChunkedLimits::max_trailer_bytes`].
    #[error("trailers longer than {limit} bytes")]
    TrailersTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The decoded body would exceed [`ChunkedLimits::max_body_bytes`].
    #[error("chunked body longer than {limit} bytes")]
    BodyTooLarge {
        /// The limit in force.
        limit: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` so far.
    Size { digits: usize },
    /// Whitespace after the size, before `;` or CR.
    SizeWs,
    /// Inside chunk extensions, until CR.
    Ext,
    /// After the size line's CR.
    SizeLf,
    /// Copying chunk data; bytes left.
    Data { remaining: u64 },
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data's CR, expecting LF.
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line, until CR.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final blank line's CR.
    EndLf,
    /// The body ended.
    Done,
    /// The body was malformed.
    Failed(ChunkedError),
}

/// Decodes one chunked body fed in pieces. Create one per message body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    /// The chunk size being read.
    size: u64,
    /// Bytes of the current size line (CRLF excluded).
    line_bytes: usize,
    /// Decoded body bytes so far.
    body_bytes: u64,
    /// Trailer bytes so far.
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            limits,
            state: State::Size { digits: 0 },
            size: 0,
            line_bytes: 0,
            body_bytes: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the last chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Decodes `input`, appending chunk data to `out`. [`Status::Partial`]: all of `input` was
    /// used and the body goes on. [`Status::Complete`]`(n)`: the body ended after `n` bytes of
    /// `input`; the rest belongs to the next message. Once complete, further calls return
    /// `Complete(0)`.
    ///
    /// # Errors
    ///
    /// A [`ChunkedError`] when the framing is malformed or exceeds the limits; data decoded from
    /// earlier chunks stays in `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Status<usize>, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(Status::Complete(i)),
                State::Failed(ref e) => return Err(e.clone()),
                State::Data { remaining } => {
                    let avail = input.len() - i;
                    let take = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.body_bytes += take as u64;
                    let left = remaining - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { remaining: left } };
                }
                _ => {
                    let byte = input[i];
                    i += 1;
                    if let Err(e) = self.step(byte) {
                        self.state = State::Failed(e.clone());
                        return Err(e);
                    }
                }
            }
        }
        match self.state {
            State::Done => Ok(Status::Complete(i)),
            State::Failed(ref e) => Err(e.clone()),
            _ => Ok(Status::Partial),
        }
    }

    /// One framing byte (any state but `Data`, `Done` and `Failed`).
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size { digits } => {
                self.count_line_byte(byte)?;
                match (byte as char).to_digit(16) {
                    Some(d) => {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(ChunkedError::SizeOverflow)?;
                        State::Size { digits: digits + 1 }
                    }
                    None if digits == 0 => return Err(ChunkedError::InvalidSize { byte }),
                    None => Self::after_size(byte)?,
                }
            }
            State::SizeWs => {
                self.count_line_byte(byte)?;
                Self::after_size(byte)?
            }
            State::Ext => {
                self.count_line_byte(byte)?;
                match byte {
                    b'\r' => State::SizeLf,
                    b'\t' => State::Ext,
                    b if b < b' ' || b == 0x7f => return Err(ChunkedError::InvalidExtension { byte }),
                    _ => State::Ext,
                }
            }
            State::SizeLf => match byte {
                b'\n' => self.start_chunk()?,
                _ => return Err(ChunkedError::MissingLf { byte }),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkedError::MissingDataCrlf { byte }),
            },
            State::DataLf => match byte {
                b'\n' => State::Size { digits: 0 },
                _ => return Err(ChunkedError::MissingDataCrlf { byte }),
            },
            State::TrailerStart | State::Trailer => match byte {
                b'\r' if self.state == State::TrailerStart => State::EndLf,
                b'\r' => State::TrailerLf,
                b'\t' => self.count_trailer_byte()?,
                b if b < b' ' || b == 0x7f => return Err(ChunkedError::InvalidTrailer { byte }),
                _ => self.count_trailer_byte()?,
            },
            State::TrailerLf => match byte {
                b'\n' => State::TrailerStart,
                _ => return Err(ChunkedError::MissingLf { byte }),
            },
            State::EndLf => match byte {
                b'\n' => State::Done,
                _ => return Err(ChunkedError::MissingLf { byte }),
            },
            // `feed` handles these without calling `step`.
            State::Data { .. } | State::Done | State::Failed(_) => return Ok(()),
        };
        Ok(())
    }

    /// The state after the size digits: whitespace, an extension, or the end of the line.
    fn after_size(byte: u8) -> Result<State, ChunkedError> {
        match byte {
            b' ' | b'\t' => Ok(State::SizeWs),
            b';' => Ok(State::Ext),
            b'\r' => Ok(State::SizeLf),
            _ => Err(ChunkedError::InvalidSize { byte }),
        }
    }

    /// Counts a size-line byte (CR excluded) against the limit.
    fn count_line_byte(&mut self, byte: u8) -> Result<(), ChunkedError> {
        if byte != b'\r' {
            self.line_bytes += 1;
            if self.line_bytes > self.limits.max_size_line_bytes {
                return Err(ChunkedError::SizeLineTooLong { limit: self.limits.max_size_line_bytes });
            }
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self) -> Result<State, ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.limits.max_trailer_bytes {
            return Err(ChunkedError::TrailersTooLarge { limit: self.limits.max_trailer_bytes });
        }
        Ok(State::Trailer)
    }

    /// The size line ended: start the chunk's data, or the trailers after the last chunk.
    fn start_chunk(&mut self) -> Result<State, ChunkedError> {
        let size = std::mem::take(&mut self.size);
        self.line_bytes = 0;
        if size == 0 {
            return Ok(State::TrailerStart);
        }
        // Earlier chunks are fully copied, so `body_bytes` is everything before this one.
        if let Some(limit) = self.limits.max_body_bytes {
            if self.body_bytes.saturating_add(size) > limit {
                return Err(ChunkedError::BodyTooLarge { limit });
            }
        }
        Ok(State::Data { remaining: size })
    }
}

/// Appends `data` as one chunk. Empty `data` writes nothing: an empty chunk would end the body.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = data.len();
    while n > 0 {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n % 16];
        n /= 16;
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the end of the body (no trailers).
pub fn encode_last(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}
