//! Request and response heads as real clients and Ollama send them, and every error; the bodies
//! after them.

use crate::codec::chunked::{encode_chunk, encode_last, ChunkedError, ChunkedLimits};
use crate::codec::http1::*;
use crate::codec::Status;

fn request(wire: &[u8]) -> RequestHead {
    match parse_request(wire, &Limits::default()) {
        Ok(Status::Complete(head)) => head,
        other => panic!("expected a complete head, got {other:?}"),
    }
}

fn request_err(wire: &[u8]) -> HeadError {
    parse_request(wire, &Limits::default()).expect_err("refused")
}

fn response(wire: &[u8], to: ResponseTo) -> ResponseHead {
    match parse_response(wire, &Limits::default(), to) {
        Ok(Status::Complete(head)) => head,
        other => panic!("expected a complete head, got {other:?}"),
    }
}

#[test]
fn curl_post_with_form_content_type() {
    let body = br#"{"model":"llama3.2","prompt":"Why is the sky blue?"}"#;
    let mut wire = format!(
        "POST /api/generate HTTP/1.1\r\nHost: localhost:11435\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let head_len = wire.len();
    wire.extend_from_slice(body);
    let head = request(&wire);
    assert_eq!((head.method.as_str(), head.target.as_str(), head.version), ("POST", "/api/generate", Version::Http11));
    assert_eq!(head.framing, Framing::Length(body.len() as u64));
    assert!(head.keep_alive && !head.expects_continue);
    assert_eq!(head.head_len, head_len);
    assert_eq!(&wire[head.head_len..], body);
    assert_eq!(head.header("user-agent"), Some(&b"curl/8.5.0"[..]));
    assert_eq!(head.headers.len(), 5);
    assert_eq!(head.headers[0], Header { name: "Host".into(), value: b"localhost:11435".to_vec() });
}

#[test]
fn ollama_python_client_chat() {
    let wire = b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:11434\r\nAccept-Encoding: gzip, deflate\r\n\
        Connection: keep-alive\r\nContent-Length: 97\r\ncontent-type: application/json\r\naccept: application/json\r\n\
        user-agent: ollama-python/0.6.3 (x86_64 linux) Python/3.11.7\r\n\r\n";
    let head = request(wire);
    assert_eq!(head.target, "/api/chat");
    assert_eq!(head.framing, Framing::Length(97));
    assert!(head.keep_alive);
    assert_eq!(head.header("Content-Type"), Some(&b"application/json"[..]));
    assert_eq!(head.headers[6].value_str(), Some("ollama-python/0.6.3 (x86_64 linux) Python/3.11.7"));
}

#[test]
fn openai_python_client_stream() {
    let wire = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:11434\r\nAccept-Encoding: gzip, deflate\r\n\
        Connection: keep-alive\r\nAccept: application/json\r\nContent-Type: application/json\r\n\
        User-Agent: OpenAI/Python 3.57.0\r\nX-Stainless-Lang: python\r\nX-Stainless-Package-Version: 3.57.0\r\n\
        X-Stainless-OS: Linux\r\nX-Stainless-Arch: x64\r\nX-Stainless-Runtime: CPython\r\n\
        X-Stainless-Runtime-Version: 3.11.7\r\nAuthorization: Bearer ollama\r\nX-Stainless-Async: false\r\n\
        x-stainless-retry-count: 0\r\nx-stainless-read-timeout: 600\r\nContent-Length: 120\r\n\r\n";
    let head = request(wire);
    assert_eq!(head.target, "/v1/chat/completions");
    assert_eq!(head.framing, Framing::Length(120));
    assert_eq!(head.header("authorization"), Some(&b"Bearer ollama"[..]));
    assert_eq!(head.headers.len(), 17);
}

#[test]
fn get_without_body_and_leading_blank_lines() {
    let head = request(b"\r\n\r\nGET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((head.method.as_str(), head.framing, head.head_len), ("GET", Framing::Empty, 39));
    assert!(!head.framing.has_body());
}

#[test]
fn curl_chunked_upload_with_expect() {
    let wire = b"POST /api/blobs/sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2 HTTP/1.1\r\n\
        Host: localhost:11435\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let head = request(wire);
    assert_eq!(head.framing, Framing::Chunked);
    assert!(head.expects_continue && head.framing.has_body());
    // HTTP/1.0 clients cannot be told to continue.
    assert!(!request(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expects_continue);
}

#[test]
fn keep_alive_by_version_and_connection() {
    assert!(request(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!request(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
    assert!(!request(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!request(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nConnection: close, keep-alive\r\n\r\n").keep_alive);
}

#[test]
fn partial_heads_ask_for_more() {
    let wire = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    for cut in 0..wire.len() - 2 {
        assert_eq!(parse_request(&wire[..cut], &Limits::default()), Ok(Status::Partial), "cut {cut}");
    }
    assert!(parse_request(&wire[..wire.len() - 2], &Limits::default()).expect("ok").is_complete());
}

#[test]
fn pipelined_requests_parse_one_after_the_other() {
    let wire = b"POST /api/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"model\":\"m\"}\
        GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\nGET /api/ps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let first = request(wire);
    assert_eq!(first.target, "/api/embed");
    let Framing::Length(n) = first.framing else { panic!("length framing") };
    let rest = &wire[first.head_len + n as usize..];
    let second = request(rest);
    assert_eq!((second.target.as_str(), second.framing), ("/api/tags", Framing::Empty));
    let third = request(&rest[second.head_len..]);
    assert_eq!(third.target, "/api/ps");
    assert!(!third.keep_alive);
    assert_eq!(third.head_len, rest.len() - second.head_len);
}

#[test]
fn ollama_stream_response_head() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: Thu, 01 May 2025 10:00:00 GMT\r\n\
        Transfer-Encoding: chunked\r\n\r\n";
    let head = response(wire, ResponseTo::NonHead);
    assert_eq!((head.status, head.reason.as_str(), head.framing), (200, "OK", Framing::Chunked));
    assert!(head.keep_alive);
    assert_eq!(head.head_len, wire.len());
    assert_eq!(head.header("content-type"), Some(&b"application/x-ndjson"[..]));
}

#[test]
fn response_framing_cases() {
    let json = response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n", ResponseTo::NonHead);
    assert_eq!((json.status, json.framing), (404, Framing::Length(40)));
    let close = response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", ResponseTo::NonHead);
    assert_eq!(close.framing, Framing::CloseDelimited);
    assert!(!close.keep_alive);
    let no_content = response(b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", ResponseTo::NonHead);
    assert_eq!(no_content.framing, Framing::Empty);
    let head = response(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n", ResponseTo::Head);
    assert_eq!(head.framing, Framing::Empty);
    let not_modified = response(b"HTTP/1.1 304 Not Modified\r\n\r\n", ResponseTo::NonHead);
    assert_eq!(not_modified.framing, Framing::Empty);
    let old = response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", ResponseTo::NonHead);
    assert_eq!((old.version, old.keep_alive), (Version::Http10, false));
    let no_reason = response(b"HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", ResponseTo::NonHead);
    assert_eq!((no_reason.status, no_reason.reason.as_str()), (503, ""));
}

#[test]
fn interim_100_continue_then_final_head() {
    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    let interim = response(wire, ResponseTo::NonHead);
    assert_eq!((interim.status, interim.framing), (100, Framing::Empty));
    let last = response(&wire[interim.head_len..], ResponseTo::NonHead);
    assert_eq!((last.status, last.framing), (200, Framing::Length(2)));
}

#[test]
fn syntax_errors() {
    use SyntaxError::*;
    let cases: [(&[u8], SyntaxError); 6] = [
        (b"GET / HTTP/2.0\r\n\r\n", Version),
        (b"G(T / HTTP/1.1\r\n\r\n", Token),
        (b"GET / HTTP/1.1\rX", NewLine),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", HeaderName),
        (b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n", HeaderValue),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", Status),
    ];
    for (wire, want) in cases {
        let got = if wire.starts_with(b"HTTP/") {
            parse_response(wire, &Limits::default(), ResponseTo::NonHead).expect_err("refused")
        } else {
            request_err(wire)
        };
        assert_eq!(got, HeadError::Syntax(want), "{}", String::from_utf8_lossy(wire));
    }
    let zero = parse_response(b"HTTP/1.1 099 Odd\r\n\r\n", &Limits::default(), ResponseTo::NonHead);
    assert_eq!(zero, Err(HeadError::Syntax(Status)));
}

#[test]
fn limits_are_enforced() {
    let limits = Limits { max_headers: 2, max_head_bytes: 64, max_line_bytes: 20 };
    let three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(parse_request(three, &limits), Err(HeadError::TooManyHeaders { limit: 2 }));
    let long_line = b"GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n";
    assert_eq!(parse_request(long_line, &limits), Err(HeadError::LineTooLong { limit: 20 }));
    // A partial line already over the limit is refused before it ends.
    assert_eq!(parse_request(&long_line[..24], &limits), Err(HeadError::LineTooLong { limit: 20 }));
    let big = b"GET / HTTP/1.1\r\nA: 1234567890\r\nB: 1234567890\r\nC: 1234567890\r\nD: x\r\n";
    let limits = Limits { max_headers: 100, ..limits };
    assert_eq!(parse_request(big, &limits), Err(HeadError::HeadTooLarge { limit: 64 }));
    assert_eq!(parse_request(&big[..63], &limits), Ok(Status::Partial));
    // Endless blank lines never complete a head.
    assert_eq!(parse_request(&[b'\n'; 64], &limits), Err(HeadError::HeadTooLarge { limit: 64 }));
    // A complete head with a body after it is fine however long the buffer is.
    let mut with_body = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n".to_vec();
    with_body.extend_from_slice(&[b'x'; 100]);
    assert!(parse_request(&with_body, &limits).expect("ok").is_complete());
}

#[test]
fn content_length_errors() {
    for bad in ["abc", "-1", "+5", "5 5", "", "18446744073709551616", "0x10", "5,"] {
        let wire = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
        assert!(
            matches!(request_err(wire.as_bytes()), HeadError::InvalidContentLength { .. }),
            "{bad:?} must be refused"
        );
    }
    assert_eq!(
        request_err(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
        HeadError::InvalidContentLength { value: "abc".into() }
    );
    assert_eq!(request(b"POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n").framing, Framing::Length(7));
    assert_eq!(
        request_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
        HeadError::DuplicateContentLength { value: 5 }
    );
    assert_eq!(
        request_err(b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
        HeadError::ConflictingContentLength { first: 5, second: 6 }
    );
    let resp = parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        &Limits::default(),
        ResponseTo::NonHead,
    );
    assert_eq!(resp, Err(HeadError::ConflictingContentLength { first: 1, second: 2 }));
}

#[test]
fn transfer_encoding_errors() {
    assert_eq!(
        request_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HeadError::ContentLengthWithTransferEncoding
    );
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(
        parse_response(resp, &Limits::default(), ResponseTo::NonHead),
        Err(HeadError::ContentLengthWithTransferEncoding)
    );
    for bad in ["gzip", "gzip, chunked", "chunked, chunked", "identity", ""] {
        let wire = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {bad}\r\n\r\n");
        assert_eq!(request_err(wire.as_bytes()), HeadError::UnsupportedTransferEncoding { value: bad.into() });
    }
    let split = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(request_err(split), HeadError::UnsupportedTransferEncoding { value: "gzip, chunked".into() });
    assert_eq!(request(b"POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n").framing, Framing::Chunked);
    assert_eq!(
        request_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HeadError::TransferEncodingInHttp10
    );
}

#[test]
fn encodes_response_heads() {
    let mut out = Vec::new();
    let headers: [(&str, &[u8]); 2] = [("Content-Type", b"application/x-ndjson"), ("X-Herd-Node", b"studio")];
    encode_response_head(200, &headers, Framing::Chunked, &mut out).expect("valid");
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nX-Herd-Node: studio\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    out.clear();
    encode_response_head(404, &[], Framing::Length(18), &mut out).expect("valid");
    assert_eq!(out, b"HTTP/1.1 404 Not Found\r\ncontent-length: 18\r\n\r\n");
    out.clear();
    encode_response_head(599, &[], Framing::CloseDelimited, &mut out).expect("valid");
    assert_eq!(out, b"HTTP/1.1 599 \r\nconnection: close\r\n\r\n");
    out.clear();
    encode_response_head(204, &[], Framing::Empty, &mut out).expect("valid");
    assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(reason_phrase(429), "Too Many Requests");
}

#[test]
fn encodes_request_heads() {
    let mut out = Vec::new();
    let headers: [(&str, &[u8]); 2] = [("Host", b"10.0.0.2:11434"), ("Content-Type", b"application/json")];
    encode_request_head("POST", "/api/chat", &headers, Framing::Length(2), &mut out).expect("valid");
    assert_eq!(
        out,
        b"POST /api/chat HTTP/1.1\r\nHost: 10.0.0.2:11434\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n"
    );
    let head = request(&out);
    assert_eq!((head.framing, head.headers.len()), (Framing::Length(2), 3));
}

#[test]
fn encode_errors_write_nothing() {
    let mut out = Vec::new();
    let cases: [(Result<(), EncodeError>, EncodeError); 8] = [
        (encode_response_head(42, &[], Framing::Empty, &mut out), EncodeError::InvalidStatus { status: 42 }),
        (
            encode_request_head("GE T", "/", &[], Framing::Empty, &mut out),
            EncodeError::InvalidMethod { method: "GE T".into() },
        ),
        (
            encode_request_head("GET", "/a b", &[], Framing::Empty, &mut out),
            EncodeError::InvalidTarget { target: "/a b".into() },
        ),
        (
            encode_request_head("GET", "", &[], Framing::Empty, &mut out),
            EncodeError::InvalidTarget { target: String::new() },
        ),
        (
            encode_response_head(200, &[("X:Y", b"1")], Framing::Empty, &mut out),
            EncodeError::InvalidHeaderName { name: "X:Y".into() },
        ),
        (
            encode_response_head(200, &[("X-Evil", b"1\r\nSet-Cookie: a=b")], Framing::Empty, &mut out),
            EncodeError::InvalidHeaderValue { name: "X-Evil".into() },
        ),
        (
            encode_response_head(200, &[("Content-Length", b"1")], Framing::Empty, &mut out),
            EncodeError::FramingHeader { name: "Content-Length".into() },
        ),
        (encode_request_head("GET", "/", &[], Framing::CloseDelimited, &mut out), EncodeError::CloseDelimitedRequest),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want));
    }
    assert!(out.is_empty());
}

// Bodies: `BodyDecoder` on what curl, Ollama and its clients send after the head.

/// Feeds `wire` to `decoder` in `piece`-byte reads, as a socket would hand them over. Returns
/// the body and the status of the last feed, offset to a position in `wire`.
fn read_body(decoder: &mut BodyDecoder, wire: &[u8], piece: usize) -> (Vec<u8>, Result<Status<usize>, BodyError>) {
    let mut out = Vec::new();
    let mut at = 0;
    for read in wire.chunks(piece) {
        match decoder.feed(read, &mut out) {
            Ok(Status::Partial) => at += read.len(),
            Ok(Status::Complete(n)) => return (out, Ok(Status::Complete(at + n))),
            Err(e) => return (out, Err(e)),
        }
    }
    (out, Ok(Status::Partial))
}

#[test]
fn curl_chunked_upload_body() {
    // `curl -T blob.bin -H 'Transfer-Encoding: chunked'` sends 64 KiB chunks; here three smaller ones.
    let blob: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut wire =
        b"POST /api/blobs/sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2 HTTP/1.1\r\n\
        Host: localhost:11435\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\
        Expect: 100-continue\r\n\r\n"
            .to_vec();
    for part in blob.chunks(4096) {
        encode_chunk(part, &mut wire);
    }
    encode_last(&mut wire);
    let body_end = wire.len();
    wire.extend_from_slice(b"GET /api/tags HTTP/1.1\r\nHost: localhost:11435\r\n\r\n");

    let head = request(&wire);
    assert!(head.expects_continue);
    let limits = ChunkedLimits::default();
    // The router's limit allows it, so it may answer 100 Continue.
    let mut body = BodyDecoder::with_max(head.framing, limits, 1 << 20);
    assert_eq!(body.error(), None);
    let (out, status) = read_body(&mut body, &wire[head.head_len..], 1460);
    assert_eq!(status, Ok(Status::Complete(body_end - head.head_len)));
    assert_eq!((out, body.delivered()), (blob.clone(), 10_000));
    assert!(body.is_complete() && body.finish_eof().is_ok());
    assert_eq!(request(&wire[body_end..]).target, "/api/tags");

    // Passed through as it is: the chunked wire bytes, up to the next request.
    let mut pass = BodyDecoder::new(head.framing, limits);
    assert_eq!(pass.pass(&wire[head.head_len..]), Ok(Passed { take: body_end - head.head_len, complete: true }));
    assert_eq!(pass.delivered(), 10_000);

    // Over a 8 KiB limit it fails when the third chunk is announced, with two chunks delivered.
    let mut small = BodyDecoder::with_max(head.framing, limits, 8 * 1024);
    let (out, status) = read_body(&mut small, &wire[head.head_len..], 1460);
    assert_eq!(status, Err(BodyError::TooLarge { limit: 8 * 1024 }));
    assert_eq!(out, &blob[..8192]);
}

#[test]
fn ollama_ndjson_chunked_response_body() {
    // Go's net/http writes each flushed line as one chunk.
    let lines = [
        r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.1Z","response":"The","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.2Z","response":" sky","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2025-05-01T10:00:00.3Z","response":"","done":true,"done_reason":"stop","total_duration":212000000,"eval_count":2}"#,
    ];
    let mut wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
        Date: Thu, 01 May 2025 10:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for line in lines {
        encode_chunk(format!("{line}\n").as_bytes(), &mut wire);
    }
    encode_last(&mut wire);
    let head = response(&wire, ResponseTo::NonHead);
    let mut body = BodyDecoder::new(head.framing, ChunkedLimits::default());
    let (out, status) = read_body(&mut body, &wire[head.head_len..], 7);
    assert_eq!(status, Ok(Status::Complete(wire.len() - head.head_len)));
    let mut split = Vec::new();
    crate::codec::ndjson::LineSplitter::new(1024).feed(&out, &mut split).expect("lines fit");
    assert_eq!(split, lines.map(|l| l.as_bytes().to_vec()).to_vec());
    assert_eq!(body.delivered(), out.len() as u64);
}

#[test]
fn content_length_json_body_then_pipelined_request() {
    let json = br#"{"model":"llama3.2","messages":[{"role":"user","content":"Why is the sky blue?"}],"stream":false}"#;
    let mut wire = format!(
        "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:11435\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    wire.extend_from_slice(json);
    wire.extend_from_slice(b"GET /api/ps HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = request(&wire);
    let rest = &wire[head.head_len..];
    let mut body = BodyDecoder::with_max(head.framing, ChunkedLimits::default(), 1024);
    let (out, status) = read_body(&mut body, rest, 40);
    assert_eq!((out.as_slice(), status), (&json[..], Ok(Status::Complete(json.len()))));
    assert_eq!(body.feed(b"more", &mut Vec::new()), Ok(Status::Complete(0)), "complete stays complete");

    // Zero-copy: the same body, forwarded from the read buffer in two reads.
    let mut pass = BodyDecoder::new(head.framing, ChunkedLimits::default());
    assert_eq!(pass.pass(&rest[..50]), Ok(Passed { take: 50, complete: false }));
    assert_eq!(pass.pass(&rest[50..]), Ok(Passed { take: json.len() - 50, complete: true }));
    assert_eq!(request(&rest[json.len()..]).target, "/api/ps");

    // 413 before reading: curl's `Expect: 100-continue` can be answered at once.
    let big = BodyDecoder::with_max(Framing::Length(1 << 40), ChunkedLimits::default(), 1 << 20);
    assert_eq!(big.error(), Some(&BodyError::TooLarge { limit: 1 << 20 }));
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let wire = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOllama is running";
    let head = response(wire, ResponseTo::NonHead);
    assert_eq!(head.framing, Framing::CloseDelimited);
    let mut body = BodyDecoder::new(head.framing, ChunkedLimits::default());
    let (out, status) = read_body(&mut body, &wire[head.head_len..], 5);
    assert_eq!((out.as_slice(), status), (&b"Ollama is running"[..], Ok(Status::Partial)));
    assert!(!body.is_complete());
    assert_eq!(body.finish_eof(), Ok(()));
    assert!(body.is_complete() && body.delivered() == 17);

    // Over a limit: the bytes up to it, then TooLarge.
    let mut small = BodyDecoder::with_max(head.framing, ChunkedLimits::default(), 6);
    let mut out = Vec::new();
    assert_eq!(small.feed(b"Ollama is running", &mut out), Err(BodyError::TooLarge { limit: 6 }));
    assert_eq!((out.as_slice(), small.delivered()), (&b"Ollama"[..], 6));
}

#[test]
fn truncated_bodies_at_eof() {
    let mut body = BodyDecoder::new(Framing::Length(40), ChunkedLimits::default());
    assert_eq!(body.feed(br#"{"error":"model"#, &mut Vec::new()), Ok(Status::Partial));
    let truncated = BodyError::Truncated { delivered: 15, expected: Some(40) };
    assert_eq!(body.finish_eof(), Err(truncated.clone()));
    assert_eq!(body.feed(b"x", &mut Vec::new()), Err(truncated.clone()), "errors stick");
    assert_eq!(truncated.to_string(), "body truncated after 15 bytes (expected Some(40))");

    let mut chunked = BodyDecoder::new(Framing::Chunked, ChunkedLimits::default());
    assert_eq!(chunked.feed(b"5\r\nhel", &mut Vec::new()), Ok(Status::Partial));
    assert_eq!(chunked.finish_eof(), Err(BodyError::Truncated { delivered: 3, expected: None }));
}

#[test]
fn empty_bodies_and_framing_errors() {
    for framing in [Framing::Empty, Framing::Length(0)] {
        let mut body = BodyDecoder::with_max(framing, ChunkedLimits::default(), 0);
        assert!(body.is_complete());
        assert_eq!(body.feed(b"GET / HTTP/1.1\r\n", &mut Vec::new()), Ok(Status::Complete(0)));
        assert_eq!(body.pass(b"GET"), Ok(Passed { take: 0, complete: true }));
        assert_eq!(body.finish_eof(), Ok(()));
    }
    let mut bad = BodyDecoder::new(Framing::Chunked, ChunkedLimits::default());
    let mut out = Vec::new();
    assert_eq!(
        bad.feed(b"3\r\nabcd\r\n", &mut out),
        Err(BodyError::Chunked(ChunkedError::MissingDataCrlf { byte: b'd' }))
    );
    assert_eq!(out, b"abc");
    let limits = ChunkedLimits { max_body_bytes: Some(4), ..ChunkedLimits::default() };
    let mut capped = BodyDecoder::new(Framing::Chunked, limits);
    assert_eq!(capped.max_bytes(), Some(4));
    assert_eq!(capped.feed(b"5\r\n", &mut Vec::new()), Err(BodyError::TooLarge { limit: 4 }));
    assert_eq!(BodyDecoder::with_max(Framing::Chunked, limits, 100).max_bytes(), Some(4), "the smaller limit wins");
}

#[test]
fn host_rule_follows_rfc_9112() {
    use crate::codec::http1::{host_rule, HeadError, Version};
    assert_eq!(host_rule(Version::Http11, 1), Ok(()));
    assert_eq!(host_rule(Version::Http11, 0), Err(HeadError::Host { count: 0 }));
    assert_eq!(host_rule(Version::Http11, 2), Err(HeadError::Host { count: 2 }));
    assert_eq!(host_rule(Version::Http10, 0), Ok(()), "HTTP/1.0 needs no Host");
    assert_eq!(host_rule(Version::Http10, 2), Err(HeadError::Host { count: 2 }));
}
