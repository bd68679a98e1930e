//! Properties: encode → decode round trips, split invariance (any cut of the input into pieces
//! gives the same output), limits, pipelining, and no panic on any bytes (the fuzz entry points,
//! which assert their own invariants, run on arbitrary input).

use crate::codec::chunked::{encode_chunk, encode_last, ChunkedLimits};
use crate::codec::fuzz::{
    self, body_in_pieces, chunked_in_pieces, message_in_pieces, ndjson_in_pieces, normalize_newlines,
    request_in_pieces, sse_in_pieces, MessageOutcome,
};
use crate::codec::http1::{
    encode_request_head, encode_response_head, parse_request, parse_response, reason_phrase, BodyDecoder, BodyError,
    Framing, HeadError, Header, Limits, Passed, ResponseHead, ResponseTo,
};
use crate::codec::ndjson::{encode_line, NdjsonError};
use crate::codec::sse::{encode_event, SseError, SseEvent};
use crate::codec::Status;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

/// `cases` cases; failures are saved beside this file, inside the codec module.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// Up to `max` cut points, as indices into whatever input they are applied to.
fn cuts(max: usize) -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..max)
}

fn offsets(len: usize, cuts: &[Index]) -> Vec<usize> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    at.sort_unstable();
    at
}

/// Bytes from an alphabet that hits the codecs' interesting paths often.
fn framing_bytes(alphabet: &'static [&'static [u8]], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet), 0..max).prop_map(|parts| parts.concat())
}

const CHUNKED_ALPHABET: &[&[u8]] = &[
    b"\r\n",
    b"\r",
    b"\n",
    b"0",
    b"1",
    b"5",
    b"a",
    b"F",
    b";",
    b" ",
    b"x",
    b"hello",
    b"\t",
    b"0\r\n\r\n",
    b"3\r\nabc\r\n",
];
const HEAD_ALPHABET: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"POST /api/chat HTTP/1.0\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 204 \r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Host: x\r\n",
    b"\r\n",
    b"\n",
    b"abc",
    b"3\r\nabc\r\n0\r\n\r\n",
    b" ",
];
const LINE_ALPHABET: &[&[u8]] = &[b"\n", b"\r", b"\r\n", b"a", b"{}", b"abcdef", b" "];
const SSE_ALPHABET: &[&[u8]] = &[
    b"data:",
    b"data: ",
    b"event: ",
    b"id: ",
    b"retry: 12",
    b":",
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"x",
    b"\xEF\xBB\xBF",
    b"\xff",
];

/// A well-formed chunked body, with extensions and trailers, from payload pieces.
fn chunked_body(chunks: &[Vec<u8>], ext: bool, trailers: bool) -> Vec<u8> {
    let mut wire = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        let mut framed = Vec::new();
        encode_chunk(c, &mut framed);
        if ext {
            let at = framed.iter().position(|&b| b == b'\r').unwrap_or(0);
            framed.splice(at..at, b" ;name=\"v\"".iter().copied());
        }
        wire.extend_from_slice(&framed);
    }
    if trailers {
        wire.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
    } else {
        encode_last(&mut wire);
    }
    wire
}

/// How a generated message frames its body.
#[derive(Clone, Copy, Debug)]
enum BodyKind {
    Length,
    Chunked {
        ext: bool,
        trailers: bool,
    },
    /// No body for a request; a close-delimited body for a response.
    None,
}

/// A message as a client or Ollama would send it: any valid method, target, status and header
/// fields, and a body given as the chunks it is sent in.
#[derive(Clone, Debug)]
struct Message {
    method: String,
    target: String,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    chunks: Vec<Vec<u8>>,
    kind: BodyKind,
}

impl Message {
    fn framing(&self, response: bool) -> Framing {
        match self.kind {
            BodyKind::Length => Framing::Length(self.chunks.concat().len() as u64),
            BodyKind::Chunked { .. } => Framing::Chunked,
            BodyKind::None if response => Framing::CloseDelimited,
            BodyKind::None => Framing::Empty,
        }
    }

    fn body(&self, response: bool) -> Vec<u8> {
        if self.framing(response) == Framing::Empty {
            return Vec::new();
        }
        self.chunks.concat()
    }

    /// The head then the body, as they go on the wire.
    fn wire(&self, response: bool) -> Vec<u8> {
        let pairs: Vec<(&str, &[u8])> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let framing = self.framing(response);
        let mut wire = Vec::new();
        let encoded = if response {
            encode_response_head(self.status, &pairs, framing, &mut wire)
        } else {
            encode_request_head(&self.method, &self.target, &pairs, framing, &mut wire)
        };
        encoded.expect("generated heads are valid");
        match self.kind {
            BodyKind::Chunked { ext, trailers } => wire.extend_from_slice(&chunked_body(&self.chunks, ext, trailers)),
            _ => wire.extend_from_slice(&self.body(response)),
        }
        wire
    }

    /// The header fields a parse must give back: those sent, then the framing header.
    fn check_headers(&self, got: &[Header]) -> Result<(), TestCaseError> {
        prop_assert!(got.len() >= self.headers.len());
        for ((name, value), field) in self.headers.iter().zip(got) {
            prop_assert!(field.name.eq_ignore_ascii_case(name), "{} != {}", field.name, name);
            prop_assert_eq!(&field.value, value);
        }
        Ok(())
    }
}

fn message() -> impl Strategy<Value = Message> {
    let name = "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}".prop_filter("framing headers are the encoder's", |n: &String| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding")
    });
    // Visible bytes, obs-text and inner whitespace; the parser trims the ends, so none there.
    let value_byte = prop_oneof![Just(b' '), Just(b'\t'), 0x21u8..=0x7e, 0x80u8..=0xff];
    let value = prop::collection::vec(value_byte, 0..24).prop_map(|v| {
        let ows = |b: &u8| *b == b' ' || *b == b'\t';
        let start = v.iter().position(|b| !ows(b)).unwrap_or(v.len());
        let end = v.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
        v[start..end].to_vec()
    });
    let kind = prop_oneof![
        Just(BodyKind::Length),
        (any::<bool>(), any::<bool>()).prop_map(|(ext, trailers)| BodyKind::Chunked { ext, trailers }),
        Just(BodyKind::None),
    ];
    (
        "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}",
        "[!-~\u{a0}-\u{2fff}]{1,30}",
        (200u16..600).prop_filter("204 and 304 have no body", |s| *s != 204 && *s != 304),
        prop::collection::vec((name, value), 0..8),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..5),
        kind,
    )
        .prop_map(|(method, target, status, headers, chunks, kind)| Message {
            method,
            target,
            status,
            headers,
            chunks,
            kind,
        })
}

/// Reads one response (to a non-`HEAD` request) from `wire` in pieces, as herd's upstream client
/// does, with no body limit.
fn response_in_pieces(wire: &[u8], cuts: &[usize]) -> MessageOutcome<ResponseHead> {
    message_in_pieces(
        wire,
        cuts,
        |buf| parse_response(buf, &Limits::default(), ResponseTo::NonHead),
        |head| (head.head_len, BodyDecoder::new(head.framing, ChunkedLimits::default())),
    )
}

/// A body of `len` bytes framed as `framing`, chunked in `chunk`-byte chunks.
fn framed_body(framing: Framing, len: usize, chunk: usize) -> (Vec<u8>, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    if framing != Framing::Chunked {
        return (body.clone(), body);
    }
    let chunks: Vec<Vec<u8>> = body.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect();
    (chunked_body(&chunks, false, false), body)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn chunked_round_trip_in_any_pieces(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        ext in any::<bool>(),
        trailers in any::<bool>(),
        after in prop::collection::vec(any::<u8>(), 0..16),
        cut in cuts(8),
    ) {
        let mut wire = chunked_body(&chunks, ext, trailers);
        let end = wire.len();
        wire.extend_from_slice(&after);
        let at = offsets(wire.len(), &cut);
        prop_assert_eq!(chunked_in_pieces(&wire, &at, ChunkedLimits::default()), (chunks.concat(), Ok(Some(end))));
    }

    #[test]
    fn chunked_split_invariance(data in framing_bytes(CHUNKED_ALPHABET, 40), cut in cuts(8), tight in any::<bool>()) {
        let limits = if tight {
            ChunkedLimits { max_size_line_bytes: 6, max_trailer_bytes: 10, max_body_bytes: Some(12) }
        } else {
            ChunkedLimits::default()
        };
        let whole = chunked_in_pieces(&data, &[], limits);
        prop_assert_eq!(chunked_in_pieces(&data, &offsets(data.len(), &cut), limits), whole);
    }

    #[test]
    fn ndjson_round_trip_in_any_pieces(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no line break", |b| *b != b'\r' && *b != b'\n'), 1..60), 0..10),
        crlf in any::<bool>(),
        blanks in any::<bool>(),
        cut in cuts(8),
    ) {
        let mut wire = Vec::new();
        for line in &lines {
            encode_line(line, &mut wire).expect("valid line");
            if crlf {
                wire.insert(wire.len() - 1, b'\r');
            }
            if blanks {
                wire.extend_from_slice(b"\n\r\n");
            }
        }
        prop_assert_eq!(ndjson_in_pieces(&wire, &offsets(wire.len(), &cut), 60), (lines, Ok(None)));
    }

    #[test]
    fn ndjson_split_invariance(data in framing_bytes(LINE_ALPHABET, 60), cut in cuts(8), max in 0usize..12) {
        let whole = ndjson_in_pieces(&data, &[], max);
        prop_assert_eq!(ndjson_in_pieces(&data, &offsets(data.len(), &cut), max), whole);
    }

    #[test]
    fn ndjson_limit_is_exact(len in 0usize..40, max in 0usize..40, crlf in any::<bool>()) {
        let mut wire = vec![b'x'; len];
        wire.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let (lines, result) = ndjson_in_pieces(&wire, &[], max);
        if len <= max {
            prop_assert_eq!(lines.len(), usize::from(len > 0));
            prop_assert_eq!(result, Ok(None));
        } else {
            prop_assert_eq!(result, Err(NdjsonError::LineTooLong { limit: max }));
        }
    }

    #[test]
    fn sse_round_trip_in_any_pieces(
        events in prop::collection::vec((prop::option::of("[a-z_]{1,12}"), "(\\PC|\r|\n){0,40}"), 0..6),
        cut in cuts(8),
    ) {
        let mut wire = Vec::new();
        for (name, data) in &events {
            encode_event(name.as_deref(), data, &mut wire).expect("names have no line breaks");
        }
        let want: Vec<SseEvent> = events
            .iter()
            .map(|(name, data)| SseEvent { event: name.clone(), data: normalize_newlines(data), id: None })
            .collect();
        prop_assert_eq!(sse_in_pieces(&wire, &offsets(wire.len(), &cut), wire.len()), (want, Ok((None, false))));
    }

    #[test]
    fn sse_split_invariance(data in framing_bytes(SSE_ALPHABET, 50), cut in cuts(8), max in 0usize..24) {
        let whole = sse_in_pieces(&data, &[], max);
        prop_assert_eq!(sse_in_pieces(&data, &offsets(data.len(), &cut), max), whole);
    }

    #[test]
    fn sse_limit_counts_event_lines(lines in 1usize..6, len in 0usize..10, max in 0usize..40) {
        let line = format!("data:{}\n", "x".repeat(len));
        let wire = format!("{}\n", line.repeat(lines));
        let (events, result) = sse_in_pieces(wire.as_bytes(), &[], max);
        if lines * (len + 5) <= max {
            prop_assert_eq!(events.len(), 1);
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result, Err(SseError::EventTooLarge { limit: max }));
        }
    }

    #[test]
    fn http1_pipelined_requests_parse_one_by_one(
        reqs in prop::collection::vec(("[A-Z]{3,7}", "/[a-z0-9/]{0,20}", prop::collection::vec(any::<u8>(), 0..40), any::<bool>()), 1..5),
        cut in any::<Index>(),
    ) {
        let mut wire = Vec::new();
        for (method, target, body, chunked) in &reqs {
            let framing = if *chunked { Framing::Chunked } else { Framing::Length(body.len() as u64) };
            encode_request_head(method, target, &[("Host", b"herd:11435")], framing, &mut wire).expect("valid head");
            if *chunked {
                encode_chunk(body, &mut wire);
                encode_last(&mut wire);
            } else {
                wire.extend_from_slice(body);
            }
        }
        let mut at = 0;
        for (method, target, body, _) in &reqs {
            let Ok(Status::Complete(head)) = parse_request(&wire[at..], &Limits::default()) else {
                return Err(TestCaseError::fail("head must parse"));
            };
            // Any strict prefix of a head is partial.
            let prefix = cut.index(head.head_len);
            prop_assert_eq!(parse_request(&wire[at..at + prefix], &Limits::default()), Ok(Status::Partial));
            prop_assert_eq!((&head.method, &head.target), (method, target));
            at += head.head_len;
            let got = match head.framing {
                Framing::Length(n) => {
                    let n = n as usize;
                    at += n;
                    wire[at - n..at].to_vec()
                }
                _ => {
                    let (got, end) = chunked_in_pieces(&wire[at..], &[], ChunkedLimits::default());
                    at += end.expect("well formed").expect("complete");
                    got
                }
            };
            prop_assert_eq!(&got, body);
        }
        prop_assert_eq!(at, wire.len());
    }

    #[test]
    fn http1_header_count_limit(count in 0usize..12, max in 0usize..12) {
        let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..count {
            wire.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        let limits = Limits { max_headers: max, ..Limits::default() };
        let parsed = parse_request(&wire, &limits);
        if count <= max {
            prop_assert!(matches!(parsed, Ok(Status::Complete(h)) if h.headers.len() == count));
        } else {
            prop_assert_eq!(parsed, Err(HeadError::TooManyHeaders { limit: max }));
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn http1_request_round_trip(msg in message(), after in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut wire = msg.wire(false);
        let end = wire.len();
        wire.extend_from_slice(&after);
        let Ok(Some((head, (body, got_end)))) = request_in_pieces(&wire, &[], &Limits::default(), None) else {
            return Err(TestCaseError::fail("the request must parse"));
        };
        prop_assert_eq!((&head.method, &head.target, head.framing), (&msg.method, &msg.target, msg.framing(false)));
        msg.check_headers(&head.headers)?;
        prop_assert_eq!(body, msg.body(false));
        prop_assert_eq!(got_end, Ok(end));
    }

    #[test]
    fn http1_response_round_trip(msg in message()) {
        let wire = msg.wire(true);
        let Ok(Some((head, (body, end)))) = response_in_pieces(&wire, &[]) else {
            return Err(TestCaseError::fail("the response must parse"));
        };
        prop_assert_eq!((head.status, head.reason.as_str()), (msg.status, reason_phrase(msg.status)));
        prop_assert_eq!(head.framing, msg.framing(true));
        prop_assert_eq!(head.keep_alive, head.framing != Framing::CloseDelimited);
        msg.check_headers(&head.headers)?;
        prop_assert_eq!(body, msg.body(true));
        prop_assert_eq!(end, Ok(wire.len()));
    }

    #[test]
    fn http1_message_split_invariance(msg in message(), response in any::<bool>(), cut in cuts(12)) {
        let wire = msg.wire(response);
        let at = offsets(wire.len(), &cut);
        if response {
            let whole = response_in_pieces(&wire, &[]);
            prop_assert!(matches!(&whole, Ok(Some((_, (_, Ok(_)))))));
            prop_assert_eq!(response_in_pieces(&wire, &at), whole);
        } else {
            let whole = request_in_pieces(&wire, &[], &Limits::default(), None);
            prop_assert!(matches!(&whole, Ok(Some((_, (_, Ok(_)))))));
            prop_assert_eq!(request_in_pieces(&wire, &at, &Limits::default(), None), whole);
        }
    }

    #[test]
    fn http1_pipelined_messages_end_exactly(msgs in prop::collection::vec(message(), 1..5), cut in any::<Index>()) {
        let wires: Vec<Vec<u8>> = msgs.iter().map(|m| m.wire(false)).collect();
        let wire = wires.concat();
        let mut at = 0;
        for (msg, one) in msgs.iter().zip(&wires) {
            let Ok(Status::Complete(head)) = parse_request(&wire[at..], &Limits::default()) else {
                return Err(TestCaseError::fail("head must parse"));
            };
            prop_assert_eq!(&head.target, &msg.target);
            let rest = &wire[at + head.head_len..];
            let body_len = one.len() - head.head_len;
            // The body in two pieces: the first may end it, or leave the end to the second.
            let split = cut.index(rest.len() + 1);
            let mut decoder = BodyDecoder::new(head.framing, ChunkedLimits::default());
            let mut body = Vec::new();
            let used = match decoder.feed(&rest[..split], &mut body) {
                Ok(Status::Complete(n)) => n,
                Ok(Status::Partial) => match decoder.feed(&rest[split..], &mut body) {
                    Ok(Status::Complete(n)) => split + n,
                    other => return Err(TestCaseError::fail(format!("body must end: {other:?}"))),
                },
                Err(e) => return Err(TestCaseError::fail(format!("body must decode: {e}"))),
            };
            prop_assert_eq!(used, body_len, "Complete(n) is exactly the body's wire length");
            let mut pass = BodyDecoder::new(head.framing, ChunkedLimits::default());
            prop_assert_eq!(pass.pass(rest), Ok(Passed { take: body_len, complete: true }));
            prop_assert_eq!(&body, &msg.body(false));
            prop_assert_eq!(decoder.delivered(), body.len() as u64);
            at += head.head_len + used;
        }
        prop_assert_eq!(at, wire.len());
    }

    #[test]
    fn body_limit_is_exact(len in 0usize..64, max in 0u64..64, kind in 0usize..3, chunk in 1usize..20, cut in cuts(6)) {
        let framing = [Framing::Length(len as u64), Framing::Chunked, Framing::CloseDelimited][kind];
        let (wire, body) = framed_body(framing, len, chunk);
        let decoder = BodyDecoder::with_max(framing, ChunkedLimits::default(), max);
        let declared_over = matches!(framing, Framing::Length(n) if n > max);
        prop_assert_eq!(decoder.error().is_some(), declared_over, "a Length over the limit fails at once");
        let (out, end) = body_in_pieces(decoder, &wire, &offsets(wire.len(), &cut), true);
        prop_assert!(out.len() as u64 <= max, "never more than the limit");
        prop_assert_eq!(&out[..], &body[..out.len()]);
        if len as u64 > max {
            prop_assert_eq!(end, Err(BodyError::TooLarge { limit: max }));
        } else {
            prop_assert_eq!((out, end), (body, Ok(Some(wire.len()))));
        }
    }

    #[test]
    fn length_body_stops_at_its_length(
        body in prop::collection::vec(any::<u8>(), 0..64),
        extra in prop::collection::vec(any::<u8>(), 0..64),
        cut in cuts(6),
    ) {
        let wire = [body.clone(), extra].concat();
        let decoder = BodyDecoder::new(Framing::Length(body.len() as u64), ChunkedLimits::default());
        prop_assert_eq!(body_in_pieces(decoder, &wire, &offsets(wire.len(), &cut), false), (body.clone(), Ok(Some(body.len()))));
    }

    #[test]
    fn body_decoder_errors_never_panics(
        data in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), framing_bytes(CHUNKED_ALPHABET, 40)],
        kind in 0usize..4,
        len in 0u64..400,
        max in prop::option::of(0u64..300),
        eof in any::<bool>(),
        cut in cuts(8),
    ) {
        let framing = [Framing::Empty, Framing::Length(len), Framing::Chunked, Framing::CloseDelimited][kind];
        let fresh = || match max {
            Some(max) => BodyDecoder::with_max(framing, ChunkedLimits::default(), max),
            None => BodyDecoder::new(framing, ChunkedLimits::default()),
        };
        // body_in_pieces asserts the delivery bounds and that errors stick.
        let whole = body_in_pieces(fresh(), &data, &[], eof);
        prop_assert_eq!(body_in_pieces(fresh(), &data, &offsets(data.len(), &cut), eof), whole.clone());
        if let (_, Err(BodyError::Chunked(_))) = whole {
            prop_assert_eq!(framing, Framing::Chunked);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn fuzz_http1_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_http1(&data);
    }

    #[test]
    fn fuzz_http1_on_head_like_bytes(data in framing_bytes(HEAD_ALPHABET, 12)) {
        fuzz::fuzz_http1(&data);
    }

    #[test]
    fn fuzz_http1_message_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_http1_message(&data);
    }

    #[test]
    fn fuzz_http1_message_on_head_like_bytes(data in framing_bytes(HEAD_ALPHABET, 12)) {
        fuzz::fuzz_http1_message(&data);
    }

    #[test]
    fn fuzz_chunked_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_chunked(&data);
    }

    #[test]
    fn fuzz_chunked_on_framing_bytes(data in framing_bytes(CHUNKED_ALPHABET, 40)) {
        fuzz::fuzz_chunked(&data);
    }

    #[test]
    fn fuzz_ndjson_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_ndjson(&data);
    }

    #[test]
    fn fuzz_sse_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_sse(&data);
    }

    #[test]
    fn fuzz_sse_on_field_bytes(data in framing_bytes(SSE_ALPHABET, 50)) {
        fuzz::fuzz_sse(&data);
    }
}
