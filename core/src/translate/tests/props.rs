//! Properties: a streamed answer says exactly what the native stream said and what the aggregate
//! says; one `id` and `created` throughout; `[DONE]` exactly once, after a done chunk; no input
//! (bytes, JSON lines, request bodies) makes a translator panic or break the fuzz invariants;
//! base64 round trips.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::api::openai;
use crate::translate::base64::{decode, decode_f32_le, encode, encode_f32_le};
use crate::translate::fuzz::{check_translate, read_events};
use crate::translate::{
    chat_request, completion_request, embedding_request, OpenAiChatStream, OpenAiCompletionStream,
    OpenAiResponseConfig, SamplingDefaults, SseEvent,
};

/// One native chunk of a generated stream.
#[derive(Clone, Debug)]
enum Piece {
    Content(String),
    Thinking(String),
    Both(String, String),
    Tool {
        name: String,
        id: Option<String>,
    },
    Blank,
    /// Something that fails the stream: an error line, a broken line, a non-object.
    Fail(u8),
}

/// How a generated stream ends.
#[derive(Clone, Debug)]
enum End {
    Done { reason: Option<&'static str>, last: String, prompt: u32, eval: u32 },
    Cut,
}

fn text() -> impl Strategy<Value = String> {
    "[a-zé \"\\\\\n{}]{0,6}"
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => text().prop_map(Piece::Content),
        2 => text().prop_map(Piece::Thinking),
        1 => (text(), text()).prop_map(|(t, c)| Piece::Both(t, c)),
        1 => ("[a-z_]{1,8}", proptest::option::of("call_[a-z0-9]{4}")).prop_map(|(name, id)| Piece::Tool { name, id }),
        1 => Just(Piece::Blank),
        1 => (0u8..3).prop_map(Piece::Fail),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        4 => (prop::sample::select(vec![Some("stop"), Some("length"), None, Some("load")]), text(), any::<u32>(), any::<u32>())
            .prop_map(|(reason, last, prompt, eval)| End::Done { reason, last, prompt, eval }),
        1 => Just(End::Cut),
    ]
}

/// A native chunk with this text, for chat (`message`) or generate (top level).
fn chunk(chat: bool, content: &str, thinking: &str, calls: Vec<Value>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert(if chat { "content" } else { "response" }.into(), content.into());
    if !thinking.is_empty() {
        body.insert("thinking".into(), thinking.into());
    }
    if !calls.is_empty() {
        body.insert("tool_calls".into(), Value::Array(calls));
    }
    let mut out = Map::new();
    out.insert("model".into(), "m".into());
    out.insert("created_at".into(), "2025-05-01T10:00:00.1Z".into());
    if chat {
        body.insert("role".into(), "assistant".into());
        out.insert("message".into(), Value::Object(body));
    } else {
        out.extend(body);
    }
    out.insert("done".into(), false.into());
    out
}

/// What a generated stream should translate to.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    content: String,
    thinking: String,
    tools: usize,
    finish: Option<&'static str>,
    usage: Option<(u32, u32)>,
}

/// The NDJSON body of a generated stream and what it should say.
fn render(chat: bool, pieces: &[Piece], end: &End) -> (Vec<u8>, Expected) {
    let mut out = Vec::new();
    let mut want = Expected::default();
    let mut failed = false;
    let line = |out: &mut Vec<u8>, text: String| {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    };
    for p in pieces {
        let (content, thinking, calls) = match p {
            Piece::Content(c) => (c.as_str(), "", Vec::new()),
            Piece::Thinking(t) => ("", t.as_str(), Vec::new()),
            Piece::Both(t, c) => (c.as_str(), t.as_str(), Vec::new()),
            Piece::Tool { name, id } => {
                let mut call = json!({"function": {"index": 0, "name": name, "arguments": {"city": "Tokyo"}}});
                if let Some(id) = id {
                    call["id"] = json!(id);
                }
                ("", "", vec![call])
            }
            Piece::Blank => {
                line(&mut out, "  ".into());
                continue;
            }
            Piece::Fail(kind) => {
                let bad = ["{\"error\":\"runner crashed\"}", "{\"message\": nope", "[1,2]"][usize::from(*kind % 3)];
                line(&mut out, bad.into());
                failed = true;
                continue;
            }
        };
        if !failed {
            want.content.push_str(content);
            want.thinking.push_str(if chat { thinking } else { "" });
            want.tools += if chat { calls.len() } else { 0 };
        }
        line(&mut out, Value::Object(chunk(chat, content, thinking, calls)).to_string());
    }
    if let End::Done { reason, last, prompt, eval } = end {
        let mut done = chunk(chat, last, "", Vec::new());
        done.insert("done".into(), true.into());
        if let Some(reason) = reason {
            done.insert("done_reason".into(), (*reason).into());
        }
        done.insert("prompt_eval_count".into(), (*prompt).into());
        done.insert("eval_count".into(), (*eval).into());
        line(&mut out, Value::Object(done).to_string());
        if !failed {
            want.content.push_str(last);
            want.finish = Some(match reason {
                Some("length") => "length",
                _ if want.tools > 0 => "tool_calls",
                _ => "stop",
            });
            want.usage = Some((*prompt, *eval));
        }
    }
    (out, want)
}

fn config(id: &str, created: u64, include_usage: bool) -> OpenAiResponseConfig {
    let mut c = OpenAiResponseConfig::new(id, created, "qwen3:8b");
    c.include_usage = include_usage;
    c
}

/// Any JSON value with the keys native chunks and OpenAI bodies use.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z:/;,=+é ]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "data:image/png;base64,iVBORw==",
            "https://x/y.png",
            "text",
            "image_url",
            "input_audio",
            "user",
            "assistant",
            "tool",
            "json_schema",
            "json_object",
            "base64",
            "none",
            "high",
            "{\"a\":1}",
        ])
        .prop_map(Value::from),
    ];
    let key = prop::sample::select(vec![
        "model",
        "messages",
        "role",
        "content",
        "thinking",
        "tool_calls",
        "function",
        "name",
        "arguments",
        "id",
        "done",
        "done_reason",
        "error",
        "response",
        "eval_count",
        "prompt_eval_count",
        "logprobs",
        "type",
        "text",
        "image_url",
        "url",
        "input_audio",
        "data",
        "temperature",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "json_schema",
        "schema",
        "reasoning_effort",
        "reasoning",
        "stream_options",
        "include_usage",
        "prompt",
        "input",
        "encoding_format",
        "dimensions",
        "options",
        "embeddings",
        "max_tokens",
        "tool_call_id",
        "effort",
    ]);
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A content part: mostly valid, sometimes anything.
fn part() -> impl Strategy<Value = Value> {
    let urls = vec![
        "data:image/png;base64,iVBORw==",
        "https://x/y.png",
        "data:text/plain;base64,AA",
        "ftp://x",
        "DATA:;BASE64,AAAA",
    ];
    prop_oneof![
        3 => text().prop_map(|t| json!({"type": "text", "text": t})),
        2 => prop::sample::select(urls).prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        1 => Just(json!({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}})),
        1 => json_value(),
    ]
}

/// An assistant tool call with string arguments, valid or not.
fn tool_call() -> impl Strategy<Value = Value> {
    let arguments = prop::sample::select(vec!["{\"city\":\"Tokyo\"}", "", "[1]", "{bad", "{}"]);
    (proptest::option::of("call_[a-z]{2}"), "[a-z]{1,4}", arguments).prop_map(|(id, name, arguments)| {
        let mut call = json!({"type": "function", "function": {"name": name, "arguments": arguments}});
        if let Some(id) = id {
            call["id"] = json!(id);
        }
        call
    })
}

/// A chat message: mostly the shapes clients send, sometimes anything.
fn chat_message() -> impl Strategy<Value = Value> {
    let role = prop::sample::select(vec!["system", "developer", "user", "assistant", "tool"]);
    let content = prop_oneof![
        3 => text().prop_map(Value::from),
        2 => prop::collection::vec(part(), 0..4).prop_map(Value::Array),
        1 => Just(Value::Null),
    ];
    let calls = proptest::option::of(prop::collection::vec(tool_call(), 0..3));
    let message = (role, content, calls, proptest::option::of("call_[a-z]{2}"), proptest::option::of(text())).prop_map(
        |(role, content, calls, call_id, reasoning)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(calls) = calls {
                m["tool_calls"] = Value::Array(calls);
            }
            if let Some(id) = call_id {
                m["tool_call_id"] = json!(id);
            }
            if let Some(r) = reasoning {
                m["reasoning"] = json!(r);
            }
            m
        },
    );
    prop_oneof![6 => message, 1 => json_value()]
}

/// A parameter value: mostly sensible, sometimes anything.
fn param_value() -> impl Strategy<Value = Value> {
    let sensible = vec![
        json!(0.7),
        json!(0),
        json!(42),
        json!("END"),
        json!(["a", "b"]),
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}),
        json!("none"),
        json!("high"),
        json!({"include_usage": true}),
        json!({"num_ctx": 2048}),
        json!("base64"),
        json!(3),
        json!("hello"),
        json!(["x", "y"]),
        json!([{"type": "function", "function": {"name": "a"}}]),
    ];
    prop_oneof![3 => prop::sample::select(sensible), 1 => json_value()]
}

fn events(mut poll: impl FnMut() -> Option<SseEvent>) -> Vec<SseEvent> {
    std::iter::from_fn(&mut poll).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A chat stream says exactly what the native stream said (the concatenated deltas equal the
    /// generated text), with one id and created throughout, and `[DONE]` exactly once iff done;
    /// the fuzz invariants (aggregate equality included) hold on the same body.
    #[test]
    fn chat_stream_says_what_the_native_stream_said(
        pieces in prop::collection::vec(piece(), 0..12),
        end in end(),
        id in "chatcmpl-[a-z0-9]{1,12}",
        created in any::<u64>(),
        include_usage in any::<bool>(),
        head in any::<u8>(),
    ) {
        let (body, want) = render(true, &pieces, &end);
        let config = config(&id, created, include_usage);
        let mut s = OpenAiChatStream::new(config.clone());
        s.handle_bytes(&body);
        s.handle_end();
        let got = read_events(&events(|| s.poll_event()), &config, true).map_err(|v| TestCaseError::fail(v.to_string()))?;
        prop_assert_eq!(got.done, want.finish.is_some());
        if got.done {
            prop_assert_eq!(&got.content, &want.content);
            prop_assert_eq!(&got.thinking, &want.thinking);
            prop_assert_eq!(got.tool_calls.len(), want.tools);
            prop_assert_eq!(got.finish_reason.as_deref(), want.finish);
            let usage = s.usage().map(|u| (u.prompt_tokens, u.completion_tokens));
            prop_assert_eq!(usage, want.usage);
        } else {
            prop_assert!(s.error().is_some());
        }
        let mut data = vec![head];
        data.extend_from_slice(&body);
        prop_assert_eq!(check_translate(&data), Ok(()));
    }

    /// The same for the legacy completions stream over `/api/generate` chunks.
    #[test]
    fn completion_stream_says_what_the_native_stream_said(
        pieces in prop::collection::vec(piece(), 0..12),
        end in end(),
        created in any::<u64>(),
        head in any::<u8>(),
    ) {
        let (body, want) = render(false, &pieces, &end);
        let config = config("cmpl-1", created, head & 1 == 1);
        let mut s = OpenAiCompletionStream::new(config.clone());
        s.handle_bytes(&body);
        s.handle_end();
        let got = read_events(&events(|| s.poll_event()), &config, false).map_err(|v| TestCaseError::fail(v.to_string()))?;
        prop_assert_eq!(got.done, want.finish.is_some());
        if got.done {
            prop_assert_eq!(&got.content, &want.content);
            let finish = want.finish.map(|f| if f == "tool_calls" { "stop" } else { f });
            prop_assert_eq!(got.finish_reason.as_deref(), finish);
        }
        let mut data = vec![head];
        data.extend_from_slice(&body);
        prop_assert_eq!(check_translate(&data), Ok(()));
    }

    /// Arbitrary JSON lines (chunks, bodies and embed answers alike) break no invariant.
    #[test]
    fn any_json_lines_keep_the_invariants(head in any::<u8>(), lines in prop::collection::vec(json_value(), 0..8)) {
        let mut data = vec![head];
        for v in &lines {
            data.extend_from_slice(v.to_string().as_bytes());
            data.push(b'\n');
        }
        prop_assert_eq!(check_translate(&data), Ok(()));
        if let Some(v) = lines.first() {
            let mut one = vec![head];
            one.extend_from_slice(v.to_string().as_bytes());
            prop_assert_eq!(check_translate(&one), Ok(()));
        }
    }

    /// Request translation is total: any decodable body translates or answers a typed error.
    #[test]
    fn request_translation_is_total(
        messages in prop::collection::vec(chat_message(), 1..4),
        params in prop::collection::btree_map(
            prop::sample::select(vec!["temperature", "top_p", "stop", "seed", "response_format", "tools",
                "tool_choice", "reasoning_effort", "stream_options", "options", "prompt", "input",
                "encoding_format", "dimensions", "logprobs", "keep_alive", "max_tokens"]),
            param_value(), 0..6),
    ) {
        let mut body: Map<String, Value> = params.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        body.insert("model".into(), "m".into());
        body.insert("messages".into(), Value::Array(messages));
        if let Ok(req) = crate::api::decode::<openai::ChatRequest>(&body) {
            for defaults in [SamplingDefaults::OllamaV1, SamplingDefaults::Modelfile] {
                if let Err(e) = chat_request(req.clone(), defaults) {
                    prop_assert_eq!(e.http_status(), 400);
                }
            }
        }
        if let Ok(req) = crate::api::decode::<openai::CompletionRequest>(&body) {
            let _ = completion_request(req, SamplingDefaults::OllamaV1);
        }
        if let Ok(req) = crate::api::decode::<openai::EmbeddingRequest>(&body) {
            let _ = embedding_request(req);
        }
        let mut data = vec![0u8];
        data.extend_from_slice(Value::Object(body).to_string().as_bytes());
        prop_assert_eq!(check_translate(&data), Ok(()));
    }

    /// base64 round trips bytes, and f32 vectors bit for bit.
    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64), floats in prop::collection::vec(any::<f32>(), 0..16)) {
        prop_assert_eq!(decode(&encode(&bytes)), Some(bytes));
        let back = decode_f32_le(&encode_f32_le(&floats)).map(|v| v.into_iter().map(f32::to_bits).collect::<Vec<_>>());
        prop_assert_eq!(back, Some(floats.into_iter().map(f32::to_bits).collect()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes: no panic, no broken invariant.
    #[test]
    fn any_bytes_keep_the_invariants(data in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert_eq!(check_translate(&data), Ok(()));
    }
}

#[test]
fn seeds_that_matter() {
    // Hand-picked bodies: the fuzz harness on each worked stream and on edge cases.
    let cases: [&[u8]; 7] = [
        b"",
        b"\x01{\"message\":{\"content\":\"a\"},\"done\":true}",
        b"\x07{\"done\":true}\n{\"done\":true}\n",
        b"\x00{\"error\":null,\"done\":true,\"done_reason\":\"length\"}\n",
        b"\x02{\"message\":{\"tool_calls\":[1,{\"function\":{\"arguments\":\"x\"}}]},\"done\":true}\n",
        b"\xff{\"embeddings\":[[1e300,-0.0,5]],\"prompt_eval_count\":3}",
        b"\x00{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"http://a\"}]}]}",
    ];
    for case in cases {
        assert_eq!(check_translate(case), Ok(()), "{}", String::from_utf8_lossy(case));
    }
}
