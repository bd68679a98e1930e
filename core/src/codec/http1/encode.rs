//! Writers for the heads herd sends: response heads to clients (`herd-lite`) and request heads to
//! upstream nodes. They validate first and write nothing on error, so a bad header can never
//! split a message in two (header injection).

use super::Framing;
use thiserror::Error;

/// Why a head could not be written. Nothing was appended to the output.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The status code is outside 100..=999.
    #[error("invalid status code {status}")]
    InvalidStatus {
        /// The refused code.
        status: u16,
    },
    /// The method is empty or not a token.
    #[error("invalid method {method:?}")]
    InvalidMethod {
        /// The refused method.
        method: String,
    },
    /// The request target is empty or holds whitespace or control bytes.
    #[error("invalid request target {target:?}")]
    InvalidTarget {
        /// The refused target.
        target: String,
    },
    /// A header name is empty or not a token.
    #[error("invalid header name {name:?}")]
    InvalidHeaderName {
        /// The refused name.
        name: String,
    },
    /// A header value holds CR, LF, NUL or another control byte besides tab.
    #[error("invalid value for header {name:?}")]
    InvalidHeaderValue {
        /// The header whose value was refused.
        name: String,
    },
    /// `Content-Length` or `Transfer-Encoding` was given as a header; pass a [`Framing`] instead.
    #[error("framing header {name:?} given explicitly")]
    FramingHeader {
        /// The header.
        name: String,
    },
    /// [`Framing::CloseDelimited`] was asked for a request, where it cannot exist.
    #[error("a request body cannot be close-delimited")]
    CloseDelimitedRequest,
}

/// Appends an `HTTP/1.1` response head to `out`: the status line with the standard reason
/// phrase, `headers` in order, the header `framing` calls for (`content-length: n`,
/// `transfer-encoding: chunked`, or `connection: close` for a close-delimited body; nothing for
/// [`Framing::Empty`], which is for 1xx, 204, 304 and `HEAD` answers: an empty 200 is
/// `Framing::Length(0)`), and the blank line.
///
/// # Errors
///
/// An [`EncodeError`] for a bad status, header name or value, or a framing header in `headers`.
pub fn encode_response_head(
    status: u16,
    headers: &[(&str, &[u8])],
    framing: Framing,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if !(100..=999).contains(&status) {
        return Err(EncodeError::InvalidStatus { status });
    }
    check_headers(headers)?;
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    push_headers(out, headers, framing);
    Ok(())
}

/// Appends an `HTTP/1.1` request head to `out`: the request line, `headers` in order (the caller
/// supplies `Host`), the header `framing` calls for, and the blank line.
///
/// # Errors
///
/// An [`EncodeError`] for a bad method, target, header name or value, a framing header in
/// `headers`, or [`Framing::CloseDelimited`].
pub fn encode_request_head(
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    framing: Framing,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if !is_token(method) {
        return Err(EncodeError::InvalidMethod { method: method.to_owned() });
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(EncodeError::InvalidTarget { target: target.to_owned() });
    }
    if framing == Framing::CloseDelimited {
        return Err(EncodeError::CloseDelimitedRequest);
    }
    check_headers(headers)?;
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_headers(out, headers, framing);
    Ok(())
}

/// The standard reason phrase for `status`, or `""` for codes without a common one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

fn check_headers(headers: &[(&str, &[u8])]) -> Result<(), EncodeError> {
    for (name, value) in headers {
        if !is_token(name) {
            return Err(EncodeError::InvalidHeaderName { name: (*name).to_owned() });
        }
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(EncodeError::FramingHeader { name: (*name).to_owned() });
        }
        // What httparse accepts in a value: visible bytes, space, tab and obs-text.
        if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(EncodeError::InvalidHeaderValue { name: (*name).to_owned() });
        }
    }
    Ok(())
}

fn push_headers(out: &mut Vec<u8>, headers: &[(&str, &[u8])], framing: Framing) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::CloseDelimited => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 9110 `token`: one or more `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
