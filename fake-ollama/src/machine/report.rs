//! The heartbeat a simulated node's agent sends: ollama-herd's schema filled from the node's
//! state, plus herd's per-GPU figures.

use super::{Phase, SimNode, GB};
use herd_core::fleet::heartbeat::{Gpu, Heartbeat, LoadedModel, Memory, Ollama, Pressure};
use herd_core::ids::ModelName;
use herd_core::time::Instant;

impl SimNode {
    /// The heartbeat the node's agent would send at `now`, in ollama-herd's schema plus herd's
    /// GPU figures. Loading models are listed (they hold their memory). While Ollama is down the
    /// agent still reports the machine, with no models and `reachable: Some(false)`.
    pub fn heartbeat(&self, now: Instant) -> Heartbeat {
        let gpu = !self.spec.gpu_vram_gb.is_empty();
        let used_gb = self.used_gb();
        let ram_total = self.spec.ram_gb.max(0.0);
        let ram_used = if gpu { 0.0 } else { used_gb.min(ram_total) };
        let ram_free = (ram_total - ram_used).max(0.0);
        let fraction = if ram_total > 0.0 { ram_used / ram_total } else { 0.0 };
        // Linux agent thresholds (reference §1.7).
        let pressure = match fraction {
            f if f >= 0.95 => Pressure::Critical,
            f if f >= 0.85 => Pressure::Warn,
            _ => Pressure::Normal,
        };
        let models_loaded = self
            .residents
            .iter()
            .map(|r| LoadedModel {
                size_vram_gb: gpu.then_some(r.size_gb),
                requests_active: self.jobs_of(&r.name),
                context_length: self.context_length(),
                runner: "llamacpp".into(),
                ..LoadedModel::named(r.name.clone(), r.size_gb)
            })
            .collect();
        let mut models_available: Vec<ModelName> = Vec::new();
        for (name, _) in &self.spec.disk {
            if !models_available.contains(name) {
                models_available.push(name.clone());
            }
        }
        let models_available_sizes =
            models_available.iter().filter_map(|m| self.disk_size(m).map(|gb| (m.clone(), gb))).collect();
        Heartbeat {
            node_id: self.spec.name.clone(),
            arch: if gpu { "x86_64" } else { "apple_silicon" }.into(),
            timestamp: now.as_micros() as f64 / 1e6,
            memory: Memory {
                total_gb: ram_total,
                used_gb: ram_used,
                available_gb: ram_free,
                pressure,
                ..Memory::default()
            },
            ollama: Ollama {
                models_loaded,
                models_available,
                models_available_meta: None,
                models_available_sizes,
                max_loaded_models: self.spec.max_loaded_models,
                num_parallel: self.spec.num_parallel,
                requests_active: self.jobs.iter().filter(|a| !matches!(a.phase, Phase::Failing { .. })).count() as u32,
                version: self.spec.ollama_version.clone(),
                reachable: Some(self.up),
            },
            ollama_host: format!("http://{}:11434", self.spec.name),
            agent_version: "herd-sim".into(),
            memory_bandwidth_gbps: self.spec.bandwidth_gbps.max(0.0),
            gpus: self.gpus(used_gb),
            ..Heartbeat::default()
        }
    }

    /// Per-GPU figures: resident memory spread over the GPUs in proportion to their size.
    fn gpus(&self, used_gb: f64) -> Vec<Gpu> {
        let total: f64 = self.spec.gpu_vram_gb.iter().map(|g| g.max(0.0)).sum();
        let share = if total > 0.0 { (used_gb / total).min(1.0) } else { 0.0 };
        let mut gpus = Vec::new();
        for (index, vram) in self.spec.gpu_vram_gb.iter().enumerate() {
            let total_bytes = (vram.max(0.0) * GB) as u64;
            let used_bytes = ((vram.max(0.0) * share) * GB) as u64;
            gpus.push(Gpu {
                index: index as u32,
                name: "Simulated GPU".into(),
                vram_total_bytes: total_bytes,
                vram_used_bytes: used_bytes.min(total_bytes),
                vram_free_bytes: total_bytes.saturating_sub(used_bytes),
                utilization_pct: 0.0,
                temperature_c: None,
                power_w: None,
                memory_bandwidth_gbps: 0.0,
            });
        }
        gpus
    }
}
