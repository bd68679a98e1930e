//! Properties: encode → decode round trips, split invariance (any cut of the input into pieces
//! gives the same output), limits, pipelining, and no panic on any bytes (the fuzz entry points,
//! which assert their own invariants, run on arbitrary input).

use crate::codec::chunked::{encode_chunk, encode_last, ChunkedLimits};
use crate::codec::fuzz::{self, chunked_in_pieces, ndjson_in_pieces, normalize_newlines, sse_in_pieces};
use crate::codec::http1::{encode_request_head, parse_request, Framing, HeadError, Limits};
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
    #![proptest_config(config(512))]

    #[test]
    fn fuzz_http1_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_http1(&data);
    }

    #[test]
    fn fuzz_http1_on_head_like_bytes(data in framing_bytes(&[
        b"GET / HTTP/1.1\r\n", b"POST /api/chat HTTP/1.0\r\n", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 204 \r\n",
        b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n",
        b"Connection: keep-alive\r\n", b"Host: x\r\n", b"\r\n", b"\n", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b" ",
    ], 12)) {
        fuzz::fuzz_http1(&data);
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
