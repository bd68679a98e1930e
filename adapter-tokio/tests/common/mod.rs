//! A router and simulated Ollama nodes on real sockets, for the end-to-end tests.
#![allow(dead_code)]

use bytes::Bytes;
use clap::Parser;
use herd_core::ids::ModelName;
use herd_fake_ollama::machine::MachineSpec;
use herd_fake_ollama::{FakeConfig, FakeHandle, FakeOllama, HeartbeatTarget, Timing};
use herd_tokio::app::Args;
use herd_tokio::Running;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The `bin` folder of a Python virtual environment `name` under the target folder with the pinned
/// `packages` installed from PyPI, created on first use (a marker file names what was installed).
/// Blocking: call it from `spawn_blocking` in async tests.
pub fn venv(name: &str, packages: &[&str]) -> PathBuf {
    static CREATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let bin = dir.join("bin");
    let marker = dir.join(format!("installed-{}", packages.join("-")));
    if !marker.exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&dir).status().expect("python3 -m venv");
        assert!(ok.success(), "creating the venv {name} failed");
        let ok = Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .expect("pip");
        assert!(ok.success(), "pip install {packages:?} failed");
        std::fs::write(&marker, b"").unwrap();
    }
    bin
}

pub struct Fleet {
    pub router: Option<Running>,
    pub url: String,
    pub nodes: Vec<FakeHandle>,
    pub dir: tempfile::TempDir,
    pub client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text().lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

pub fn spec(name: &str, models: &[&str], preload: &[&str], parallel: u32) -> MachineSpec {
    MachineSpec {
        name: name.into(),
        ram_gb: 64.0,
        gpu_vram_gb: vec![],
        bandwidth_gbps: 400.0,
        num_parallel: parallel,
        max_loaded_models: 3,
        disk: models
            .iter()
            .map(|m| (ModelName::new(m), herd_core::model::size_from_name_gb(&ModelName::new(m)).unwrap_or(4.0)))
            .collect(),
        preloaded: preload.iter().map(|m| ModelName::new(m)).collect(),
        context_length: 8192,
        load_gbps: 2.0,
        ollama_version: herd_fake_ollama::machine::OLLAMA_VERSION.into(),
    }
}

pub fn fast() -> Timing {
    Timing::Fixed { first_token: Duration::ZERO, token_interval: Duration::ZERO }
}

impl Fleet {
    /// A router with `args` (besides host, port, data dir and seed) and `config` as its config file.
    pub async fn router(args: &[&str], config: Option<serde_json::Value>) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut argv: Vec<String> =
            vec!["herd", "--host", "127.0.0.1", "--seed", "7"].into_iter().map(String::from).collect();
        if !args.contains(&"--port") {
            argv.extend(["--port".to_string(), "0".to_string()]);
        }
        argv.push("--data-dir".into());
        argv.push(dir.path().display().to_string());
        // The nodes of these tests report before the first request, so the startup grace (which
        // holds unknown models until the first heartbeats) would only slow the 404 cases down.
        let mut config = config.unwrap_or_else(|| serde_json::json!({}));
        if config["fleet"]["startup_grace"].is_null() {
            config["fleet"]["startup_grace"] = serde_json::json!(0);
        }
        let p = dir.path().join("config.json");
        std::fs::write(&p, config.to_string()).unwrap();
        argv.push("--config".into());
        argv.push(p.display().to_string());
        argv.extend(args.iter().map(|s| s.to_string()));
        let args = Args::try_parse_from(argv).unwrap();
        let router = herd_tokio::start(&args).await.unwrap();
        let url = router.url();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Fleet { router: Some(router), url, nodes: Vec::new(), dir, client }
    }

    /// Adds a simulated node that reports to the router every 100 ms, and waits until it is online.
    pub async fn node(&mut self, spec: MachineSpec, timing: Timing) -> FakeHandle {
        let config = FakeConfig {
            spec,
            timing,
            heartbeat: Some(HeartbeatTarget {
                router_url: self.url.clone(),
                interval: Duration::from_millis(100),
                fleet_key: None,
            }),
        };
        let h = FakeOllama::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap();
        self.nodes.push(h.clone());
        let want = self.nodes.len();
        self.wait_online(want).await;
        h
    }

    pub async fn wait_online(&self, n: usize) {
        let app = self.router.as_ref().unwrap().app.clone();
        for _ in 0..500 {
            let online = app.driver.query(|r, _| r.fleet().nodes().filter(|x| x.routable()).count()).await.unwrap();
            if online >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} nodes never came online");
    }

    pub async fn send(&self, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = hyper::Request::builder().method(method).uri(format!("{}{}", self.url, path));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await.unwrap().unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Reply { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Reply {
        self.send("POST", path, &body.to_string(), &[("content-type", "application/json")]).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, "", &[]).await
    }

    /// Every trace recorded so far (flushes the store first).
    pub async fn traces(&self) -> Vec<herd_tokio::store::TraceRecord> {
        let r = self.router.as_ref().unwrap();
        // Traces are written when requests end; give the driver a turn to emit them.
        let _ = r.app.driver.query(|_, _| ()).await;
        let store = r.store.as_ref().unwrap();
        store.writer().flush();
        store.reader().unwrap().recent(100_000).unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for n in &self.nodes {
            n.shutdown();
        }
        if let Some(r) = self.router.take() {
            r.shutdown();
        }
    }
}
