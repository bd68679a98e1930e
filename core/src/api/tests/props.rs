//! Properties: faithful round trips (nothing the client sent is lost), no panic on any bytes,
//! and an idempotent body patch.

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::api::patch::{apply_patch, BodyPatch, NumCtxPatch};
use crate::api::{anthropic, decode, describe, describe_object, ollama, openai};
use crate::api::{parse_body, DescribeContext, HerdFields, Surface, WireRequest};
use crate::ids::ModelName;

/// Field names the request types know, mixed into random objects so decoding meets them.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "stream",
    "options",
    "think",
    "format",
    "keep_alive",
    "fallback_models",
    "fallback",
    "metadata",
    "tags",
    "prompt",
    "input",
    "system",
    "images",
    "max_tokens",
    "max_completion_tokens",
    "user",
    "reasoning_effort",
    "reasoning",
    "thinking",
    "content",
    "role",
    "type",
    "text",
    "image_url",
    "source",
    "num_ctx",
    "num_predict",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u32..70_000).prop_map(Value::from),
        prop::sample::select(vec![0.5, -1.25, 1e3, 2048.0]).prop_map(Value::from),
        "[a-z0-9 :/é]{0,8}".prop_map(Value::String),
        prop::sample::select(vec!["text", "image_url", "image", "tool_use", "tool_result", "system", "user"])
            .prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(KEYS).prop_map(str::to_string), "x_[a-z]{1,4}",]
}

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JSON value but `null` (which a known optional field reads as absent).
fn non_null() -> BoxedStrategy<Value> {
    value().prop_filter("not null", |v| !v.is_null()).boxed()
}

/// Any JSON object.
fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(key(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// Builds an object from optional known fields plus unknown `x_*` fields with any value.
fn fields(known: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let extras = prop::collection::btree_map("x_[a-z]{1,4}", value(), 0..3);
    let known: Vec<BoxedStrategy<Option<(&'static str, Value)>>> =
        known.into_iter().map(|(k, s)| prop::option::of(s.prop_map(move |v| (k, v))).boxed()).collect();
    (known, extras)
        .prop_map(|(known, extras)| {
            let mut map: Map<String, Value> = extras.into_iter().collect();
            for (k, v) in known.into_iter().flatten() {
                map.insert(k.to_string(), v);
            }
            Value::Object(map)
        })
        .boxed()
}

fn text() -> BoxedStrategy<Value> {
    "[a-zA-Z0-9 .é☀]{0,24}".prop_map(Value::String).boxed()
}

fn texts() -> BoxedStrategy<Value> {
    prop::collection::vec(text(), 0..3).prop_map(Value::Array).boxed()
}

fn model() -> BoxedStrategy<Value> {
    prop::sample::select(vec!["m", "llama3.2", "qwen3:8b", "hf.co/org/repo:Q4_K_M"]).prop_map(Value::from).boxed()
}

fn boolean() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::Bool).boxed()
}

fn small_u32() -> BoxedStrategy<Value> {
    (1u32..200_000).prop_map(Value::from).boxed()
}

fn list(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::vec(item, 0..4).prop_map(Value::Array).boxed()
}

fn herd(mut known: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    known.push(("model", model()));
    known.push(("fallback_models", list(model())));
    known.push(("fallback", boolean()));
    known.push(("metadata", fields(vec![("tags", texts())])));
    fields(known)
}

fn options() -> BoxedStrategy<Value> {
    fields(vec![
        ("num_ctx", small_u32()),
        ("num_predict", (-2i64..100_000).prop_map(Value::from).boxed()),
        ("temperature", Just(Value::from(0.5)).boxed()),
    ])
}

fn ollama_chat() -> BoxedStrategy<Value> {
    let role = prop::sample::select(vec!["system", "user", "assistant", "tool"]).prop_map(Value::from);
    let message = fields(vec![
        ("role", role.boxed()),
        ("content", text()),
        ("thinking", text()),
        ("images", texts()),
        ("tool_calls", list(value().boxed())),
        ("tool_name", text()),
    ]);
    herd(vec![
        ("messages", list(message)),
        ("tools", list(value().boxed())),
        ("stream", boolean()),
        ("options", options()),
        ("think", prop_oneof![boolean(), Just(Value::from("high")).boxed()].boxed()),
        ("format", non_null()),
        ("keep_alive", non_null()),
    ])
}

fn ollama_generate() -> BoxedStrategy<Value> {
    herd(vec![
        ("prompt", text()),
        ("suffix", text()),
        ("system", text()),
        ("images", texts()),
        ("stream", boolean()),
        ("raw", boolean()),
        ("options", options()),
    ])
}

fn embed_input() -> BoxedStrategy<Value> {
    prop_oneof![text(), texts()].boxed()
}

fn openai_part() -> BoxedStrategy<Value> {
    let url = "data:image/png;base64,[A-Za-z0-9]{0,8}".prop_map(Value::String).boxed();
    let obj = |kind: &'static str, known: Vec<(&'static str, BoxedStrategy<Value>)>| {
        fields(known).prop_map(move |mut v| {
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), kind.into());
            }
            v
        })
    };
    prop_oneof![
        obj("text", vec![]).prop_flat_map(|v| with_required(v, "text", text())),
        obj("image_url", vec![]).prop_flat_map(move |v| {
            let image = prop_oneof![
                url.clone(),
                fields(vec![]).prop_flat_map({
                    let url = url.clone();
                    move |o| with_required(o, "url", url.clone())
                })
            ];
            with_required(v, "image_url", image.boxed())
        }),
        obj("input_audio", vec![]).prop_flat_map(|v| with_required(v, "input_audio", value().boxed())),
        obj("refusal", vec![("refusal", text())]),
    ]
    .boxed()
}

/// `object` with `key` set to a value from `s`.
fn with_required(object: Value, key: &'static str, s: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    s.prop_map(move |v| {
        let mut o = object.clone();
        if let Value::Object(m) = &mut o {
            m.insert(key.into(), v);
        }
        o
    })
    .boxed()
}

fn openai_chat() -> BoxedStrategy<Value> {
    let role = prop::sample::select(vec!["system", "user", "assistant", "tool"]).prop_map(Value::from);
    let content = prop_oneof![text(), list(openai_part())].boxed();
    let message = fields(vec![
        ("role", role.boxed()),
        ("content", content),
        ("name", text()),
        ("tool_calls", list(value().boxed())),
    ]);
    herd(vec![
        ("messages", list(message)),
        ("tools", list(value().boxed())),
        ("stream", boolean()),
        ("max_tokens", small_u32()),
        ("max_completion_tokens", small_u32()),
        ("reasoning_effort", Just(Value::from("low")).boxed()),
        ("user", text()),
        ("stop", value().boxed()),
        ("temperature", Just(Value::from(0.5)).boxed()),
    ])
}

fn anthropic_block(depth: u32) -> BoxedStrategy<Value> {
    let typed = |kind: &'static str, known: Vec<(&'static str, BoxedStrategy<Value>)>| {
        fields(known)
            .prop_map(move |mut v| {
                if let Value::Object(m) = &mut v {
                    m.insert("type".into(), kind.into());
                }
                v
            })
            .boxed()
    };
    let mut choices = vec![
        typed("text", vec![]).prop_flat_map(|v| with_required(v, "text", text())).boxed(),
        typed("image", vec![]).prop_flat_map(|v| with_required(v, "source", value().boxed())).boxed(),
        typed("tool_use", vec![("id", text()), ("name", text()), ("input", non_null())]),
        typed("thinking", vec![("thinking", text()), ("signature", text())]),
        typed("document", vec![("source", value().boxed())]),
    ];
    if depth > 0 {
        let content = prop_oneof![text(), list(anthropic_block(depth - 1))].boxed();
        choices
            .push(typed("tool_result", vec![("tool_use_id", text()), ("content", content), ("is_error", boolean())]));
    }
    prop::strategy::Union::new(choices).boxed()
}

fn anthropic_messages() -> BoxedStrategy<Value> {
    let content = prop_oneof![text(), list(anthropic_block(2))].boxed();
    let message = fields(vec![
        ("role", prop::sample::select(vec!["user", "assistant"]).prop_map(Value::from).boxed()),
        ("content", content),
    ]);
    herd(vec![
        ("messages", list(message)),
        ("max_tokens", small_u32()),
        ("system", prop_oneof![text(), list(anthropic_block(0))].boxed()),
        ("tools", list(value().boxed())),
        ("stream", boolean()),
        ("thinking", fields(vec![("type", Just(Value::from("enabled")).boxed())])),
        ("output_config", value().prop_filter("object", Value::is_object).boxed()),
    ])
}

/// Decoding a well-formed body succeeds, herd's own fields decode into the flattened `herd` (as
/// [`HerdFields`] alone reads them) and never into `extra` (`split` gives both), re-serialising
/// gives back exactly the same JSON (no known field is ever null in these bodies), and describing
/// the bytes equals describing the map.
fn check_round_trip<T: WireRequest + PartialEq + std::fmt::Debug>(
    body: &Value,
    split: fn(&T) -> (&HerdFields, &Map<String, Value>),
) -> Result<(), TestCaseError> {
    let map = body.as_object().cloned().unwrap_or_default();
    let decoded: T = decode(&map).map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
    let want: HerdFields = decode(&map).map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
    let (herd, extra) = split(&decoded);
    prop_assert_eq!(herd, &want);
    for key in ["fallback_models", "fallback", "metadata"] {
        prop_assert!(!extra.contains_key(key), "{} leaked into extra: {}", key, body);
    }
    let again = serde_json::to_value(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&again, body);
    let bytes = serde_json::to_vec(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let reparsed: T = decode(&parse_body(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&reparsed, &decoded);
    let ctx = DescribeContext::default();
    prop_assert_eq!(describe(T::SURFACE, &bytes, &ctx), describe_object(T::SURFACE, &map, &ctx));
    Ok(())
}

fn patch() -> impl Strategy<Value = BodyPatch> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b:7b"]).prop_map(ModelName::new)),
        prop::option::of(prop_oneof![Just(NumCtxPatch::Remove), any::<u32>().prop_map(NumCtxPatch::Set)]),
        prop::option::of(any::<u32>()),
        prop::option::of(value()),
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(model, num_ctx, num_predict, keep_alive, force_stream, strip, max_tokens)| BodyPatch {
            model,
            num_ctx,
            num_predict,
            max_tokens,
            keep_alive,
            force_stream,
            strip_herd_fields: strip,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ollama_chat_round_trips(body in ollama_chat()) {
        check_round_trip::<ollama::ChatRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn ollama_generate_round_trips(body in ollama_generate()) {
        check_round_trip::<ollama::GenerateRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn ollama_embed_round_trips(body in herd(vec![("input", embed_input()), ("options", options())])) {
        check_round_trip::<ollama::EmbedRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn ollama_embeddings_round_trips(body in herd(vec![("prompt", text()), ("keep_alive", non_null())])) {
        check_round_trip::<ollama::EmbeddingsRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn openai_chat_round_trips(body in openai_chat()) {
        check_round_trip::<openai::ChatRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn openai_completions_round_trips(body in herd(vec![("prompt", embed_input()), ("suffix", text()), ("max_tokens", small_u32()), ("stream", boolean())])) {
        check_round_trip::<openai::CompletionRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn openai_embeddings_round_trips(body in herd(vec![("input", embed_input()), ("user", text())])) {
        check_round_trip::<openai::EmbeddingRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn anthropic_round_trips(body in anthropic_messages()) {
        check_round_trip::<anthropic::MessagesRequest>(&body, |r| (&r.herd, &r.extra))?;
    }

    #[test]
    fn no_panic_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for surface in Surface::ALL {
            let _ = describe(surface, &bytes, &DescribeContext::default());
        }
    }

    #[test]
    fn no_panic_on_any_object(body in object(), client in prop::option::of("[a-z.0-9]{0,6}")) {
        let ctx = DescribeContext { client, prefix_min_tokens: 0, ..DescribeContext::default() };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        for surface in Surface::ALL {
            let from_bytes = describe(surface, &bytes, &ctx);
            prop_assert_eq!(&from_bytes, &describe_object(surface, &body, &ctx));
            if let Ok(spec) = from_bytes {
                prop_assert!(spec.estimated_prompt_tokens >= 1);
                prop_assert_eq!(spec.kind, surface.kind());
            }
        }
    }

    #[test]
    fn no_panic_on_mutated_real_bodies(body in openai_chat(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        if !bytes.is_empty() {
            let i = cut.index(bytes.len());
            bytes[i] = byte;
            for surface in Surface::ALL {
                let _ = describe(surface, &bytes, &DescribeContext::default());
                let _ = describe(surface, &bytes[..i], &DescribeContext::default());
            }
        }
    }

    #[test]
    fn body_index_agrees_with_the_parsed_object(
        body in prop_oneof![ollama_chat(), openai_chat(), anthropic_messages(), object().prop_map(Value::Object)],
        patch in patch(),
        duplicate in prop::option::of((key(), value())),
    ) {
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        if let (Some((k, v)), Some(b'}')) = (duplicate, bytes.last()) {
            // A repeated name: the last one wins, for the index as for serde_json's object.
            bytes.pop();
            let sep = if bytes.len() > 1 { "," } else { "" };
            bytes.extend_from_slice(format!("{sep}{}:{v}}}", Value::from(k)).as_bytes());
        }
        let checked = crate::api::body::check_index_agrees(&bytes, &patch);
        prop_assert_eq!(checked, Ok(()), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn apply_patch_is_idempotent(body in object(), patch in patch()) {
        let mut once = body.clone();
        apply_patch(&mut once, &patch);
        let mut twice = once.clone();
        apply_patch(&mut twice, &patch);
        prop_assert_eq!(&once, &twice);
        if let Some(model) = &patch.model {
            prop_assert_eq!(once.get("model"), Some(&Value::from(model.as_str())));
        }
        if patch.strip_herd_fields {
            prop_assert!(!once.contains_key("fallback_models") && !once.contains_key("fallback"));
        }
    }
}

#[test]
fn deep_nesting_does_not_overflow() {
    // serde_json refuses more than 128 levels; just below that, every surface must cope.
    let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let mut result = String::from("\"x\"");
    for _ in 0..38 {
        result = format!(r#"[{{"type":"tool_result","content":{result}}}]"#);
    }
    for surface in Surface::ALL {
        let body = format!(
            r#"{{"model":"m","max_tokens":5,"x_deep":{deep},"messages":[{{"role":"user","content":{result}}}]}}"#
        );
        let _ = describe(surface, body.as_bytes(), &DescribeContext::default());
        let too_deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(describe(surface, too_deep.as_bytes(), &DescribeContext::default()).is_err());
    }
}
