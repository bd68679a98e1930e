//! The processes of one conformance case: the router under test (`herd` or `herd-lite`) on a free
//! loopback port and `herd-fake-ollama` nodes, all real child processes, found next to the test
//! executable (built on demand), killed and reaped on drop even when the case panics.

use crate::http::{self, Reply};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a router may take to answer `GET /` after it is started.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long nodes may take to show as online in `/fleet/status`.
const NODES_WITHIN: Duration = Duration::from_secs(10);
/// Heartbeat period of the fake nodes, seconds.
const HEARTBEAT_SECS: &str = "0.1";

/// The router a case runs against.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Router {
    /// `herd` (crate herd-tokio).
    Herd,
    /// `herd-lite` (crate herd-smol).
    Lite,
}

impl Router {
    /// The binary's name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Router::Herd => "herd",
            Router::Lite => "herd-lite",
        }
    }

    /// Flags only this router takes: herd keeps its traces in a data dir and takes a seed.
    fn own_args(self, dir: &Path) -> Vec<String> {
        match self {
            Router::Herd => {
                vec!["--data-dir".into(), dir.join("data").display().to_string(), "--seed".into(), "7".into()]
            }
            Router::Lite => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binaries.

pub use herd_sim::bins::binary;

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A child process with its stdout and stderr in `log` (the tail is printed when a case panics).
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `program`; with `first_line`, stdout is piped and its first line returned (the rest
    /// is drained so the child never blocks), else stdout goes to the log as well.
    fn spawn(name: &str, program: &Path, args: &[String], log: &Path, first_line: bool) -> (Proc, Option<String>) {
        Proc::spawn_env(name, program, args, &[], log, first_line)
    }

    /// [`Proc::spawn`] with `env` set for the child (after the settings below are cleared).
    fn spawn_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
        first_line: bool,
    ) -> (Proc, Option<String>) {
        let mut cmd = Command::new(program);
        cmd.args(args);
        // Settings from the environment would override the flags' defaults: herd's own, and
        // ollama-herd's, which the routers read too (FLEET_ENV_FILE=/dev/null: no env file).
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str().filter(|k| ["HERD_", "FAKE_OLLAMA_", "FLEET_"].iter().any(|p| k.starts_with(p)))
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("FLEET_ENV_FILE", "/dev/null");
        cmd.env("NO_COLOR", "1");
        cmd.envs(env.iter().copied());
        let open = || std::fs::OpenOptions::new().create(true).append(true).open(log).expect("opening a log");
        cmd.stdin(Stdio::null()).stderr(open());
        cmd.stdout(if first_line { Stdio::piped() } else { Stdio::from(open()) });
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {name} ({}): {e}", program.display()));
        let mut proc = Proc { name: name.to_string(), child, log: log.to_path_buf() };
        if !first_line {
            return (proc, None);
        }
        let stdout = proc.child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).ok();
        (proc, line)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} ({}), last lines ----\n{}", self.name, self.log.display(), self.tail());
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}

// ---------------------------------------------------------------------------------------------
// Fake nodes.

/// One `herd-fake-ollama` to start: fixed timing (no delays), 4 parallel slots.
#[derive(Clone, Debug)]
pub struct FakeSpec {
    name: String,
    models: Vec<String>,
    preload: Option<Vec<String>>,
    heartbeat: bool,
    fleet_key: Option<String>,
    parallel: u32,
    token_ms: u64,
    context_length: Option<u32>,
    ollama_version: Option<String>,
}

impl FakeSpec {
    /// Node `name` with `models` on disk, reporting to the router every 100 ms.
    pub fn new(name: &str, models: &[&str]) -> FakeSpec {
        FakeSpec {
            name: name.into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            preload: None,
            heartbeat: true,
            fleet_key: None,
            parallel: 4,
            token_ms: 0,
            context_length: None,
            ollama_version: None,
        }
    }

    /// The context window its models load with (the fake's default: 4096).
    pub fn context_length(mut self, n: u32) -> FakeSpec {
        self.context_length = Some(n);
        self
    }

    /// The Ollama version it runs (default: herd-fake-ollama's, recent); before 0.14.0 it has
    /// no `/v1/messages`.
    pub fn ollama_version(mut self, version: &str) -> FakeSpec {
        self.ollama_version = Some(version.into());
        self
    }

    /// Its OLLAMA_NUM_PARALLEL (default 4).
    pub fn parallel(mut self, n: u32) -> FakeSpec {
        self.parallel = n;
        self
    }

    /// Milliseconds between tokens (default 0).
    pub fn token_ms(mut self, ms: u64) -> FakeSpec {
        self.token_ms = ms;
        self
    }

    /// Models loaded at start.
    pub fn preload(mut self, models: &[&str]) -> FakeSpec {
        self.preload = Some(models.iter().map(|m| m.to_string()).collect());
        self
    }

    /// No heartbeats: a plain Ollama for the router's `--node`.
    pub fn without_heartbeats(mut self) -> FakeSpec {
        self.heartbeat = false;
        self
    }

    /// Presents `key` in its heartbeats.
    pub fn fleet_key(mut self, key: &str) -> FakeSpec {
        self.fleet_key = Some(key.into());
        self
    }
}

/// A running fake node.
struct Fake {
    name: String,
    url: String,
    _proc: Proc,
}

// ---------------------------------------------------------------------------------------------
// A fleet.

/// A router and its fake nodes. Fields drop in order: the router, the nodes (each printing its
/// log when a case failed), then the folder holding the logs.
pub struct Fleet {
    router_kind: Router,
    router: Option<Proc>,
    addr: Option<SocketAddr>,
    nodes: Vec<Fake>,
    agents: Vec<Proc>,
    bearer: Option<String>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// A fleet with nothing started yet (start static nodes first, then [`Fleet::launch`]).
    pub fn new(router: Router) -> Fleet {
        let dir = tempfile::Builder::new().prefix("herd-conformance-").tempdir().expect("a temp dir");
        Fleet {
            router_kind: router,
            router: None,
            addr: None,
            nodes: Vec::new(),
            agents: Vec::new(),
            bearer: None,
            dir,
        }
    }

    /// A router started with `args` besides host, port, `--no-mdns` and its config.
    pub fn start(router: Router, args: &[&str]) -> Fleet {
        let mut f = Fleet::new(router);
        f.launch(args);
        f
    }

    /// Starts the router on a free loopback port with `args` and a config file that turns the
    /// startup grace off (these nodes report before the first request), and waits until it
    /// answers `GET /`. Panics with the router's own output when it exits or never answers.
    pub fn launch(&mut self, args: &[&str]) {
        self.launch_with(args, json!({}));
    }

    /// [`Fleet::launch`] with `config`'s sections (`{"policy": {...}}`) in the config file too.
    pub fn launch_with(&mut self, args: &[&str], config: Value) {
        self.launch_env(args, config, &[]);
    }

    /// [`Fleet::launch_with`] with `env` in the router's environment.
    pub fn launch_env(&mut self, args: &[&str], config: Value, env: &[(&str, &str)]) {
        assert!(self.router.is_none(), "the router is already running");
        let name = self.router_kind.binary_name();
        let program = binary(name);
        let mut file = config;
        file["fleet"]["startup_grace"] = json!(0);
        let config = self.dir.path().join("config.json");
        std::fs::write(&config, file.to_string()).unwrap();
        for attempt in 1..=3 {
            let port = free_port();
            let mut argv: Vec<String> = ["--host", "127.0.0.1", "--port", &port.to_string(), "--no-mdns"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            argv.extend(["--config".to_string(), config.display().to_string()]);
            argv.extend(self.router_kind.own_args(self.dir.path()));
            argv.extend(args.iter().map(|s| s.to_string()));
            let log = self.dir.path().join(format!("{name}.log"));
            let (mut proc, _) = Proc::spawn_env(name, &program, &argv, env, &log, false);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_ready(&mut proc, addr) {
                Ok(()) => {
                    self.router = Some(proc);
                    self.addr = Some(addr);
                    return;
                }
                // Another process took the port between the probe and the bind: try another.
                Err(_) if attempt < 3 && proc.tail().to_ascii_lowercase().contains("in use") => continue,
                Err(e) => {
                    let out = proc.tail();
                    drop(proc);
                    panic!("{name} did not start: {e}\n{name} {}\n---- its output ----\n{out}", argv.join(" "));
                }
            }
        }
        unreachable!("the loop returns or panics");
    }

    /// The router's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the router is not started")
    }

    /// The router's resident memory, KiB (Linux `/proc/<pid>/status`).
    pub fn router_rss_kb(&self) -> u64 {
        let pid = self.router.as_ref().expect("the router is not started").child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The router's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Sends `Authorization: Bearer key` with every request of the harness from now on.
    pub fn use_key(&mut self, key: &str) {
        self.bearer = Some(key.into());
    }

    /// Starts a fake node and returns its URL. With heartbeats the router must be running; wait
    /// for it with [`Fleet::wait_nodes`].
    pub fn fake(&mut self, spec: FakeSpec) -> String {
        let (parallel, token_ms) = (spec.parallel.to_string(), spec.token_ms.to_string());
        let mut argv: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--timing",
            "fixed",
            "--num-parallel",
            &parallel,
            "--token-ms",
            &token_ms,
            "--name",
            &spec.name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(["--models".into(), spec.models.join(",")]);
        if let Some(p) = &spec.preload {
            argv.extend(["--preload".into(), p.join(",")]);
        }
        if spec.heartbeat {
            argv.extend(["--heartbeat-to".into(), self.url(), "--heartbeat-secs".into(), HEARTBEAT_SECS.into()]);
        }
        if let Some(k) = &spec.fleet_key {
            argv.extend(["--fleet-key".into(), k.clone()]);
        }
        if let Some(n) = spec.context_length {
            argv.extend(["--context-length".into(), n.to_string()]);
        }
        if let Some(v) = &spec.ollama_version {
            argv.extend(["--ollama-version".into(), v.clone()]);
        }
        let log = self.dir.path().join(format!("fake-{}.log", spec.name));
        let (proc, line) = Proc::spawn(&spec.name, &binary("herd-fake-ollama"), &argv, &log, true);
        let Some(url) = line.as_deref().and_then(|l| l.strip_prefix("listening on ")).map(str::to_string) else {
            panic!("fake node {} did not start ({line:?}): {}", spec.name, proc.tail());
        };
        self.nodes.push(Fake { name: spec.name, url: url.clone(), _proc: proc });
        url
    }

    /// Starts a simulated image server (`herd-fake-image --kind KIND`) offering `models`; returns
    /// its URL. [`Fleet::stop_fake`] stops it by that URL.
    pub fn image_fake(&mut self, kind: &str, models: &[&str]) -> String {
        let argv: Vec<String> =
            ["--kind", kind, "--port", "0", "--models", &models.join(","), "--secs-per-image", "0.01"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let name = format!("image-{kind}-{}", self.nodes.len());
        let log = self.dir.path().join(format!("{name}.log"));
        let (proc, line) = Proc::spawn(&name, &binary("herd-fake-image"), &argv, &log, true);
        let Some(url) = line.as_deref().and_then(|l| l.strip_prefix("listening on ")).map(str::to_string) else {
            panic!("image fake {name} did not start ({line:?}): {}", proc.tail());
        };
        self.nodes.push(Fake { name, url: url.clone(), _proc: proc });
        url
    }

    /// Stops the fake listening at `url` (its process is killed).
    pub fn stop_fake(&mut self, url: &str) {
        let i = self.nodes.iter().position(|n| n.url == url).unwrap_or_else(|| panic!("no fake at {url}"));
        drop(self.nodes.remove(i));
    }

    /// Starts a `herd-node` agent called `name` that reports the Ollama at `ollama_url` to the
    /// router every 0.2 s; returns its index for [`Fleet::stop_agent`].
    pub fn agent(&mut self, name: &str, ollama_url: &str) -> usize {
        self.agent_env(name, ollama_url, &[])
    }

    /// [`Fleet::agent`] with `env` for the agent (`OLLAMA_MAX_LOADED_MODELS`, which it reports).
    pub fn agent_env(&mut self, name: &str, ollama_url: &str, env: &[(&str, &str)]) -> usize {
        let argv: Vec<String> =
            ["--router-url", &self.url(), "--ollama-host", ollama_url, "--node-id", name, "--heartbeat-secs", "0.2"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let log = self.dir.path().join(format!("agent-{name}.log"));
        let (proc, _) = Proc::spawn_env(&format!("herd-node {name}"), &binary("herd-node"), &argv, env, &log, false);
        self.agents.push(proc);
        self.agents.len() - 1
    }

    /// Sends SIGTERM to agent `index` (it drains from the router) and waits for it to exit.
    pub fn stop_agent(&mut self, index: usize) -> ExitStatus {
        let proc = &mut self.agents[index];
        let ok = Command::new("kill").args(["-TERM", &proc.child.id().to_string()]).status().expect("kill");
        assert!(ok.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = proc.exited() {
                return status;
            }
            assert!(start.elapsed() < NODES_WITHIN, "agent did not exit on SIGTERM: {}", proc.tail());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fake node `name`'s counters (`GET /_fake/stats`): requests per path, the last body.
    pub fn fake_stats(&self, name: &str) -> Value {
        let url = self.fake_url(name);
        let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("a fake's address");
        let r = http::call(addr, "GET", "/_fake/stats", &[], b"").unwrap_or_else(|e| panic!("{name} stats: {e}"));
        r.json()
    }

    /// The URL of fake node `name`.
    pub fn fake_url(&self, name: &str) -> String {
        self.nodes.iter().find(|n| n.name == name).map(|n| n.url.clone()).unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Polls `/fleet/status` until every node in `names` is listed with status `online`.
    pub fn wait_nodes(&self, names: &[&str]) {
        let start = Instant::now();
        loop {
            let r = self.try_get("/fleet/status");
            let online: Vec<String> = r
                .as_ref()
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .and_then(|v| v["nodes"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|n| n["status"] == "online")
                .filter_map(|n| n["node_id"].as_str().map(str::to_string))
                .collect();
            if names.iter().all(|n| online.iter().any(|o| o == n)) {
                return;
            }
            assert!(
                start.elapsed() < NODES_WITHIN,
                "nodes {names:?} not online within {NODES_WITHIN:?}; /fleet/status: {:?}",
                r.map(|r| r.text())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request with the harness's key, if any; `Err` on a wire failure.
    pub fn try_send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, String> {
        let auth = self.bearer.as_ref().map(|k| format!("Bearer {k}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
                all.push(("authorization", a));
            }
        }
        http::call(self.addr(), method, path, &all, body)
    }

    /// One request that must get a whole answer.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.try_send(method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_get(&self, path: &str) -> Result<Reply, String> {
        self.try_send("GET", path, &[], b"")
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], b"")
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, &[("content-type", "application/json")], body.to_string().as_bytes())
    }

    /// Polls `GET /fleet/traces` until `done` holds for the traces (newest first), at most 10 s;
    /// traces are written when requests end, possibly in batches.
    pub fn traces_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.get("/fleet/traces?limit=1000");
            assert_eq!(r.status, 200, "/fleet/traces: {}", r.text());
            let traces =
                r.json()["traces"].as_array().cloned().unwrap_or_else(|| panic!("no traces array: {}", r.text()));
            if done(&traces) {
                return traces;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "traces never showed {what}: {traces:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The fleet's temp dir (logs, config, Python output).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Polls `GET /` until it answers 200, failing early when the process exits.
fn wait_ready(proc: &mut Proc, addr: SocketAddr) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            return Err(format!("it exited ({status}) before answering GET / on {addr}"));
        }
        let probe = http::exchange(addr, http::request_bytes(addr, "GET", "/", &[], b""), Duration::from_secs(2));
        // Still running after the answer: the 200 came from it, not from whatever else got the port.
        if probe.ok().and_then(|p| http::parse(&p.bytes, false).ok()).is_some_and(|r| r.status == 200)
            && proc.exited().is_none()
        {
            return Ok(());
        }
        if start.elapsed() > READY_WITHIN {
            return Err(format!("GET / on {addr} did not answer 200 within {READY_WITHIN:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
