//! The body-framing decision of RFC 9112 §6.3 and keep-alive, from parsed headers. Strict where
//! a lenient reading lets two parsers disagree about where a body ends (request smuggling).

use super::{trim_ows, Framing, HeadError, Header, ResponseTo, Version};

/// How a request's body is delimited.
pub(super) fn request(headers: &[Header], version: Version) -> Result<Framing, HeadError> {
    let te = has(headers, "transfer-encoding");
    let cl = has(headers, "content-length");
    if te && cl {
        return Err(HeadError::ContentLengthWithTransferEncoding);
    }
    if te {
        if version == Version::Http10 {
            return Err(HeadError::TransferEncodingInHttp10);
        }
        check_chunked(headers)?;
        return Ok(Framing::Chunked);
    }
    Ok(content_length(headers)?.map_or(Framing::Empty, Framing::Length))
}

/// How a response's body is delimited.
pub(super) fn response(headers: &[Header], status: u16, to: ResponseTo) -> Result<Framing, HeadError> {
    if to == ResponseTo::Head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let te = has(headers, "transfer-encoding");
    if te && has(headers, "content-length") {
        return Err(HeadError::ContentLengthWithTransferEncoding);
    }
    if te {
        check_chunked(headers)?;
        return Ok(Framing::Chunked);
    }
    Ok(content_length(headers)?.map_or(Framing::CloseDelimited, Framing::Length))
}

/// Whether the connection persists after this message: HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`. `close` wins over `keep-alive`.
pub(super) fn keep_alive(headers: &[Header], version: Version) -> bool {
    let mut close = false;
    let mut keep = false;
    for token in list(headers, "connection") {
        close |= token.eq_ignore_ascii_case(b"close");
        keep |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    !close && (version == Version::Http11 || keep)
}

fn has(headers: &[Header], name: &str) -> bool {
    headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
}

/// The non-empty, trimmed elements of every `name` field's comma-separated list, in order.
fn list<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// The transfer codings must be exactly `chunked`, once.
fn check_chunked(headers: &[Header]) -> Result<(), HeadError> {
    let mut codings = list(headers, "transfer-encoding");
    let only_chunked = codings.next().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) && codings.next().is_none();
    if only_chunked {
        return Ok(());
    }
    let value = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    Err(HeadError::UnsupportedTransferEncoding { value })
}

/// The single `Content-Length` value, if any. Repeats (as separate fields or as a list) are
/// refused even when equal: a proxy must not guess which one the next hop believes.
fn content_length(headers: &[Header]) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    let fields = headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    for element in fields.flat_map(|h| h.value.split(|&b| b == b',')) {
        let n = parse_decimal(trim_ows(element))
            .ok_or_else(|| HeadError::InvalidContentLength { value: String::from_utf8_lossy(element).into_owned() })?;
        match found {
            None => found = Some(n),
            Some(first) if first == n => return Err(HeadError::DuplicateContentLength { value: n }),
            Some(first) => return Err(HeadError::ConflictingContentLength { first, second: n }),
        }
    }
    Ok(found)
}

/// `1*DIGIT` as a u64; no sign, no spaces, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}
