//! Interop with the real ollama-herd router: our `herd-node` registers with `herd` from the
//! `ollama-herd` 0.11.4 Python package (installed by the test in a virtual environment under the
//! target folder, shared with adapter-tokio's interop test), and that router then routes a chat
//! through the node to the simulated Ollama behind it. On SIGTERM our drain message takes the node
//! offline there.
//!
//! Nothing may reach the machine's real network, and ollama-herd's router advertises itself over
//! mDNS whenever it starts (zeroconf on every interface; no setting turns it off). So, after
//! creating the venv (pip needs the network), the test re-executes its own binary under
//! `unshare --net` and runs in that fresh network namespace, which has nothing but loopback; the
//! router, `herd-node` and the simulated Ollama all run there and vanish with it. Without
//! permission to create a namespace the test fails loudly, unless `HERD_SKIP_NETNS=1` says to skip
//! it (as `tests/mdns.rs` does).
//!
//! Inside, the router also runs with a temporary HOME, telemetry off, no `FLEET_*` settings or
//! proxies from the caller, and adapter-tokio's `tests/interop/sitecustomize.py` on its
//! PYTHONPATH, which refuses and reports every socket connect, sendto and name lookup outside the
//! loopback range. The guard patches Python's socket methods, which uvloop's transports bypass,
//! so the router is started through its own entry point (`fleet_manager.cli.server_cli:main`, what
//! the venv's `herd` script runs) with `uvloop` made unimportable: uvicorn then falls back to the
//! standard asyncio loop, whose sockets the guard sees. Refusals expected and allowed:
//!
//! - `connect(type=2) ('10.255.255.255', 1)`: the router's `get_local_ip()` probe, a UDP connect
//!   that sends nothing; refused, the router falls back to 127.0.0.1 for its mDNS record.
//! - `sendto(type=2) ('224.0.0.251', 5353)`: zeroconf's mDNS probes and announcements (IPv4 only:
//!   `AsyncZeroconf()` on all interfaces). zeroconf logs a warning (with a traceback, once) and the
//!   router starts and runs normally; the test checks that the guard did see them, which proves it
//!   watches the router's sockets.

#[path = "../../adapter-tokio/tests/common/mod.rs"]
mod common;
mod netns;

use bytes::Bytes;
use common::{fast, spec, Reply};
use herd_fake_ollama::{FakeConfig, FakeHandle, FakeOllama};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

const TEST: &str = "herd_node_registers_with_ollama_herd_and_serves_its_chats";
/// Set in the test's namespace to the namespace of the process that started it.
const NETNS_ENV: &str = "HERD_OLLAMA_HERD_ROUTER_TEST_NETNS";
const MODEL: &str = "qwen3:8b";
const NODE: &str = "rust-node";
const GUARD_MARK: &str = "herd-interop-guard: refused";
/// Guard refusals that are expected (see the module docs).
const EXPECTED_REFUSALS: &[&str] = &["connect(type=2) ('10.255.255.255', 1)", "sendto(type=2) ('224.0.0.251', 5353)"];
/// Start-up of the Python router (imports, SQLite stores, zeroconf probing).
const ROUTER_READY_WITHIN: Duration = Duration::from_secs(60);
/// `herd-node` sends its first heartbeat at once, then one a second.
const REGISTERED_WITHIN: Duration = Duration::from_secs(20);
/// The drain is sent as soon as the signal arrives; the router applies it at once.
const OFFLINE_WITHIN: Duration = Duration::from_secs(5);

/// The venv's `python`, with ollama-herd 0.11.4 installed.
fn venv_python() -> PathBuf {
    let bin = common::venv("ollama-herd-0.11.4-venv", &["ollama-herd==0.11.4"]);
    assert!(bin.join("herd").exists(), "ollama-herd 0.11.4 installed no {}", bin.join("herd").display());
    bin.join("python")
}

#[test]
fn herd_node_registers_with_ollama_herd_and_serves_its_chats() {
    // The venv is made here, in the caller's namespace, where pip can reach PyPI; inside the
    // test's namespace it is only looked up.
    let python = venv_python();
    if !netns::inside_netns(NETNS_ENV, TEST, "ollama-herd's router (it advertises over mDNS)") {
        return;
    }
    runtime().block_on(scenario(&python));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// ---- child processes ------------------------------------------------------------------------

/// A child process with its output collected line by line; killed when dropped, its output printed
/// then if the test is failing.
struct Proc {
    name: &'static str,
    child: tokio::process::Child,
    output: Arc<Mutex<Vec<String>>>,
    started: Instant,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: tokio::process::Command) -> Proc {
        // Nothing of the caller's herd or ollama-herd settings, or proxies, reaches the child.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("FLEET_") || k.starts_with("HERD_") || k.starts_with("OLLAMA_") {
                cmd.env_remove(&k);
            }
        }
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            cmd.env_remove(var);
        }
        cmd.env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), "out", output.clone());
        collect(child.stderr.take().unwrap(), "err", output.clone());
        Proc { name, child, output, started: Instant::now() }
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Output lines containing `pat`.
    fn lines_with(&self, pat: &str) -> Vec<String> {
        self.output().into_iter().filter(|l| l.contains(pat)).collect()
    }

    /// Panics if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early ({status}) after {:?}", self.name, self.started.elapsed());
        }
    }

    /// Waits (bounded) until `pat` shows up in the output; the readers lag the process a little.
    async fn wait_for_line(&self, pat: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.lines_with(pat).is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap_or_else(|| panic!("{} has no pid (exited?)", self.name));
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill");
        assert!(ok.success(), "kill {sig} {pid} ({})", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            println!("---- {} output ({:?} since start) ----", self.name, self.started.elapsed());
            for line in self.output() {
                println!("{line}");
            }
            println!("---- end of {} output ----", self.name);
        }
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

/// ollama-herd's router on 127.0.0.1:`port`, HOME in `home`.
fn start_router(python: &Path, port: u16, home: &Path) -> Proc {
    let guard = Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapter-tokio/tests/interop");
    assert!(guard.join("sitecustomize.py").exists(), "no network guard at {}", guard.display());
    // The venv's `herd` script, with uvloop unimportable (see the module docs).
    let entry = "import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'herd'; \
                 from fleet_manager.cli.server_cli import main; sys.exit(main())";
    let mut cmd = tokio::process::Command::new(python);
    cmd.args(["-c", entry, "--host", "127.0.0.1", "--port", &port.to_string()])
        .current_dir(home)
        .env("HOME", home)
        .env("FLEET_ENV_FILE", home.join(".fleet-manager/env"))
        .env("FLEET_TELEMETRY", "false")
        .env("FLEET_NODE_TELEMETRY", "false")
        .env("PYTHONPATH", &guard)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("COLUMNS", "200");
    Proc::spawn("ollama-herd router", cmd)
}

/// Our `herd-node`, reporting the Ollama at `ollama` to the router at `router`.
fn start_node(router: &str, ollama: &str, home: &Path) -> Proc {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_herd-node"));
    cmd.args(["--router-url", router, "--ollama-host", ollama, "--node-id", NODE, "--heartbeat-secs", "1"])
        .env("HOME", home)
        .env("HERD_LOG", "herd_node=debug")
        // tracing-subscriber colours its output even into a pipe unless told not to.
        .env("NO_COLOR", "1");
    Proc::spawn("herd-node", cmd)
}

// ---- HTTP -----------------------------------------------------------------------------------

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn send(client: &HttpClient, method: &str, url: &str, body: Option<&Value>) -> Result<Reply, String> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.map(Value::to_string).unwrap_or_default()))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| format!("{method} {url}: no answer within 30 s"))?
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).map_err(|e| format!("{method} {url}: body: {e}"))?;
    Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// The router's `GET /fleet/status`.
async fn fleet_status(client: &HttpClient, router: &str) -> Value {
    let r = send(client, "GET", &format!("{router}/fleet/status"), None).await.unwrap();
    assert_eq!(r.status, 200, "GET /fleet/status: {}", r.text());
    r.json()
}

/// Our node's entry in the router's `GET /fleet/status`, if it is there.
async fn node_status(client: &HttpClient, router: &str) -> Option<Value> {
    fleet_status(client, router).await["nodes"].as_array()?.iter().find(|n| n["node_id"] == NODE).cloned()
}

fn loaded(node: &Value) -> Vec<String> {
    node["ollama"]["models_loaded"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn chat() -> Value {
    json!({"model": MODEL, "stream": false, "messages": [{"role": "user", "content": "why is the sky blue?"}]})
}

fn chats_seen(fake: &FakeHandle) -> u64 {
    fake.stats().requests.get("/api/chat").copied().unwrap_or(0)
}

/// The router's access-log lines for heartbeats (uvicorn writes one per request, after answering).
fn heartbeat_lines(router: &Proc) -> Vec<String> {
    router.lines_with("\"POST /heartbeat HTTP/1.1\"")
}

// ---- the scenario ---------------------------------------------------------------------------

async fn scenario(python: &Path) {
    let t0 = Instant::now();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // The simulated Ollama, qwen3:8b loaded; it sends no heartbeats of its own.
    let fake = FakeOllama::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeConfig { spec: spec("sim", &[MODEL], &[MODEL], 2), timing: fast(), heartbeat: None },
    )
    .await
    .unwrap();

    // 1. ollama-herd's router, on a free loopback port of this namespace.
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let router_url = format!("http://127.0.0.1:{port}");
    let mut router = start_router(python, port, home.path());
    let deadline = Instant::now() + ROUTER_READY_WITHIN;
    loop {
        router.assert_running();
        if let Ok(r) = send(&client, "GET", &format!("{router_url}/fleet/status"), None).await {
            assert_eq!(r.status, 200, "GET /fleet/status: {}", r.text());
            break;
        }
        assert!(Instant::now() < deadline, "ollama-herd's router did not answer within {ROUTER_READY_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("ollama-herd router answering at {router_url} after {:?}", router.started.elapsed());

    // 2. herd-node registers: rust-node online there with the model loaded.
    let node_home = tempfile::tempdir().unwrap();
    let mut node = start_node(&router_url, &fake.url(), node_home.path());
    let deadline = Instant::now() + REGISTERED_WITHIN;
    let status = loop {
        node.assert_running();
        router.assert_running();
        if let Some(n) = node_status(&client, &router_url).await {
            if n["status"] == "online" && loaded(&n).iter().any(|m| m == MODEL) {
                break n;
            }
        }
        assert!(Instant::now() < deadline, "{NODE} never came online with {MODEL} within {REGISTERED_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{NODE} registered after {:?}: {status:#}", node.started.elapsed());
    // A heartbeat from loopback makes ollama-herd use http://localhost:<port of ollama_host>.
    let fake_port = fake.url().rsplit(':').next().unwrap().to_string();
    assert_eq!(status["ollama_url"], format!("http://localhost:{fake_port}"), "{status:#}");
    assert!(status["hardware"]["memory_total_gb"].as_f64().is_some_and(|g| g > 0.0), "{status:#}");
    assert!(status["hardware"]["cores_physical"].as_u64().is_some_and(|c| c > 0), "{status:#}");
    assert!(
        status["ollama"]["models_available"].as_array().is_some_and(|ms| ms.iter().any(|m| m == MODEL)),
        "{status:#}"
    );

    // 3. A chat through ollama-herd's router reaches the simulated Ollama behind herd-node.
    // The reference answer: the fake's own for the same chat (its text is a function of the
    // messages).
    let direct = send(&client, "POST", &format!("{}/api/chat", fake.url()), Some(&chat())).await.unwrap();
    assert_eq!(direct.status, 200, "the fake itself: {}", direct.text());
    let expected = direct.json()["message"]["content"].as_str().unwrap_or_default().to_string();
    assert!(!expected.is_empty(), "{}", direct.text());
    let (chats_before, completed_before) = (chats_seen(&fake), fake.stats().completed);
    let r = send(&client, "POST", &format!("{router_url}/api/chat"), Some(&chat())).await.unwrap();
    assert_eq!(r.status, 200, "POST /api/chat via ollama-herd: {}", r.text());
    assert_eq!(r.header("x-fleet-node"), NODE, "headers: {:?}", r.headers);
    let v = r.json();
    assert_eq!(v["done"], true, "{v}");
    assert_eq!(v["model"], MODEL, "{v}");
    assert_eq!(v["message"]["role"], "assistant", "{v}");
    assert_eq!(v["message"]["content"], expected.as_str(), "the simulated answer, via ollama-herd: {v}");
    let stats = fake.stats();
    assert_eq!(chats_seen(&fake) - chats_before, 1, "the fake's request counts: {:?}", stats.requests);
    assert!(stats.completed > completed_before, "the fake completed nothing: {stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    println!("chat served through {NODE} after {:?}: {v}", node.started.elapsed());

    // 4. SIGTERM, timed just after a heartbeat was answered so none is in flight when the drain
    // goes out (a heartbeat landing after the drain would put the node back online).
    let seen = heartbeat_lines(&router).len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat_lines(&router).len() == seen {
        node.assert_running();
        assert!(Instant::now() < deadline, "no further heartbeat from {NODE} within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heartbeats = heartbeat_lines(&router).len();
    node.signal("-TERM");
    let signalled = Instant::now();
    let deadline = signalled + OFFLINE_WITHIN;
    loop {
        let n = node_status(&client, &router_url).await.expect("the router forgot the node");
        if n["status"] == "offline" {
            break;
        }
        assert!(Instant::now() < deadline, "{NODE} still {} {OFFLINE_WITHIN:?} after SIGTERM: {n:#}", n["status"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{NODE} offline at ollama-herd {:?} after SIGTERM", signalled.elapsed());
    let exit = tokio::time::timeout(Duration::from_secs(10), node.child.wait())
        .await
        .expect("herd-node still running 10 s after SIGTERM")
        .unwrap();
    assert!(exit.success(), "herd-node exited with {exit}");
    // Still offline once herd-node is gone: nothing it sent landed after the drain.
    let n = node_status(&client, &router_url).await.unwrap();
    assert_eq!(n["status"], "offline", "{n:#}");
    assert!(router.wait_for_line(&format!("Drain signal received from {NODE}"), Duration::from_secs(2)).await);
    assert!(node.wait_for_line("drained: the router has taken this node out", Duration::from_secs(2)).await);
    let fleet = fleet_status(&client, &router_url).await;
    assert_eq!(fleet["fleet"]["nodes_online"], 0, "{fleet:#}");

    // 5. ollama-herd took every heartbeat (and the drain), and refused nothing.
    let hb = heartbeat_lines(&router);
    assert!(hb.len() > heartbeats, "the drain never reached the router: {hb:#?}");
    let refused: Vec<&String> = hb.iter().filter(|l| !l.contains(" 200")).collect();
    assert!(refused.is_empty(), "ollama-herd answered heartbeats with an error: {refused:#?}");
    let trouble: Vec<String> = router
        .output()
        .into_iter()
        .filter(|l| {
            ["Malformed heartbeat", "Exception in ASGI application", "ValidationError"].iter().any(|p| l.contains(p))
        })
        .collect();
    assert!(trouble.is_empty(), "ollama-herd's router reported trouble: {trouble:#?}");
    let complaints = node.lines_with("router refused the heartbeat");
    assert!(complaints.is_empty(), "herd-node reported refusals: {complaints:#?}");
    assert!(!node.lines_with("registered with the router").is_empty(), "herd-node never logged its registration");

    // 6. The router tried nothing off this machine beyond the expected mDNS and LAN-address probes.
    let refusals = router.lines_with(GUARD_MARK);
    let unexpected: Vec<&String> =
        refusals.iter().filter(|l| !EXPECTED_REFUSALS.iter().any(|e| l.contains(e))).collect();
    assert!(unexpected.is_empty(), "ollama-herd's router tried to reach off this machine: {unexpected:#?}");
    // And the guard did see the router's sockets: zeroconf's announcements went through it (they
    // would not under uvloop).
    assert!(
        refusals.iter().any(|l| l.contains("('224.0.0.251', 5353)")),
        "the guard saw no mDNS traffic from the router; is it still on uvloop? {refusals:#?}"
    );
    println!(
        "{} heartbeats (drain included) all answered 200; guard refusals, all expected: {}",
        hb.len(),
        refusals.len()
    );
    println!("what the simulated Ollama served: {:?}", fake.stats().requests);
    drop(node);
    drop(router);
    fake.shutdown();
    println!("passed in {:?}", t0.elapsed());
}
