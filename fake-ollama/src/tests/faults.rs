//! Injected faults, slot limiting, simulated loads and heartbeats.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{fast, get, post, spec, start, DISK};
use crate::reply::BUSY;
use crate::{FakeConfig, FakeFault, FakeOllama, HeartbeatTarget, Timing};

const CHAT: &str = r#"{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn refusing_closes_the_socket_until_cleared() {
    let h = fast().await;
    h.inject(FakeFault::RefuseConnections);
    let err = TcpStream::connect(h.addr()).await.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    h.clear_faults();
    assert_eq!(get(&h, "/").await.status, 200);

    // The same through the control endpoint: the answer gets out, then the port is closed.
    let r = post(&h, "/_fake/fault", r#"{"kind":"refuse"}"#).await;
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(TcpStream::connect(h.addr()).await.is_err());
    h.clear_faults();
    assert_eq!(get(&h, "/api/version").await.status, 200);

    h.shutdown();
    assert!(TcpStream::connect(h.addr()).await.is_err());
}

#[tokio::test]
async fn status_faults_use_each_surfaces_envelope() {
    let h = fast().await;
    let r = post(&h, "/_fake/fault", r#"{"kind":"status","code":503,"count":2}"#).await;
    assert_eq!(r.status, 200);
    let r = post(&h, "/api/chat", CHAT).await;
    assert_eq!((r.status, r.json()), (503, json!({ "error": BUSY })));
    let r = post(&h, "/v1/chat/completions", CHAT).await;
    assert_eq!((r.status, &r.json()["error"]["message"]), (503, &json!(BUSY)));
    assert_eq!(post(&h, "/api/chat", CHAT).await.status, 200, "the count ran out");
    h.inject(FakeFault::Status { code: 500, count: 1 });
    assert_eq!(post(&h, "/api/embed", r#"{"model":"nomic-embed-text","input":"x"}"#).await.status, 500);
    let stats = get(&h, "/_fake/stats").await.json();
    assert_eq!((&stats["failed"], &stats["completed"]), (&json!(3), &json!(1)));
    assert_eq!(post(&h, "/_fake/fault", r#"{"kind":"bogus"}"#).await.status, 400);
}

#[tokio::test]
async fn hang_never_sends_a_head() {
    let h = fast().await;
    h.inject(FakeFault::HangBeforeFirstByte { count: 1 });
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    let req = format!("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{CHAT}", CHAT.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let waited = timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(waited.is_err(), "no byte may arrive: {waited:?}");
    assert_eq!(h.stats().in_flight, 1);
    drop(s);
    assert_eq!(post(&h, "/api/chat", CHAT).await.status, 200, "only one request hangs");
}

#[tokio::test]
async fn die_mid_stream_cuts_the_chunked_body() {
    let h = fast().await;
    let r = post(&h, "/_fake/fault", r#"{"kind":"die_mid_stream","after_chunks":3,"count":1}"#).await;
    assert_eq!(r.status, 200);
    let r = post(&h, "/api/chat", CHAT).await;
    assert_eq!(r.status, 200);
    assert!(!r.complete, "no terminating chunk");
    let lines = r.lines();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["done"] == false));
    // Non-streaming requests are not cut, and the count is spent.
    assert!(post(&h, "/api/chat", CHAT).await.complete);
    h.inject(FakeFault::DieMidStream { after_chunks: 1, count: 1 });
    let r = post(
        &h,
        "/v1/chat/completions",
        r#"{"model":"qwen3:8b","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert!(!r.complete && !r.text().contains("[DONE]"));
}

/// `created_at` as a sortable (date, seconds of day, nanoseconds).
fn stamp(line: &Value) -> (String, u32, u32) {
    let t = line["created_at"].as_str().unwrap().trim_end_matches('Z');
    let (date, time) = t.split_once('T').unwrap();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let sod = hms.split(':').fold(0, |acc, x| acc * 60 + x.parse::<u32>().unwrap());
    let nanos = format!("{frac:0<9}").parse().unwrap();
    (date.to_string(), sod, nanos)
}

#[tokio::test]
async fn fixed_timing_runs_at_most_num_parallel() {
    let timing = Timing::Fixed { first_token: Duration::from_millis(5), token_interval: Duration::from_millis(10) };
    let h = start(spec(DISK, &[], 2), timing).await;
    let body = r#"{"model":"qwen3:8b","options":{"num_predict":6},"messages":[{"role":"user","content":"x"}]}"#;
    let replies = futures_util::future::join_all((0..4).map(|_| post(&h, "/api/chat", body))).await;
    assert!(replies.iter().all(|r| r.complete && r.lines().len() == 7));
    // Server-side order, which is causal: a slot is freed only after its request's final line
    // was written, and a request writes its first line only once it holds a slot.
    let mut firsts: Vec<_> = replies.iter().map(|r| stamp(&r.lines()[0])).collect();
    let mut lasts: Vec<_> = replies.iter().map(|r| stamp(&r.lines()[6])).collect();
    firsts.sort();
    lasts.sort();
    assert!(firsts[1] < lasts[0], "two run at once (each takes 55 ms)");
    assert!(firsts[2] > lasts[0], "the third starts only after one ended");
    assert!(firsts[3] > lasts[1], "the fourth starts only after two ended");
}

#[tokio::test]
async fn simulated_cold_load_shows_in_ps() {
    let h = start(spec(DISK, &[], 2), Timing::Simulated { speedup: 50.0 }).await;
    assert_eq!(get(&h, "/api/ps").await.json(), json!({"models": []}));
    let v = post(&h, "/api/chat", r#"{"model":"qwen3:8b","stream":false,"messages":[{"role":"user","content":"x"}]}"#)
        .await
        .json();
    assert_eq!(v["eval_count"], 24);
    // 5.2 GB at 2 GB/s is 2.6 virtual seconds: the load dominates the time to the first token.
    assert!(v["load_duration"].as_u64().unwrap() > v["prompt_eval_duration"].as_u64().unwrap());
    let ps = get(&h, "/api/ps").await.json();
    let models = ps["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["name"], "qwen3:8b");
    assert!(models[0]["size"].as_u64().unwrap() > 5_200_000_000);
    assert_eq!(models[0]["size_vram"], models[0]["size"], "a GPU machine holds models in VRAM");
    assert_eq!(h.stats().cold_loads, 1);
    // Warm now: a second request loads nothing.
    let lines = post(&h, "/api/chat", CHAT).await.lines();
    assert_eq!(lines.last().unwrap()["done"], true);
    assert_eq!(h.stats().cold_loads, 1);
}

#[tokio::test]
async fn heartbeats_reach_the_router() {
    let router = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = HeartbeatTarget {
        router_url: format!("http://{}", router.local_addr().unwrap()),
        interval: Duration::from_millis(20),
        fleet_key: Some("secret".into()),
    };
    let config = FakeConfig {
        spec: spec(DISK, &["qwen3:8b"], 2),
        timing: Timing::Simulated { speedup: 50.0 },
        heartbeat: Some(target),
    };
    let h = FakeOllama::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let (mut s, _) = timeout(Duration::from_secs(5), router.accept()).await.unwrap().unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let hb: Value = loop {
        let n = timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed before a whole heartbeat");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("POST /heartbeat HTTP/1.1"), "{head}");
            if let Ok(v) = serde_json::from_str(body) {
                break v;
            }
        }
    };
    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    assert_eq!(hb["node_id"], "fake-box");
    assert_eq!(hb["ollama_host"], h.url());
    assert_eq!(hb["fleet_key"], "secret");
    assert_eq!(hb["ollama"]["models_loaded"][0]["name"], "qwen3:8b");
    assert_eq!(hb["ollama"]["num_parallel"], 2);
    assert_eq!(hb["ollama"]["models_available_meta"]["nomic-embed-text:latest"]["capabilities"], json!(["embedding"]));
    let parsed = herd_core::fleet::heartbeat::Heartbeat::parse(serde_json::to_string(&hb).unwrap().as_bytes());
    assert!(parsed.is_ok(), "{parsed:?}");
    h.shutdown();
}
