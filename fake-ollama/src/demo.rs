//! `herd --demo`: three simulated Ollama machines in this process (the fake Ollama server over
//! herd-sim's machine model), each sending heartbeats to the router as an agent would, so a
//! newcomer can try curl, the `ollama` client or the OpenAI SDK at once.

use crate::machine::MachineSpec;
use crate::{FakeConfig, FakeHandle, FakeOllama, HeartbeatTarget, Timing};
use herd_core::ids::ModelName;
use std::net::SocketAddr;
use std::time::Duration;

/// How much faster than real hardware the demo machines run (a 42 GB cold load takes ~2 s).
pub const DEMO_SPEEDUP: f64 = 10.0;

fn disk(models: &[(&str, f64)]) -> Vec<(ModelName, f64)> {
    models.iter().map(|&(m, gb)| (ModelName::new(m), gb)).collect()
}

/// The demo fleet: a Mac Studio, a Linux box with an RTX 4090 and a MacBook Pro.
pub fn demo_fleet() -> Vec<MachineSpec> {
    let small = [("qwen3:8b", 5.2), ("llama3.1:8b", 4.9), ("qwen2.5-coder:7b", 4.7), ("nomic-embed-text:latest", 0.3)];
    let mut studio = small.to_vec();
    studio.extend([("gemma3:27b", 17.0), ("llama3.3:70b", 42.5)]);
    let mut rtx = small.to_vec();
    rtx.push(("gemma3:27b", 17.0));
    let spec = |name: &str, ram: f64, vram: Vec<f64>, bw: f64, par: u32, max: u32, d: &[(&str, f64)], pre: &[&str]| {
        MachineSpec {
            name: name.to_string(),
            ram_gb: ram,
            gpu_vram_gb: vram,
            bandwidth_gbps: bw,
            num_parallel: par,
            max_loaded_models: max,
            disk: disk(d),
            preloaded: pre.iter().map(|m| ModelName::new(m)).collect(),
            context_length: 8192,
            load_gbps: 2.0,
            ollama_version: crate::machine::OLLAMA_VERSION.into(),
        }
    };
    vec![
        spec("mac-studio", 192.0, vec![], 800.0, 4, 3, &studio, &["llama3.3:70b", "qwen3:8b"]),
        spec("linux-4090", 64.0, vec![24.0], 1008.0, 4, 2, &rtx, &["qwen3:8b", "nomic-embed-text:latest"]),
        spec("macbook-pro", 32.0, vec![], 200.0, 2, 2, &small, &["llama3.1:8b"]),
    ]
}

/// Starts the demo machines on free loopback ports, reporting to `router_url` every second.
///
/// # Errors
/// A port could not be bound.
pub async fn start_fleet(router_url: &str) -> std::io::Result<Vec<FakeHandle>> {
    let mut out = Vec::new();
    for spec in demo_fleet() {
        let config = FakeConfig {
            spec,
            timing: Timing::Simulated { speedup: DEMO_SPEEDUP },
            heartbeat: Some(HeartbeatTarget {
                router_url: router_url.to_string(),
                interval: Duration::from_secs(1),
                fleet_key: None,
            }),
        };
        out.push(FakeOllama::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await?);
    }
    Ok(out)
}
