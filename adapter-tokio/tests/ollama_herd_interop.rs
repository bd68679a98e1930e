//! Interop with the real ollama-herd node agent: `herd-node` from the `ollama-herd` 0.11.4 Python
//! package, installed by this test in a virtual environment under the target folder, reports a
//! simulated Ollama (which sends no heartbeats of its own) to `herd`. The agent registers, chats go
//! through the router to the simulated Ollama, and on SIGTERM the agent's drain message takes the
//! node out of routing.
//!
//! The agent is kept on this machine: it gets `--router-url` (so it never browses mDNS), telemetry
//! off, a temporary HOME, no proxies, and `tests/interop/sitecustomize.py` on its PYTHONPATH, which
//! refuses and reports any socket connect, sendto or name lookup outside the loopback range. The
//! only refusal expected is the agent's LAN-address probe (a UDP connect to 10.255.255.255, which
//! sends nothing); refusing it makes the agent advertise 127.0.0.1 instead of starting its LAN
//! proxy on the machine's own interface address.

mod common;

use common::{fast, spec, Fleet};
use herd_fake_ollama::{FakeConfig, FakeHandle, FakeOllama};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

const MODEL: &str = "qwen3:8b";
const NODE: &str = "py1";
const GUARD_MARK: &str = "herd-interop-guard: refused";
/// The agent's `get_local_ip()` probe: a UDP connect that sends no packet.
const EXPECTED_REFUSAL: &str = "('10.255.255.255', 1)";

/// The venv's `herd-node`, with ollama-herd 0.11.4 installed.
fn herd_node() -> PathBuf {
    let bin = common::venv("ollama-herd-0.11.4-venv", &["ollama-herd==0.11.4"]).join("herd-node");
    assert!(bin.exists(), "ollama-herd 0.11.4 installed no {}", bin.display());
    bin
}

/// The running agent, its captured output, and its HOME. Prints its output when dropped (shown
/// with `--nocapture` or when the test fails) and kills it if it is still running.
struct Agent {
    child: tokio::process::Child,
    output: Arc<Mutex<Vec<String>>>,
    home: tempfile::TempDir,
    started: Instant,
}

impl Agent {
    async fn spawn(bin: &Path, router_url: &str, ollama_url: &str) -> Agent {
        let home = tempfile::tempdir().unwrap();
        let guard_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
        let mut cmd = tokio::process::Command::new(bin);
        // Nothing of the caller's herd settings or proxies reaches the agent.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FLEET_") {
                cmd.env_remove(&k);
            }
        }
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            cmd.env_remove(var);
        }
        cmd.args(["--router-url", router_url, "--ollama-host", ollama_url, "--node-id", NODE])
            .env("HOME", home.path())
            .env("FLEET_ENV_FILE", home.path().join(".fleet-manager/env"))
            .env("FLEET_TELEMETRY", "false")
            .env("FLEET_NODE_TELEMETRY", "false")
            // One second instead of five, so a second heartbeat (with unchanged metadata sent as
            // null) arrives within the test.
            .env("FLEET_NODE_HEARTBEAT_INTERVAL", "1")
            .env("PYTHONPATH", &guard_dir)
            .env("PYTHONNOUSERSITE", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("COLUMNS", "200")
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), "out", output.clone());
        collect(child.stderr.take().unwrap(), "err", output.clone());
        Agent { child, output, home, started: Instant::now() }
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Panics with the agent's output if it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("herd-node exited early ({status}) after {:?}", self.started.elapsed());
        }
    }

    /// Off-host attempts the guard refused, other than the expected LAN-address probe.
    fn unexpected_refusals(&self) -> Vec<String> {
        self.output().into_iter().filter(|l| l.contains(GUARD_MARK) && !l.contains(EXPECTED_REFUSAL)).collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        println!("---- herd-node output ({:?} since start) ----", self.started.elapsed());
        for line in self.output() {
            println!("{line}");
        }
        let log = self.home.path().join(".fleet-manager/logs/herd-node.jsonl");
        if std::thread::panicking() {
            if let Ok(text) = std::fs::read_to_string(&log) {
                println!("---- {} (last 40 lines) ----", log.display());
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(40)..] {
                    println!("{l}");
                }
            }
        }
        println!("---- end of herd-node output ----");
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, tag: &'static str, into: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap_or_else(|e| e.into_inner()).push(format!("[{tag}] {line}"));
        }
    });
}

/// The node's entry in `GET /fleet/status`, if it is there.
async fn node_status(f: &Fleet) -> Option<Value> {
    let r = f.get("/fleet/status").await;
    assert_eq!(r.status, 200, "GET /fleet/status: {}", r.text());
    r.json()["nodes"].as_array()?.iter().find(|n| n["node_id"] == NODE).cloned()
}

fn lists_model(node: &Value) -> bool {
    ["models_loaded", "models_available"]
        .iter()
        .any(|k| node[*k].as_array().is_some_and(|ms| ms.iter().any(|m| m == MODEL)))
}

/// When the router last took a report from the node (core's clock, microseconds).
async fn last_report(f: &Fleet) -> Option<u64> {
    let app = f.router.as_ref().unwrap().app.clone();
    app.driver.query(|r, _| r.fleet().by_name(NODE).map(|n| n.last_report().as_micros())).await.flatten()
}

fn chat(stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn chats_seen(fake: &FakeHandle) -> u64 {
    fake.stats().requests.get("/api/chat").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_herd_agent_registers_serves_chats_and_drains() {
    let t0 = Instant::now();
    let bin = tokio::task::spawn_blocking(herd_node).await.unwrap();
    println!("herd-node ready at {} after {:?}", bin.display(), t0.elapsed());

    // No mDNS advertising from our side either (the flag is accepted today; it keeps this test local
    // if the router ever advertises).
    let f = Fleet::router(&["--no-mdns"], None).await;
    let fake = FakeOllama::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeConfig { spec: spec(NODE, &[MODEL], &[MODEL], 4), timing: fast(), heartbeat: None },
    )
    .await
    .unwrap();
    let mut agent = Agent::spawn(&bin, &f.url, &fake.url()).await;

    // 1. The agent registers: py1 online with the model.
    let deadline = Instant::now() + Duration::from_secs(60);
    let node = loop {
        agent.assert_running();
        if let Some(n) = node_status(&f).await {
            if n["status"] == "online" && lists_model(&n) {
                break n;
            }
        }
        assert!(Instant::now() < deadline, "py1 never came online with {MODEL} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("registered after {:?}: {node:#}", agent.started.elapsed());
    // The agent advertised 127.0.0.1 (its LAN probe was refused), so the router reaches the fake
    // directly on loopback.
    assert_eq!(node["url"], fake.url(), "the router's address for py1");
    assert_eq!(node["ollama_reachable"], true);

    // 2. Chats go through the router to the simulated Ollama behind the agent.
    let before = chats_seen(&fake);
    let r = f.post("/api/chat", chat(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), NODE);
    let v = r.json();
    assert_eq!(v["done"], true, "{v}");
    assert!(v["message"]["content"].as_str().is_some_and(|c| !c.is_empty()), "{v}");

    let r = f.post("/api/chat", chat(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-herd-node"), NODE);
    let lines = r.lines();
    assert!(lines.len() >= 2, "{}", r.text());
    assert_eq!(lines.last().unwrap()["done"], true);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false), "{}", r.text());
    let content: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert!(!content.is_empty(), "{}", r.text());
    assert_eq!(chats_seen(&fake) - before, 2, "the fake's request counts: {:?}", fake.stats().requests);
    println!("both chats served by {NODE} after {:?}", agent.started.elapsed());

    // 3. A later heartbeat (unchanged metadata, sent as null) keeps the node online with its model.
    // Waiting for one also times SIGTERM to land while the agent sleeps between heartbeats, not
    // while a heartbeat is in flight (one that lands after the drain would mark the node online
    // again; that race is the agent's, reference herd-node.md §1.15).
    let seen = last_report(&f).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while last_report(&f).await == seen {
        agent.assert_running();
        assert!(Instant::now() < deadline, "no further heartbeat from py1 within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = agent.child.id().expect("agent pid");
    let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(ok.success(), "kill -TERM {pid}");
    let node = node_status(&f).await.unwrap();
    assert!(lists_model(&node), "a heartbeat with null metadata lost the models: {node:#}");

    // 4. The agent's drain message takes py1 out of routing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let n = node_status(&f).await.unwrap();
        if n["status"] == "draining" || n["status"] == "offline" {
            break n["status"].clone();
        }
        assert!(Instant::now() < deadline, "py1 still {} 10 s after SIGTERM: {n:#}", n["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("py1 {status} after SIGTERM");
    let exit = tokio::time::timeout(Duration::from_secs(15), agent.child.wait())
        .await
        .expect("herd-node still running 15 s after SIGTERM")
        .unwrap();
    assert!(exit.success(), "herd-node exited with {exit}");
    // Its output streams end with the process; give the readers a moment to take the last lines.
    for _ in 0..50 {
        if agent.output().iter().any(|l| l.contains("Drain signal received")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 5. The router took every heartbeat, and the agent tried nothing off this machine.
    let out = agent.output();
    let complaints: Vec<&String> = out
        .iter()
        .filter(|l| {
            [
                "Heartbeat response: HTTP",
                "Router rejected heartbeat",
                "Heartbeat cycle failed",
                "Cannot reach router",
                "Unknown command type",
                "Failed to send drain signal",
                "Traceback",
            ]
            .iter()
            .any(|p| l.contains(p))
        })
        .collect();
    assert!(complaints.is_empty(), "the agent reported trouble: {complaints:#?}");
    assert!(out.iter().any(|l| l.contains("Drain signal received")), "the agent never drained");
    let refused = agent.unexpected_refusals();
    assert!(refused.is_empty(), "herd-node tried to reach off this machine: {refused:#?}");
    println!("what the simulated Ollama served (agent probes and the two chats): {:?}", fake.stats().requests);
    println!("passed in {:?} (agent ran {:?})", t0.elapsed(), agent.started.elapsed());
}
