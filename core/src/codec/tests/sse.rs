//! The SSE decoder on OpenAI and Anthropic streams and the WHATWG examples; the encoder.

use crate::codec::sse::*;

fn decode(input: &[u8], max: usize) -> (Vec<SseEvent>, Result<usize, SseError>, SseDecoder) {
    let mut decoder = SseDecoder::new(max);
    let mut out = Vec::new();
    let result = decoder.feed(input, &mut out);
    (out, result, decoder)
}

fn events(input: &[u8]) -> Vec<SseEvent> {
    let (events, result, _) = decode(input, DEFAULT_MAX_EVENT_BYTES);
    assert_eq!(result, Ok(events.len()));
    events
}

fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
    SseEvent { event: event.map(str::to_owned), data: data.to_owned(), id: id.map(str::to_owned) }
}

const OPENAI: &str = r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1746093600,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}

data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1746093600,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"lo!"},"finish_reason":null}]}

data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1746093600,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

"#;

const ANTHROPIC: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_9f3c","type":"message","role":"assistant","model":"qwen3-coder","content":[],"usage":{"input_tokens":12,"output_tokens":0}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"output_tokens":5}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[test]
fn openai_stream_ends_with_done() {
    let events = events(OPENAI.as_bytes());
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.event.is_none() && e.id.is_none()));
    assert!(events[1].data.contains(r#""content":"lo!""#));
    assert_eq!(events[3].data, "[DONE]");
    // Re-encoding gives the same bytes.
    let mut wire = Vec::new();
    for e in &events {
        encode_event(None, &e.data, &mut wire).expect("no name");
    }
    assert_eq!(wire, OPENAI.as_bytes());
}

#[test]
fn anthropic_stream_named_events_in_pieces() {
    let whole = events(ANTHROPIC.as_bytes());
    let names: Vec<_> = whole.iter().map(|e| e.event.as_deref().unwrap_or("")).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(whole[5].data, r#"{"type":"message_stop"}"#);
    for size in [1, 3, 50] {
        let mut decoder = SseDecoder::new(DEFAULT_MAX_EVENT_BYTES);
        let mut out = Vec::new();
        for piece in ANTHROPIC.as_bytes().chunks(size) {
            decoder.feed(piece, &mut out).expect("fits");
        }
        assert_eq!(out, whole, "pieces of {size}");
        assert!(!decoder.has_pending());
    }
    let mut wire = Vec::new();
    for e in &whole {
        encode_event(e.event.as_deref(), &e.data, &mut wire).expect("valid name");
    }
    assert_eq!(wire, ANTHROPIC.as_bytes());
}

#[test]
fn whatwg_examples() {
    // Multi-line data is joined with \n; comments are skipped.
    assert_eq!(
        events(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"),
        vec![ev(None, "first event", Some("1")), ev(None, "second event", None), ev(None, " third event", None),]
    );
    assert_eq!(events(b"data: YHOO\ndata: +2\ndata: 10\n\n"), vec![ev(None, "YHOO\n+2\n10", None)]);
    // `data` without a colon appends an empty line; the last, unterminated event is dropped.
    let (got, _, decoder) = decode(b"data\n\ndata\ndata\n\ndata:", DEFAULT_MAX_EVENT_BYTES);
    assert_eq!(got, vec![ev(None, "", None), ev(None, "\n", None)]);
    assert!(decoder.has_pending());
    assert_eq!(events(b"data:test\n\ndata: test\n\n"), vec![ev(None, "test", None); 2]);
}

#[test]
fn line_endings_bom_and_fields() {
    let want = vec![ev(Some("ping"), "a\nb", None)];
    assert_eq!(events(b"event: ping\rdata: a\rdata: b\r\r"), want);
    assert_eq!(events(b"event: ping\r\ndata: a\r\ndata: b\r\n\r\n"), want);
    assert_eq!(events(b"\xEF\xBB\xBFevent: ping\ndata: a\ndata: b\n\n"), want);
    // Only one BOM, only at the start.
    assert_eq!(events(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), vec![]);
    assert_eq!(events(b"data: \xEF\xBB\xBFx\n\n")[0].data, "\u{feff}x");
    // An event without data dispatches nothing and forgets its name.
    assert_eq!(events(b"event: lonely\n\ndata: x\n\n"), vec![ev(None, "x", None)]);
    // `event:` empty is the default type; unknown fields are ignored; invalid UTF-8 is replaced.
    assert_eq!(events(b"event:\nfoo: bar\ndata: \xff\n\n"), vec![ev(None, "\u{fffd}", None)]);
}

#[test]
fn id_persists_and_retry() {
    let (got, _, decoder) = decode(
        b"id: 7\ndata: a\n\ndata: b\n\nid: 8\0\ndata: c\n\nid\ndata: d\n\nretry: 3000\nretry: x\nretry:\n",
        1024,
    );
    assert_eq!(
        got,
        vec![ev(None, "a", Some("7")), ev(None, "b", Some("7")), ev(None, "c", Some("7")), ev(None, "d", None)]
    );
    assert_eq!(decoder.retry_ms(), Some(3000));
    assert_eq!(decode(b"retry: 99999999999999999999999\n", 1024).2.retry_ms(), None);
}

#[test]
fn event_too_large() {
    // 10 bytes of lines per event are fine, comments apart; the 11th byte fails.
    let (got, result, _) = decode(b"data: abcd\n\n: comment\ndata: ab\n\n", 10);
    assert_eq!((got.len(), result), (2, Ok(2)));
    let (got, result, mut decoder) = decode(b"data: a\n\ndata: abcd\ndata\n\n", 10);
    assert_eq!((got.len(), result), (1, Err(SseError::EventTooLarge { limit: 10 })));
    assert_eq!(decoder.feed(b"\n\n", &mut Vec::new()), Err(SseError::EventTooLarge { limit: 10 }));
    // A partial line over the limit fails before it ends.
    assert_eq!(decode(b"data: 0123456789", 10).1, Err(SseError::EventTooLarge { limit: 10 }));
    assert_eq!(decode(b": 0123456789", 10).1, Err(SseError::EventTooLarge { limit: 10 }));
}

#[test]
fn encoder() {
    let mut out = Vec::new();
    encode_event(Some("content_block_delta"), "{\"x\":1}", &mut out).expect("valid");
    assert_eq!(out, b"event: content_block_delta\ndata: {\"x\":1}\n\n");
    out.clear();
    encode_event(None, "a\r\nb\rc\n", &mut out).expect("valid");
    assert_eq!(out, b"data: a\ndata: b\ndata: c\ndata: \n\n");
    assert_eq!(events(&out), vec![ev(None, "a\nb\nc\n", None)]);
    out.clear();
    encode_event(Some(""), "", &mut out).expect("valid");
    assert_eq!(out, b"data: \n\n");
    assert_eq!(encode_event(Some("a\nb"), "x", &mut Vec::new()), Err(SseEncodeError::LineBreakInEventName));
}
