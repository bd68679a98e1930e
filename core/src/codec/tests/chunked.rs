//! The chunked decoder on an Ollama stream, extensions, trailers and every error; the encoder.

use crate::codec::chunked::*;
use crate::codec::Status;

fn decode(wire: &[u8]) -> (Vec<u8>, Result<Status<usize>, ChunkedError>) {
    decode_with(wire, ChunkedLimits::default())
}

fn decode_with(wire: &[u8], limits: ChunkedLimits) -> (Vec<u8>, Result<Status<usize>, ChunkedError>) {
    let mut out = Vec::new();
    let status = ChunkedDecoder::new(limits).feed(wire, &mut out);
    (out, status)
}

const OLLAMA_LINES: [&str; 3] = [
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.1Z","message":{"role":"assistant","content":"","thinking":"User wants weather"},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.4Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_k3j9x0qa","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    r#"{"model":"qwen3","created_at":"2025-05-01T10:00:00.5Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":600000000,"load_duration":10000000,"prompt_eval_count":120,"prompt_eval_duration":50000000,"eval_count":25,"eval_duration":400000000}"#,
];

#[test]
fn ollama_ndjson_stream_one_line_per_chunk() {
    let mut wire = Vec::new();
    let mut body = Vec::new();
    for line in OLLAMA_LINES {
        let mut framed = line.as_bytes().to_vec();
        framed.push(b'\n');
        encode_chunk(&framed, &mut wire);
        body.extend_from_slice(&framed);
    }
    encode_last(&mut wire);
    assert!(wire.starts_with(format!("{:x}\r\n{{\"model\"", OLLAMA_LINES[0].len() + 1).as_bytes()));
    let (out, status) = decode(&wire);
    assert_eq!(status, Ok(Status::Complete(wire.len())));
    assert_eq!(out, body);

    // The same bytes arriving as a network would cut them.
    let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
    let mut out = Vec::new();
    let mut last = Ok(Status::Partial);
    for piece in wire.chunks(7) {
        last = decoder.feed(piece, &mut out);
    }
    assert_eq!(last, Ok(Status::Complete(wire.len() % 7)));
    assert!(decoder.is_done());
    assert_eq!((out.len() as u64, decoder.body_bytes()), (body.len() as u64, body.len() as u64));
}

#[test]
fn extensions_whitespace_hex_case_and_trailers() {
    let wire = b"5;name=value;x\r\nhello\r\nA \t; q=\"a b\"\r\n0123456789\r\n00\r\nX-Trailer: a\r\nX-Other:\tb\r\n\r\n";
    let (out, status) = decode(wire);
    assert_eq!(out, b"hello0123456789");
    assert_eq!(status, Ok(Status::Complete(wire.len())));
}

#[test]
fn end_of_body_leaves_the_next_message() {
    let wire = b"2\r\n{}\r\n0\r\n\r\nPOST /next HTTP/1.1\r\n";
    let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
    let mut out = Vec::new();
    assert_eq!(decoder.feed(wire, &mut out), Ok(Status::Complete(12)));
    assert_eq!(&wire[12..], b"POST /next HTTP/1.1\r\n");
    assert_eq!(decoder.feed(b"more", &mut out), Ok(Status::Complete(0)));
    assert_eq!(out, b"{}");
}

#[test]
fn partial_until_the_final_crlf() {
    let wire = b"3\r\nabc\r\n0\r\n\r\n";
    for cut in 0..wire.len() {
        let (_, status) = decode(&wire[..cut]);
        assert_eq!(status, Ok(Status::Partial), "cut {cut}");
    }
}

#[test]
fn every_error_variant() {
    let cases: [(&[u8], ChunkedError); 14] = [
        (b"g\r\n", ChunkedError::InvalidSize { byte: b'g' }),
        (b";ext\r\n", ChunkedError::InvalidSize { byte: b';' }),
        (b"\r\n", ChunkedError::InvalidSize { byte: b'\r' }),
        (b"5\n", ChunkedError::InvalidSize { byte: b'\n' }),
        (b"5x\r\n", ChunkedError::InvalidSize { byte: b'x' }),
        (b"5 6\r\n", ChunkedError::InvalidSize { byte: b'6' }),
        (b"10000000000000000\r\n", ChunkedError::SizeOverflow),
        (b"5;a\x00\r\n", ChunkedError::InvalidExtension { byte: 0 }),
        (b"5;a\n", ChunkedError::InvalidExtension { byte: b'\n' }),
        (b"5\rx", ChunkedError::MissingLf { byte: b'x' }),
        (b"5\r\nhelloX", ChunkedError::MissingDataCrlf { byte: b'X' }),
        (b"5\r\nhello\rX", ChunkedError::MissingDataCrlf { byte: b'X' }),
        (b"0\r\nX: a\n", ChunkedError::InvalidTrailer { byte: b'\n' }),
        (b"0\r\n\rX", ChunkedError::MissingLf { byte: b'X' }),
    ];
    for (wire, want) in cases {
        assert_eq!(decode(wire).1, Err(want), "{}", String::from_utf8_lossy(wire));
    }
    assert_eq!(decode(b"0\r\nX: a\rb").1, Err(ChunkedError::MissingLf { byte: b'b' }));
    // Sixteen significant digits fit; leading zeros do not count.
    assert_eq!(decode(b"0000FFFFFFFFFFFFFFFF\r\n").1, Ok(Status::Partial));
}

#[test]
fn limits_are_enforced() {
    let tight = ChunkedLimits { max_size_line_bytes: 6, max_trailer_bytes: 8, max_body_bytes: Some(10) };
    assert_eq!(decode_with(b"5;abcd\r\nhello", tight).1, Ok(Status::Partial));
    assert_eq!(decode_with(b"5;abcde\r\n", tight).1, Err(ChunkedError::SizeLineTooLong { limit: 6 }));
    assert_eq!(decode_with(b"0\r\nA: 123456\r\n", tight).1, Err(ChunkedError::TrailersTooLarge { limit: 8 }));
    assert_eq!(decode_with(b"0\r\nA: 1234\r\nBC", tight).1, Err(ChunkedError::TrailersTooLarge { limit: 8 }));
    assert_eq!(decode_with(b"0\r\nA: 12345\r\n\r\n", tight).1, Ok(Status::Complete(15)));
    let (out, status) = decode_with(b"6\r\nabcdef\r\n5\r\n", tight);
    assert_eq!((out.as_slice(), status), (&b"abcdef"[..], Err(ChunkedError::BodyTooLarge { limit: 10 })));
    assert_eq!(decode_with(b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n", tight).0, b"abcdefghij");
}

#[test]
fn errors_stick() {
    let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
    let mut out = Vec::new();
    let err = decoder.feed(b"z", &mut out).expect_err("bad size");
    assert_eq!(decoder.feed(b"0\r\n\r\n", &mut out), Err(err.clone()));
    assert_eq!(decoder.feed(b"", &mut out), Err(err));
    assert!(!decoder.is_done());
}

#[test]
fn encoder_output() {
    let mut out = Vec::new();
    encode_chunk(b"", &mut out);
    assert!(out.is_empty(), "an empty chunk would end the body");
    encode_chunk(&[b'x'; 26], &mut out);
    encode_chunk(b"!", &mut out);
    encode_last(&mut out);
    let mut want = b"1a\r\n".to_vec();
    want.extend_from_slice(&[b'x'; 26]);
    want.extend_from_slice(b"\r\n1\r\n!\r\n0\r\n\r\n");
    assert_eq!(out, want);
}
