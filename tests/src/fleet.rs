//! The default heterogeneous fleet the comparison runs on, described once here and in the README:
//!
//! | node | memory | bandwidth | parallel | max loaded | models on disk |
//! |---|---|---|---|---|---|
//! | `mac-ultra` | 192 GB unified | 800 GB/s | 4 | 3 | all six |
//! | `linux-4090` | 64 GB RAM + RTX 4090 24 GB VRAM | 1008 GB/s | 4 | 2 | all but the 70B |
//! | `m2-pro` | 32 GB unified | 200 GB/s | 2 | 2 | the small models |
//! | `cpu-box` | 64 GB RAM, no GPU | 60 GB/s | 1 | 1 | the small models |
//!
//! Models: qwen3:8b 5.2 GB, llama3.1:8b 4.9 GB, qwen2.5-coder:7b 4.7 GB, gemma3:27b 17 GB,
//! llama3.3:70b 42.5 GB, nomic-embed-text 0.3 GB.

use crate::node::MachineSpec;
use herd_core::ids::ModelName;

/// The models of the default fleet with their weight sizes, GB.
pub fn models() -> Vec<(ModelName, f64)> {
    [
        ("qwen3:8b", 5.2),
        ("llama3.1:8b", 4.9),
        ("qwen2.5-coder:7b", 4.7),
        ("gemma3:27b", 17.0),
        ("llama3.3:70b", 42.5),
        ("nomic-embed-text:latest", 0.3),
    ]
    .iter()
    .map(|&(m, gb)| (ModelName::new(m), gb))
    .collect()
}

#[allow(clippy::too_many_arguments)] // a table row, read positionally beside the others
fn machine(
    name: &str,
    ram_gb: f64,
    gpu_vram_gb: Vec<f64>,
    bandwidth_gbps: f64,
    num_parallel: u32,
    max_loaded_models: u32,
    disk: Vec<(ModelName, f64)>,
    preloaded: &[&str],
) -> MachineSpec {
    MachineSpec {
        name: name.to_string(),
        ram_gb,
        gpu_vram_gb,
        bandwidth_gbps,
        num_parallel,
        max_loaded_models,
        disk,
        preloaded: preloaded.iter().map(|m| ModelName::new(m)).collect(),
        context_length: 8192,
        load_gbps: 2.0,
        ollama_version: herd_fake_ollama::machine::OLLAMA_VERSION.into(),
    }
}

/// The default fleet: an Apple Ultra, a Linux box with an RTX 4090, an M2 Pro and a CPU-only box.
pub fn default_fleet() -> Vec<MachineSpec> {
    let all = models();
    let small: Vec<(ModelName, f64)> = all.iter().filter(|(_, gb)| *gb < 10.0).cloned().collect();
    let no_70b: Vec<(ModelName, f64)> = all.iter().filter(|(_, gb)| *gb < 40.0).cloned().collect();
    vec![
        machine("mac-ultra", 192.0, vec![], 800.0, 4, 3, all, &["llama3.3:70b", "qwen3:8b"]),
        machine("linux-4090", 64.0, vec![24.0], 1008.0, 4, 2, no_70b, &["qwen3:8b"]),
        machine("m2-pro", 32.0, vec![], 200.0, 2, 2, small.clone(), &["llama3.1:8b"]),
        machine("cpu-box", 64.0, vec![], 60.0, 1, 1, small, &[]),
    ]
}
