//! One conformance suite for both routers: every case is a function of [`Router`] and runs twice,
//! as `herd_<case>` against `herd` and as `lite_<case>` against `herd-lite`, so any drift between
//! the two fails a test. Everything is out of process: the router binary under test and
//! `herd-fake-ollama` nodes on loopback, driven by a small raw HTTP/1.1 client (which can also
//! send malformed bytes) and by the real `ollama` and `openai` Python clients.
//!
//! `cargo test -p herd-sim --test conformance herd_` runs the `herd` half, `lite_` the other.

#[path = "conformance/anthropic.rs"]
mod anthropic;
#[path = "conformance/compat.rs"]
mod compat;
#[path = "conformance/hardening.rs"]
mod hardening;
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/http.rs"]
mod http;
#[path = "conformance/metrics.rs"]
mod metrics;
#[path = "conformance/python.rs"]
mod python;
#[path = "conformance/views.rs"]
mod views;

use anthropic::*;
use compat::*;
use hardening::*;
use metrics::*;
use views::*;

use harness::{FakeSpec, Fleet, Router};
use http::{Ending, Reply};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Generates `#[test] fn herd_<case>()` and `#[test] fn lite_<case>()` for each case.
macro_rules! conformance {
    ($($case:ident => $herd:ident, $lite:ident;)*) => {
        $(
            #[test]
            fn $herd() {
                $case(Router::Herd)
            }
            #[test]
            fn $lite() {
                $case(Router::Lite)
            }
        )*
    };
}

conformance! {
    python_ollama_and_openai_clients => herd_python_ollama_and_openai_clients, lite_python_ollama_and_openai_clients;
    python_api_and_admin_keys => herd_python_api_and_admin_keys, lite_python_api_and_admin_keys;
    python_anthropic_client => herd_python_anthropic_client, lite_python_anthropic_client;
    python_openai_responses_client => herd_python_openai_responses_client, lite_python_openai_responses_client;
    malformed_json_is_400_in_each_protocol => herd_malformed_json_is_400_in_each_protocol, lite_malformed_json_is_400_in_each_protocol;
    wrong_types_and_missing_or_empty_model => herd_wrong_types_and_missing_or_empty_model, lite_wrong_types_and_missing_or_empty_model;
    unknown_model_is_404_in_each_protocol => herd_unknown_model_is_404_in_each_protocol, lite_unknown_model_is_404_in_each_protocol;
    oversized_body_is_413 => herd_oversized_body_is_413, lite_oversized_body_is_413;
    header_flood_is_431_or_closed => herd_header_flood_is_431_or_closed, lite_header_flood_is_431_or_closed;
    slow_client_is_dropped_after_the_read_timeout => herd_slow_client_is_dropped_after_the_read_timeout, lite_slow_client_is_dropped_after_the_read_timeout;
    tags_are_deduplicated_across_nodes => herd_tags_are_deduplicated_across_nodes, lite_tags_are_deduplicated_across_nodes;
    ps_names_the_node => herd_ps_names_the_node, lite_ps_names_the_node;
    fleet_status_lists_the_nodes => herd_fleet_status_lists_the_nodes, lite_fleet_status_lists_the_nodes;
    fleet_explain_ranks_and_eliminates => herd_fleet_explain_ranks_and_eliminates, lite_fleet_explain_ranks_and_eliminates;
    routed_answers_say_where_they_went => herd_routed_answers_say_where_they_went, lite_routed_answers_say_where_they_went;
    static_node_serves_a_chat => herd_static_node_serves_a_chat, lite_static_node_serves_a_chat;
    heartbeat_needs_the_fleet_key => herd_heartbeat_needs_the_fleet_key, lite_heartbeat_needs_the_fleet_key;
    liveness_version_and_methods => herd_liveness_version_and_methods, lite_liveness_version_and_methods;
    ndjson_stream_framing => herd_ndjson_stream_framing, lite_ndjson_stream_framing;
    openai_sse_ends_with_done => herd_openai_sse_ends_with_done, lite_openai_sse_ends_with_done;
    anthropic_messages_non_stream => herd_anthropic_messages_non_stream, lite_anthropic_messages_non_stream;
    anthropic_claude_ids_resolve => herd_anthropic_claude_ids_resolve, lite_anthropic_claude_ids_resolve;
    anthropic_old_node_is_translated => herd_anthropic_old_node_is_translated, lite_anthropic_old_node_is_translated;
    anthropic_new_node_passes_through => herd_anthropic_new_node_passes_through, lite_anthropic_new_node_passes_through;
    anthropic_count_tokens_and_probe => herd_anthropic_count_tokens_and_probe, lite_anthropic_count_tokens_and_probe;
    anthropic_key_guards_only_the_anthropic_paths => herd_anthropic_key_guards_only_the_anthropic_paths, lite_anthropic_key_guards_only_the_anthropic_paths;
    small_fleet_of_agents => herd_small_fleet_of_agents, lite_small_fleet_of_agents;
    keep_alive_and_pipelining => herd_keep_alive_and_pipelining, lite_keep_alive_and_pipelining;
    expect_continue => herd_expect_continue, lite_expect_continue;
    client_that_leaves_while_queued_ends_once => herd_client_that_leaves_while_queued_ends_once, lite_client_that_leaves_while_queued_ends_once;
    dripping_client_is_cut_off => herd_dripping_client_is_cut_off, lite_dripping_client_is_cut_off;
    heartbeat_cannot_take_over_a_static_node => herd_heartbeat_cannot_take_over_a_static_node, lite_heartbeat_cannot_take_over_a_static_node;
    static_nodes_join_with_a_fleet_key => herd_static_nodes_join_with_a_fleet_key, lite_static_nodes_join_with_a_fleet_key;
    machine_id_cannot_be_omitted => herd_machine_id_cannot_be_omitted, lite_machine_id_cannot_be_omitted;
    heartbeats_are_bounded => herd_heartbeats_are_bounded, lite_heartbeats_are_bounded;
    node_addresses_are_checked => herd_node_addresses_are_checked, lite_node_addresses_are_checked;
    method_not_allowed_says_allow => herd_method_not_allowed_says_allow, lite_method_not_allowed_says_allow;
    host_header_is_required => herd_host_header_is_required, lite_host_header_is_required;
    bearer_scheme_and_keys_are_lenient => herd_bearer_scheme_and_keys_are_lenient, lite_bearer_scheme_and_keys_are_lenient;
    oversized_body_is_not_buffered => herd_oversized_body_is_not_buffered, lite_oversized_body_is_not_buffered;
    request_bodies_are_bounded_by_count => herd_request_bodies_are_bounded_by_count, lite_request_bodies_are_bounded_by_count;
    bodies_in_flight_are_budgeted => herd_bodies_in_flight_are_budgeted, lite_bodies_in_flight_are_budgeted;
    metrics_count_what_the_traces_show => herd_metrics_count_what_the_traces_show, lite_metrics_count_what_the_traces_show;
    metrics_listener_and_keys => herd_metrics_listener_and_keys, lite_metrics_listener_and_keys;
    image_urls_are_fetched_only_where_allowed => herd_image_urls_are_fetched_only_where_allowed, lite_image_urls_are_fetched_only_where_allowed;
    context_upgrade_and_overflow => herd_context_upgrade_and_overflow, lite_context_upgrade_and_overflow;
    cors_off_by_default_and_preflights_when_configured => herd_cors_off_by_default_and_preflights_when_configured, lite_cors_off_by_default_and_preflights_when_configured;
    prometheus_scrapes_and_agrees_with_the_traces => herd_prometheus_scrapes_and_agrees_with_the_traces, lite_prometheus_scrapes_and_agrees_with_the_traces;
    keep_alive_goes_to_the_native_api => herd_keep_alive_goes_to_the_native_api, lite_keep_alive_goes_to_the_native_api;
    tags_and_ps_carry_each_nodes_own_answers => herd_tags_and_ps_carry_each_nodes_own_answers, lite_tags_and_ps_carry_each_nodes_own_answers;
    image_models_are_listed_from_heartbeats => herd_image_models_are_listed_from_heartbeats, lite_image_models_are_listed_from_heartbeats;
    image_node_is_polled => herd_image_node_is_polled, lite_image_node_is_polled;
    fleet_queue_and_limits_report_the_queues => herd_fleet_queue_and_limits_report_the_queues, lite_fleet_queue_and_limits_report_the_queues;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces.

/// The client protocols and their error envelopes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Proto {
    Ollama,
    OpenAi,
    Anthropic,
}

const PROTOCOLS: [Proto; 3] = [Proto::Ollama, Proto::OpenAi, Proto::Anthropic];

impl Proto {
    /// The chat path of the protocol.
    fn chat_path(self) -> &'static str {
        match self {
            Proto::Ollama => "/api/chat",
            Proto::OpenAi => "/v1/chat/completions",
            Proto::Anthropic => "/v1/messages",
        }
    }

    /// A valid non-streamed chat body for `model` in this protocol.
    fn chat_body(self, model: &str) -> Value {
        let messages = json!([{"role": "user", "content": "hello there"}]);
        match self {
            Proto::Ollama => json!({"model": model, "stream": false, "messages": messages}),
            Proto::OpenAi => json!({"model": model, "messages": messages}),
            Proto::Anthropic => json!({"model": model, "max_tokens": 32, "messages": messages}),
        }
    }

    /// Checks `r` is a `status` error in this protocol's envelope; `kind` is the OpenAI and
    /// Anthropic `type` (`invalid_request_error`, `not_found_error`, ...). Returns the message.
    fn assert_error(self, r: &Reply, status: u16, kind: &str) -> String {
        assert_eq!(r.status, status, "{self:?}: {}", r.text());
        assert!(r.header("content-type").starts_with("application/json"), "{self:?}: {:?}", r.headers);
        let v = r.json();
        let message = match self {
            Proto::Ollama => {
                // Ollama's own shape: one string field, nothing else.
                assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{self:?}: {v}");
                v["error"].as_str()
            }
            Proto::OpenAi => {
                let e = &v["error"];
                assert_eq!(e["type"], kind, "{self:?}: {v}");
                assert!(e.get("param").is_some() && e.get("code").is_some(), "param and code present: {v}");
                e["message"].as_str()
            }
            Proto::Anthropic => {
                assert_eq!(v["type"], "error", "{self:?}: {v}");
                assert_eq!(v["error"]["type"], kind, "{self:?}: {v}");
                v["error"]["message"].as_str()
            }
        };
        let message = message.unwrap_or_else(|| panic!("{self:?}: no error message in {v}")).to_string();
        assert!(!message.is_empty(), "{self:?}: empty error message");
        message
    }
}

/// A router with `args` and node alpha (`qwen3:8b`, `llama3.1:8b`).
fn one_node(r: Router, args: &[&str]) -> Fleet {
    let mut f = Fleet::start(r, args);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b", "llama3.1:8b"]));
    f.wait_nodes(&["alpha"]);
    f
}

/// A router with alpha (`qwen3:8b`, `llama3.1:8b`) and beta (`qwen3:8b`, `nomic-embed-text`).
/// Fixed-timing fakes keep every model on disk loaded.
fn two_nodes(r: Router) -> Fleet {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b", "llama3.1:8b"]));
    f.fake(FakeSpec::new("beta", &["qwen3:8b", "nomic-embed-text"]));
    f.wait_nodes(&["alpha", "beta"]);
    f
}

fn post_raw(f: &Fleet, path: &str, body: &str) -> Reply {
    f.send("POST", path, &[("content-type", "application/json")], body.as_bytes())
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")).to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The NDJSON lines of a streamed native answer, each a JSON object.
fn ndjson(r: &Reply) -> Vec<Value> {
    r.text()
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l:?}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The real Python clients.

/// `anthropic_client.py`: the real `anthropic` SDK with Claude ids the model map resolves, one
/// to a node that serves `/v1/messages` and one to a node on Ollama 0.13.5 that does not (herd
/// translates), streamed and not, `count_tokens`, and an id nothing resolves (404).
fn python_anthropic_client(r: Router) {
    let map = r#"{"claude-sonnet-4-5": "llama3.1:8b", "claude-3-5-haiku-latest": "mistral:7b"}"#;
    let mut f = Fleet::start(r, &["--anthropic-model-map", map, "--anthropic-auto-route", "false"]);
    f.fake(FakeSpec::new("recent", &["llama3.1:8b"]));
    f.fake(FakeSpec::new("old", &["mistral:7b"]).ollama_version("0.13.5"));
    f.wait_nodes(&["recent", "old"]);
    python::run_script("anthropic_client.py", f.dir(), &[f.url()]);
    let traces =
        f.traces_until("the SDK's requests", |t| t.iter().filter(|x| x["outcome"] == "completed").count() >= 4);
    for (asked, served) in [("claude-sonnet-4-5", "llama3.1:8b"), ("claude-3-5-haiku-latest", "mistral:7b")] {
        assert!(
            traces.iter().any(|t| t["requested_model"] == asked && t["served_model"] == served),
            "{asked} served by {served}: {traces:#?}"
        );
    }
}

/// `responses_client.py`: the real `openai` SDK's Responses API (Codex's): plain, streamed
/// through the SDK's strict accumulator and raw, a function-call round trip, instructions, a
/// stateful request (400), an unknown model (404) and a node dying mid-answer (`response.failed`).
/// The router's traces then show the Responses surface, completed and failed after commit.
fn python_openai_responses_client(r: Router) {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("alpha", &["llama3.1:8b", "qwen3:8b"]).preload(&["llama3.1:8b"]));
    f.wait_nodes(&["alpha"]);
    python::run_script("responses_client.py", f.dir(), &[f.url(), f.fake_url("alpha")]);
    f.traces_until("the SDK's requests, one failed after commit", |t| {
        let responses =
            |outcome: &str| t.iter().filter(|x| x["surface"] == "openai_responses" && x["outcome"] == outcome).count();
        responses("completed") >= 8 && responses("failed_after_commit") == 1
    });
}

/// `clients.py`: the ollama client (chat, stream, generate, embed, list, ps, show, tools, images,
/// unknown model, a retried 500, death mid-stream) and the openai client (chat, stream with
/// usage, tools, completions, embeddings, models, fallbacks, images), then a refused connection.
/// The router's traces then show the retried request and the stream that failed after commit.
fn python_ollama_and_openai_clients(r: Router) {
    let mut f = Fleet::start(r, &[]);
    let models = ["qwen3:8b", "llama3.1:8b", "nomic-embed-text"];
    f.fake(FakeSpec::new("alpha", &models).preload(&["qwen3:8b", "nomic-embed-text"]));
    f.fake(FakeSpec::new("beta", &models).preload(&["qwen3:8b"]));
    f.wait_nodes(&["alpha", "beta"]);
    let args = vec![f.url(), format!("alpha={}", f.fake_url("alpha")), format!("beta={}", f.fake_url("beta"))];
    python::run_clients(f.dir(), &args);
    f.traces_until("a retried request (attempts 2, completed) and a failed_after_commit", |t| {
        t.iter().any(|t| t["attempts"] == 2 && t["outcome"] == "completed")
            && t.iter().any(|t| t["outcome"] == "failed_after_commit")
    });
}

/// `clients.py --keys`: a wrong or missing API key is refused (401), the right one works with
/// both clients, and an API key is not the admin key (pull: 403).
fn python_api_and_admin_keys(r: Router) {
    let mut f = Fleet::start(r, &["--api-keys", "good-key", "--admin-key", "admin-key"]);
    f.use_key("good-key");
    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]));
    f.wait_nodes(&["alpha"]);
    python::run_clients(f.dir(), &["--keys".to_string(), f.url()]);
}

// ---------------------------------------------------------------------------------------------
// Bad input.

/// Bodies that are not JSON objects: 400 in each protocol's envelope, and the router serves on.
fn malformed_json_is_400_in_each_protocol(r: Router) {
    let f = one_node(r, &[]);
    for p in PROTOCOLS {
        for body in ["{not json", "{\"model\": \"qwen3:8b\",", "", "[1, 2]"] {
            let reply = post_raw(&f, p.chat_path(), body);
            p.assert_error(&reply, 400, "invalid_request_error");
        }
        let ok = f.post(p.chat_path(), &p.chat_body("qwen3:8b"));
        assert_eq!(ok.status, 200, "{p:?}: {}", ok.text());
    }
    let native = post_raw(&f, "/api/chat", "{not json");
    assert!(Proto::Ollama.assert_error(&native, 400, "").contains("line 1"), "the parser's position is kept");
}

/// Wrong field types and a missing model are 400; an empty model is Ollama's `model '' not found`
/// (404), in each protocol's envelope.
fn wrong_types_and_missing_or_empty_model(r: Router) {
    let f = one_node(r, &[]);
    for p in PROTOCOLS {
        let path = p.chat_path();
        let mut body = p.chat_body("qwen3:8b");
        body["model"] = json!(5);
        p.assert_error(&f.post(path, &body), 400, "invalid_request_error");
        let mut body = p.chat_body("qwen3:8b");
        body["messages"] = json!("hi");
        p.assert_error(&f.post(path, &body), 400, "invalid_request_error");
        let mut body = p.chat_body("qwen3:8b");
        body.as_object_mut().unwrap().remove("model");
        let message = p.assert_error(&f.post(path, &body), 400, "invalid_request_error");
        assert_eq!(message, "model is required", "{p:?}");
        let message = p.assert_error(&f.post(path, &p.chat_body("")), 404, "not_found_error");
        assert_eq!(message, "model '' not found", "{p:?}");
    }
    let body = json!({"model": "qwen3:8b", "messages": [], "options": {"num_ctx": "big"}});
    let message = Proto::Ollama.assert_error(&f.post("/api/chat", &body), 400, "");
    assert_eq!(message, "option \"num_ctx\" must be of type integer");
}

/// A model no node has: 404 in each protocol's envelope, naming the model (on `/v1/messages`
/// with auto-route off: with it, the fleet's best model answers an id nothing names).
fn unknown_model_is_404_in_each_protocol(r: Router) {
    let f = one_node(r, &["--anthropic-auto-route", "false"]);
    for p in PROTOCOLS {
        let message = p.assert_error(&f.post(p.chat_path(), &p.chat_body("nope:1b")), 404, "not_found_error");
        assert!(message.contains("nope:1b"), "{p:?}: {message}");
    }
    let claude = Proto::Anthropic.chat_body("claude-opus-4-1");
    let message = Proto::Anthropic.assert_error(&f.post("/v1/messages", &claude), 404, "not_found_error");
    assert!(message.contains("'claude-opus-4-1'"), "{message}");
    let generate = f.post("/api/generate", &json!({"model": "nope:1b", "prompt": "x", "stream": false}));
    assert!(Proto::Ollama.assert_error(&generate, 404, "").contains("nope:1b"));
    Proto::OpenAi.assert_error(&f.get("/v1/models/nope:1b"), 404, "not_found_error");
}

/// With `--max-body-mb 1`, a 2 MiB body is 413 in the protocol's envelope; smaller ones pass.
fn oversized_body_is_413(r: Router) {
    let f = one_node(r, &["--max-body-mb", "1"]);
    let big = "a".repeat(2 << 20);
    let native = format!(r#"{{"model":"qwen3:8b","stream":false,"prompt":"{big}"}}"#);
    Proto::Ollama.assert_error(&post_raw(&f, "/api/generate", &native), 413, "");
    let openai = format!(r#"{{"model":"qwen3:8b","messages":[{{"role":"user","content":"{big}"}}]}}"#);
    Proto::OpenAi.assert_error(&post_raw(&f, "/v1/chat/completions", &openai), 413, "invalid_request_error");
    let anthropic =
        format!(r#"{{"model":"qwen3:8b","max_tokens":8,"messages":[{{"role":"user","content":"{big}"}}]}}"#);
    Proto::Anthropic.assert_error(&post_raw(&f, "/v1/messages", &anthropic), 413, "invalid_request_error");
    let ok = f.post("/api/generate", &json!({"model": "qwen3:8b", "stream": false, "prompt": "a".repeat(1000)}));
    assert_eq!(ok.status, 200, "{}", ok.text());
}

/// 200 request headers: either `431` or the connection is closed without an answer; then the
/// router still answers.
fn header_flood_is_431_or_closed(r: Router) {
    let f = one_node(r, &[]);
    let mut flood = String::from("GET /api/version HTTP/1.1\r\nhost: x\r\n");
    for i in 0..200 {
        flood.push_str(&format!("x-flood-{i}: v\r\n"));
    }
    flood.push_str("\r\n");
    let raw = http::exchange(f.addr(), flood.into_bytes(), Duration::from_secs(10)).unwrap();
    assert_ne!(raw.ending, Ending::StillOpen, "the connection was left open: {}", raw.text());
    let text = raw.text();
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(f.get("/api/version").status, 200);
}

/// With `--read-timeout-secs 1`: a client that sends half a head and stalls is dropped after
/// about a second (closed, or a 408), one whose body stalls gets a 408 in the protocol's
/// envelope, and requests meanwhile are served.
fn slow_client_is_dropped_after_the_read_timeout(r: Router) {
    let f = one_node(r, &["--read-timeout-secs", "1"]);
    let addr = f.addr();
    let half_head = std::thread::spawn(move || {
        http::exchange(addr, b"POST /api/chat HTTP/1.1\r\nhost: x\r\ncontent-".to_vec(), Duration::from_secs(8))
    });
    let stalled_body = std::thread::spawn(move || {
        let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
        let bytes = format!("{head}content-length: 100\r\n\r\n{{\"mo").into_bytes();
        http::exchange(addr, bytes, Duration::from_secs(8))
    });
    // Served while both stall.
    let ok = f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(f.get("/api/version").status, 200);

    let raw = half_head.join().unwrap().unwrap();
    assert_ne!(raw.ending, Ending::StillOpen, "a stalled head was kept {:?}", raw.elapsed);
    assert!(raw.elapsed >= Duration::from_millis(500), "dropped before the read timeout: {:?}", raw.elapsed);
    assert!(raw.bytes.is_empty() || raw.text().starts_with("HTTP/1.1 408"), "{}", raw.text());

    let raw = stalled_body.join().unwrap().unwrap();
    assert_ne!(raw.ending, Ending::StillOpen, "a stalled body was kept {:?}", raw.elapsed);
    let reply = http::parse(&raw.bytes, false).unwrap_or_else(|e| panic!("{e}: {}", raw.text()));
    Proto::OpenAi.assert_error(&reply, 408, "api_error");

    let ok = f.post("/v1/chat/completions", &Proto::OpenAi.chat_body("qwen3:8b"));
    assert_eq!(ok.status, 200, "{}", ok.text());
}

// ---------------------------------------------------------------------------------------------
// Fleet views.

/// `/api/tags` lists each model once over both nodes, with the fields the ollama client reads,
/// `herd_nodes` and ollama-herd's `details.fleet_nodes`; `/v1/models` lists the same names.
fn tags_are_deduplicated_across_nodes(r: Router) {
    let f = two_nodes(r);
    let tags = f.get("/api/tags");
    assert_eq!(tags.status, 200, "{}", tags.text());
    let models = tags.json()["models"].as_array().cloned().unwrap_or_else(|| panic!("{}", tags.text()));
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let unique: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(names.len(), unique.len(), "listed twice: {names:?}");
    assert_eq!(unique, set(&["llama3.1:8b", "nomic-embed-text:latest", "qwen3:8b"]));
    for m in &models {
        assert_eq!(m["model"], m["name"], "{m}");
        assert!(m["size"].as_u64().is_some_and(|s| s > 0), "{m}");
        assert!(m["digest"].as_str().is_some_and(|d| d.len() == 64), "{m}");
        assert!(m["modified_at"].is_string() && m["details"]["family"].is_string(), "{m}");
    }
    let qwen = models.iter().find(|m| m["name"] == "qwen3:8b").unwrap();
    assert_eq!(strings(&qwen["herd_nodes"]), set(&["alpha", "beta"]), "{qwen}");
    assert_eq!(qwen["details"]["fleet_nodes"], qwen["herd_nodes"], "{qwen}");

    let list = f.get("/v1/models").json();
    assert_eq!(list["object"], "list", "{list}");
    let ids: BTreeSet<String> =
        list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, unique);
    let one = f.get("/v1/models/qwen3:8b");
    assert_eq!((one.status, one.json()["id"].clone()), (200, json!("qwen3:8b")), "{}", one.text());
}

/// `/api/ps` lists each loaded model per node and names the node in `herd_node` and in
/// ollama-herd's `fleet_node`.
fn ps_names_the_node(r: Router) {
    let f = two_nodes(r);
    let ps = f.get("/api/ps");
    assert_eq!(ps.status, 200, "{}", ps.text());
    let models = ps.json()["models"].as_array().cloned().unwrap_or_else(|| panic!("{}", ps.text()));
    let pairs: BTreeSet<(String, String)> = models
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["herd_node"].as_str().unwrap().to_string()))
        .collect();
    let want: BTreeSet<(String, String)> =
        [("qwen3:8b", "alpha"), ("llama3.1:8b", "alpha"), ("qwen3:8b", "beta"), ("nomic-embed-text:latest", "beta")]
            .iter()
            .map(|(m, n)| (m.to_string(), n.to_string()))
            .collect();
    assert_eq!(pairs, want);
    assert_eq!(models.len(), 4);
    for m in &models {
        assert_eq!(m["model"], m["name"], "{m}");
        assert!(m["size"].as_u64().is_some() && m["expires_at"].is_string() && m["details"].is_object(), "{m}");
        assert_eq!(m["fleet_node"], m["herd_node"], "{m}");
    }
}

/// `/fleet/status` has `nodes` with `node_id`, `status`, `models_loaded` and `models_available`.
fn fleet_status_lists_the_nodes(r: Router) {
    let f = two_nodes(r);
    let chat = json!({"model": "llama3.1:8b", "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(f.post("/api/chat", &chat).status, 200);
    let v = f.get("/fleet/status").json();
    // ollama-herd's fleet summary, queues and timestamp, for its dashboards and scripts.
    let fleet = &v["fleet"];
    assert_eq!((fleet["nodes_total"].as_u64(), fleet["nodes_online"].as_u64()), (Some(2), Some(2)), "{v}");
    assert_eq!((fleet["models_loaded"].as_u64(), fleet["requests_active"].as_u64()), (Some(4), Some(0)), "{v}");
    let queue = &v["queues"]["alpha:llama3.1:8b"];
    assert_eq!((queue["completed"].as_u64(), queue["node_id"].as_str()), (Some(1), Some("alpha")), "{v}");
    assert!(v["timestamp"].as_f64().is_some_and(|t| t > 1.7e9), "{v}");
    let nodes = v["nodes"].as_array().unwrap_or_else(|| panic!("no nodes: {v}"));
    assert_eq!(nodes.len(), 2, "{v}");
    let node = |name: &str| nodes.iter().find(|n| n["node_id"] == name).unwrap_or_else(|| panic!("no {name}: {v}"));
    for (name, models) in [("alpha", ["qwen3:8b", "llama3.1:8b"]), ("beta", ["qwen3:8b", "nomic-embed-text:latest"])] {
        let n = node(name);
        assert_eq!(n["status"], "online", "{n}");
        assert_eq!(strings(&n["models_available"]), set(&models), "{n}");
        assert_eq!(strings(&n["models_loaded"]), set(&models), "{n}");
    }
}

/// `/fleet/explain?model=` ranks the nodes that have the model, names the best, and says why the
/// others were left out; without `model` it is a 400.
fn fleet_explain_ranks_and_eliminates(r: Router) {
    let f = two_nodes(r);
    let v = f.get("/fleet/explain?model=llama3.1:8b").json();
    assert_eq!(v["model"], "llama3.1:8b", "{v}");
    assert_eq!(v["best"], "alpha", "{v}");
    assert_eq!(v["ranked"][0]["node_id"], "alpha", "{v}");
    assert!(v["ranked"][0]["score"].is_number(), "{v}");
    assert_eq!(v["eliminated"], json!([v["eliminated"][0].clone()]), "one left out: {v}");
    assert_eq!(v["eliminated"][0]["node_id"], "beta", "{v}");
    assert_eq!(v["eliminated"][0]["reason"], "model_absent", "{v}");

    let v = f.get("/fleet/explain?model=qwen3%3A8b").json();
    let ranked: BTreeSet<String> =
        v["ranked"].as_array().unwrap().iter().map(|c| c["node_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ranked, set(&["alpha", "beta"]), "{v}");
    assert_eq!(v["best"], v["ranked"][0]["node_id"], "{v}");

    Proto::Ollama.assert_error(&f.get("/fleet/explain"), 400, "");
}

// ---------------------------------------------------------------------------------------------
// Routing.

/// Routed answers say where they went: `X-Herd-Node`, `X-Herd-Model`, `X-Herd-Attempts`,
/// `X-Herd-Score`, on every protocol, streamed or not, and for a client fallback.
fn routed_answers_say_where_they_went(r: Router) {
    let f = two_nodes(r);
    let messages = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        ("/api/chat", json!({"model": "llama3.1:8b", "stream": false, "messages": messages})),
        ("/api/chat", json!({"model": "llama3.1:8b", "messages": messages})),
        ("/api/generate", json!({"model": "llama3.1:8b", "stream": false, "prompt": "why"})),
        ("/v1/chat/completions", json!({"model": "llama3.1:8b", "messages": messages})),
        ("/v1/chat/completions", json!({"model": "llama3.1:8b", "stream": true, "messages": messages})),
        ("/v1/messages", json!({"model": "llama3.1:8b", "max_tokens": 16, "messages": messages})),
        (
            "/api/chat",
            json!({"model": "llama3.3:70b", "fallback_models": ["llama3.1:8b"], "stream": false, "messages": messages}),
        ),
    ];
    let mut replies = Vec::new();
    for (path, body) in cases {
        let reply = f.post(path, &body);
        assert_eq!(reply.status, 200, "{path} {body}: {}", reply.text());
        assert_eq!(reply.header("x-herd-node"), "alpha", "{path} {body}");
        assert_eq!(reply.header("x-herd-model"), "llama3.1:8b", "{path} {body}");
        assert_eq!(reply.header("x-herd-attempts"), "1", "{path} {body}");
        let score = reply.header("x-herd-score");
        assert!(score.parse::<f64>().is_ok_and(f64::is_finite), "{path} {body}: score {score:?}");
        // ollama-herd's names for the same facts, for its operators' scripts.
        let asked = if body.get("fallback_models").is_some() { "llama3.3:70b" } else { "llama3.1:8b" };
        assert_eq!(reply.header("x-fleet-node"), "alpha", "{path} {body}");
        assert_eq!(reply.header("x-fleet-served-model"), "llama3.1:8b", "{path} {body}");
        assert_eq!(reply.header("x-fleet-requested-model"), asked, "{path} {body}");
        let fell_back = if asked == "llama3.1:8b" { "false" } else { "true" };
        assert_eq!(reply.header("x-fleet-fallback"), fell_back, "{path} {body}");
        assert_eq!((reply.header("x-fleet-backend"), reply.header("x-fleet-retries")), ("ollama", "0"), "{path}");
        assert!(reply.header("x-fleet-score").parse::<i64>().is_ok(), "{path} {body}");
        replies.push(reply);
    }
    // The session pin (client and model) counts from the second request for the same model.
    let affinity: Vec<&str> = replies.iter().map(|r| r.header("x-fleet-affinity")).collect();
    assert_eq!(affinity, ["new", "matched", "matched", "matched", "matched", "matched", "new"]);
    assert!(replies.iter().all(|r| r.header("x-fleet-context-overflow").is_empty()));
}

/// A `num_ctx` larger than the window the model is loaded with goes to a larger loaded model
/// whose window holds it, instead of reloading the model (ollama-herd's context upgrade); a
/// client that refuses another model gets its model held at its window, and a request that then
/// does not fit is flagged with `X-Fleet-Context-Overflow`.
fn context_upgrade_and_overflow(r: Router) {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]).preload(&["qwen3:8b"]));
    f.fake(FakeSpec::new("beta", &["qwen3:32b"]).preload(&["qwen3:32b"]).context_length(32768));
    f.wait_nodes(&["alpha", "beta"]);
    let ask = |ctx: u32, fallback: bool, words: usize| {
        let prompt = "word ".repeat(words);
        json!({"model": "qwen3:8b", "stream": false, "think": false, "fallback": fallback,
               "options": {"num_ctx": ctx, "num_predict": 8}, "messages": [{"role": "user", "content": prompt}]})
    };
    let up = f.post("/api/chat", &ask(16384, true, 10));
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!((up.header("x-herd-node"), up.header("x-herd-model")), ("beta", "qwen3:32b"));
    assert_eq!(up.header("x-herd-route"), "context_upgrade");
    assert_eq!((up.header("x-fleet-requested-model"), up.header("x-fleet-fallback")), ("qwen3:8b", "true"));
    assert!(up.header("x-fleet-context-overflow").is_empty());
    let fits = f.post("/api/chat", &ask(2048, true, 10));
    assert_eq!((fits.header("x-herd-node"), fits.header("x-herd-route")), ("alpha", "primary"));
    // No other model: held at alpha's 4096 window, where ~6000 words do not fit.
    let held = f.post("/api/chat", &ask(16384, false, 6000));
    assert_eq!(held.status, 200, "{}", held.text());
    assert_eq!((held.header("x-herd-node"), held.header("x-herd-model")), ("alpha", "qwen3:8b"));
    let overflow = held.header("x-fleet-context-overflow");
    assert!(overflow.starts_with("estimated_tokens=") && overflow.ends_with("; context_length=4096"), "{overflow:?}");
    let need: u32 = overflow["estimated_tokens=".len()..].split(';').next().unwrap().parse().unwrap();
    assert!(need > 4096, "{overflow}");
}

/// A `--node` static node (a plain Ollama, no heartbeats) is polled by the router, named by its
/// host and port, and serves a chat.
fn static_node_serves_a_chat(r: Router) {
    let mut f = Fleet::new(r);
    let url = f.fake(FakeSpec::new("solo", &["qwen3:8b"]).without_heartbeats());
    f.launch(&["--node", &url, "--node-parallel", "2"]);
    let name = url.trim_start_matches("http://").to_string();
    f.wait_nodes(&[&name]);
    let reply = f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-herd-node"), name);
    assert_eq!(reply.json()["done"], true, "{}", reply.text());
}

/// herd asks a node to keep the model loaded (`keep_alive: -1`, as ollama-herd does) on every
/// call to its native API (chat, generate, embeddings, and OpenAI requests translated to native)
/// unless the client chose its own; calls passed to the node's OpenAI or Anthropic endpoints,
/// which have no keep_alive, go as the client sent them. `--keep-alive off` sends none.
fn keep_alive_goes_to_the_native_api(r: Router) {
    let stats = |f: &Fleet| {
        let node = f.fake_url("alpha").trim_start_matches("http://").parse().expect("a node address");
        http::call(node, "GET", "/_fake/stats", &[], b"").expect("the node's stats").json()
    };
    let sent = |f: &Fleet, path: &str, body: Value| {
        let reply = f.post(path, &body);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        stats(f)["last_body"].get("keep_alive").cloned()
    };
    let f = one_node(r, &[]);
    let chat = Proto::Ollama.chat_body("qwen3:8b");
    assert_eq!(sent(&f, "/api/chat", chat.clone()), Some(json!(-1)));
    let mut own = chat.clone();
    own["keep_alive"] = json!("7m");
    assert_eq!(sent(&f, "/api/chat", own), Some(json!("7m")), "the client's own keep_alive wins");
    assert_eq!(sent(&f, "/api/generate", json!({"model": "qwen3:8b", "prompt": "hi"})), Some(json!(-1)));
    assert_eq!(sent(&f, "/api/embed", json!({"model": "qwen3:8b", "input": "hi"})), Some(json!(-1)));
    assert_eq!(sent(&f, "/v1/chat/completions", Proto::OpenAi.chat_body("qwen3:8b")), Some(json!(-1)), "translated");
    // An OpenAI stream goes to the node's /v1 as sent unless herd must patch it (a pinned num_ctx
    // is only taken natively): keep_alive exactly when it went to /api/chat.
    let mut stream = Proto::OpenAi.chat_body("qwen3:8b");
    stream["stream"] = json!(true);
    let native_before = stats(&f)["requests"]["/api/chat"].as_u64();
    let keep_alive = sent(&f, "/v1/chat/completions", stream);
    let translated = stats(&f)["requests"]["/api/chat"].as_u64() != native_before;
    assert_eq!(keep_alive, translated.then(|| json!(-1)), "translated: {translated}");
    // An Anthropic request likewise: translated to /api/chat when herd pins the window of a
    // loaded model, passed to the node's /v1/messages otherwise.
    let native_before = stats(&f)["requests"]["/api/chat"].as_u64();
    let keep_alive = sent(&f, "/v1/messages", Proto::Anthropic.chat_body("qwen3:8b"));
    let translated = stats(&f)["requests"]["/api/chat"].as_u64() != native_before;
    assert_eq!(keep_alive, translated.then(|| json!(-1)), "translated: {translated}");
    assert_eq!(sent(&f, "/v1/embeddings", json!({"model": "qwen3:8b", "input": "hi"})), None);
    drop(f);
    let off = one_node(r, &["--keep-alive", "off"]);
    assert_eq!(sent(&off, "/api/chat", chat), None);
}

/// With `--fleet-key`, a heartbeat without the key or with a wrong one is 401 (Ollama envelope),
/// one with the key is taken, and a node presenting it serves.
fn heartbeat_needs_the_fleet_key(r: Router) {
    let mut f = Fleet::start(r, &["--fleet-key", "hush"]);
    let mut hb = json!({"node_id": "probe", "cpu": {}, "memory": {}, "ollama": {}});
    Proto::Ollama.assert_error(&f.post("/heartbeat", &hb), 401, "");
    hb["fleet_key"] = json!("wrong");
    Proto::Ollama.assert_error(&f.post("/heartbeat", &hb), 401, "");
    hb["fleet_key"] = json!("hush");
    let ok = f.post("/heartbeat", &hb);
    assert_eq!((ok.status, ok.json()["status"].clone()), (200, json!("ok")), "{}", ok.text());

    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]).fleet_key("hush"));
    f.wait_nodes(&["alpha", "probe"]);
    let reply = f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b"));
    assert_eq!((reply.status, reply.header("x-herd-node")), (200, "alpha"), "{}", reply.text());
}

/// `GET /` and `HEAD /` (liveness, as Ollama answers it), `GET /api/version`, a wrong method
/// (405) and an unknown path (404).
fn liveness_version_and_methods(r: Router) {
    let f = one_node(r, &[]);
    let root = f.get("/");
    assert_eq!((root.status, root.text().as_str()), (200, "Ollama is running"));
    let head = f.send("HEAD", "/", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let v = f.get("/api/version");
    assert_eq!(v.status, 200, "{}", v.text());
    assert!(v.json()["version"].as_str().is_some_and(|s| !s.is_empty()), "{}", v.text());
    assert_eq!(f.get("/api/chat").status, 405);
    assert_eq!(f.get("/nowhere").status, 404);
}

/// Native streams are NDJSON: several lines, every one `done: false` but the last, which is
/// `done: true` with counts; `/api/generate` streams when `stream` is left out.
fn ndjson_stream_framing(r: Router) {
    let f = one_node(r, &[]);
    let chat = json!({"model": "qwen3:8b", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let generate = json!({"model": "qwen3:8b", "prompt": "why is the sky blue"});
    for (path, body, field) in [("/api/chat", chat, "message"), ("/api/generate", generate, "response")] {
        let reply = f.post(path, &body);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), "application/x-ndjson", "{path}");
        let lines = ndjson(&reply);
        assert!(lines.len() > 2, "{path}: {lines:?}");
        let (last, rest) = lines.split_last().unwrap();
        assert!(rest.iter().all(|l| l["done"] == false && l.get(field).is_some()), "{path}: {lines:?}");
        assert_eq!(last["done"], true, "{path}: {last}");
        assert!(last["eval_count"].as_u64().is_some_and(|n| n > 0), "{path}: {last}");
        assert!(lines.iter().all(|l| l["model"] == "qwen3:8b"), "{path}: {lines:?}");
    }
}

/// OpenAI streams are SSE: `data: {chunk}` events with one id, the role first, and
/// `data: [DONE]` last; chat and legacy completions alike.
fn openai_sse_ends_with_done(r: Router) {
    let f = one_node(r, &[]);
    let chat = json!({"model": "qwen3:8b", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let completion = json!({"model": "qwen3:8b", "stream": true, "prompt": "once upon a time", "max_tokens": 16});
    for (path, body, object) in
        [("/v1/chat/completions", chat, "chat.completion.chunk"), ("/v1/completions", completion, "text_completion")]
    {
        let reply = f.post(path, &body);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert!(reply.header("content-type").starts_with("text/event-stream"), "{path}: {:?}", reply.headers);
        let text = reply.text();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
        let (last, rest) = events.split_last().unwrap_or_else(|| panic!("{path}: no events"));
        assert_eq!(*last, "data: [DONE]", "{path}: {text}");
        assert!(rest.len() >= 2, "{path}: {text}");
        let chunks: Vec<Value> = rest
            .iter()
            .map(|e| {
                let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("{path}: not a data event: {e:?}"));
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{path}: {err}: {data}"))
            })
            .collect();
        assert!(chunks.iter().all(|c| c["object"] == object && c["id"] == chunks[0]["id"]), "{path}: {chunks:?}");
        if object == "chat.completion.chunk" {
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{path}: {chunks:?}");
        }
    }
}

/// An Anthropic `/v1/messages` call, not streamed: a `message` with text content, a stop reason
/// and usage.
fn anthropic_messages_non_stream(r: Router) {
    let f = one_node(r, &[]);
    let reply = f.post("/v1/messages", &Proto::Anthropic.chat_body("qwen3:8b"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("content-type").starts_with("application/json"));
    let v = reply.json();
    assert_eq!(
        (v["type"].as_str(), v["role"].as_str(), v["model"].as_str()),
        (Some("message"), Some("assistant"), Some("qwen3:8b")),
        "{v}"
    );
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{v}");
    assert_eq!(v["content"][0]["type"], "text", "{v}");
    assert!(v["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    // Translated to the node's native chat (core pins the resident window), whose fake model
    // writes until the budget runs out: the thinking model's, inflated from 32 (§6.3).
    assert_eq!(
        (v["stop_reason"].as_str(), v["usage"]["output_tokens"].as_u64()),
        (Some("max_tokens"), Some(1024)),
        "{v}"
    );
    assert!(v["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(v["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
}

/// The small fleet on one machine: two `herd-node` agents, each in front of its own simulated
/// Ollama with a model the other lacks, register with the router; each model is served by its
/// own node, and an agent stopped with SIGTERM is drained from the router.
fn small_fleet_of_agents(r: Router) {
    let mut f = Fleet::start(r, &[]);
    let a = f.fake(FakeSpec::new("ollama-a", &["qwen3:8b"]).without_heartbeats());
    let b = f.fake(FakeSpec::new("ollama-b", &["llama3.1:8b"]).without_heartbeats());
    let agent_a = f.agent("box-a", &a);
    f.agent("box-b", &b);
    f.wait_nodes(&["box-a", "box-b"]);
    for (model, node) in [("qwen3:8b", "box-a"), ("llama3.1:8b", "box-b")] {
        let reply = f.post("/api/chat", &Proto::Ollama.chat_body(model));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-herd-node"), node);
        assert_eq!(reply.json()["done"], true, "{}", reply.text());
        let openai = f.post("/v1/chat/completions", &Proto::OpenAi.chat_body(model));
        assert_eq!(openai.status, 200, "{}", openai.text());
        assert_eq!(openai.header("x-herd-node"), node);
    }
    let tags = f.get("/api/tags").json();
    let names =
        strings(&json!(tags["models"].as_array().unwrap().iter().map(|m| m["name"].clone()).collect::<Vec<_>>()));
    assert_eq!(names, set(&["qwen3:8b", "llama3.1:8b"]), "{tags}");
    assert!(f.stop_agent(agent_a).success(), "the agent exits cleanly on SIGTERM");
    let status = f.get("/fleet/status").json();
    let box_a = status["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == "box-a").cloned();
    let state = box_a.as_ref().and_then(|n| n["status"].as_str()).unwrap_or_default().to_string();
    assert!(state == "draining" || state == "offline", "box-a after its drain: {status}");
    // The drained node is no longer a candidate (a request for its model would be held for a
    // node to come back, then refused).
    let explain = f.get("/fleet/explain?model=qwen3:8b").json();
    assert!(explain["best"].is_null(), "no node is picked for the drained node's model: {explain}");
    let still = f.post("/api/chat", &Proto::Ollama.chat_body("llama3.1:8b"));
    assert_eq!(still.status, 200, "{}", still.text());
}

/// One answer read off a kept-alive connection: status, lowercase headers, body (by
/// `Content-Length` or chunked; none for `HEAD`).
fn read_answer(r: &mut BufReader<TcpStream>, head_only: bool) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("a status line");
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("a header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or_else(|| panic!("{h:?}"));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head_only || status == 100 {
        return (status, headers, body);
    }
    if let Some(n) = get("content-length") {
        body.resize(n.parse().expect("a length"), 0);
        r.read_exact(&mut body).expect("the body");
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("a chunk size");
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).expect("hex size");
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("a chunk");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    (status, headers, body)
}

fn connect(f: &Fleet) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(f.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Several requests on one connection, the first three in one write (pipelined): the answers
/// come back whole and in order, and the connection stays usable (`HEAD` included).
fn keep_alive_and_pipelining(r: Router) {
    let f = one_node(r, &[]);
    let (mut s, mut rd) = connect(&f);
    let chat = Proto::Ollama.chat_body("qwen3:8b").to_string();
    let pipelined = format!(
        "GET /api/version HTTP/1.1\r\nhost: h\r\n\r\n\
         POST /api/chat HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{chat}\
         GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        chat.len()
    );
    s.write_all(pipelined.as_bytes()).unwrap();
    let (status, _, body) = read_answer(&mut rd, false);
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["version"].is_string());
    let (status, headers, body) = read_answer(&mut rd, false);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers.iter().any(|(k, v)| k == "x-herd-node" && v == "alpha"), "{headers:?}");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["done"], true);
    let (status, _, body) = read_answer(&mut rd, false);
    assert_eq!((status, body.as_slice()), (200, &b"Ollama is running"[..]));
    // A streamed answer (chunked), then HEAD, then one more, on the same connection.
    let stream = json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let req = format!("POST /api/chat HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n{stream}", stream.len());
    s.write_all(req.as_bytes()).unwrap();
    let (status, _, body) = read_answer(&mut rd, false);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true, "{text}");
    s.write_all(b"HEAD / HTTP/1.1\r\nhost: h\r\n\r\nGET /api/version HTTP/1.1\r\nhost: h\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut rd, true).0, 200);
    let (status, _, body) = read_answer(&mut rd, false);
    assert_eq!(status, 200, "HEAD's answer had no body, so the next answer starts right after it");
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["version"].is_string());
}

/// `Expect: 100-continue` (curl sends it for large bodies): `100 Continue`, then the answer; a
/// body over the limit is refused with 413 before the client sends it.
fn expect_continue(r: Router) {
    let f = one_node(r, &["--max-body-mb", "1"]);
    let (mut s, mut rd) = connect(&f);
    let chat = Proto::Ollama.chat_body("qwen3:8b").to_string();
    let head = format!(
        "POST /api/chat HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\nexpect: 100-continue\r\n\
         content-length: {}\r\n\r\n",
        chat.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut rd, false).0, 100, "100 Continue before the body");
    s.write_all(chat.as_bytes()).unwrap();
    let (status, _, body) = read_answer(&mut rd, false);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (mut s, mut rd) = connect(&f);
    let big = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    s.write_all(big.as_bytes()).unwrap();
    let (status, _, body) = read_answer(&mut rd, false);
    assert_eq!(status, 413, "refused at once, no 100 Continue: {}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

/// A client that gives up while its request waits in the router's queue: the request ends once
/// (one `client_gone` trace), its place is freed, and the requests around it are served.
fn client_that_leaves_while_queued_ends_once(r: Router) {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]).preload(&["qwen3:8b"]).parallel(1).token_ms(25));
    f.wait_nodes(&["alpha"]);
    let fleet = |f: &Fleet| f.get("/fleet/status").json()["fleet"].clone();
    let wait = |f: &Fleet, what: &str, ok: &dyn Fn(&Value) -> bool| {
        let start = Instant::now();
        loop {
            let v = fleet(f);
            if ok(&v) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{what}: {v}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let addr = f.addr();
    let chat = Proto::Ollama.chat_body("qwen3:8b");
    let busy = std::thread::spawn(move || {
        let body = chat.to_string();
        http::call(addr, "POST", "/api/chat", &[("content-type", "application/json")], body.as_bytes())
    });
    wait(&f, "the first request holds the only slot", &|v| v["attempts_in_flight"] == 1);
    let (mut s, _rd) = connect(&f);
    let body = Proto::Ollama.chat_body("qwen3:8b").to_string();
    s.write_all(
        format!("POST /api/chat HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
    )
    .unwrap();
    wait(&f, "the second request waits in the queue", &|v| v["requests_queued"] == 1);
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    wait(&f, "the leaver's request ends while the first still runs", &|v| {
        v["requests_queued"] == 0 && v["requests_live"] == 1
    });
    let first = busy.join().unwrap().expect("the first request's answer");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b")).status, 200);
    let traces = f.traces_until("three traces", |t| t.len() >= 3);
    let gone = traces.iter().filter(|t| t["outcome"] == "client_gone").count();
    assert_eq!((traces.len(), gone), (3, 1), "{traces:?}");
}

/// A client that sends its head a byte every 200 ms (slowloris) is cut off once the whole head
/// has taken longer than the read timeout, however steadily the bytes come.
fn dripping_client_is_cut_off(r: Router) {
    let f = one_node(r, &["--read-timeout-secs", "1"]);
    let mut s = TcpStream::connect(f.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let head =
        b"GET /api/version HTTP/1.1\r\nhost: x\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut closed = false;
    for &byte in head.iter() {
        if s.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let took = start.elapsed();
    assert!(
        closed,
        "the whole head was accepted at a byte every 200 ms ({took:?}): {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took < Duration::from_secs(4), "cut off only after {took:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(f.get("/api/version").status, 200, "and others are still served");
}
