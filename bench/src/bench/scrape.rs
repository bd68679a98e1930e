//! `herd-bench --scrape`: what one Prometheus scrape of a large fleet costs.
//!
//! Two figures. Over HTTP: a real `herd` (and `herd-lite` with `--lite`) is told of `nodes`
//! nodes with `models` models loaded each through ordinary heartbeats, then `GET /metrics` is
//! timed `scrapes` times on one kept-alive connection (driver round trip, render, transfer).
//! In process: core's metrics with every request series, histogram and fleet gauge filled for the
//! same fleet (what a long-running router accumulates), rendered `scrapes` times.

use herd_core::api::Surface;
use herd_core::config::RouterConfig;
use herd_core::ids::{ModelName, RequestId};
use herd_core::metrics::{BuildInfo, ChunkGaps, Metrics, MetricsConfig};
use herd_core::router::{Outcome, Router, Trace, Usage};
use herd_core::time::Instant as CoreInstant;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fleet to scrape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub nodes: usize,
    pub models: usize,
    pub scrapes: usize,
}

/// One heartbeat of node `i` with `models` models loaded.
fn heartbeat(i: usize, models: usize) -> Value {
    let loaded: Vec<Value> = (0..models)
        .map(|m| json!({"name": format!("model-{m}:8b"), "size_gb": 5.2, "context_length": 8192, "requests_active": 0}))
        .collect();
    let names: Vec<String> = (0..models).map(|m| format!("model-{m}:8b")).collect();
    json!({
        "node_id": format!("node-{i:03}"),
        "machine_id": format!("machine-{i:03}"),
        "ollama_host": format!("http://127.0.0.1:{}", 20000 + i),
        "memory": {"total_gb": 128.0, "used_gb": 64.0, "available_gb": 64.0},
        "cpu": {"cores_physical": 16, "utilization_pct": 10.0},
        "gpus": [{"index": 0, "name": "H100", "vram_total_bytes": 85_899_345_920u64, "vram_used_bytes": 42_949_672_960u64}],
        "ollama": {"models_loaded": loaded, "models_available": names, "num_parallel": 4},
    })
}

/// Percentile of sorted milliseconds.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A router process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange on a kept-alive connection: status and body.
fn exchange(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let w = stream.get_mut();
    w.write_all(head.as_bytes()).and_then(|_| w.write_all(body)).map_err(|e| e.to_string())?;
    let mut line = String::new();
    stream.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        stream.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut out = vec![0; length.ok_or("no content-length")?];
    stream.read_exact(&mut out).map_err(|e| e.to_string())?;
    Ok((status, out))
}

/// Starts `program` on a free port and waits until it answers.
fn start(program: &Path, dir: &Path) -> Result<(Proc, SocketAddr), String> {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let mut cmd = Command::new(program);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    if program.file_name().is_some_and(|n| n == "herd") {
        cmd.args(["--no-mdns", "--data-dir"]).arg(dir);
    }
    let child =
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| format!("{}: {e}", program.display()))?;
    let proc = Proc(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("{} did not start", program.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, addr))
}

/// Scrape timings over HTTP: (p50 ms, p99 ms, max ms, bytes, series).
pub fn over_http(program: &Path, dir: &Path, shape: Shape) -> Result<(f64, f64, f64, usize, usize), String> {
    let (_proc, addr) = start(program, dir)?;
    let mut conn = BufReader::new(TcpStream::connect(addr).map_err(|e| e.to_string())?);
    for i in 0..shape.nodes {
        let (status, body) =
            exchange(&mut conn, "POST", "/heartbeat", heartbeat(i, shape.models).to_string().as_bytes())?;
        if status != 200 {
            return Err(format!("heartbeat {i}: {status} {}", String::from_utf8_lossy(&body)));
        }
    }
    let mut times = Vec::with_capacity(shape.scrapes);
    let mut last = Vec::new();
    for _ in 0..shape.scrapes + 10 {
        let t = Instant::now();
        let (status, body) = exchange(&mut conn, "GET", "/metrics", b"")?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            return Err(format!("/metrics: {status}"));
        }
        last = body;
    }
    // The first scrapes warm caches and allocators.
    let mut times = times.split_off(10);
    times.sort_by(f64::total_cmp);
    let text = String::from_utf8_lossy(&last);
    let loaded = text.lines().filter(|l| l.starts_with("herd_model_loaded_bytes{")).count();
    if loaded != shape.nodes * shape.models {
        return Err(format!("expected {} loaded-model series, got {loaded}", shape.nodes * shape.models));
    }
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    Ok((pct(&times, 50.0), pct(&times, 99.0), times[times.len() - 1], last.len(), series))
}

/// Render timings in process with every series filled: (p50 ms, p99 ms, bytes, series).
pub fn in_process(shape: Shape) -> Result<(f64, f64, usize, usize), String> {
    let mut config = RouterConfig::default();
    config.fleet.startup_grace = Duration::ZERO;
    let mut router = Router::new(config, 1, CoreInstant::ZERO).map_err(|e| e.to_string())?;
    for i in 0..shape.nodes {
        let hb = heartbeat(i, shape.models).to_string();
        router.handle_heartbeat(CoreInstant::ZERO, hb.as_bytes()).map_err(|e| format!("heartbeat {i}: {e}"))?;
    }
    let mut metrics = Metrics::new(MetricsConfig::default());
    let nodes: Vec<_> = router.fleet().nodes().map(|n| n.id()).collect();
    let mut gaps = ChunkGaps::default();
    (1..40).for_each(|ms| gaps.observe(Duration::from_millis(ms)));
    let mut id = 0;
    for &node in &nodes {
        for m in 0..shape.models {
            for (surface, outcome) in [
                (Surface::OllamaChat, Outcome::Completed(Usage { prompt_tokens: 10, completion_tokens: 90 })),
                (Surface::OpenAiChat, Outcome::Completed(Usage { prompt_tokens: 10, completion_tokens: 90 })),
                (Surface::OpenAiChat, Outcome::ClientGone),
            ] {
                id += 1;
                let model = ModelName::new(&format!("model-{m}:8b"));
                let trace = Trace {
                    request: RequestId(id),
                    requested_model: model.clone(),
                    anthropic_model: None,
                    served_model: Some(model.clone()),
                    node: Some(node),
                    attempts: 1,
                    outcome,
                    queued: Duration::from_millis(id % 50),
                    ttft: Some(Duration::from_millis(20 + id % 300)),
                    total: Duration::from_millis(200 + id % 5000),
                    cold_load: (id % 7 == 0).then(|| Duration::from_secs(3)),
                    tags: Vec::new(),
                    client: None,
                };
                metrics.observe_end(&router, surface, &trace);
                metrics.observe_gaps(&model, &gaps);
            }
        }
    }
    let build = BuildInfo { binary: "herd", version: env!("CARGO_PKG_VERSION") };
    let mut times = Vec::with_capacity(shape.scrapes);
    let mut text = String::new();
    for _ in 0..shape.scrapes + 10 {
        text.clear();
        let t = Instant::now();
        metrics.render(&router, CoreInstant::ZERO + Duration::from_secs(1), build, &mut text);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut times = times.split_off(10);
    times.sort_by(f64::total_cmp);
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    Ok((pct(&times, 50.0), pct(&times, 99.0), text.len(), series))
}
