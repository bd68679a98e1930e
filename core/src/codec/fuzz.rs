//! Fuzz entry points for the codecs, and the piecewise drivers the property tests share. Each
//! `fuzz_*` takes arbitrary bytes, runs the parsers under default and tiny limits, and asserts
//! their invariants: no panic, split invariance (the same output whether the input comes whole,
//! in data-derived pieces, or byte by byte), prefix consistency for heads, and encode → decode
//! round trips. A failed assertion is a bug in the codec.

use super::chunked::{encode_chunk, encode_last, ChunkedDecoder, ChunkedError, ChunkedLimits};
use super::http1::{
    encode_request_head, encode_response_head, parse_request, parse_response, BodyDecoder, BodyError, Framing,
    HeadError, Header, Limits, RequestHead, ResponseTo, Version,
};
use super::ndjson::{encode_line, LineSplitter, NdjsonError};
use super::sse::{encode_event, SseDecoder, SseError, SseEvent};
use super::Status;

/// What a decoder made of a whole input: its output items, then how the input ended or the
/// error that stopped it.
pub type Outcome<T, R, E> = (Vec<T>, Result<R, E>);

/// Limits small enough that short fuzz inputs reach them.
const TINY: Limits = Limits { max_headers: 4, max_head_bytes: 256, max_line_bytes: 64 };
/// Limits wide enough that a re-encoded head always fits.
const WIDE: Limits = Limits { max_headers: 10_000, max_head_bytes: 1 << 24, max_line_bytes: 1 << 24 };

/// Exercises the request and response head parsers and the head encoders.
pub fn fuzz_http1(data: &[u8]) {
    for limits in [Limits::default(), TINY] {
        if let Ok(Status::Complete(head)) = parse_request(data, &limits) {
            check_request(data, &head, &limits);
        }
        for to in [ResponseTo::NonHead, ResponseTo::Head] {
            let whole = parse_response(data, &limits, to);
            if let Ok(Status::Complete(head)) = &whole {
                assert!(head.head_len <= data.len() && head.head_len <= limits.max_head_bytes);
                assert_eq!(parse_response(&data[..head.head_len], &limits, to), whole, "head alone");
                let cut = cut_points(data, head.head_len, 1)[0];
                assert_eq!(parse_response(&data[..cut], &limits, to), Ok(Status::Partial), "prefix {cut}");
                if to == ResponseTo::NonHead {
                    response_round_trip(head.status, &head.headers, head.framing);
                }
            }
        }
    }
    pipeline(data);
}

fn check_request(data: &[u8], head: &RequestHead, limits: &Limits) {
    assert!(head.head_len <= data.len() && head.head_len <= limits.max_head_bytes);
    let alone = parse_request(&data[..head.head_len], limits);
    assert_eq!(alone, Ok(Status::Complete(head.clone())), "head alone");
    let cut = cut_points(data, head.head_len, 1)[0];
    assert_eq!(parse_request(&data[..cut], limits), Ok(Status::Partial), "prefix {cut}");

    // Encode what was parsed and parse it again.
    let kept = without_framing(&head.headers);
    let pairs: Vec<(&str, &[u8])> = kept.iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect();
    let mut wire = Vec::new();
    encode_request_head(&head.method, &head.target, &pairs, head.framing, &mut wire).expect("parsed heads encode");
    let Ok(Status::Complete(again)) = parse_request(&wire, &WIDE) else { panic!("re-encoded head must parse") };
    assert_eq!((&again.method, &again.target, again.framing), (&head.method, &head.target, head.framing));
    assert_eq!(again.head_len, wire.len());
    assert_eq!(&again.headers[..kept.len()], kept.as_slice());
    if head.version == Version::Http11 {
        assert_eq!(again.keep_alive, head.keep_alive);
    }
}

fn response_round_trip(status: u16, headers: &[Header], framing: Framing) {
    let kept = without_framing(headers);
    let pairs: Vec<(&str, &[u8])> = kept.iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect();
    let mut wire = Vec::new();
    encode_response_head(status, &pairs, framing, &mut wire).expect("parsed heads encode");
    let parsed = parse_response(&wire, &WIDE, ResponseTo::NonHead);
    let Ok(Status::Complete(again)) = parsed else { panic!("re-encoded head must parse: {parsed:?}") };
    assert_eq!((again.status, again.framing, again.head_len), (status, framing, wire.len()));
    assert_eq!(&again.headers[..kept.len()], kept.as_slice());
}

fn without_framing(headers: &[Header]) -> Vec<Header> {
    let framing =
        |h: &&Header| h.name.eq_ignore_ascii_case("content-length") || h.name.eq_ignore_ascii_case("transfer-encoding");
    headers.iter().filter(|h| !framing(h)).cloned().collect()
}

/// Parses requests back to back, skipping their bodies, as a pipelining server would.
fn pipeline(data: &[u8]) {
    let mut at = 0;
    while let Ok(Status::Complete(head)) = parse_request(&data[at..], &Limits::default()) {
        assert!(head.head_len > 0);
        at += head.head_len;
        let body_len = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= data.len() - at => n,
                _ => return,
            },
            Framing::Chunked => {
                let mut sink = Vec::new();
                match ChunkedDecoder::new(ChunkedLimits::default()).feed(&data[at..], &mut sink) {
                    Ok(Status::Complete(n)) => n,
                    _ => return,
                }
            }
            Framing::CloseDelimited => unreachable!("requests are never close-delimited"),
        };
        at += body_len;
        if at == data.len() || !head.keep_alive {
            return;
        }
    }
}

/// What a caller made of one message read until the peer closed: `Ok(None)` when the head never
/// completed; else the head, the body, and where the message ended in the input (or the body's
/// error, [`BodyError::Truncated`] when the close came first).
pub type MessageOutcome<H> = Result<Option<(H, Outcome<u8, usize, BodyError>)>, HeadError>;

/// Exercises a request head followed by its body, read as a server does: the head parsed again
/// on a growing buffer, then the body decoded (and passed through) piece by piece. Checks split
/// invariance, that no more body is delivered than was input (nor than the limit), and that a
/// `Length` body is exactly the bytes after the head. Then decodes the input as a bare body in a
/// framing its first byte picks, so random input reaches every framing.
pub fn fuzz_http1_message(data: &[u8]) {
    for (limits, max) in [(Limits::default(), None), (TINY, Some(16))] {
        let whole = request_in_pieces(data, &[], &limits, max);
        let few = (1..data.len().min(512)).collect();
        for cuts in [cut_points(data, data.len(), 1), cut_points(data, data.len(), 3), few] {
            let split = request_in_pieces(data, &cuts, &limits, max);
            match &whole {
                // An error may be found earlier (so differ) in a prefix, but is never missed.
                Err(_) => assert!(split.is_err(), "cuts {cuts:?}: {split:?}"),
                Ok(_) => assert_eq!(split, whole, "cuts {cuts:?}"),
            }
        }
        if let Ok(Some((head, (body, end)))) = &whole {
            check_message(data, head, body, end, max);
        }
    }
    let (framing, body) = match data {
        [kind, len, rest @ ..] => {
            let framings =
                [Framing::Empty, Framing::Length(u64::from(*len)), Framing::Chunked, Framing::CloseDelimited];
            (framings[usize::from(*kind) % 4], rest)
        }
        _ => (Framing::CloseDelimited, data),
    };
    for max in [None, Some(16)] {
        let fresh = || body_decoder(framing, max);
        let whole = body_in_pieces(fresh(), body, &[], true);
        for cuts in [cut_points(data, body.len(), 1), cut_points(data, body.len(), 3), every_byte(body)] {
            assert_eq!(body_in_pieces(fresh(), body, &cuts, true), whole, "cuts {cuts:?}");
            check_passed(framing, body, &passed_in_pieces(fresh(), body, &cuts, true), &whole);
        }
    }
}

fn body_decoder(framing: Framing, max: Option<u64>) -> BodyDecoder {
    match max {
        Some(max) => BodyDecoder::with_max(framing, ChunkedLimits::default(), max),
        None => BodyDecoder::new(framing, ChunkedLimits::default()),
    }
}

/// The invariants of one parsed request and its body, whole.
fn check_message(data: &[u8], head: &RequestHead, body: &[u8], end: &Result<usize, BodyError>, max: Option<u64>) {
    let rest = &data[head.head_len..];
    assert!(body.len() <= rest.len() && max.is_none_or(|m| body.len() as u64 <= m));
    match (head.framing, end) {
        (Framing::Empty, _) => assert_eq!(end, &Ok(head.head_len)),
        (Framing::Length(n), Ok(end)) => {
            assert_eq!((*end - head.head_len) as u64, n);
            assert_eq!(body, &rest[..body.len()]);
        }
        (Framing::Length(n), Err(BodyError::Truncated { delivered, expected })) => {
            assert_eq!((*delivered, *expected, body), (rest.len() as u64, Some(n), rest));
        }
        (Framing::Length(n), Err(e)) => assert!(max.is_some_and(|m| n > m) && body.is_empty(), "{e:?}"),
        (Framing::Chunked, Ok(end)) => assert!(*end <= data.len()),
        (Framing::Chunked, Err(_)) | (Framing::CloseDelimited, _) => {}
    }
    let passed = passed_in_pieces(body_decoder(head.framing, max), rest, &[], true);
    let shifted = end.clone().map(|end| Some(end - head.head_len));
    check_passed(head.framing, rest, &passed, &(body.to_vec(), shifted));
}

/// Passing a body through ends where decoding it does; the bytes passed are the body itself, or
/// for a chunked body its wire bytes.
fn check_passed(
    framing: Framing,
    data: &[u8],
    passed: &Outcome<u8, Option<usize>, BodyError>,
    fed: &Outcome<u8, Option<usize>, BodyError>,
) {
    assert_eq!(passed.1, fed.1, "pass and feed agree on the end");
    match (&fed.1, framing) {
        (Ok(Some(end)), Framing::Chunked) => assert_eq!(passed.0, &data[..*end]),
        (Ok(_), _) => assert_eq!(passed.0, fed.0),
        (Err(_), _) => {}
    }
}

/// Reads one request from `data` as a server would: the head parsed on a growing buffer, each
/// piece appended, then the body fed to a [`BodyDecoder`] (limited to `max` bytes, if given)
/// piece by piece, and the peer closing after the last piece.
pub fn request_in_pieces(
    data: &[u8],
    cuts: &[usize],
    limits: &Limits,
    max: Option<u64>,
) -> MessageOutcome<RequestHead> {
    message_in_pieces(
        data,
        cuts,
        |buf| parse_request(buf, limits),
        |head| (head.head_len, body_decoder(head.framing, max)),
    )
}

/// Reads one message from `data` in pieces cut at the ascending offsets `cuts`: `parse` is
/// retried on the buffer of everything received until it completes; `body` then gives the head's
/// length and a fresh decoder for its body, which is fed the rest of the buffer and each later
/// piece. The peer closes after the last piece ([`BodyDecoder::finish_eof`]).
///
/// # Errors
///
/// The [`HeadError`] `parse` returned.
pub fn message_in_pieces<H>(
    data: &[u8],
    cuts: &[usize],
    parse: impl Fn(&[u8]) -> Result<Status<H>, HeadError>,
    body: impl Fn(&H) -> (usize, BodyDecoder),
) -> MessageOutcome<H> {
    let pieces = pieces(data, cuts);
    let mut received = 0;
    for (i, piece) in pieces.iter().enumerate() {
        received += piece.len();
        let Status::Complete(head) = parse(&data[..received])? else { continue };
        let (head_len, decoder) = body(&head);
        assert!(head_len <= received);
        // The body's pieces: the rest of the buffer, then every later piece.
        let body_cuts: Vec<usize> = std::iter::once(received)
            .chain(cuts.iter().skip(i + 1).copied())
            .map(|c| c.max(received) - head_len)
            .collect();
        let (out, end) = body_in_pieces(decoder, &data[head_len..], &body_cuts, true);
        let end = end.map(|end| head_len + end.expect("the close ends every body"));
        return Ok(Some((head, (out, end))));
    }
    Ok(None)
}

/// Feeds `data` to `decoder` in pieces cut at the ascending offsets `cuts`, then, with `eof`,
/// tells it the peer closed. Returns the body and where it ended in `data` (`None`: not yet), or
/// the error. Asserts on the way that no more is delivered than was input, nor than the limit,
/// that errors stick and that a complete body stays complete.
pub fn body_in_pieces(
    mut decoder: BodyDecoder,
    data: &[u8],
    cuts: &[usize],
    eof: bool,
) -> Outcome<u8, Option<usize>, BodyError> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in pieces(data, cuts) {
        let result = decoder.feed(piece, &mut out);
        assert_eq!(decoder.delivered(), out.len() as u64);
        check_delivered(&decoder, start + piece.len());
        match result {
            Ok(Status::Partial) => start += piece.len(),
            Ok(Status::Complete(n)) => {
                assert!(decoder.is_complete() && n <= piece.len());
                let mut more = Vec::new();
                assert_eq!(decoder.feed(b"0\r\n\r\n", &mut more), Ok(Status::Complete(0)), "complete stays complete");
                assert_eq!((more.len(), decoder.finish_eof()), (0, Ok(())));
                return (out, Ok(Some(start + n)));
            }
            Err(e) => return (out, Err(sticks(&mut decoder, e))),
        }
    }
    if !eof {
        return (out, Ok(None));
    }
    match decoder.finish_eof() {
        Ok(()) => (out, Ok(Some(data.len()))),
        Err(e) => (out, Err(sticks(&mut decoder, e))),
    }
}

/// Like [`body_in_pieces`] with [`BodyDecoder::pass`]: returns the bytes it said to forward.
pub fn passed_in_pieces(
    mut decoder: BodyDecoder,
    data: &[u8],
    cuts: &[usize],
    eof: bool,
) -> Outcome<u8, Option<usize>, BodyError> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in pieces(data, cuts) {
        let passed = decoder.pass(piece);
        check_delivered(&decoder, start + piece.len());
        match passed {
            Ok(p) => {
                assert!(p.take <= piece.len() && (p.complete || p.take == piece.len()));
                assert_eq!(p.complete, decoder.is_complete());
                out.extend_from_slice(&piece[..p.take]);
                if p.complete {
                    return (out, Ok(Some(start + p.take)));
                }
                start += piece.len();
            }
            Err(e) => return (out, Err(sticks(&mut decoder, e))),
        }
    }
    if !eof {
        return (out, Ok(None));
    }
    match decoder.finish_eof() {
        Ok(()) => (out, Ok(Some(data.len()))),
        Err(e) => (out, Err(sticks(&mut decoder, e))),
    }
}

fn check_delivered(decoder: &BodyDecoder, input_bytes: usize) {
    assert!(decoder.delivered() <= input_bytes as u64, "delivered more than was input");
    assert!(decoder.max_bytes().is_none_or(|m| decoder.delivered() <= m), "delivered more than the limit");
}

/// Asserts that the decoder stays failed with `e`, and returns it.
fn sticks(decoder: &mut BodyDecoder, e: BodyError) -> BodyError {
    assert_eq!(decoder.feed(b"0\r\n\r\n", &mut Vec::new()), Err(e.clone()), "errors stick");
    assert_eq!(decoder.pass(b"x"), Err(e.clone()), "errors stick");
    assert_eq!(decoder.finish_eof(), Err(e.clone()), "errors stick");
    assert_eq!(decoder.error(), Some(&e));
    e
}

/// Exercises the chunked decoder (split invariance under two limit sets) and the encoder.
pub fn fuzz_chunked(data: &[u8]) {
    let tiny = ChunkedLimits { max_size_line_bytes: 8, max_trailer_bytes: 16, max_body_bytes: Some(64) };
    for limits in [ChunkedLimits::default(), tiny] {
        let whole = chunked_in_pieces(data, &[], limits);
        if let (_, Ok(Some(end))) = &whole {
            assert!(*end <= data.len());
        }
        for cuts in [cut_points(data, data.len(), 1), cut_points(data, data.len(), 3), every_byte(data)] {
            assert_eq!(chunked_in_pieces(data, &cuts, limits), whole, "cuts {cuts:?}");
        }
    }
    // Round trip: the input as a payload, in data-derived chunk sizes, then junk after the end.
    let mut wire = Vec::new();
    let mut rest = data;
    let mut k = 0;
    while !rest.is_empty() {
        let n = (usize::from(data[k % data.len()]) % 23 + 1).min(rest.len());
        encode_chunk(&rest[..n], &mut wire);
        rest = &rest[n..];
        k += 1;
    }
    encode_chunk(&[], &mut wire);
    encode_last(&mut wire);
    let end = wire.len();
    wire.extend_from_slice(&data[..data.len().min(5)]);
    assert_eq!(
        chunked_in_pieces(&wire, &cut_points(data, end, 2), ChunkedLimits::default()),
        (data.to_vec(), Ok(Some(end)))
    );
}

/// Feeds `data` to a fresh [`ChunkedDecoder`] in pieces cut at the ascending offsets `cuts`.
/// Returns the decoded bytes and where the body ended in `data` (`None`: not yet), or the error.
pub fn chunked_in_pieces(
    data: &[u8],
    cuts: &[usize],
    limits: ChunkedLimits,
) -> Outcome<u8, Option<usize>, ChunkedError> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut start = 0;
    for piece in pieces(data, cuts) {
        match decoder.feed(piece, &mut out) {
            Ok(Status::Partial) => start += piece.len(),
            Ok(Status::Complete(n)) => {
                assert!(decoder.is_done() && n <= piece.len());
                return (out, Ok(Some(start + n)));
            }
            Err(e) => {
                assert_eq!(decoder.feed(b"0\r\n\r\n", &mut Vec::new()), Err(e.clone()), "errors stick");
                return (out, Err(e));
            }
        }
    }
    (out, Ok(None))
}

/// Exercises the NDJSON splitter (split invariance under two limits) and the line encoder.
pub fn fuzz_ndjson(data: &[u8]) {
    for max in [super::ndjson::DEFAULT_MAX_LINE_BYTES, 8] {
        let whole = ndjson_in_pieces(data, &[], max);
        for cuts in [cut_points(data, data.len(), 1), cut_points(data, data.len(), 3), every_byte(data)] {
            assert_eq!(ndjson_in_pieces(data, &cuts, max), whole, "cuts {cuts:?}");
        }
        if let (lines, Ok(_)) = &whole {
            assert!(lines.iter().all(|l| !l.is_empty() && l.len() <= max && !l.contains(&b'\n')));
        }
    }
    let lines: Vec<Vec<u8>> =
        data.split(|&b| b == b'\r' || b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let mut wire = Vec::new();
    for line in &lines {
        encode_line(line, &mut wire).expect("no line breaks, not empty");
    }
    assert_eq!(ndjson_in_pieces(&wire, &cut_points(data, wire.len(), 2), data.len().max(1)), (lines, Ok(None)));
}

/// Feeds `data` to a fresh [`LineSplitter`] in pieces, then finishes it. Returns the lines, and
/// the unterminated last line or the error.
pub fn ndjson_in_pieces(
    data: &[u8],
    cuts: &[usize],
    max_line_bytes: usize,
) -> Outcome<Vec<u8>, Option<Vec<u8>>, NdjsonError> {
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut out = Vec::new();
    for piece in pieces(data, cuts) {
        let before = out.len();
        match splitter.feed(piece, &mut out) {
            Ok(n) => assert_eq!(n, out.len() - before),
            Err(e) => {
                assert_eq!(splitter.feed(b"\n", &mut out), Err(e.clone()), "errors stick");
                return (out, Err(e));
            }
        }
        assert!(splitter.buffered() <= max_line_bytes + 1);
    }
    let last = splitter.finish();
    (out, last)
}

/// Exercises the SSE decoder (split invariance under two limits) and the event encoder.
pub fn fuzz_sse(data: &[u8]) {
    for max in [super::sse::DEFAULT_MAX_EVENT_BYTES, 16] {
        let whole = sse_in_pieces(data, &[], max);
        for cuts in [cut_points(data, data.len(), 1), cut_points(data, data.len(), 3), every_byte(data)] {
            assert_eq!(sse_in_pieces(data, &cuts, max), whole, "cuts {cuts:?}");
        }
    }
    // Round trip: a name from the first line of the input, the data from the rest.
    let text = String::from_utf8_lossy(data);
    let (first, rest) = text.split_once(['\r', '\n']).unwrap_or((&text, ""));
    let name = (!first.is_empty()).then_some(first);
    let mut wire = Vec::new();
    encode_event(name, rest, &mut wire).expect("the name has no line break");
    encode_event(None, "[DONE]", &mut wire).expect("no name");
    let (events, result) = sse_in_pieces(&wire, &cut_points(data, wire.len(), 2), wire.len());
    assert_eq!(result, Ok((None, false)));
    let expected = SseEvent { event: name.map(str::to_owned), data: normalize_newlines(rest), id: None };
    assert_eq!(events, vec![expected, SseEvent { event: None, data: "[DONE]".to_owned(), id: None }]);
}

/// Feeds `data` to a fresh [`SseDecoder`] in pieces. Returns the events, and the decoder's
/// `retry` and pending state at the end, or the error.
pub fn sse_in_pieces(
    data: &[u8],
    cuts: &[usize],
    max_event_bytes: usize,
) -> Outcome<SseEvent, (Option<u64>, bool), SseError> {
    let mut decoder = SseDecoder::new(max_event_bytes);
    let mut out = Vec::new();
    for piece in pieces(data, cuts) {
        let before = out.len();
        match decoder.feed(piece, &mut out) {
            Ok(n) => assert_eq!(n, out.len() - before),
            Err(e) => {
                assert_eq!(decoder.feed(b"\n\n", &mut out), Err(e.clone()), "errors stick");
                return (out, Err(e));
            }
        }
    }
    (out, Ok((decoder.retry_ms(), decoder.has_pending())))
}

/// `text` with CRLF and lone CR turned into LF, as an SSE decoder returns multi-line data.
pub fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// `data` cut at the ascending offsets `cuts` (each at most `data.len()`; empty pieces allowed).
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.clamp(start, data.len());
        out.push(&data[start..cut]);
        start = cut;
    }
    out.push(&data[start..]);
    out
}

/// `count` ascending offsets in `0..=len` (`0..len` when `len > 0`, so a prefix is strict),
/// derived from `data` so a fuzzer can steer them.
fn cut_points(data: &[u8], len: usize, count: usize) -> Vec<usize> {
    let mut hash = crate::rng::fnv1a(crate::rng::FNV_OFFSET, data);
    let span = u64::try_from(len).unwrap_or(u64::MAX).max(1);
    let mut cuts: Vec<usize> = (0..count)
        .map(|i| {
            hash = hash.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64);
            usize::try_from(hash % span).unwrap_or(0)
        })
        .collect();
    cuts.sort_unstable();
    cuts
}

/// Every offset: the input fed one byte at a time (bounded, to keep fuzzing fast).
fn every_byte(data: &[u8]) -> Vec<usize> {
    (1..data.len().min(4096)).collect()
}
