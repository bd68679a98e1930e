//! What a node's Ollama tells about itself, turned into the heartbeat's [`Ollama`] section. Shared
//! by `herd-node` (which probes its local Ollama) and the router's static nodes (which poll an
//! Ollama with no agent), so both report the same figures the same way.
//!
//! Inputs are the parsed answers of `GET /api/ps`, `GET /api/tags` and `GET /api/version`, each
//! `None` when that call failed. Sizes are decimal GB (bytes / 1e9) for loaded and available
//! models alike; ollama-herd mixed GiB and GB (reference herd-node.md §8.1 item 3).

use super::heartbeat::{LoadedModel, ModelMeta, Ollama};
use crate::ids::ModelName;
use serde_json::Value;
use std::collections::BTreeMap;

const GB: f64 = 1e9;

fn models(v: Option<&Value>) -> &[Value] {
    v.and_then(|v| v.get("models")).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn name_of(m: &Value) -> Option<&str> {
    m.get("name").or_else(|| m.get("model")).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

fn gb(m: &Value, key: &str) -> f64 {
    m.get(key).and_then(Value::as_f64).unwrap_or(0.0).max(0.0) / GB
}

/// The loaded models of an `/api/ps` answer, with `size_vram` kept (ollama-herd dropped it).
pub fn loaded_models(ps: Option<&Value>) -> Vec<LoadedModel> {
    models(ps)
        .iter()
        .filter_map(|m| {
            let d = &m["details"];
            Some(LoadedModel {
                name: ModelName::new(name_of(m)?),
                size_gb: gb(m, "size"),
                size_vram_gb: m.get("size_vram").and_then(Value::as_f64).map(|b| b.max(0.0) / GB),
                requests_active: 0,
                parameter_size: text(&d["parameter_size"]),
                quantization: text(&d["quantization_level"]),
                context_length: m
                    .get("context_length")
                    .and_then(Value::as_u64)
                    .map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)),
                runner: text(&m["runner"]),
                digest: text(&m["digest"]),
                format: text(&d["format"]),
                family: text(&d["family"]),
                families: strings(&d["families"]),
                expires_at: text(&m["expires_at"]),
            })
        })
        .collect()
}

/// Names and on-disk sizes of an `/api/tags` answer.
pub fn available_models(tags: Option<&Value>) -> (Vec<ModelName>, BTreeMap<ModelName, f64>) {
    let mut names = Vec::new();
    let mut sizes = BTreeMap::new();
    for m in models(tags) {
        let Some(name) = name_of(m) else { continue };
        let name = ModelName::new(name);
        sizes.insert(name.clone(), gb(m, "size"));
        names.push(name);
    }
    (names, sizes)
}

/// Per-model metadata of an `/api/tags` answer (`digest`, `modified_at`, `details`, and
/// `capabilities` where Ollama sends them); nulls become empty values.
pub fn models_meta(tags: Option<&Value>) -> BTreeMap<ModelName, ModelMeta> {
    models(tags)
        .iter()
        .filter_map(|m| {
            let d = &m["details"];
            Some((
                ModelName::new(name_of(m)?),
                ModelMeta {
                    format: text(&d["format"]),
                    family: text(&d["family"]),
                    families: strings(&d["families"]),
                    parameter_size: text(&d["parameter_size"]),
                    quantization_level: text(&d["quantization_level"]),
                    capabilities: strings(&m["capabilities"]).unwrap_or_default(),
                    digest: text(&m["digest"]),
                    modified_at: text(&m["modified_at"]),
                    parent_model: text(&d["parent_model"]),
                },
            ))
        })
        .collect()
}

/// The heartbeat's Ollama section from the three answers. `reachable` is false when any of them
/// failed: a partial picture must not look like "this node has no models". Metadata is left to
/// the caller ([`models_meta`]), which decides when it changed.
pub fn ollama_state(ps: Option<&Value>, tags: Option<&Value>, version: Option<&Value>) -> Ollama {
    let (models_available, models_available_sizes) = available_models(tags);
    Ollama {
        models_loaded: loaded_models(ps),
        models_available,
        models_available_meta: None,
        models_available_sizes,
        max_loaded_models: 0,
        num_parallel: 0,
        requests_active: 0,
        version: version.map(|v| text(&v["version"])).unwrap_or_default(),
        reachable: Some(ps.is_some() && tags.is_some() && version.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ps() -> Value {
        json!({"models": [{
            "name": "qwen3:8b", "model": "qwen3:8b", "size": 6_654_289_920u64, "size_vram": 5_000_000_000u64,
            "digest": "500a1f", "expires_at": "2026-11-27T23:00:00Z", "context_length": 8192,
            "details": {"format": "gguf", "family": "qwen3", "families": ["qwen3"],
                        "parameter_size": "8.2B", "quantization_level": "Q4_K_M"}
        }, {"model": "nomic-embed-text:latest", "size": null}, {"size": 12}]})
    }

    fn tags() -> Value {
        json!({"models": [
            {"name": "qwen3:8b", "model": "qwen3:8b", "size": 5_225_376_047u64, "digest": "500a1f",
             "modified_at": "2025-05-10T18:32:07.123456789-07:00",
             "details": {"parent_model": "", "format": "gguf", "family": "qwen3", "families": null,
                         "parameter_size": "8.2B", "quantization_level": "Q4_K_M"},
             "capabilities": ["completion", "tools", "thinking"]},
            {"name": "llama3.2", "size": 2_000_000_000u64}
        ]})
    }

    #[test]
    fn loaded_models_keep_vram_context_and_digest() {
        let m = loaded_models(Some(&ps()));
        assert_eq!(m.len(), 2, "an entry without a name is skipped");
        assert_eq!(m[0].name.as_str(), "qwen3:8b");
        assert!((m[0].size_gb - 6.654_289_92).abs() < 1e-9);
        assert_eq!(m[0].size_vram_gb, Some(5.0));
        assert_eq!((m[0].context_length, m[0].quantization.as_str(), m[0].digest.as_str()), (8192, "Q4_K_M", "500a1f"));
        let d = (m[0].format.as_str(), m[0].family.as_str(), m[0].families.clone(), m[0].expires_at.as_str());
        assert_eq!(d, ("gguf", "qwen3", Some(vec!["qwen3".to_string()]), "2026-11-27T23:00:00Z"));
        assert_eq!(m[1].name.as_str(), "nomic-embed-text:latest");
        assert_eq!((m[1].family.as_str(), m[1].families.as_ref(), m[1].expires_at.as_str()), ("", None, ""));
        assert_eq!((m[1].size_gb, m[1].size_vram_gb), (0.0, None));
    }

    #[test]
    fn available_models_and_meta() {
        let (names, sizes) = available_models(Some(&tags()));
        assert_eq!(names.iter().map(ModelName::as_str).collect::<Vec<_>>(), ["qwen3:8b", "llama3.2:latest"]);
        assert_eq!(sizes[&ModelName::new("llama3.2")], 2.0);
        let meta = models_meta(Some(&tags()));
        let q = &meta[&ModelName::new("qwen3:8b")];
        assert_eq!(q.capabilities, ["completion", "tools", "thinking"]);
        assert_eq!((q.family.as_str(), q.families.as_ref()), ("qwen3", None));
        assert_eq!((q.digest.as_str(), q.modified_at.as_str()), ("500a1f", "2025-05-10T18:32:07.123456789-07:00"));
        assert_eq!(meta[&ModelName::new("llama3.2")], ModelMeta::default());
    }

    #[test]
    fn any_failed_call_marks_the_state_unreachable() {
        let v = json!({"version": "0.12.6"});
        let full = ollama_state(Some(&ps()), Some(&tags()), Some(&v));
        assert_eq!((full.reachable, full.version.as_str()), (Some(true), "0.12.6"));
        assert_eq!(full.models_available.len(), 2);
        let partial = ollama_state(Some(&ps()), None, Some(&v));
        assert_eq!(partial.reachable, Some(false));
        assert!(partial.models_available.is_empty());
        let down = ollama_state(None, None, None);
        assert_eq!((down.reachable, down.version.as_str(), down.models_loaded.len()), (Some(false), "", 0));
    }
}
