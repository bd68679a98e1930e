//! `herd-fake-ollama`: one simulated Ollama server on a port, for scripts and out-of-process
//! tests. It prints exactly one line, `listening on http://127.0.0.1:PORT`, then serves until
//! SIGINT or SIGTERM. Faults are armed over HTTP (`POST /_fake/fault`) and counters read at
//! `GET /_fake/stats`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use herd_core::ids::ModelName;
use herd_core::model::size_from_name_gb;
use herd_fake_ollama::machine::MachineSpec;
use herd_fake_ollama::{FakeConfig, FakeOllama, HeartbeatTarget, Timing};

/// Weight size of a model whose name says nothing, GB.
const DEFAULT_MODEL_GB: f64 = 4.0;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum TimingKind {
    /// Every model on disk loaded; fixed first-token and per-token delays.
    Fixed,
    /// herd-sim's load, prefill and decode model, sped up by `--speedup`.
    Simulated,
}

/// A simulated Ollama server.
#[derive(Debug, Parser)]
#[command(name = "herd-fake-ollama", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_OLLAMA_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, env = "FAKE_OLLAMA_PORT", default_value_t = 11434)]
    port: u16,
    /// Node name (the heartbeat's node_id).
    #[arg(long, env = "FAKE_OLLAMA_NAME", default_value = "fake")]
    name: String,
    /// Models on disk, comma-separated; `name=GB` sets a size, else it comes from the name.
    #[arg(long, env = "FAKE_OLLAMA_MODELS", value_delimiter = ',', default_value = "qwen3:8b,llama3.1:8b")]
    models: Vec<String>,
    /// Models loaded at start, comma-separated (default: the first model; "" for none).
    #[arg(long, env = "FAKE_OLLAMA_PRELOAD", value_delimiter = ',')]
    preload: Option<Vec<String>>,
    /// OLLAMA_NUM_PARALLEL.
    #[arg(long, env = "FAKE_OLLAMA_NUM_PARALLEL", default_value_t = 4)]
    num_parallel: u32,
    /// OLLAMA_MAX_LOADED_MODELS.
    #[arg(long, env = "FAKE_OLLAMA_MAX_LOADED", default_value_t = 3)]
    max_loaded: u32,
    /// System RAM, GB.
    #[arg(long, env = "FAKE_OLLAMA_RAM_GB", default_value_t = 64.0)]
    ram_gb: f64,
    /// GPU VRAM, GB (0 = no GPU: models live in RAM).
    #[arg(long, env = "FAKE_OLLAMA_VRAM_GB", default_value_t = 0.0)]
    vram_gb: f64,
    /// Memory bandwidth, GB/s (drives decode speed).
    #[arg(long, env = "FAKE_OLLAMA_BANDWIDTH_GBPS", default_value_t = 400.0)]
    bandwidth_gbps: f64,
    /// Disk to memory load rate, GB/s.
    #[arg(long, env = "FAKE_OLLAMA_LOAD_GBPS", default_value_t = 2.0)]
    load_gbps: f64,
    /// Context window models load with.
    #[arg(long, env = "FAKE_OLLAMA_CONTEXT_LENGTH", default_value_t = 4096)]
    context_length: u32,
    /// Timing model.
    #[arg(long, env = "FAKE_OLLAMA_TIMING", value_enum, default_value_t = TimingKind::Simulated)]
    timing: TimingKind,
    /// Simulated timing: virtual seconds per real second.
    #[arg(long, env = "FAKE_OLLAMA_SPEEDUP", default_value_t = 20.0)]
    speedup: f64,
    /// Fixed timing: delay before the first token, ms.
    #[arg(long, env = "FAKE_OLLAMA_FIRST_TOKEN_MS", default_value_t = 0)]
    first_token_ms: u64,
    /// Fixed timing: delay between tokens, ms.
    #[arg(long, env = "FAKE_OLLAMA_TOKEN_MS", default_value_t = 0)]
    token_ms: u64,
    /// Fixed timing: let tokens due at once share writes, instead of one write and flush per
    /// token as Ollama does (for comparing with figures from before the fake wrote per token).
    #[arg(long, env = "FAKE_OLLAMA_BATCH_TOKENS")]
    batch_tokens: bool,
    /// Router base URL to send heartbeats to (`{URL}/heartbeat`).
    #[arg(long, env = "FAKE_OLLAMA_HEARTBEAT_TO")]
    heartbeat_to: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "FAKE_OLLAMA_HEARTBEAT_SECS", default_value_t = 5.0)]
    heartbeat_secs: f64,
    /// Fleet key presented in heartbeats.
    #[arg(long, env = "HERD_FLEET_KEY")]
    fleet_key: Option<String>,
    /// The Ollama version to be: reported by `/api/version` and heartbeats; before 0.14.0 there
    /// is no `/v1/messages` (it answers `404 page not found`, as such an Ollama does).
    #[arg(long, env = "FAKE_OLLAMA_VERSION", default_value = herd_fake_ollama::machine::OLLAMA_VERSION)]
    ollama_version: String,
}

/// `name` or `name=GB`, with the size from the name when not given.
fn disk_entry(raw: &str) -> Result<(ModelName, f64), String> {
    let (name, gb) = match raw.split_once('=') {
        Some((n, gb)) => (n.trim(), Some(gb.trim().parse::<f64>().map_err(|e| format!("size of {n}: {e}"))?)),
        None => (raw.trim(), None),
    };
    let model = ModelName::new(name);
    let gb = gb.or_else(|| size_from_name_gb(&model)).unwrap_or(DEFAULT_MODEL_GB);
    Ok((model, gb))
}

fn config(args: &Args) -> Result<FakeConfig, String> {
    let disk =
        args.models.iter().filter(|m| !m.trim().is_empty()).map(|m| disk_entry(m)).collect::<Result<Vec<_>, _>>()?;
    let preloaded = match &args.preload {
        Some(list) => list.iter().filter(|m| !m.trim().is_empty()).map(|m| ModelName::new(m)).collect(),
        None => disk.first().map(|(m, _)| m.clone()).into_iter().collect(),
    };
    let spec = MachineSpec {
        name: args.name.clone(),
        ram_gb: args.ram_gb,
        gpu_vram_gb: if args.vram_gb > 0.0 { vec![args.vram_gb] } else { Vec::new() },
        bandwidth_gbps: args.bandwidth_gbps,
        num_parallel: args.num_parallel,
        max_loaded_models: args.max_loaded,
        disk,
        preloaded,
        context_length: args.context_length,
        load_gbps: args.load_gbps,
        ollama_version: args.ollama_version.clone(),
    };
    let timing = match args.timing {
        TimingKind::Simulated => Timing::Simulated { speedup: args.speedup },
        TimingKind::Fixed if args.batch_tokens => Timing::Batched {
            first_token: Duration::from_millis(args.first_token_ms),
            token_interval: Duration::from_millis(args.token_ms),
        },
        TimingKind::Fixed => Timing::Fixed {
            first_token: Duration::from_millis(args.first_token_ms),
            token_interval: Duration::from_millis(args.token_ms),
        },
    };
    let heartbeat = args.heartbeat_to.as_ref().map(|url| HeartbeatTarget {
        router_url: url.clone(),
        interval: Duration::from_secs_f64(args.heartbeat_secs.max(0.01)),
        fleet_key: args.fleet_key.clone(),
    });
    Ok(FakeConfig { spec, timing, heartbeat })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The models asked to be loaded at start (every model on disk with fixed timing) that do not fit
/// the node's memory, KV reserve for its parallel slots included: the node starts without them.
fn unfit_preloads(spec: &MachineSpec, fixed: bool) -> Vec<ModelName> {
    let mut spec = spec.clone();
    if fixed {
        spec.preloaded = spec.disk.iter().map(|(m, _)| m.clone()).collect();
    }
    let start = herd_core::time::Instant::ZERO;
    let loaded = herd_fake_ollama::machine::SimNode::new(spec.clone(), start).heartbeat(start).ollama.models_loaded;
    spec.preloaded.into_iter().filter(|m| !loaded.iter().any(|l| &l.name == m)).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = config(&args)?;
    let unfit = unfit_preloads(&config.spec, args.timing == TimingKind::Fixed);
    if !unfit.is_empty() {
        let names: Vec<&str> = unfit.iter().map(ModelName::as_str).collect();
        eprintln!(
            "herd-fake-ollama: warning: {} not loaded: with {} parallel slots it does not fit in {} GB of RAM \
             and {} GB of VRAM (raise --ram-gb or --vram-gb, or lower --num-parallel)",
            names.join(", "),
            args.num_parallel,
            args.ram_gb,
            args.vram_gb
        );
    }
    let fake = FakeOllama::start(SocketAddr::new(args.host, args.port), config).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", fake.url())?;
    out.flush()?;
    drop(out);
    stop_signal().await;
    fake.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_the_spec() {
        let args = Args::parse_from([
            "herd-fake-ollama",
            "--models",
            "qwen3:8b,mystery=2.5,nomic-embed-text",
            "--vram-gb",
            "24",
            "--timing",
            "fixed",
            "--token-ms",
            "3",
        ]);
        let c = config(&args).unwrap();
        assert_eq!(c.spec.disk[0], (ModelName::new("qwen3:8b"), 5.0));
        assert_eq!(c.spec.disk[1], (ModelName::new("mystery"), 2.5));
        assert_eq!(c.spec.disk[2].1, 0.5);
        assert_eq!(c.spec.preloaded, vec![ModelName::new("qwen3:8b")]);
        assert_eq!(c.spec.gpu_vram_gb, vec![24.0]);
        assert_eq!(c.timing, Timing::Fixed { first_token: Duration::ZERO, token_interval: Duration::from_millis(3) });
        let args = Args::parse_from(["herd-fake-ollama", "--preload", ""]);
        assert!(config(&args).unwrap().spec.preloaded.is_empty());
        // 1,000 slots' KV reserve does not fit 64 GB: said, not silently skipped.
        let args = Args::parse_from(["herd-fake-ollama", "--models", "qwen3:8b", "--num-parallel", "1000"]);
        assert_eq!(unfit_preloads(&config(&args).unwrap().spec, true), vec![ModelName::new("qwen3:8b")]);
        let args = Args::parse_from(["herd-fake-ollama", "--models", "qwen3:8b", "--num-parallel", "4"]);
        assert!(unfit_preloads(&config(&args).unwrap().spec, true).is_empty());
        assert!(config(&Args::parse_from(["x", "--models", "a=big"])).is_err());
    }
}
