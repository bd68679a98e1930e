//! The router end to end over real sockets: simulated Ollama nodes (the fake server, with their
//! agents' heartbeats) behind `herd`, driven with plain HTTP as a client would.

mod common;

use common::{fast, spec, Fleet};
use herd_fake_ollama::{FakeFault, Timing};
use serde_json::{json, Value};
use std::time::Duration;

fn chat(model: &str, stream: bool) -> serde_json::Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_chat_stream_and_not_with_headers_and_traces() {
    let mut f = Fleet::router(&[], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;

    let r = f.post("/api/chat", chat("qwen3:8b", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), "alpha");
    assert_eq!(r.header("x-herd-model"), "qwen3:8b");
    assert_eq!(r.header("x-herd-attempts"), "1");
    assert!(r.header("x-herd-score").parse::<f64>().is_ok());
    let v = r.json();
    assert_eq!(v["done"], true);
    assert_eq!(v["model"], "qwen3:8b");
    assert!(!v["message"]["content"].as_str().unwrap().is_empty());
    assert!(v["eval_count"].as_u64().unwrap() > 0);

    let r = f.post("/api/chat", chat("qwen3:8b", true)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/x-ndjson");
    let lines = r.lines();
    assert!(lines.len() > 2);
    assert_eq!(lines.last().unwrap()["done"], true);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));

    let r = f.post("/api/generate", json!({"model": "qwen3:8b", "prompt": "why", "stream": false})).await;
    assert_eq!(r.status, 200);
    assert!(!r.json()["response"].as_str().unwrap().is_empty());

    let traces = f.traces().await;
    assert_eq!(traces.len(), 3);
    assert!(traces.iter().all(|t| t.outcome == "completed" && t.node.as_deref() == Some("alpha")));
    assert!(traces.iter().all(|t| t.completion_tokens > 0), "{traces:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_stream_translated_and_tool_calls_kept() {
    let mut f = Fleet::router(&[], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;

    let body = json!({"model": "qwen3:8b", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let r = f.post("/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let text = r.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = &chunks[0]["id"];
    assert!(chunks.iter().all(|c| &c["id"] == id), "one id for the whole stream");
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "w",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let body =
        json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": tools});
    let r = f.post("/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["function"]["arguments"].as_str().unwrap().contains("city"));

    // Native non-stream keeps tool_calls too (ollama-herd dropped them).
    let body = json!({"model": "qwen3:8b", "stream": false, "messages": [{"role": "user", "content": "weather?"}], "tools": tools});
    let r = f.post("/api/chat", body).await;
    assert_eq!(r.json()["message"]["tool_calls"][0]["function"]["name"], "get_weather");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_in_each_protocol() {
    // Without auto-route an Anthropic model id nothing names is unknown too (with it, the
    // fleet's best model would answer it).
    let mut f = Fleet::router(&["--anthropic-auto-route", "false"], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let r = f.post("/api/chat", chat("nope:1b", false)).await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("nope:1b"));
    let r = f.post("/v1/chat/completions", chat("nope:1b", false)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    let r = f
        .post(
            "/v1/messages",
            json!({"model": "nope:1b", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    let traces = f.traces().await;
    assert_eq!(traces.len(), 3);
    assert!(traces.iter().all(|t| t.outcome == "rejected" && t.status == 404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fallback_models_serve_when_the_first_is_missing() {
    let mut f = Fleet::router(&[], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let body = json!({"model": "llama3.3:70b", "fallback_models": ["qwen3:8b"], "stream": false,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = f.post("/api/chat", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-model"), "qwen3:8b");
    assert_eq!(r.json()["model"], "qwen3:8b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_another_node_after_a_500_and_a_refused_connection() {
    let mut f = Fleet::router(&[], None).await;
    let a = f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let b = f.node(spec("beta", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    // Arm the fault on the node core picks first, as the explain view says.
    let best = f.get("/fleet/explain?model=qwen3:8b").await.json()["best"].as_str().unwrap().to_string();
    let (bad, good) = if best == "alpha" { (&a, "beta") } else { (&b, "alpha") };
    bad.inject(FakeFault::Status { code: 500, count: 1 });
    let r = f.post("/api/chat", chat("qwen3:8b", true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-attempts"), "2");
    assert_eq!(r.header("x-herd-node"), good);
    assert_eq!(r.lines().last().unwrap()["done"], true);

    bad.inject(FakeFault::RefuseConnections);
    let r = f.post("/api/chat", chat("qwen3:8b", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), good);
    bad.clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_before_first_byte_is_reaped_and_retried() {
    let config =
        json!({"retry": {"first_byte_timeout": 0.5, "prefill_tokens_per_sec": 1000000.0, "load_gb_per_sec": 1000.0}});
    let mut f = Fleet::router(&[], Some(config)).await;
    let a = f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let b = f.node(spec("beta", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    // The node core picks first hangs: the reaper cancels it and the other node answers.
    let best = f.get("/fleet/explain?model=qwen3:8b").await.json()["best"].as_str().unwrap().to_string();
    let (bad, good) = if best == "alpha" { (&a, "beta") } else { (&b, "alpha") };
    bad.inject(FakeFault::HangBeforeFirstByte { count: 1 });
    let r = f.post("/api/chat", chat("qwen3:8b", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-attempts"), "2");
    assert_eq!(r.header("x-herd-node"), good);
    // Both hang: every node was tried, and the client gets a 502, not a wait forever.
    a.inject(FakeFault::HangBeforeFirstByte { count: 1 });
    b.inject(FakeFault::HangBeforeFirstByte { count: 1 });
    let r = f.post("/api/chat", chat("qwen3:8b", false)).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_mid_stream_ends_with_an_error_line_never_a_fake_success() {
    let mut f = Fleet::router(&[], None).await;
    let a = f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    a.inject(FakeFault::DieMidStream { after_chunks: 3, count: 1 });
    let r = f.post("/api/chat", chat("qwen3:8b", true)).await;
    assert_eq!(r.status, 200);
    let lines = r.lines();
    let last = lines.last().unwrap();
    assert!(last.get("error").is_some(), "last line: {last}");
    assert!(lines.iter().all(|l| l["done"] != true));
    let body = json!({"model": "qwen3:8b", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    a.inject(FakeFault::DieMidStream { after_chunks: 3, count: 1 });
    let r = f.post("/v1/chat/completions", body).await;
    assert!(!r.text().contains("[DONE]"), "{}", r.text());
    assert!(r.text().contains("\"error\""));
    let traces = f.traces().await;
    assert_eq!(traces.iter().filter(|t| t.outcome == "failed_after_commit").count(), 2, "{traces:?}");
    // And it keeps serving.
    assert_eq!(f.post("/api/chat", chat("qwen3:8b", false)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_admin_keys() {
    let mut f = Fleet::router(&["--api-keys", "k1,k2", "--admin-key", "boss"], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let body = chat("qwen3:8b", false).to_string();
    let r = f.send("POST", "/api/chat", &body, &[]).await;
    assert_eq!(r.status, 401);
    let r = f.send("POST", "/v1/chat/completions", &body, &[("authorization", "Bearer wrong")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = f.send("POST", "/api/chat", &body, &[("authorization", "Bearer k2")]).await;
    assert_eq!(r.status, 200);
    let r = f.send("POST", "/api/pull", r#"{"model":"x"}"#, &[("authorization", "Bearer k1")]).await;
    assert_eq!(r.status, 403);
    let r = f.send("POST", "/fleet/drain/alpha", "", &[("authorization", "Bearer k1")]).await;
    assert_eq!(r.status, 403);
    let r = f.send("POST", "/fleet/drain/alpha", "", &[("authorization", "Bearer boss")]).await;
    assert_eq!(r.status, 200);
    // Liveness stays open.
    assert_eq!(f.get("/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_herd_keeps_serving() {
    let mut f = Fleet::router(&["--max-body-mb", "1", "--read-timeout-secs", "1"], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let r = f.send("POST", "/api/chat", "{not json", &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("line 1"));
    let r = f.send("POST", "/api/chat", r#"{"model": 5, "messages": []}"#, &[]).await;
    assert_eq!(r.status, 400);
    let r = f.send("POST", "/api/chat", r#"{"model": "", "messages": []}"#, &[]).await;
    assert_eq!(r.status, 404);
    let r = f.send("POST", "/api/chat", r#"{"messages": []}"#, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "model is required");
    let r = f.send("POST", "/v1/chat/completions", "", &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].is_string());
    let huge = format!(r#"{{"model":"qwen3:8b","prompt":"{}"}}"#, "a".repeat(2 << 20));
    let r = f.send("POST", "/api/generate", &huge, &[]).await;
    assert_eq!(r.status, 413);
    let r = f.send("GET", "/api/chat", "", &[]).await;
    assert_eq!(r.status, 405);
    let r = f.send("GET", "/nowhere", "", &[]).await;
    assert_eq!(r.status, 404);

    // A header flood and a slow client, over raw sockets.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = f.router.as_ref().unwrap().addr;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", addr.port())).await.unwrap();
    let mut flood = String::from("GET /api/version HTTP/1.1\r\nhost: x\r\n");
    for i in 0..500 {
        flood.push_str(&format!("x-h{i}: v\r\n"));
    }
    flood.push_str("\r\n");
    let _ = s.write_all(flood.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap();
    let head = String::from_utf8_lossy(&buf);
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 431"), "{head}");

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", addr.port())).await.unwrap();
    s.write_all(b"POST /api/chat HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"mo").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf));

    assert_eq!(f.post("/api/chat", chat("qwen3:8b", false)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_leaves_while_queued_ends_once_and_frees_its_place() {
    let mut f = Fleet::router(&[], None).await;
    let slow = Timing::Fixed { first_token: Duration::from_millis(300), token_interval: Duration::from_millis(5) };
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 1), slow).await;
    // One request holds the only slot; a second waits in herd's queue and its client leaves.
    let f2 = std::sync::Arc::new(f);
    let busy = {
        let f = f2.clone();
        tokio::spawn(async move { f.post("/api/chat", chat("qwen3:8b", false)).await.status })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let leaver = {
        let f = f2.clone();
        tokio::spawn(async move { f.post("/api/chat", chat("qwen3:8b", false)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leaver.abort();
    assert_eq!(busy.await.unwrap(), 200);
    assert_eq!(f2.post("/api/chat", chat("qwen3:8b", false)).await.status, 200);
    let traces = f2.traces().await;
    assert_eq!(traces.len(), 3, "{traces:?}");
    assert_eq!(traces.iter().filter(|t| t.outcome == "client_gone").count(), 1, "{traces:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_views_and_model_lists() {
    let mut f = Fleet::router(&[], None).await;
    f.node(spec("alpha", &["qwen3:8b", "llama3.1:8b"], &["qwen3:8b"], 4), fast()).await;
    f.node(spec("beta", &["qwen3:8b", "nomic-embed-text"], &["nomic-embed-text"], 4), fast()).await;
    let tags = f.get("/api/tags").await.json();
    let names: Vec<&str> = tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"nomic-embed-text:latest"));
    let ps = f.get("/api/ps").await.json();
    // Fixed-timing nodes keep every model on disk loaded.
    assert_eq!(ps["models"].as_array().unwrap().len(), 4);
    assert!(ps["models"][0]["herd_node"].is_string());
    let models = f.get("/v1/models").await.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"].as_array().unwrap().len(), 3);
    assert_eq!(f.get("/v1/models/qwen3:8b").await.status, 200);
    assert_eq!(f.get("/v1/models/none:1b").await.status, 404);
    let status = f.get("/fleet/status").await.json();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(status["nodes"][0]["status"], "online");
    assert!(status["nodes"][0]["models_loaded"].is_array());
    let explain = f.get("/fleet/explain?model=llama3.1:8b").await.json();
    assert_eq!(explain["best"], "alpha");
    assert_eq!(explain["eliminated"][0]["reason"], "model_absent");
    let show = f.post("/api/show", json!({"model": "qwen3:8b"})).await;
    assert_eq!(show.status, 200, "{}", show.text());
    let v = f.get("/api/version").await.json();
    assert!(v["version"].is_string());
    // Embeddings pass through.
    let r = f.post("/api/embed", json!({"model": "nomic-embed-text", "input": ["a", "b"]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["embeddings"].as_array().unwrap().len(), 2);
    let r =
        f.post("/v1/embeddings", json!({"model": "nomic-embed-text", "input": "a", "encoding_format": "base64"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["embedding"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trace_lost_under_concurrency() {
    // Queues long enough for 400 at once (the default 64 per queue answers the rest with 429).
    let mut f = Fleet::router(&[], Some(json!({"queue": {"max_pending_per_queue": 512}}))).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 16), fast()).await;
    f.node(spec("beta", &["qwen3:8b"], &["qwen3:8b"], 16), fast()).await;
    let f = std::sync::Arc::new(f);
    let mut tasks = Vec::new();
    for i in 0..400 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "qwen3:8b", "stream": i % 2 == 0, "metadata": {"tags": [format!("proj-{}", i % 4)]},
                "messages": [{"role": "user", "content": "hi"}]});
            f.post("/api/chat", body).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let traces = f.traces().await;
    assert_eq!(traces.len(), 400);
    let mut ids: Vec<u64> = traces.iter().map(|t| t.request_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 400);
    assert!(traces.iter().all(|t| t.tags.len() == 1 && t.tags[0].starts_with("proj-")));
    let usage = f.get("/fleet/usage").await.json();
    assert_eq!(usage["by_tag"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_go_to_the_named_node() {
    let mut f = Fleet::router(&[], None).await;
    let a = f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    f.node(spec("beta", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    let r = f.post("/api/pull?node=alpha", json!({"model": "gemma3:27b"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), "alpha");
    let lines = r.lines();
    assert_eq!(lines.last().unwrap()["status"], "success", "progress lines stream back: {lines:?}");
    assert_eq!(a.stats().requests.get("/api/pull").copied(), Some(1));
    let r = f.send("DELETE", "/api/delete", r#"{"model":"gemma3:27b"}"#, &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("?node="));
    let r = f.send("DELETE", "/api/delete?node=alpha", r#"{"model":"gemma3:27b"}"#, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = f.post("/api/copy?node=nobody", json!({"source": "qwen3:8b", "destination": "x"})).await;
    assert_eq!(r.status, 404);
    let r = f.post("/fleet/drain/beta", json!({})).await;
    assert_eq!(r.status, 200);
    let beta_status =
        |v: Value| v["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == "beta").unwrap()["status"].clone();
    assert_eq!(beta_status(f.get("/fleet/status").await.json()), "draining");
    // A heartbeat after the drain (beta sends one every 100 ms; this one is sent here, so the
    // test does not depend on timing) is told the node is draining and does not undo it.
    let beat = json!({"node_id": "beta", "cpu": {"cores_physical": 8}, "memory": {"total_gb": 64, "available_gb": 40}, "ollama": {}});
    let hb = f.post("/heartbeat", beat).await;
    assert_eq!((hb.status, hb.json()["status"].clone()), (200, json!("draining")), "{}", hb.text());
    assert_eq!(beta_status(f.get("/fleet/status").await.json()), "draining");
    let r = f.post("/fleet/undrain/beta", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(beta_status(f.get("/fleet/status").await.json()), "online");
}
