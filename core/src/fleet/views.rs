//! The fleet-wide views the router answers from its registry: `/api/tags` and `/api/ps` merged
//! over the nodes, the Ollama version to report, and which nodes hold a model (in the order the
//! router asks them, for `/api/show`). Pure functions of the registry, so both routers answer
//! alike and the views are tested without a network.

use super::{Fleet, Node, NodeStatus};
use crate::ids::{ModelName, NodeId};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::BTreeMap;

/// The version reported when no node has told us Ollama's.
pub const FALLBACK_OLLAMA_VERSION: &str = "0.12.6";

/// The nodes the model views list: every one that is not offline (a draining node still has
/// its models).
fn listed(fleet: &Fleet) -> impl Iterator<Item = &Node> {
    fleet.nodes().filter(|n| n.status() != NodeStatus::Offline)
}

/// The Ollama version of the first listed node that reports one.
pub fn ollama_version(fleet: &Fleet) -> Option<String> {
    listed(fleet).map(|n| n.report().ollama.version.clone()).find(|v| !v.is_empty())
}

/// The digest to show for `name`: the node's (without `sha256:`), else a stable one made from the
/// name, so a client that compares digests sees the same model as the same.
pub fn digest_of(name: &str, meta_digest: Option<&str>) -> String {
    match meta_digest.filter(|d| !d.is_empty()) {
        Some(d) => d.trim_start_matches("sha256:").to_string(),
        None => {
            let h = sha2::Sha256::digest(format!("herd:{name}").as_bytes());
            h.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The fleet's `/api/tags`: one entry per model over every node that is not offline (Ollama's
/// shape, with `herd_nodes` naming the nodes that have it).
pub fn tags(fleet: &Fleet) -> Vec<Value> {
    let mut out: BTreeMap<ModelName, (Value, Vec<String>)> = BTreeMap::new();
    for node in listed(fleet) {
        let o = &node.report().ollama;
        let names = o.models_available.iter().chain(o.models_loaded.iter().map(|m| &m.name));
        for name in names {
            let entry = out.entry(name.clone()).or_insert_with(|| {
                let meta = node.meta(name);
                let size_gb = o.models_available_sizes.get(name).copied().unwrap_or_else(|| node.model_size_gb(name));
                let details = json!({
                    "parent_model": "",
                    "format": meta.map_or("gguf", |m| if m.format.is_empty() { "gguf" } else { m.format.as_str() }),
                    "family": meta.map_or_else(|| name.family().to_string(), |m| m.family.clone()),
                    "families": meta.and_then(|m| m.families.clone()),
                    "parameter_size": meta.map(|m| m.parameter_size.clone()).unwrap_or_default(),
                    "quantization_level": meta.map(|m| m.quantization_level.clone()).unwrap_or_default(),
                });
                let mut v = json!({
                    "name": name.as_str(),
                    "model": name.as_str(),
                    "modified_at": "2026-01-01T00:00:00Z",
                    "size": (size_gb * 1e9) as u64,
                    "digest": digest_of(name.as_str(), meta.map(|m| m.digest.as_str())),
                    "details": details,
                });
                if let Some(m) = meta.filter(|m| !m.capabilities.is_empty()) {
                    v["capabilities"] = json!(m.capabilities);
                }
                (v, Vec::new())
            });
            if !entry.1.iter().any(|n| n == node.name()) {
                entry.1.push(node.name().to_string());
            }
        }
    }
    out.into_values()
        .map(|(mut v, nodes)| {
            v["herd_nodes"] = json!(nodes);
            v
        })
        .collect()
}

/// The fleet's `/api/ps`: every loaded model on every listed node, with `herd_node`.
pub fn running(fleet: &Fleet) -> Vec<Value> {
    let mut out = Vec::new();
    for node in listed(fleet) {
        for m in &node.report().ollama.models_loaded {
            let size = (m.size_gb * 1e9) as u64;
            out.push(json!({
                "name": m.name.as_str(),
                "model": m.name.as_str(),
                "size": size,
                "size_vram": m.size_vram_gb.map_or(0, |g| (g * 1e9) as u64),
                "digest": digest_of(m.name.as_str(), Some(&m.digest)),
                "details": {
                    "parent_model": "", "format": "gguf", "family": m.name.family(), "families": null,
                    "parameter_size": m.parameter_size, "quantization_level": m.quantization,
                },
                "expires_at": "2318-01-01T00:00:00Z",
                "context_length": m.context_length,
                "herd_node": node.name(),
            }));
        }
    }
    out
}

/// The listed nodes that have `model`, in the order to ask them: the ones with it in memory
/// first, then the ones with it on disk, each in id order.
pub fn holders(fleet: &Fleet, model: &ModelName) -> Vec<NodeId> {
    let mut loaded = Vec::new();
    let mut disk = Vec::new();
    for node in listed(fleet) {
        if node.loaded(model).is_some() {
            loaded.push(node.id());
        } else if node.has_model(model) {
            disk.push(node.id());
        }
    }
    loaded.extend(disk);
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable_hex() {
        let d = digest_of("m:latest", None);
        assert_eq!(d.len(), 64);
        assert_eq!(d, digest_of("m:latest", Some("")));
        assert_eq!(digest_of("m", Some("sha256:abc")), "abc");
    }
}
