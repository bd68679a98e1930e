//! Push codecs over caller-owned bytes, in the httparse / hyper style: HTTP/1 heads and body
//! framing ([`http1`]), chunked transfer coding ([`chunked`]), Ollama's NDJSON streams
//! ([`ndjson`]) and server-sent events ([`sse`]). No IO: the adapter reads bytes, hands them in,
//! and gets back parsed values plus how many bytes they used.
//!
//! Every parser has hard limits (header count, head size, line length, event size) and typed
//! errors; no input makes any of them panic. The incremental decoders ([`chunked::ChunkedDecoder`],
//! [`ndjson::LineSplitter`], [`sse::SseDecoder`]) give the same output however the input is split
//! across feeds, which the property tests and the `fuzz_*` functions check.
//!
//! ```
//! use herd_core::codec::{chunked, http1, ndjson, Status};
//!
//! // An upstream answer from Ollama: a chunked NDJSON stream.
//! let wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
//!              Transfer-Encoding: chunked\r\n\r\n\
//!              1f\r\n{\"response\":\"Hi\",\"done\":false}\n\r\n0\r\n\r\n";
//! let Status::Complete(head) = http1::parse_response(wire, &http1::Limits::default(), http1::ResponseTo::NonHead)?
//! else { unreachable!("the whole head is there") };
//! assert_eq!(head.framing, http1::Framing::Chunked);
//!
//! let mut body = Vec::new();
//! let mut dechunk = chunked::ChunkedDecoder::new(chunked::ChunkedLimits::default());
//! assert_eq!(dechunk.feed(&wire[head.head_len..], &mut body)?, Status::Complete(wire.len() - head.head_len));
//!
//! let mut lines = Vec::new();
//! ndjson::LineSplitter::new(ndjson::DEFAULT_MAX_LINE_BYTES).feed(&body, &mut lines)?;
//! assert_eq!(lines, vec![b"{\"response\":\"Hi\",\"done\":false}".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod chunked;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod http1;
pub mod ndjson;
pub mod sse;

#[cfg(test)]
mod tests;

/// What a push parser made of the bytes it was given, in the httparse style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// The item is complete. For heads it carries the parsed head (with its length); for a
    /// chunked body it is the number of input bytes the body used: what follows belongs to the
    /// next message.
    Complete(T),
    /// More bytes are needed. Parsers over a whole buffer keep nothing: call again with the
    /// same bytes and more appended. Incremental decoders have consumed all the input.
    Partial,
}

impl<T> Status<T> {
    /// Whether this is [`Status::Complete`].
    pub fn is_complete(&self) -> bool {
        matches!(self, Status::Complete(_))
    }
}
