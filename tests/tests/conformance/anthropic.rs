//! Anthropic clients unchanged: `claude-*` ids resolved to local models (echoed back, the local
//! model in the headers and the trace), nodes whose Ollama predates `/v1/messages` answered
//! through herd's translation, recent ones through their own endpoint, `count_tokens` and the
//! `GET /v1/messages` probe.

use crate::harness::{FakeSpec, Fleet, Router};
use crate::http::Reply;
use crate::Proto;
use serde_json::{json, Value};

/// An Ollama from before `/v1/messages` (0.14.0).
const OLD_OLLAMA: &str = "0.13.5";

/// What a whole Anthropic stream said.
#[derive(Debug, Default)]
struct Streamed {
    model: String,
    text: String,
    thinking: String,
    /// `(name, input)` of each tool_use block, its input parsed from its `input_json_delta`s.
    tools: Vec<(String, Value)>,
    stop_reason: String,
    output_tokens: u64,
}

/// Reads an Anthropic SSE answer and checks its grammar: every event named as its data's
/// `type`; `message_start` first; each block started at the next index, its deltas of its own
/// kind at its index, then stopped; `message_delta` then `message_stop` last.
fn read_stream(r: &Reply) -> Streamed {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").starts_with("text/event-stream"), "{:?}", r.headers);
    let text = r.text();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().and_then(|l| l.strip_prefix("event: ")).unwrap_or_else(|| panic!("{e:?}"));
            let data = lines.next().and_then(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("{e:?}"));
            let data: Value = serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"));
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"], "{names:?}");
    let mut out =
        Streamed { model: events[0].1["message"]["model"].as_str().unwrap_or("").into(), ..Streamed::default() };
    let mut open: Option<(u64, String, String)> = None; // (index, kind, tool input so far)
    let mut next = 0u64;
    for (name, data) in &events[1..events.len() - 2] {
        let index = data["index"].as_u64().unwrap_or_else(|| panic!("no index: {data}"));
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "a block started inside another: {names:?}");
                assert_eq!(index, next, "blocks are indexed in order: {names:?}");
                let block = &data["content_block"];
                let kind = block["type"].as_str().unwrap().to_string();
                if kind == "tool_use" {
                    assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "{block}");
                    out.tools.push((block["name"].as_str().unwrap().into(), Value::Null));
                }
                open = Some((index, kind, String::new()));
            }
            "content_block_delta" => {
                let (at, kind, input) = open.as_mut().unwrap_or_else(|| panic!("a delta outside a block: {names:?}"));
                assert_eq!(index, *at);
                let d = &data["delta"];
                match (kind.as_str(), d["type"].as_str().unwrap()) {
                    ("text", "text_delta") => out.text.push_str(d["text"].as_str().unwrap()),
                    ("thinking", "thinking_delta") => out.thinking.push_str(d["thinking"].as_str().unwrap()),
                    ("thinking", "signature_delta") => {}
                    ("tool_use", "input_json_delta") => input.push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("a {other:?} delta: {data}"),
                }
            }
            "content_block_stop" => {
                let (at, kind, input) = open.take().unwrap_or_else(|| panic!("a stop outside a block: {names:?}"));
                assert_eq!(index, at);
                if kind == "tool_use" {
                    out.tools.last_mut().unwrap().1 = serde_json::from_str(&input).unwrap();
                }
                next += 1;
            }
            other => panic!("unexpected event {other}: {names:?}"),
        }
    }
    assert!(open.is_none(), "a block never stopped: {names:?}");
    let delta = &events[events.len() - 2].1;
    out.stop_reason = delta["delta"]["stop_reason"].as_str().unwrap_or("").into();
    out.output_tokens = delta["usage"]["output_tokens"].as_u64().unwrap_or(0);
    out
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

const WEATHER: &str = r#"[{"name": "get_weather", "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]"#;

/// Requests per path the fake node `name` has seen.
fn seen(f: &Fleet, name: &str, path: &str) -> u64 {
    f.fake_stats(name)["requests"][path].as_u64().unwrap_or(0)
}

/// `claude-*` ids: a mapped one, then one auto-routed, each echoed in the answer with the local
/// model in the headers and the trace; streamed and not.
pub(crate) fn anthropic_claude_ids_resolve(r: Router) {
    let mut f = Fleet::new(r);
    f.launch(&["--anthropic-model-map", r#"{"claude-sonnet-4-5": "llama3.1:8b"}"#]);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b", "llama3.1:8b"]));
    f.wait_nodes(&["alpha"]);

    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": user("hello there")});
    let reply = f.post("/v1/messages", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!((v["type"].as_str(), v["model"].as_str()), (Some("message"), Some("claude-sonnet-4-5")), "{v}");
    assert!(v["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    for (header, value) in [
        ("x-herd-model", "llama3.1:8b"),
        ("x-fleet-served-model", "llama3.1:8b"),
        ("x-fleet-requested-model", "llama3.1:8b"),
        ("x-fleet-fallback", "false"),
        ("x-herd-requested-model", "claude-sonnet-4-5"),
        ("x-herd-resolved-by", "map"),
        ("x-herd-route", "primary"),
    ] {
        assert_eq!(reply.header(header), value, "{header}: {:?}", reply.headers);
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let s = read_stream(&f.post("/v1/messages", &streamed));
    // The fake's model writes until its budget runs out: the stop reason and count say so.
    assert_eq!((s.model.as_str(), s.stop_reason.as_str(), s.output_tokens), ("claude-sonnet-4-5", "max_tokens", 64));
    assert!(!s.text.is_empty(), "{s:?}");

    // Not in the map: the best loaded model for the tier.
    let haiku = f
        .post("/v1/messages", &json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 16, "messages": user("hi")}));
    assert_eq!(haiku.status, 200, "{}", haiku.text());
    assert_eq!(haiku.json()["model"], "claude-3-5-haiku-20241022");
    assert_eq!(haiku.header("x-herd-resolved-by"), "auto_loaded");
    assert!(["qwen3:8b", "llama3.1:8b"].contains(&haiku.header("x-herd-model")), "{:?}", haiku.headers);

    // The trace says what was asked and what answered.
    let traces = f.traces_until("the mapped call", |t| {
        t.iter().any(|t| t["requested_model"] == "claude-sonnet-4-5" && t["outcome"] == "completed")
    });
    let t = traces.iter().find(|t| t["requested_model"] == "claude-sonnet-4-5").unwrap();
    assert_eq!(
        (t["served_model"].as_str(), t["surface"].as_str()),
        (Some("llama3.1:8b"), Some("anthropic_messages")),
        "{t}"
    );
}

/// A node whose Ollama has no `/v1/messages`: every Anthropic call goes to its `/api/chat` and
/// comes back in Anthropic's shape, streamed and not, with thinking, tool use, stop reasons and
/// usage; the thinking budget is inflated for the thinking model.
pub(crate) fn anthropic_old_node_is_translated(r: Router) {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("old", &["qwen3:8b", "llama3.1:8b"]).ollama_version(OLD_OLLAMA));
    f.wait_nodes(&["old"]);

    let reply = f.post("/v1/messages", &json!({"model": "llama3.1:8b", "max_tokens": 64, "messages": user("hello")}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(
        (v["type"].as_str(), v["role"].as_str(), v["model"].as_str()),
        (Some("message"), Some("assistant"), Some("llama3.1:8b"))
    );
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{v}");
    assert_eq!(
        (v["content"][0]["type"].as_str(), v["stop_reason"].as_str()),
        (Some("text"), Some("max_tokens")),
        "{v}"
    );
    assert_eq!(v["usage"]["output_tokens"], 64, "max_tokens reached the node as num_predict: {v}");
    assert!(v["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");

    // Streamed, a thinking model asked to think: thinking, then text; the budget inflated.
    let think = json!({"model": "qwen3:8b", "max_tokens": 500, "stream": true, "messages": user("think first"),
        "thinking": {"type": "enabled", "budget_tokens": 400}});
    let s = read_stream(&f.post("/v1/messages", &think));
    assert!(!s.thinking.is_empty() && !s.text.is_empty(), "{s:?}");
    assert_eq!((s.model.as_str(), s.stop_reason.as_str()), ("qwen3:8b", "max_tokens"));
    assert!(s.output_tokens >= 2000, "the budget of 500 × 4, thinking counted: {s:?}");
    let sent = &f.fake_stats("old")["last_body"];
    assert_eq!((sent["think"].as_bool(), sent["options"]["num_predict"].as_u64()), (Some(true), Some(2000)), "{sent}");
    assert!(sent.get("max_tokens").is_none() && sent["options"]["num_ctx"].as_u64().is_some(), "{sent}");

    // Tools, streamed and not.
    let tools: Value = serde_json::from_str(WEATHER).unwrap();
    let mut call = json!({"model": "llama3.1:8b", "max_tokens": 64, "tools": tools, "messages": user("weather?")});
    let v = f.post("/v1/messages", &call).json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let block = v["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").cloned().unwrap();
    assert_eq!((block["name"].as_str(), &block["input"]), (Some("get_weather"), &json!({"city": "Paris"})), "{v}");
    assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "{block}");
    call["stream"] = json!(true);
    let s = read_stream(&f.post("/v1/messages", &call));
    assert_eq!(s.stop_reason, "tool_use");
    assert_eq!(s.tools, vec![("get_weather".to_string(), json!({"city": "Paris"}))]);

    // The tool's result goes back as a native tool message, and the model answers in text.
    let tool_id = block["id"].as_str().unwrap();
    let turn = json!({"model": "llama3.1:8b", "max_tokens": 64, "tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}]}]});
    let v = f.post("/v1/messages", &turn).json();
    assert_eq!(
        (v["content"][0]["type"].as_str(), v["stop_reason"].as_str()),
        (Some("text"), Some("max_tokens")),
        "{v}"
    );
    let sent = &f.fake_stats("old")["last_body"];
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "content": "sunny", "tool_call_id": tool_id, "tool_name": "get_weather"})
    );

    // Never the endpoint this Ollama lacks.
    assert_eq!(seen(&f, "old", "/v1/messages"), 0);
    assert_eq!(seen(&f, "old", "/api/chat"), 5);
}

/// A recent Ollama serves `/v1/messages` itself: with context protection off nothing needs the
/// native API, so the call is passed through (the thinking budget as `max_tokens`, the answer
/// renamed to the client's id); with it on, core pins the window, and the call is translated.
pub(crate) fn anthropic_new_node_passes_through(r: Router) {
    let map = ["--anthropic-model-map", r#"{"claude-sonnet-4-5": "qwen3:8b"}"#];
    let mut f = Fleet::new(r);
    f.launch_with(&map, json!({"policy": {"context_protection": "passthrough"}}));
    f.fake(FakeSpec::new("new", &["qwen3:8b"]));
    f.wait_nodes(&["new"]);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": user("hello"),
        "thinking": {"type": "enabled", "budget_tokens": 400}});
    let v = f.post("/v1/messages", &body).json();
    assert_eq!((v["type"].as_str(), v["model"].as_str()), (Some("message"), Some("claude-sonnet-4-5")), "{v}");
    let sent = &f.fake_stats("new")["last_body"];
    assert_eq!((sent["model"].as_str(), sent["max_tokens"].as_u64()), (Some("qwen3:8b"), Some(2000)), "{sent}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let s = read_stream(&f.post("/v1/messages", &streamed));
    assert_eq!(s.model, "claude-sonnet-4-5", "the node's message_start renamed");
    assert!(!s.text.is_empty(), "{s:?}");
    assert_eq!((seen(&f, "new", "/v1/messages"), seen(&f, "new", "/api/chat")), (2, 0));
    drop(f);

    let mut f = Fleet::new(r);
    f.launch(&map);
    f.fake(FakeSpec::new("new", &["qwen3:8b"]));
    f.wait_nodes(&["new"]);
    let v = f.post("/v1/messages", &body).json();
    assert_eq!(v["model"], "claude-sonnet-4-5", "{v}");
    let sent = &f.fake_stats("new")["last_body"];
    assert!(sent["options"]["num_ctx"].as_u64().is_some(), "the window pinned: {sent}");
    assert_eq!((seen(&f, "new", "/v1/messages"), seen(&f, "new", "/api/chat")), (0, 1));
}

/// `POST /v1/messages/count_tokens` answers core's estimate without asking a node, checks the
/// body as `/v1/messages` does (but for `max_tokens`); `GET /v1/messages` is the probe.
pub(crate) fn anthropic_count_tokens_and_probe(r: Router) {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]));
    f.wait_nodes(&["alpha"]);
    let body = json!({"model": "claude-sonnet-4-5", "system": "You are terse.",
        "messages": user("What is the capital of France?"), "tools": serde_json::from_str::<Value>(WEATHER).unwrap()});
    let reply = f.post("/v1/messages/count_tokens", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("content-type").starts_with("application/json"));
    // (14 + 30) characters / 4, and 4 per message (the system prompt's included); tools not counted.
    assert_eq!(reply.json(), json!({"input_tokens": 44 / 4 + 2 * 4}));
    let message = Proto::Anthropic.assert_error(
        &f.post("/v1/messages/count_tokens", &json!({"model": "claude-sonnet-4-5", "messages": []})),
        400,
        "invalid_request_error",
    );
    assert!(message.contains("messages"), "{message}");
    Proto::Anthropic.assert_error(
        &f.post("/v1/messages/count_tokens", &json!({"messages": user("x")})),
        400,
        "invalid_request_error",
    );

    let probe = f.get("/v1/messages");
    assert_eq!(probe.status, 200, "{}", probe.text());
    let v = probe.json();
    assert_eq!(
        (v["ok"].as_bool(), v["service"].as_str(), v["endpoint"].as_str()),
        (Some(true), Some("herd"), Some("/v1/messages"))
    );
    assert!(v["ts"].as_f64().is_some_and(|ts| ts > 1.7e9), "{v}");
    // Neither reached the node.
    let stats = f.fake_stats("alpha");
    assert!(stats["requests"].get("/v1/messages").is_none() && stats["requests"].get("/api/chat").is_none(), "{stats}");
}

/// ollama-herd's `FLEET_ANTHROPIC_REQUIRE_KEY` and `FLEET_ANTHROPIC_API_KEY`: the Anthropic paths
/// need that key (as `x-api-key`, as the SDK sends it, or Bearer), every other path stays open;
/// a missing or wrong key is Anthropic's 401 `authentication_error`.
pub(crate) fn anthropic_key_guards_only_the_anthropic_paths(r: Router) {
    let mut f = Fleet::new(r);
    let env = [("FLEET_ANTHROPIC_REQUIRE_KEY", "true"), ("FLEET_ANTHROPIC_API_KEY", "sk-claude")];
    f.launch_env(&[], json!({}), &env);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]));
    f.wait_nodes(&["alpha"]);
    let body = json!({"model": "qwen3:8b", "max_tokens": 8, "messages": user("hi")}).to_string();
    let json_type = ("content-type", "application/json");
    for headers in [vec![json_type], vec![json_type, ("x-api-key", "wrong")]] {
        let refused = f.send("POST", "/v1/messages", &headers, body.as_bytes());
        Proto::Anthropic.assert_error(&refused, 401, "authentication_error");
    }
    Proto::Anthropic.assert_error(&f.send("GET", "/v1/messages", &[], b""), 401, "authentication_error");
    let count = f.send("POST", "/v1/messages/count_tokens", &[json_type], body.as_bytes());
    Proto::Anthropic.assert_error(&count, 401, "authentication_error");
    for key in [("x-api-key", "sk-claude"), ("authorization", "Bearer sk-claude")] {
        let ok = f.send("POST", "/v1/messages", &[json_type, key], body.as_bytes());
        assert_eq!(ok.status, 200, "{key:?}: {}", ok.text());
        assert_eq!(ok.json()["type"], "message");
    }
    // Nothing else needs it.
    let chat = f.post("/api/chat", &json!({"model": "qwen3:8b", "stream": false, "messages": user("hi")}));
    assert_eq!(chat.status, 200, "{}", chat.text());
    assert_eq!(f.get("/api/tags").status, 200);
}
