//! HTTP/1.x message heads: a request-head parser for the router's own listener (`herd-lite`), a
//! response-head parser for upstream answers, the body-framing decision for both, a decoder for
//! the body that follows ([`BodyDecoder`]), and encoders for the heads herd writes. Built on `httparse`; this module adds the limits, the framing rules of
//! RFC 9112 §6 and keep-alive semantics.
//!
//! Headers are copied out as owned [`Header`]s (name as sent, value as bytes with surrounding
//! whitespace trimmed) so the caller may drop or reuse its read buffer as soon as a head parses.
//! Heads are bounded by [`Limits`], so the copy is small.

mod body;
mod encode;
mod framing;

pub use body::{BodyDecoder, BodyError, Passed};
pub use encode::{encode_request_head, encode_response_head, reason_phrase, EncodeError};

use super::Status;
use thiserror::Error;

/// Hard limits on a message head. Exceeding one is a typed [`HeadError`], never growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most header fields in one head (default 100).
    pub max_headers: usize,
    /// Most bytes in one head, request or status line and the blank line included (default 64 KiB).
    pub max_head_bytes: usize,
    /// Most bytes in one line of the head, line ending excluded (default 16 KiB).
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_headers: 100, max_head_bytes: 64 * 1024, max_line_bytes: 16 * 1024 }
    }
}

/// The protocol version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `HTTP/1.0`: connections close after each message unless `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: connections persist unless `Connection: close`.
    Http11,
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a request with neither `Content-Length` nor `Transfer-Encoding`, or a response
    /// to `HEAD`, or with status 1xx, 204 or 304. The next message starts right after the head.
    Empty,
    /// Exactly this many bytes follow (`Content-Length`; may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`: [`BodyDecoder`] (over [`super::chunked::ChunkedDecoder`])
    /// says where the body ends.
    Chunked,
    /// Responses only: the body runs until the server closes the connection.
    CloseDelimited,
}

impl Framing {
    /// Whether any body bytes may follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// One header field. The name keeps the case it was sent in (compare with
/// [`str::eq_ignore_ascii_case`]); the value is the raw bytes with leading and trailing spaces
/// and tabs removed (it may hold non-UTF-8 `obs-text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name, a token as sent.
    pub name: String,
    /// The field value without surrounding whitespace.
    pub value: Vec<u8>,
}

impl Header {
    /// The value as text, when it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// Finds the first header called `name` (ASCII case-insensitive) and returns its value.
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token as sent (`GET`, `POST`, ...; methods are case-sensitive).
    pub method: String,
    /// The request target as sent (`/api/chat`, `/v1/models?x=1`, `*`, ...).
    pub target: String,
    /// The protocol version.
    pub version: Version,
    /// The header fields in the order sent.
    pub headers: Vec<Header>,
    /// How the request body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one's body.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` over HTTP/1.1 (curl does for large bodies): answer
    /// `100 Continue` before reading the body, or a final status instead.
    pub expects_continue: bool,
    /// Bytes of the input the head used: the body, or the next pipelined request, starts here.
    pub head_len: usize,
}

impl RequestHead {
    /// The value of the first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code (100..=999).
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: String,
    /// The protocol version.
    pub version: Version,
    /// The header fields in the order sent.
    pub headers: Vec<Header>,
    /// How the response body is delimited. A 1xx head is followed by another head.
    pub framing: Framing,
    /// Whether the connection may be reused after this response's body.
    pub keep_alive: bool,
    /// Bytes of the input the head used: the body starts here.
    pub head_len: usize,
}

impl ResponseHead {
    /// The value of the first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

/// Which request a response answers; it decides whether a body may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseTo {
    /// A `HEAD` request: the response never has a body, whatever its headers say.
    Head,
    /// Any other method.
    NonHead,
}

/// What `httparse` found wrong in a head's syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SyntaxError {
    /// A byte that cannot be in a header name.
    #[error("invalid header name")]
    HeaderName,
    /// A byte that cannot be in a header value.
    #[error("invalid header value")]
    HeaderValue,
    /// A malformed line ending.
    #[error("invalid new line")]
    NewLine,
    /// A malformed response status code (or one below 100).
    #[error("invalid response status")]
    Status,
    /// A malformed method or request target.
    #[error("invalid token")]
    Token,
    /// A version other than `HTTP/1.0` or `HTTP/1.1`.
    #[error("invalid HTTP version")]
    Version,
}

/// Why a head was refused. A server answers every variant with 400 (431 for the size limits)
/// and closes the connection: after a framing error the next message cannot be found.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HeadError {
    /// The head is not valid HTTP/1.x.
    #[error("malformed head: {0}")]
    Syntax(SyntaxError),
    /// An HTTP/1.1 request without exactly one `Host` field (RFC 9112 §3.2: answer 400).
    #[error("an HTTP/1.1 request must carry exactly one Host header ({count} given)")]
    Host {
        /// How many `Host` fields it carried.
        count: usize,
    },
    /// More header fields than [`Limits::max_headers`].
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// The head did not end within [`Limits::max_head_bytes`].
    #[error("head longer than {limit} bytes")]
    HeadTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// A line of the head is longer than [`Limits::max_line_bytes`].
    #[error("head line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A `Content-Length` value is not a decimal number that fits in 64 bits.
    #[error("invalid content-length {value:?}")]
    InvalidContentLength {
        /// The offending value (lossy UTF-8).
        value: String,
    },
    /// `Content-Length` appears more than once with the same value.
    #[error("duplicate content-length {value}")]
    DuplicateContentLength {
        /// The repeated value.
        value: u64,
    },
    /// `Content-Length` appears more than once with different values.
    #[error("conflicting content-length {first} and {second}")]
    ConflictingContentLength {
        /// The first value.
        first: u64,
        /// The first value that differs from it.
        second: u64,
    },
    /// Both `Content-Length` and `Transfer-Encoding` are present (a request-smuggling signal).
    #[error("both content-length and transfer-encoding")]
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` is anything but exactly `chunked` (as in Go's net/http, which Ollama
    /// runs on: other codings would reach the server undecoded).
    #[error("unsupported transfer-encoding {value:?}")]
    UnsupportedTransferEncoding {
        /// The field value(s), joined with `, ` (lossy UTF-8).
        value: String,
    },
    /// An HTTP/1.0 request with `Transfer-Encoding`, which HTTP/1.0 does not have.
    #[error("transfer-encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
}

/// Parses a request head from the start of `buf` (leading blank lines are skipped, RFC 9112
/// §2.2). Call it again with more bytes appended after [`Status::Partial`]; nothing is kept
/// between calls. On [`Status::Complete`] the body (per [`RequestHead::framing`]) starts at
/// [`RequestHead::head_len`], and after the body the next pipelined request.
///
/// # Errors
///
/// A [`HeadError`] when the head is malformed, exceeds `limits`, or its body framing is
/// ambiguous. The connection cannot be used further.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Status<RequestHead>, HeadError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut slots = vec![httparse::EMPTY_HEADER; header_slots(window, limits)];
    let mut req = httparse::Request::new(&mut slots);
    let parsed = req.parse(window);
    let head_len = match finish_parse(buf, window, parsed, limits)? {
        Status::Complete(n) => n,
        Status::Partial => return Ok(Status::Partial),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Syntax(SyntaxError::Token));
    };
    let version = version_of(version)?;
    let headers = copy_headers(req.headers);
    let framing = framing::request(&headers, version)?;
    let keep_alive = framing::keep_alive(&headers, version);
    let expects_continue = version == Version::Http11
        && find_header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    Ok(Status::Complete(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers,
        framing,
        keep_alive,
        expects_continue,
        head_len,
    }))
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` field (an HTTP/1.0 one at most
/// one). [`parse_request`] parses any head, so a server calls this on each request it accepts
/// (`herd-lite` with the parsed head, `herd` with what hyper saw).
///
/// # Errors
/// [`HeadError::Host`] when the count breaks the rule.
pub fn host_rule(version: Version, count: usize) -> Result<(), HeadError> {
    match (version, count) {
        (_, 2..) | (Version::Http11, 0) => Err(HeadError::Host { count }),
        _ => Ok(()),
    }
}

/// Parses a response head from the start of `buf`, for a request made with the method `to`
/// describes. Call again with more bytes after [`Status::Partial`]. A 1xx head (e.g.
/// `100 Continue`) is complete with [`Framing::Empty`]; parse the final head from
/// `head_len` on.
///
/// # Errors
///
/// A [`HeadError`] when the head is malformed, exceeds `limits`, or its framing is ambiguous:
/// treat the upstream answer as failed.
pub fn parse_response(buf: &[u8], limits: &Limits, to: ResponseTo) -> Result<Status<ResponseHead>, HeadError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut slots = vec![httparse::EMPTY_HEADER; header_slots(window, limits)];
    let mut resp = httparse::Response::new(&mut slots);
    let parsed = resp.parse(window);
    let head_len = match finish_parse(buf, window, parsed, limits)? {
        Status::Complete(n) => n,
        Status::Partial => return Ok(Status::Partial),
    };
    let (Some(version), Some(status @ 100..)) = (resp.version, resp.code) else {
        return Err(HeadError::Syntax(SyntaxError::Status));
    };
    let version = version_of(version)?;
    let headers = copy_headers(resp.headers);
    let framing = framing::response(&headers, status, to)?;
    let keep_alive = framing != Framing::CloseDelimited && framing::keep_alive(&headers, version);
    Ok(Status::Complete(ResponseHead {
        status,
        reason: resp.reason.unwrap_or_default().to_owned(),
        version,
        headers,
        framing,
        keep_alive,
        head_len,
    }))
}

/// Header slots to offer httparse: the limit, but never more than the window could hold
/// (a field takes at least three bytes, `a:\n`), so a huge limit allocates nothing huge.
fn header_slots(window: &[u8], limits: &Limits) -> usize {
    limits.max_headers.min(window.len() / 3 + 1)
}

/// Applies the line and size limits to httparse's answer and maps its errors.
fn finish_parse(
    buf: &[u8],
    window: &[u8],
    parsed: Result<httparse::Status<usize>, httparse::Error>,
    limits: &Limits,
) -> Result<Status<usize>, HeadError> {
    let region = match parsed {
        Ok(httparse::Status::Complete(n)) => &window[..n],
        _ => window,
    };
    check_lines(region, limits.max_line_bytes)?;
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Status::Complete(n)),
        // A head that has not ended within the limit will not fit.
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_bytes => {
            Err(HeadError::HeadTooLarge { limit: limits.max_head_bytes })
        }
        Ok(httparse::Status::Partial) => Ok(Status::Partial),
        Err(e) => Err(map_error(e, limits)),
    }
}

/// Every line of `region` (the last one possibly unterminated) fits in `max`.
fn check_lines(region: &[u8], max: usize) -> Result<(), HeadError> {
    for line in region.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max {
            return Err(HeadError::LineTooLong { limit: max });
        }
    }
    Ok(())
}

fn map_error(e: httparse::Error, limits: &Limits) -> HeadError {
    HeadError::Syntax(match e {
        httparse::Error::TooManyHeaders => return HeadError::TooManyHeaders { limit: limits.max_headers },
        httparse::Error::HeaderName => SyntaxError::HeaderName,
        httparse::Error::HeaderValue => SyntaxError::HeaderValue,
        httparse::Error::NewLine => SyntaxError::NewLine,
        httparse::Error::Status => SyntaxError::Status,
        httparse::Error::Token => SyntaxError::Token,
        httparse::Error::Version => SyntaxError::Version,
    })
}

fn version_of(minor: u8) -> Result<Version, HeadError> {
    match minor {
        0 => Ok(Version::Http10),
        1 => Ok(Version::Http11),
        _ => Err(HeadError::Syntax(SyntaxError::Version)),
    }
}

fn copy_headers(raw: &[httparse::Header<'_>]) -> Vec<Header> {
    raw.iter().map(|h| Header { name: h.name.to_owned(), value: trim_ows(h.value).to_vec() }).collect()
}

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}
