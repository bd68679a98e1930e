//! The NDJSON splitter on Ollama streams cut anywhere, line endings, limits; the encoder.

use crate::codec::fuzz::Outcome;
use crate::codec::ndjson::*;

const GENERATE: &[u8] = br#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.1Z","response":"The","done":false}
{"model":"llama3.2","created_at":"2025-05-01T10:00:00.2Z","response":" sky","done":false}
{"model":"llama3.2","created_at":"2025-05-01T10:00:00.3Z","response":"","done":true,"done_reason":"stop","context":[128006,882,128007,271,791,13180],"total_duration":812000000,"load_duration":15000000,"prompt_eval_count":11,"prompt_eval_duration":40000000,"eval_count":2,"eval_duration":30000000}
"#;

fn split_all(input: &[u8], max: usize) -> Outcome<Vec<u8>, Option<Vec<u8>>, NdjsonError> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    if let Err(e) = splitter.feed(input, &mut out) {
        return (out, Err(e));
    }
    let last = splitter.finish();
    (out, last)
}

#[test]
fn ollama_generate_stream_in_any_pieces() {
    let want: Vec<Vec<u8>> = GENERATE.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    assert_eq!(want.len(), 3);
    for size in [1, 2, 7, 64, GENERATE.len()] {
        let mut splitter = LineSplitter::new(DEFAULT_MAX_LINE_BYTES);
        let mut out = Vec::new();
        let mut count = 0;
        for piece in GENERATE.chunks(size) {
            count += splitter.feed(piece, &mut out).expect("fits");
        }
        assert_eq!((count, &out), (3, &want), "pieces of {size}");
        assert_eq!(splitter.buffered(), 0);
        assert_eq!(splitter.finish(), Ok(None));
    }
}

#[test]
fn crlf_blank_lines_and_an_unterminated_tail() {
    let (lines, last) = split_all(b"{\"a\":1}\r\n\n\r\n{\"b\":2}\n\n{\"c\":3}\r", 100);
    assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
    assert_eq!(last, Ok(Some(b"{\"c\":3}".to_vec())));
    // A CR inside a line is data; only the one before LF is a line ending.
    assert_eq!(split_all(b"a\rb\r\r\n", 100).0, vec![b"a\rb\r".to_vec()]);
    assert_eq!(split_all(b"\r", 100).1, Ok(None));
}

#[test]
fn line_too_long() {
    // Exactly the limit is fine, with either line ending; a CR waiting for its LF does not count.
    assert_eq!(split_all(b"abcd\r\nefgh\n", 4).0.len(), 2);
    let mut splitter = LineSplitter::new(4);
    let mut out = Vec::new();
    assert_eq!(splitter.feed(b"abcd\r", &mut out), Ok(0));
    assert_eq!(splitter.feed(b"\n", &mut out), Ok(1));
    // Over the limit: refused when the line ends, or as soon as the partial line shows it.
    let (lines, err) = split_all(b"ok\nabcde\nlater\n", 4);
    assert_eq!((lines, err), (vec![b"ok".to_vec()], Err(NdjsonError::LineTooLong { limit: 4 })));
    let mut splitter = LineSplitter::new(4);
    assert_eq!(splitter.feed(b"abcde", &mut out), Err(NdjsonError::LineTooLong { limit: 4 }));
    assert_eq!(splitter.buffered(), 0);
    // The error sticks.
    assert_eq!(splitter.feed(b"\n", &mut out), Err(NdjsonError::LineTooLong { limit: 4 }));
    assert_eq!(splitter.finish(), Err(NdjsonError::LineTooLong { limit: 4 }));
}

#[test]
fn encoder() {
    let mut out = Vec::new();
    encode_line(br#"{"status":"success"}"#, &mut out).expect("valid");
    assert_eq!(out, b"{\"status\":\"success\"}\n");
    assert_eq!(encode_line(b"", &mut out), Err(LineEncodeError::Empty));
    assert_eq!(encode_line(b"{}\n{}", &mut out), Err(LineEncodeError::LineBreak { at: 2 }));
    assert_eq!(encode_line(b"x\r", &mut out), Err(LineEncodeError::LineBreak { at: 1 }));
    assert_eq!(out.len(), 21, "nothing written on error");
}
