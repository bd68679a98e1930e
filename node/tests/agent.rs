//! `herd-node` end to end over real sockets: the release binary against herd's router and the
//! simulated Ollama (which sends no heartbeats of its own here, like a real Ollama).
//! Registration, cadence, drain on SIGTERM, router restart, Ollama down then up, the proxy with
//! and without the fleet key.

#[path = "../../adapter-tokio/tests/common/mod.rs"]
mod common;

use common::{fast, spec, Fleet};
use herd_fake_ollama::{FakeConfig, FakeHandle, FakeOllama};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `herd-node` process, killed on drop.
struct NodeProc(Child);

impl NodeProc {
    fn start(args: &[&str]) -> NodeProc {
        let child = Command::new(env!("CARGO_BIN_EXE_herd-node"))
            .args(args)
            .env("HERD_LOG", "herd_node=debug")
            .env_remove("HERD_ROUTER_URL")
            .env_remove("HERD_FLEET_KEY")
            .stdin(Stdio::null())
            .spawn()
            .expect("start herd-node");
        NodeProc(child)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.0.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit on its own, up to `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < limit, "herd-node did not exit within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A simulated Ollama that sends no heartbeats.
async fn ollama(name: &str, addr: SocketAddr) -> FakeHandle {
    let config = FakeConfig {
        spec: spec(name, &["qwen3:8b", "llama3.2:3b"], &["qwen3:8b"], 2),
        timing: fast(),
        heartbeat: None,
    };
    FakeOllama::start(addr, config).await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The router's view of one node, once `pred` holds for it (polled every 20 ms up to `limit`).
async fn node_where(fleet: &Fleet, id: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let status = fleet.get("/fleet/status").await.json();
        if let Some(n) = status["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == id) {
            if pred(n) {
                return n.clone();
            }
        }
        assert!(start.elapsed() < limit, "node {id} never matched within {limit:?}: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sorted strings of a JSON array.
fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

fn online(n: &Value) -> bool {
    n["status"] == "online"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_routes_and_drains_on_sigterm() {
    let fleet = Fleet::router(&[], None).await;
    let ol = ollama("box", SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let mut node = NodeProc::start(&[
        "--router-url",
        &fleet.url,
        "--ollama-host",
        &ol.url(),
        "--node-id",
        "gpu-box",
        "--heartbeat-secs",
        "0.3",
    ]);
    let n = node_where(&fleet, "gpu-box", Duration::from_secs(10), online).await;
    assert!(names(&n["models_loaded"]).contains(&"qwen3:8b".to_string()), "{n}");
    assert_eq!(n["ollama_reachable"], true);
    assert_eq!(n["url"], ol.url(), "a loopback heartbeat is resolved to the local Ollama");
    assert!(n["memory"]["total_gb"].as_f64().unwrap() > 0.0, "{n}");

    // The router now sends work to the node the agent reported.
    let r = fleet
        .post(
            "/api/chat",
            serde_json::json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), "gpu-box");
    assert_eq!(ol.stats().completed, 1);

    node.signal("-TERM");
    let status = node.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    // The drain reached the router before the process exited: no waiting for staleness.
    let n = node_where(&fleet, "gpu-box", Duration::from_millis(200), |_| true).await;
    assert_eq!(n["status"], "draining", "{n}");
    ol.shutdown();
}

/// A stand-in router that records every heartbeat body it receives.
async fn recording_router() -> (String, tokio::sync::mpsc::UnboundedReceiver<(Instant, Value)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let len: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + len {
                        continue;
                    }
                    let body: Value = serde_json::from_slice(&buf[head_end + 4..head_end + 4 + len]).unwrap();
                    let _ = tx.send((Instant::now(), body));
                    let reply = "{\"status\":\"ok\",\"commands\":[{\"type\":\"restart_ollama\"}]}";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    return;
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_fixed_cadence_and_the_schema() {
    let ol = ollama("box", SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let (url, mut rx) = recording_router().await;
    let _node = NodeProc::start(&[
        "--router-url",
        &url,
        "--ollama-host",
        &ol.url(),
        "--node-id",
        "cadence",
        "--heartbeat-secs",
        "0.2",
        "--fleet-key",
        "k1",
    ]);
    let mut beats = Vec::new();
    while beats.len() < 11 {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("heartbeats stopped");
        beats.push(got.unwrap());
    }
    let first = &beats[0].1;
    for key in ["node_id", "arch", "timestamp", "cpu", "memory", "thermal", "disk", "ollama", "ollama_host", "lan_ip"] {
        assert!(first.get(key).is_some(), "ollama-herd field {key} missing: {first}");
    }
    assert_eq!(first["node_id"], "cadence");
    assert_eq!(first["fleet_key"], "k1");
    assert_eq!(names(&first["ollama"]["models_available"]), ["llama3.2:3b", "qwen3:8b"]);
    assert!(first["ollama"]["models_available_meta"].is_object(), "the first beat carries the metadata");
    assert!(beats[1].1["ollama"]["models_available_meta"].is_null(), "unchanged metadata is not resent");
    // Fixed rate: the node's own send times (its `timestamp`) sit on a 200 ms grid; ten periods
    // span 2 s give or take scheduling, with no drift from collection time.
    let t = |i: usize| beats[i].1["timestamp"].as_f64().unwrap();
    let span = t(10) - t(0);
    assert!((1.6..2.6).contains(&span), "ten periods took {span:.3} s");
    ol.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_restart_and_ollama_down_then_up() {
    let mut fleet = Fleet::router(&[], None).await;
    let router_port = fleet.url.rsplit(':').next().unwrap().to_string();
    let ollama_port = free_port();
    let ollama_addr = SocketAddr::from(([127, 0, 0, 1], ollama_port));
    let ollama_url = format!("http://{ollama_addr}");
    let _node = NodeProc::start(&[
        "--router-url",
        &fleet.url,
        "--ollama-host",
        &ollama_url,
        "--node-id",
        "flaky",
        "--heartbeat-secs",
        "0.25",
    ]);
    // Ollama is down: the node is up and says so.
    let n = node_where(&fleet, "flaky", Duration::from_secs(10), online).await;
    assert_eq!(n["ollama_reachable"], false, "{n}");
    assert_eq!(n["models_available"], serde_json::json!([]));
    // Ollama comes up: the next heartbeat reports its models.
    let ol = ollama("flaky", ollama_addr).await;
    let n = node_where(&fleet, "flaky", Duration::from_secs(3), |n| n["ollama_reachable"] == true).await;
    assert_eq!(names(&n["models_available"]), ["llama3.2:3b", "qwen3:8b"], "{n}");

    // The router restarts on the same port and forgets every node; the agent's backoff is
    // capped at one period, so it is back within about one heartbeat.
    fleet.router.take().unwrap().shutdown();
    tokio::time::sleep(Duration::from_millis(600)).await; // the node fails a couple of beats
    let restarted = Fleet::router(&["--port", &router_port], None).await;
    let back = Instant::now();
    node_where(&restarted, "flaky", Duration::from_secs(2), online).await;
    let took = back.elapsed();
    eprintln!("re-registered {took:?} after the router came back");
    ol.shutdown();
}

async fn raw_get(addr: &str, path: &str, headers: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_exposes_ollama_only_to_key_holders() {
    let fleet = Fleet::router(&["--fleet-key", "fleet-secret"], None).await;
    let ol = ollama("hidden", SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let proxy_port = free_port();
    let proxy_port_s = proxy_port.to_string();
    let _node = NodeProc::start(&[
        "--router-url",
        &fleet.url,
        "--ollama-host",
        &ol.url(),
        "--node-id",
        "hidden",
        "--heartbeat-secs",
        "0.3",
        "--fleet-key",
        "fleet-secret",
        "--proxy-port",
        &proxy_port_s,
        "--proxy-bind",
        "127.0.0.1",
    ]);
    let proxy = format!("127.0.0.1:{proxy_port}");
    let n = node_where(&fleet, "hidden", Duration::from_secs(10), online).await;
    assert_eq!(n["url"], format!("http://{proxy}"), "the router reaches Ollama through the proxy");

    // `/v1/models` is a path the agent's own probes never use, so Ollama's counter for it counts
    // only what came through the proxy.
    let through = || ol.stats().requests.get("/v1/models").copied().unwrap_or(0);
    let refused = raw_get(&proxy, "/v1/models", "").await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let wrong = raw_get(&proxy, "/v1/models", "X-Herd-Fleet-Key: guess\r\n").await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let bearer_wrong = raw_get(&proxy, "/v1/models", "Authorization: Bearer fleet-secre\r\n").await;
    assert!(bearer_wrong.starts_with("HTTP/1.1 401"), "{bearer_wrong}");
    assert_eq!(through(), 0, "nothing reached Ollama");
    let ok = raw_get(&proxy, "/v1/models", "X-Herd-Fleet-Key: fleet-secret\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("qwen3:8b"), "{ok}");
    assert_eq!(through(), 1);

    // Through the router: it presents the key, and the stream passes through untouched.
    let r = fleet
        .post("/api/chat", serde_json::json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), "hidden");
    let lines = r.lines();
    assert!(lines.len() > 2 && lines.last().unwrap()["done"] == true, "{}", r.text());
    assert_eq!(ol.stats().completed, 1);
    ol.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_without_a_key_is_open() {
    let ol = ollama("open", SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let proxy_port = free_port();
    let proxy_port_s = proxy_port.to_string();
    let (url, mut rx) = recording_router().await;
    let _node = NodeProc::start(&[
        "--router-url",
        &url,
        "--ollama-host",
        &ol.url(),
        "--proxy-port",
        &proxy_port_s,
        "--proxy-bind",
        "127.0.0.1",
        "--heartbeat-secs",
        "0.3",
    ]);
    let (_, hb) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert_eq!(hb["ollama_host"], format!("http://127.0.0.1:{proxy_port}"));
    let ok = raw_get(&format!("127.0.0.1:{proxy_port}"), "/api/version", "").await;
    assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("version"), "{ok}");
    ol.shutdown();
}

#[test]
fn once_prints_the_heartbeat_and_exits() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd-node"))
        .args(["--once", "--node-id", "probe-me", "--ollama-host", &format!("http://127.0.0.1:{}", free_port())])
        .env_remove("HERD_ROUTER_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hb: Value = serde_json::from_slice(&out.stdout).expect("stdout is the heartbeat JSON");
    assert_eq!(hb["node_id"], "probe-me");
    assert_eq!(hb["ollama"]["reachable"], false, "Ollama is down, the node is not");
    assert!(hb["cpu"]["cores_physical"].as_u64().unwrap() > 0);
    assert!(hb["memory"]["total_gb"].as_f64().unwrap() > 0.0);
    assert!(hb["gpus"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_ollama_is_reported_down_and_heartbeats_go_on() {
    // An "Ollama" that accepts connections and never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            open.push(s);
        }
    });
    let (url, mut rx) = recording_router().await;
    // A 0.5 s period: the send budget (0.4 s) is shorter than a default probe timeout (2 s), so
    // the probes must give up in time for the heartbeat to say Ollama is down, every period.
    let _node = NodeProc::start(&["--router-url", &url, "--ollama-host", &hung_url, "--heartbeat-secs", "0.5"]);
    for i in 0..6 {
        let (_, hb) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("heartbeat {i} never came"))
            .unwrap();
        assert_eq!(hb["ollama"]["reachable"], false, "{hb}");
    }
    held.abort();
}
