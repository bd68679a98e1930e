//! One message body after its head, whatever its [`Framing`]: a push decoder that copies the body
//! out of the pieces it arrives in (or, for pass-through, only says how many bytes are body), says
//! exactly where the body ends so the next pipelined message can be found, and enforces a body
//! size limit before the bytes are read (a router's 413).
//!
//! ```text
//!  new(Empty | Length(0)) -----------------------------------------------> Done
//!  new(Length(n)) --> Length{left} --feed/pass--> Length{left - k} --0--> Done
//!  new(Chunked)   --> Chunked(decoder) --last chunk + trailers-----------> Done
//!  new(CloseDelimited) --> Close --feed/pass--> Close --finish_eof-------> Done
//!  any state --malformed / over the limit / finish_eof before the end---> Failed(error)
//! ```

use super::Framing;
use crate::codec::chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits};
use crate::codec::Status;
use thiserror::Error;

/// Why a body could not be read. The decoder stays failed: every later call returns the same
/// error. After any of them the connection cannot be reused, since where the next message starts
/// is unknown (or, for [`BodyError::TooLarge`], the rest of the body was never read).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BodyError {
    /// The chunked framing is malformed or exceeds its [`ChunkedLimits`] (answer 400).
    #[error("malformed chunked body: {0}")]
    Chunked(ChunkedError),
    /// The body is, or declares it will be, longer than the limit (answer 413). A `Content-Length`
    /// over the limit fails as soon as the decoder is made; a chunked body when a chunk-size line
    /// announces data past the limit; a close-delimited body at the first byte past the limit.
    #[error("body longer than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// The peer closed the connection before the body ended.
    #[error("body truncated after {delivered} bytes (expected {expected:?})")]
    Truncated {
        /// Body bytes delivered before the close.
        delivered: u64,
        /// The declared `Content-Length`; `None` for a chunked body.
        expected: Option<u64>,
    },
}

/// What [`BodyDecoder::pass`] found at the start of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passed {
    /// How many leading bytes of the input belong to this body on the wire. Forward exactly
    /// these; any bytes after them belong to the next message.
    pub take: usize,
    /// Whether the body ended within those bytes.
    pub complete: bool,
}

#[derive(Clone, Debug)]
enum State {
    /// `Content-Length` body bytes still to come (never 0: that is `Done`).
    Length { left: u64 },
    /// A chunked body, framing checked by the inner decoder.
    Chunked(ChunkedDecoder),
    /// A close-delimited response body: everything until the peer closes.
    Close,
    /// The body ended.
    Done,
    /// The body failed; the error repeats.
    Failed(BodyError),
}

/// Decodes one message body fed in pieces. Create one per body, from the head's
/// [`Framing`](super::RequestHead::framing), then call [`feed`](Self::feed) (copying) or
/// [`pass`](Self::pass) (zero-copy) with the bytes after the head until the body is complete, and
/// [`finish_eof`](Self::finish_eof) if the peer closes first.
///
/// ```
/// use herd_core::codec::chunked::ChunkedLimits;
/// use herd_core::codec::http1::{BodyDecoder, BodyError, Framing};
/// use herd_core::codec::Status;
///
/// // A pipelined request follows a 2-byte body.
/// let mut body = BodyDecoder::new(Framing::Length(2), ChunkedLimits::default());
/// let mut out = Vec::new();
/// assert_eq!(body.feed(b"{}GET / HTTP/1.1\r\n", &mut out), Ok(Status::Complete(2)));
/// assert_eq!(out, b"{}");
///
/// // A router's body-size limit: refused before any byte is read.
/// let big = BodyDecoder::with_max(Framing::Length(1 << 30), ChunkedLimits::default(), 1 << 20);
/// assert_eq!(big.error(), Some(&BodyError::TooLarge { limit: 1 << 20 }));
/// ```
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    /// The body limit in force, if any.
    max_bytes: Option<u64>,
    /// Body bytes delivered so far (chunked: decoded data).
    delivered: u64,
    /// Decoded chunk data [`pass`](Self::pass) throws away; at most [`PASS_SLICE`] bytes.
    scratch: Vec<u8>,
}

/// How much chunked input [`BodyDecoder::pass`] decodes at a time, bounding its scratch buffer.
const PASS_SLICE: usize = 8 * 1024;

impl BodyDecoder {
    /// A decoder at the start of a body framed as `framing`. The body limit is
    /// [`ChunkedLimits::max_body_bytes`], applied to every framing (not only chunked); the other
    /// limits apply to chunked bodies. [`Framing::Empty`] and `Length(0)` are complete at once.
    pub fn new(framing: Framing, limits: ChunkedLimits) -> Self {
        let max_bytes = limits.max_body_bytes;
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => match max_bytes {
                Some(limit) if n > limit => State::Failed(BodyError::TooLarge { limit }),
                _ => State::Length { left: n },
            },
            Framing::Chunked => State::Chunked(ChunkedDecoder::new(limits)),
            Framing::CloseDelimited => State::Close,
        };
        BodyDecoder { state, max_bytes, delivered: 0, scratch: Vec::new() }
    }

    /// [`new`](Self::new) with a body limit of `max_bytes` (or `limits.max_body_bytes`, if that is
    /// smaller): the router's request-size limit. A `Length` over it fails at once (see
    /// [`error`](Self::error)); other framings fail when the body would pass it.
    pub fn with_max(framing: Framing, limits: ChunkedLimits, max_bytes: u64) -> Self {
        let max = limits.max_body_bytes.map_or(max_bytes, |m| m.min(max_bytes));
        Self::new(framing, ChunkedLimits { max_body_bytes: Some(max), ..limits })
    }

    /// Decodes `input`, appending the body bytes in it to `out`. [`Status::Partial`]: all of
    /// `input` was used and the body goes on. [`Status::Complete`]`(n)`: the body ended after `n`
    /// bytes of `input`; the rest belongs to the next message (a pipelined request). Once
    /// complete, further calls return `Complete(0)`.
    ///
    /// # Errors
    ///
    /// [`BodyError::Chunked`] for malformed chunked framing, [`BodyError::TooLarge`] past the
    /// limit, or the error the decoder already failed with. Bytes decoded before the error stay in
    /// `out` (never more than the limit).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Status<usize>, BodyError> {
        let status = match &mut self.state {
            State::Done => return Ok(Status::Complete(0)),
            State::Failed(e) => return Err(e.clone()),
            State::Chunked(decoder) => {
                let result = decoder.feed(input, out);
                self.delivered = decoder.body_bytes();
                self.after_chunked(result)?
            }
            State::Length { .. } | State::Close => {
                let (take, over) = self.take_plain(input);
                out.extend_from_slice(&input[..take]);
                over?;
                if self.is_complete() {
                    Status::Complete(take)
                } else {
                    Status::Partial
                }
            }
        };
        Ok(status)
    }

    /// Like [`feed`](Self::feed) without copying: for forwarding the body as it is on the wire.
    /// For `Length` and `CloseDelimited` bodies the `take` bytes are the body bytes themselves.
    /// For a chunked body they are its wire bytes, chunk framing and trailers included: forward
    /// them to a peer told `Transfer-Encoding: chunked`. The framing and limits are still checked
    /// (the decoded data is thrown away; use `feed` to get it) and [`delivered`](Self::delivered)
    /// still counts decoded bytes. `feed` and `pass` may be mixed on one body.
    ///
    /// # Errors
    ///
    /// As for [`feed`](Self::feed). Forward nothing of an input that failed.
    pub fn pass(&mut self, input: &[u8]) -> Result<Passed, BodyError> {
        if !matches!(self.state, State::Chunked(_)) {
            let take = match self.state {
                State::Done => 0,
                State::Failed(ref e) => return Err(e.clone()),
                _ => {
                    let (take, over) = self.take_plain(input);
                    over?;
                    take
                }
            };
            return Ok(Passed { take, complete: self.is_complete() });
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut used = 0;
        let result = loop {
            let slice = &input[used..input.len().min(used + PASS_SLICE)];
            scratch.clear();
            match self.feed(slice, &mut scratch) {
                Ok(Status::Complete(n)) => break Ok(Passed { take: used + n, complete: true }),
                Ok(Status::Partial) if used + slice.len() < input.len() => used += slice.len(),
                Ok(Status::Partial) => break Ok(Passed { take: input.len(), complete: false }),
                Err(e) => break Err(e),
            }
        };
        scratch.clear();
        self.scratch = scratch;
        result
    }

    /// The peer closed the connection: ends a close-delimited body (which becomes complete).
    ///
    /// # Errors
    ///
    /// [`BodyError::Truncated`] when a `Length` or chunked body had not ended (the decoder fails
    /// with it), or the error the decoder already failed with. A complete body is `Ok`.
    pub fn finish_eof(&mut self) -> Result<(), BodyError> {
        let expected = match &self.state {
            State::Done => return Ok(()),
            State::Close => {
                self.state = State::Done;
                return Ok(());
            }
            State::Failed(e) => return Err(e.clone()),
            State::Length { left } => Some(self.delivered + left),
            State::Chunked(_) => None,
        };
        let error = BodyError::Truncated { delivered: self.delivered, expected };
        self.state = State::Failed(error.clone());
        Err(error)
    }

    /// Whether the body has ended: the next message, if any, starts after the bytes used so far.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Body bytes delivered so far (for a chunked body, decoded data, framing excluded).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The error the decoder has failed with, if any. Right after [`with_max`](Self::with_max) a
    /// `Length` over the limit is already [`BodyError::TooLarge`], so a server can answer 413
    /// instead of `100 Continue` without reading the body.
    pub fn error(&self) -> Option<&BodyError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The body limit in force, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// Counts the leading body bytes of `input` for a `Length` or `Close` body and advances. A
    /// close-delimited body over the limit takes the bytes up to the limit, then fails, so the
    /// output is the same however the input was split.
    fn take_plain(&mut self, input: &[u8]) -> (usize, Result<(), BodyError>) {
        let avail = input.len();
        let (take, over) = match self.state {
            State::Length { left } => (usize::try_from(left).map_or(avail, |l| l.min(avail)), None),
            State::Close => {
                let room = self.max_bytes.map_or(u64::MAX, |m| m.saturating_sub(self.delivered));
                let take = usize::try_from(room).map_or(avail, |r| r.min(avail));
                (take, self.max_bytes.filter(|_| take < avail))
            }
            _ => (0, None),
        };
        self.delivered += take as u64;
        if let Some(limit) = over {
            let error = BodyError::TooLarge { limit };
            self.state = State::Failed(error.clone());
            return (take, Err(error));
        }
        if let State::Length { left } = self.state {
            let left = left - take as u64;
            self.state = if left == 0 { State::Done } else { State::Length { left } };
        }
        (take, Ok(()))
    }

    /// Maps the chunked decoder's answer, moving to `Done` or `Failed`.
    fn after_chunked(&mut self, result: Result<Status<usize>, ChunkedError>) -> Result<Status<usize>, BodyError> {
        match result {
            Ok(Status::Complete(n)) => {
                self.state = State::Done;
                Ok(Status::Complete(n))
            }
            Ok(Status::Partial) => Ok(Status::Partial),
            Err(e) => {
                let error = match e {
                    ChunkedError::BodyTooLarge { limit } => BodyError::TooLarge { limit },
                    other => BodyError::Chunked(other),
                };
                self.state = State::Failed(error.clone());
                Err(error)
            }
        }
    }
}
