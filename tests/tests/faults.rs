//! Faults over real sockets (issue 5): `herd` and `herd-fake-ollama` run as child processes on
//! loopback, so a killed node is a real SIGKILL of its process, a hung node a real SIGSTOP, and a
//! router restart a new `herd` process on the same port and data dir. Every wait is bounded.
//!
//! - A node killed before the first byte: the request succeeds on another node (2 attempts).
//! - A node killed mid-stream: the client gets its protocol's error, never a success, and the
//!   trace says `failed_after_commit`.
//! - A hung node: the first-byte deadline ends the attempt in about a second and the request is
//!   retried elsewhere; after commit the stall deadline ends the stream with the protocol's error.
//! - SIGTERM drains: requests in progress (streamed or not) finish before the router exits.
//! - The router restarted under load (SIGTERM, then SIGKILL): nodes are back within about one
//!   heartbeat, requests during the outage fail fast with connection errors, and `traces.db`
//!   passes `PRAGMA integrity_check` and still holds every trace recorded before each restart.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn herd() -> PathBuf {
    herd_sim::bins::binary("herd")
}
fn fake() -> PathBuf {
    herd_sim::bins::binary("herd-fake-ollama")
}
/// Not a thinking model, so the router leaves `num_predict` alone.
const MODEL: &str = "llama3.1:8b";

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A child that prints `listening on URL` as its first stdout line. SIGKILLed and reaped on drop;
/// its stderr goes to `log`, printed when a test fails.
struct Proc {
    name: String,
    child: Child,
    url: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Proc, String> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        // Settings from the environment would override the flags' defaults (ollama-herd's
        // FLEET_* too; FLEET_ENV_FILE=/dev/null keeps its env file out).
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("HERD_") || k.starts_with("FAKE_OLLAMA_") || k.starts_with("FLEET_") {
                    cmd.env_remove(k);
                }
            }
        }
        cmd.env("FLEET_ENV_FILE", "/dev/null");
        cmd.env("NO_COLOR", "1");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| format!("spawning {name}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(20));
        match first.as_deref().ok().and_then(|l| l.strip_prefix("listening on ")) {
            Some(url) => {
                Ok(Proc { name: name.to_string(), child, url: url.trim().to_string(), log: log.to_path_buf() })
            }
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!("{name} did not start ({first:?}, {status:?}): {}", tail(log)))
            }
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `sig` (TERM, STOP, CONT, ...) with kill(1).
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid()).status().expect("kill(1)");
        assert!(ok.success(), "kill -{sig} {} ({}) failed", self.pid(), self.name);
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping");
    }

    /// Its exit status, polled for at most `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} ({}) stderr, last lines ----\n{}", self.name, self.log.display(), tail(&self.log));
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// HTTP.

type Http = Client<HttpConnector, Full<Bytes>>;

/// A client that opens a connection per request, so a dead server is a connection error, not a
/// stale pooled connection.
fn http() -> Http {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build_http()
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, k: &str) -> String {
        header(&self.headers, k)
    }
}

fn header(h: &HeaderMap, k: &str) -> String {
    h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn request(method: &str, url: &str, body: Option<&Value>) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(body.map(|v| Bytes::from(v.to_string())).unwrap_or_default())).unwrap()
}

/// One whole request; `Err` on a connection or body error.
async fn try_call(c: &Http, method: &str, url: &str, body: Option<&Value>) -> Result<Reply, String> {
    let resp = c.request(request(method, url, body)).await.map_err(|e| format!("request: {e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| format!("body: {e:?}"))?.to_bytes();
    Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// One whole request that must answer within 15 s.
async fn call(c: &Http, method: &str, url: &str, body: Option<&Value>) -> Reply {
    match tokio::time::timeout(Duration::from_secs(15), try_call(c, method, url, body)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("{method} {url}: {e}"),
        Err(_) => panic!("{method} {url}: no answer in 15 s"),
    }
}

/// A streaming answer read line by line.
struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    ended: bool,
}

impl Lines {
    fn new(body: Incoming) -> Lines {
        Lines { body, buf: Vec::new(), ended: false }
    }

    /// The next line (without its newline); `None` at the end of the body. `Err` when nothing
    /// comes within `within`, or on a body error.
    async fn next(&mut self, within: Duration) -> Result<Option<String>, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..i]).into_owned()));
            }
            if self.ended {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Err(format!("no line within {within:?}")),
                Ok(None) => self.ended = true,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Ok(Some(Err(e))) => return Err(format!("body error: {e:?}")),
            }
        }
    }

    /// Every remaining line, the body ending within `within`.
    async fn rest(&mut self, within: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Some(l) = self.next(deadline.saturating_duration_since(Instant::now())).await? {
            out.push(l);
        }
        Ok(out)
    }

    /// Lines up to and including the first `data:` line carrying a JSON object.
    async fn next_data(&mut self, within: Duration) -> Value {
        loop {
            let line = self.next(within).await.expect("an event").expect("the stream goes on");
            if let Some(v) = line.strip_prefix("data:").and_then(|d| serde_json::from_str::<Value>(d.trim()).ok()) {
                return v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A fleet of processes.

/// Fields drop in order: the processes (printing their logs if a test failed), then the folder.
struct Fleet {
    router: Proc,
    nodes: Vec<Proc>,
    http: Http,
    port: u16,
    dir: tempfile::TempDir,
}

fn chat(stream: bool, tokens: u32) -> Value {
    json!({"model": MODEL, "stream": stream, "options": {"num_predict": tokens},
        "messages": [{"role": "user", "content": "hello there"}]})
}

impl Fleet {
    /// A router on a free loopback port with `config` as its config file.
    fn start(config: Value) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let router = Fleet::spawn_router(dir.path(), 0).unwrap();
        let port = router.url.rsplit(':').next().unwrap().parse().unwrap();
        Fleet { router, nodes: Vec::new(), http: http(), port, dir }
    }

    fn spawn_router(dir: &Path, port: u16) -> Result<Proc, String> {
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--config",
            &dir.join("config.json").display().to_string(),
            "--no-mdns",
            "--seed",
            "7",
            "--drain-secs",
            "30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Proc::spawn("herd", &herd(), &args, &dir.join("herd.log"))
    }

    /// Starts the router again on the same port and data dir (retrying while the port is busy).
    fn restart_router(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Fleet::spawn_router(self.dir.path(), self.port) {
                Ok(p) => {
                    self.router = p;
                    return;
                }
                Err(e) if Instant::now() < deadline && e.contains("cannot listen") => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("restarting the router: {e}"),
            }
        }
    }

    /// A fake node with `MODEL`, fixed timing (`token_ms` between tokens), heartbeats to the
    /// router every `heartbeat_secs`.
    fn add_node(&mut self, name: &str, token_ms: u64, heartbeat_secs: f64) {
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--name",
            name,
            "--models",
            MODEL,
            "--timing",
            "fixed",
            "--first-token-ms",
            "0",
            "--token-ms",
            &token_ms.to_string(),
            "--num-parallel",
            "8",
            "--heartbeat-to",
            &self.router.url,
            "--heartbeat-secs",
            &heartbeat_secs.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = self.dir.path().join(format!("{name}.log"));
        self.nodes.push(Proc::spawn(name, &fake(), &args, &log).unwrap());
    }

    fn node(&mut self, name: &str) -> &mut Proc {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.router.url)
    }

    async fn get(&self, path: &str) -> Reply {
        call(&self.http, "GET", &self.url(path), None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        call(&self.http, "POST", &self.url(path), Some(body)).await
    }

    /// Opens a streaming request; the answer's head must come within 10 s.
    async fn open(&self, path: &str, body: &Value) -> (u16, HeaderMap, Lines) {
        let req = request("POST", &self.url(path), Some(body));
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .unwrap_or_else(|_| panic!("POST {path}: no head in 10 s"))
            .unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
        let (parts, body) = resp.into_parts();
        (parts.status.as_u16(), parts.headers, Lines::new(body))
    }

    /// How many nodes the router has online, or `None` while it does not answer.
    async fn online(&self) -> Option<u64> {
        let url = self.url("/fleet/status");
        match tokio::time::timeout(Duration::from_secs(2), try_call(&self.http, "GET", &url, None)).await {
            Ok(Ok(r)) if r.status == 200 => r.json()["fleet"]["nodes_online"].as_u64(),
            _ => None,
        }
    }

    /// Polls until `n` nodes are online; how long that took.
    async fn wait_online(&self, n: u64, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.online().await.is_some_and(|k| k >= n) {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "{n} nodes not online within {within:?}: {:?}", self.online().await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The node the router would pick now.
    async fn best(&self) -> String {
        let r = self.get(&format!("/fleet/explain?model={MODEL}")).await;
        r.json()["best"].as_str().unwrap_or_else(|| panic!("no best node: {}", r.text())).to_string()
    }

    /// Arms a fault on a node (`POST /_fake/fault`).
    async fn fault(&mut self, node: &str, fault: Value) {
        let url = format!("{}/_fake/fault", self.node(node).url);
        let r = call(&self.http, "POST", &url, Some(&fault)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    async fn fake_stats(&mut self, node: &str) -> Value {
        let url = format!("{}/_fake/stats", self.node(node).url);
        call(&self.http, "GET", &url, None).await.json()
    }

    /// Every trace the router has recorded (newest first).
    async fn traces(&self) -> Vec<Value> {
        let v = self.get("/fleet/traces?limit=10000").await.json();
        let t = v["traces"].as_array().cloned().unwrap_or_default();
        assert!(t.len() < 10_000, "more traces than one page");
        t
    }

    /// The trace of request `id` of the running router, polled for (traces are written in batches).
    async fn trace_of(&self, id: &str) -> Value {
        let id: u64 = id.parse().unwrap_or_else(|_| panic!("request id {id:?}"));
        let start = Instant::now();
        loop {
            if let Some(t) = self.traces().await.into_iter().find(|t| t["request_id"].as_u64() == Some(id)) {
                return t;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no trace for request {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("traces.db")
    }
}

fn other(pair: [&str; 2], name: &str) -> String {
    if pair[0] == name {
        pair[1].to_string()
    } else {
        pair[0].to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_before_the_first_byte_the_request_succeeds_on_another_node() {
    let mut f = Fleet::start(json!({}));
    f.add_node("alpha", 0, 0.1);
    f.add_node("beta", 0, 0.1);
    f.wait_online(2, Duration::from_secs(10)).await;

    // The node the router picks holds the request without answering (no response head); the
    // router's tie-break may send it to the other node, in which case it is simply sent again.
    let mut caught = None;
    for _ in 0..5 {
        let victim = f.best().await;
        f.fault(&victim, json!({"kind": "hang", "count": 1})).await;
        let (c, url) = (f.http.clone(), f.url("/api/chat"));
        let pending = tokio::spawn(async move { call(&c, "POST", &url, Some(&chat(false, 8))).await });
        let start = Instant::now();
        while !pending.is_finished() {
            if f.fake_stats(&victim).await["in_flight"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the request reached no node");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !pending.is_finished() {
            caught = Some((victim.clone(), pending));
            break;
        }
        let r = pending.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        f.fault(&victim, json!({"kind": "clear"})).await;
    }
    let (victim, pending) = caught.expect("no request reached the hanging node in 5 tries");
    let survivor = other(["alpha", "beta"], &victim);

    let killed = Instant::now();
    f.node(&victim).kill();
    let r = tokio::time::timeout(Duration::from_secs(10), pending).await.expect("no answer after the kill").unwrap();
    let took = killed.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-attempts"), "2");
    assert_eq!(r.header("x-herd-node"), survivor);
    let v = r.json();
    assert_eq!(v["done"], true, "{v}");
    assert!(!v["message"]["content"].as_str().unwrap_or("").is_empty(), "{v}");
    assert!(took < Duration::from_secs(5), "the retry took {took:?} after the kill");

    let t = f.trace_of(&r.header("x-herd-request-id")).await;
    assert_eq!(t["outcome"], "completed", "{t}");
    assert_eq!(t["attempts"], 2, "{t}");
    assert_eq!(t["node"], survivor.as_str(), "{t}");
    assert_eq!(t["status"], 200, "{t}");

    // The dead node is still listed until its heartbeats are missed for long enough; requests
    // meanwhile still succeed (a refused connection is retried at once).
    for _ in 0..4 {
        let r = f.post("/api/chat", &chat(false, 4)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-herd-node"), survivor);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_stream_gets_the_protocols_error_and_the_trace_says_so() {
    let mut f = Fleet::start(json!({}));
    // 40 ms a token, 400 tokens: each stream would take 16 s unless its node dies.
    for n in ["alpha", "beta", "gamma"] {
        f.add_node(n, 40, 0.1);
    }
    f.wait_online(3, Duration::from_secs(10)).await;
    let mut dead: Vec<String> = Vec::new();

    // Native NDJSON: an `{"error": ...}` line ends the stream, never `done: true`.
    let (status, h, mut s) = f.open("/api/chat", &chat(true, 400)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "application/x-ndjson");
    let victim = header(&h, "x-herd-node");
    for _ in 0..3 {
        let line = s.next(Duration::from_secs(5)).await.unwrap().expect("a line");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["done"], false, "{v}");
    }
    let killed = Instant::now();
    f.node(&victim).kill();
    dead.push(victim.clone());
    let rest = s.rest(Duration::from_secs(5)).await.expect("the stream ends soon after the node dies");
    assert!(killed.elapsed() < Duration::from_secs(3), "the stream took {:?} to end", killed.elapsed());
    let lines: Vec<Value> =
        rest.iter().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last().expect("a final line");
    assert!(last["error"].as_str().is_some_and(|e| !e.is_empty()), "last line: {last}");
    assert!(lines.iter().all(|l| l["done"] != true), "{lines:?}");
    let t = f.trace_of(&header(&h, "x-herd-request-id")).await;
    assert_eq!(t["outcome"], "failed_after_commit", "{t}");
    assert_eq!(t["error"], "reset", "{t}");
    assert_eq!(t["node"], victim.as_str(), "{t}");
    assert_eq!(t["surface"], "ollama_chat", "{t}");

    // OpenAI SSE: an error event ends the stream, never `data: [DONE]`.
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 400,
        "messages": [{"role": "user", "content": "hello there"}]});
    let (status, h, mut s) = f.open("/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert!(header(&h, "content-type").starts_with("text/event-stream"));
    let victim = header(&h, "x-herd-node");
    assert!(!dead.contains(&victim), "served by a dead node");
    for _ in 0..3 {
        let v = s.next_data(Duration::from_secs(5)).await;
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
    }
    let killed = Instant::now();
    f.node(&victim).kill();
    dead.push(victim.clone());
    let rest = s.rest(Duration::from_secs(5)).await.expect("the stream ends soon after the node dies");
    assert!(killed.elapsed() < Duration::from_secs(3));
    assert!(!rest.iter().any(|l| l.contains("[DONE]")), "{rest:?}");
    let last = rest.iter().rev().find_map(|l| l.strip_prefix("data:")).expect("a final event");
    let last: Value = serde_json::from_str(last.trim()).unwrap();
    assert!(last["error"]["message"].as_str().is_some_and(|e| !e.is_empty()), "last event: {last}");
    let t = f.trace_of(&header(&h, "x-herd-request-id")).await;
    assert_eq!(t["outcome"], "failed_after_commit", "{t}");
    assert_eq!(t["error"], "reset", "{t}");
    assert_eq!(t["node"], victim.as_str(), "{t}");
    assert_eq!(t["surface"], "openai_chat", "{t}");

    // Anthropic SSE: an `event: error` ends the stream, never `message_stop`.
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 400,
        "messages": [{"role": "user", "content": "hello there"}]});
    let (status, h, mut s) = f.open("/v1/messages", &body).await;
    assert_eq!(status, 200);
    let victim = header(&h, "x-herd-node");
    assert!(!dead.contains(&victim), "served by a dead node");
    for _ in 0..3 {
        s.next_data(Duration::from_secs(5)).await;
    }
    f.node(&victim).kill();
    let rest = s.rest(Duration::from_secs(5)).await.expect("the stream ends soon after the node dies");
    assert!(!rest.iter().any(|l| l.contains("message_stop")), "{rest:?}");
    assert!(rest.iter().any(|l| l.trim() == "event: error"), "{rest:?}");
    let t = f.trace_of(&header(&h, "x-herd-request-id")).await;
    assert_eq!(t["outcome"], "failed_after_commit", "{t}");
    assert_eq!(t["surface"], "anthropic_messages", "{t}");
}

/// Short deadlines: a hot model's first byte within 1 s (the load and prefill allowances made
/// negligible), and 1 s without progress ends a committed stream.
fn short_deadlines() -> Value {
    json!({"retry": {"first_byte_timeout": 1.0, "stall_timeout": 1.0,
        "prefill_tokens_per_sec": 1000000.0, "load_gb_per_sec": 1000.0}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_node_before_the_first_byte_is_reaped_and_the_request_retried() {
    let mut f = Fleet::start(short_deadlines());
    f.add_node("alpha", 0, 0.1);
    f.add_node("beta", 0, 0.1);
    f.wait_online(2, Duration::from_secs(10)).await;

    // The node the router prefers hangs for real: its process is stopped (the kernel still
    // accepts connections for it, nothing answers).
    let hung = f.best().await;
    let survivor = other(["alpha", "beta"], &hung);
    f.node(&hung).signal("STOP");
    let mut retried = None;
    for _ in 0..5 {
        let start = Instant::now();
        let r = f.post("/api/chat", &chat(false, 8)).await;
        let took = start.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-herd-node"), survivor);
        assert!(took < Duration::from_secs(10), "took {took:?}");
        if r.header("x-herd-attempts") == "2" {
            retried = Some((r, took));
            break;
        }
    }
    let (r, took) = retried.expect("no request was sent to the hung node in 5 tries");
    // Ended by the 1 s first-byte deadline, not by anything sooner.
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(r.json()["done"], true);
    let t = f.trace_of(&r.header("x-herd-request-id")).await;
    assert_eq!(t["outcome"], "completed", "{t}");
    assert_eq!(t["attempts"], 2, "{t}");
    assert_eq!(t["node"], survivor.as_str(), "{t}");

    // Woken up, the node serves again.
    f.node(&hung).signal("CONT");
    f.wait_online(2, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_node_mid_stream_is_ended_by_the_stall_deadline() {
    let mut f = Fleet::start(short_deadlines());
    f.add_node("alpha", 40, 0.1);
    f.wait_online(1, Duration::from_secs(10)).await;

    let (status, h, mut s) = f.open("/api/chat", &chat(true, 400)).await;
    assert_eq!(status, 200);
    for _ in 0..3 {
        s.next(Duration::from_secs(5)).await.unwrap().expect("a line");
    }
    // The node hangs mid-answer: committed, so no retry, but the stall deadline must end the
    // stream with an error line within seconds.
    f.node("alpha").signal("STOP");
    let stopped = Instant::now();
    let rest = s.rest(Duration::from_secs(5)).await;
    f.node("alpha").signal("CONT");
    let rest =
        rest.unwrap_or_else(|e| panic!("the stream did not end {:?} after the node hung: {e}", stopped.elapsed()));
    let last: Value = serde_json::from_str(rest.iter().rev().find(|l| !l.trim().is_empty()).unwrap()).unwrap();
    assert!(last["error"].is_string(), "{last}");
    let t = f.trace_of(&header(&h, "x-herd-request-id")).await;
    assert_eq!(t["outcome"], "failed_after_commit", "{t}");
    assert_eq!(t["error"], "timeout", "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_node_mid_answer_ends_a_non_streamed_request_with_an_error() {
    let mut f = Fleet::start(short_deadlines());
    f.add_node("alpha", 40, 0.1);
    f.wait_online(1, Duration::from_secs(10)).await;
    let url = f.url("/api/chat");
    let http = f.http.clone();
    let pending = tokio::spawn(async move { try_call(&http, "POST", &url, Some(&chat(false, 400))).await });
    let start = Instant::now();
    while f.fake_stats("alpha").await["in_flight"].as_u64() != Some(1) {
        assert!(start.elapsed() < Duration::from_secs(5), "the node never got the request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Tokens come 40 ms apart from the start: after 300 ms the router has the first byte and has
    // committed (aggregating for a non-streamed client). Either way the client must not hang.
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.node("alpha").signal("STOP");
    let r = tokio::time::timeout(Duration::from_secs(5), pending).await;
    f.node("alpha").signal("CONT");
    let r = r.expect("the client hung with its node").unwrap().expect("an HTTP answer");
    assert_eq!(r.status, 504, "the stall deadline ends the attempt: {}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("stall"), "{}", r.text());
    let t = f.trace_of(&header(&r.headers, "x-herd-request-id")).await;
    assert_eq!((t["outcome"].as_str(), t["error"].as_str()), (Some("failed_after_commit"), Some("timeout")), "{t}");
}

// ---------------------------------------------------------------------------------------------
// The router restarted under load.

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 200 with a complete answer.
    Ok,
    /// Another HTTP status (with its body).
    Status(u16, String),
    /// 200, then the stream ended with an in-protocol `{"error": ...}` line.
    CutWithError(String),
    /// The connection failed (refused, reset, closed mid-body).
    Conn(String),
    /// No answer within the client's timeout.
    Hang,
}

#[derive(Debug, Clone)]
struct Done {
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

async fn load_request(c: &Http, url: &str, stream: bool) -> Outcome {
    let body = chat(stream, 16);
    match tokio::time::timeout(Duration::from_secs(5), try_call(c, "POST", url, Some(&body))).await {
        Err(_) => Outcome::Hang,
        Ok(Err(e)) => Outcome::Conn(e),
        Ok(Ok(r)) if r.status != 200 => Outcome::Status(r.status, r.text()),
        Ok(Ok(r)) => {
            let last = r.text().lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            match serde_json::from_str::<Value>(&last) {
                Ok(v) if v["done"] == true => Outcome::Ok,
                Ok(v) if stream && v["error"].is_string() => Outcome::CutWithError(last),
                _ => Outcome::Status(200, r.text()),
            }
        }
    }
}

fn count(log: &Mutex<Vec<Done>>, pred: impl Fn(&Done) -> bool) -> usize {
    log.lock().unwrap().iter().filter(|d| pred(d)).count()
}

/// Polls until `n` requests in the log match `pred` (at most 10 s).
async fn wait_for(log: &Mutex<Vec<Done>>, what: &str, n: usize, pred: impl Fn(&Done) -> bool) {
    let start = Instant::now();
    while count(log, &pred) < n {
        assert!(start.elapsed() < Duration::from_secs(10), "waiting for {n} {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(request_id, started_unix_ms)` of traces: request ids restart with each router process.
fn keys(traces: &[Value]) -> BTreeSet<(u64, i64)> {
    traces.iter().map(|t| (t["request_id"].as_u64().unwrap(), t["started_unix_ms"].as_i64().unwrap())).collect()
}

/// Opens `traces.db` while no router runs: `PRAGMA integrity_check` must say ok; the trace keys.
fn check_db(path: &Path) -> BTreeSet<(u64, i64)> {
    let db = rusqlite::Connection::open(path).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "integrity_check of {}", path.display());
    let mut q = db.prepare("SELECT request_id, started_unix_ms FROM traces").unwrap();
    let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// One restart's instants.
struct Restart {
    signal: &'static str,
    kill: Instant,
    exited: Instant,
    respawn: Instant,
    up: Instant,
    back: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn router_restarted_under_load_nodes_return_and_traces_survive() {
    const HEARTBEAT: Duration = Duration::from_millis(300);
    let mut f = Fleet::start(json!({}));
    for n in ["alpha", "beta", "gamma"] {
        f.add_node(n, 2, HEARTBEAT.as_secs_f64());
    }
    f.wait_online(3, Duration::from_secs(10)).await;

    // Eight clients, each sending one request after another, half of them streaming.
    let log: Arc<Mutex<Vec<Done>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (log, stop, url, c) = (log.clone(), stop.clone(), f.url("/api/chat"), f.http.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let outcome = load_request(&c, &url, i % 2 == 0).await;
                let failed = outcome != Outcome::Ok;
                log.lock().unwrap().push(Done { start, end: Instant::now(), outcome });
                if failed {
                    // Nothing listens: do not spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    wait_for(&log, "successes", 40, |d| d.outcome == Outcome::Ok).await;

    let mut restarts = Vec::new();
    let mut before_all = BTreeSet::new();
    for signal in ["TERM", "KILL"] {
        // What the router has recorded just before it goes.
        let before = keys(&f.traces().await);
        assert!(!before.is_empty());
        let kill = Instant::now();
        let ok_before_kill = count(&log, |d| d.outcome == Outcome::Ok && d.end < kill);
        if signal == "KILL" {
            f.router.kill();
        } else {
            f.router.signal("TERM");
            let status = f.router.wait_exit(Duration::from_secs(10)).expect("herd did not exit on SIGTERM");
            assert!(status.success(), "herd exited with {status} on SIGTERM");
        }
        let exited = Instant::now();

        // Nothing listens now: the database is consistent and holds every trace read before.
        let on_disk = check_db(&f.db_path());
        assert!(before.is_subset(&on_disk), "traces read before the {signal} are missing from traces.db");
        if signal == "TERM" {
            // A clean stop flushes: every answered request has its trace.
            assert!(
                on_disk.len() >= ok_before_kill,
                "{} traces on disk, {ok_before_kill} requests answered before SIGTERM",
                on_disk.len()
            );
        }
        // Clients fail fast meanwhile.
        wait_for(&log, "connection errors", 8, |d| d.start >= exited && matches!(d.outcome, Outcome::Conn(_))).await;

        let respawn = Instant::now();
        f.restart_router();
        let up = Instant::now();
        let took = f.wait_online(3, Duration::from_secs(2)).await;
        let back = Instant::now();
        eprintln!("SIG{signal}: down {:?}, nodes back {took:?} after the new router listened", up - exited);
        assert!(took <= HEARTBEAT + Duration::from_millis(700), "nodes back after {took:?}");

        let after = keys(&f.traces().await);
        assert!(before.is_subset(&after), "traces recorded before the {signal} are gone after the restart");
        before_all.extend(before);
        wait_for(&log, "successes after the restart", 40, |d| d.start >= back && d.outcome == Outcome::Ok).await;
        restarts.push(Restart { signal, kill, exited, respawn, up, back });
    }

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(10), c).await.expect("a client hung").unwrap();
    }
    let last = keys(&f.traces().await);
    f.router.signal("TERM");
    assert!(f.router.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let on_disk = check_db(&f.db_path());
    assert!(before_all.is_subset(&on_disk) && last.is_subset(&on_disk));

    // What each client saw, by when it asked.
    let log = log.lock().unwrap().clone();
    let hangs: Vec<&Done> = log.iter().filter(|d| d.outcome == Outcome::Hang).collect();
    assert!(hangs.is_empty(), "requests hung: {hangs:?}");
    let disturbed = |d: &Done| restarts.iter().any(|r| d.end >= r.kill && d.start < r.back);
    for d in &log {
        if !disturbed(d) {
            assert_eq!(d.outcome, Outcome::Ok, "a request away from any restart failed");
        }
        for r in &restarts {
            if d.start >= r.exited && d.start < r.respawn {
                assert!(matches!(d.outcome, Outcome::Conn(_)), "with no router running: {:?}", d.outcome);
            }
        }
    }
    for r in &restarts {
        let window: Vec<&Done> = log.iter().filter(|d| d.end >= r.kill && d.start < r.back).collect();
        let conn = window.iter().filter(|d| matches!(d.outcome, Outcome::Conn(_))).count();
        let ok = window.iter().filter(|d| d.outcome == Outcome::Ok).count();
        let cut = window.iter().filter(|d| matches!(d.outcome, Outcome::CutWithError(_))).count();
        let mut other = std::collections::BTreeMap::<u16, usize>::new();
        for d in &window {
            if let Outcome::Status(code, _) = d.outcome {
                *other.entry(code).or_default() += 1;
            }
        }
        eprintln!(
            "SIG{}: {} requests near the restart: {ok} ok, {conn} connection errors, {cut} streams cut with an \
             error line, other statuses {other:?}; new router up -> nodes back {:?}",
            r.signal,
            window.len(),
            r.back - r.up
        );
        for d in &window {
            match &d.outcome {
                // SIGTERM drains: requests in progress finish. Only a SIGKILL may cut one: a
                // stream with its error line, or a whole answer with 502.
                Outcome::CutWithError(line) => {
                    assert!(r.signal == "KILL" && d.start < r.exited, "SIG{}: a stream was cut: {line}", r.signal)
                }
                Outcome::Status(502, body) => {
                    assert!(r.signal == "KILL" && d.start < r.exited, "SIG{}: HTTP 502: {body}", r.signal)
                }
                // The old router may answer 503 as it shuts down. The new one never says 404 for a
                // model it has not heard of yet: its startup grace holds the request until the
                // nodes' first heartbeats.
                Outcome::Status(code, body) => {
                    assert!(*code == 503 && d.start < r.exited, "HTTP {code}: {body}");
                }
                Outcome::Ok | Outcome::Conn(_) | Outcome::Hang => {}
            }
        }
    }
    eprintln!("{} requests in all, {} traces on disk", log.len(), on_disk.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_progress_finish() {
    let mut f = Fleet::start(json!({}));
    f.add_node("alpha", 40, 0.1);
    f.wait_online(1, Duration::from_secs(10)).await;
    // About 1.2 s of tokens, streamed and not.
    let (status, _, mut stream) = f.open("/api/chat", &chat(true, 30)).await;
    assert_eq!(status, 200);
    stream.next(Duration::from_secs(5)).await.unwrap().expect("a first line");
    let url = f.url("/api/chat");
    let http = f.http.clone();
    let whole = tokio::spawn(async move { try_call(&http, "POST", &url, Some(&chat(false, 30))).await });
    let start = Instant::now();
    while f.fake_stats("alpha").await["in_flight"].as_u64() != Some(2) {
        assert!(start.elapsed() < Duration::from_secs(5), "the node never had both requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.router.signal("TERM");
    // The stream goes on to its end and the whole answer arrives...
    let rest = stream.rest(Duration::from_secs(10)).await.expect("the stream ended cleanly");
    let last: Value = serde_json::from_str(rest.iter().rev().find(|l| !l.trim().is_empty()).unwrap()).unwrap();
    assert_eq!(last["done"], true, "{last}");
    let r = whole.await.unwrap().expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["done"], true);
    // ...then the router exits on its own, well inside its 30 s drain period.
    let exit = f.router.wait_exit(Duration::from_secs(10)).expect("the router exited after the drain");
    assert!(exit.success(), "{exit:?}");
    // Both traces were written before it closed the store.
    f.restart_router();
    let traces = f.traces().await;
    assert_eq!(traces.iter().filter(|t| t["outcome"] == "completed").count(), 2, "{traces:?}");
}
