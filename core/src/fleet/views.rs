//! The fleet-wide views the router answers from its registry: `/api/tags` and `/api/ps` merged
//! over the nodes, the Ollama version to report, and which nodes hold a model (in the order the
//! router asks them, for `/api/show`). Pure functions of the registry, so both routers answer
//! alike and the views are tested without a network.

use super::heartbeat::{LoadedModel, ModelMeta};
use super::{Fleet, Node, NodeStatus};
use crate::ids::{ModelName, NodeId};
use crate::time::WallClock;
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
/// name, so a client that compares digests sees the same model as the same: the SHA-256 of
/// `ollama-herd:<name>`, ollama-herd's own, so ids stay the same across the switch.
pub fn digest_of(name: &str, meta_digest: Option<&str>) -> String {
    match meta_digest.filter(|d| !d.is_empty()) {
        Some(d) => d.trim_start_matches("sha256:").to_string(),
        None => {
            let h = sha2::Sha256::digest(format!("ollama-herd:{name}").as_bytes());
            h.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// A stored size in GB as the bytes a node reported: sizes are kept as bytes / 1e9, and
/// rounding brings back the node's own figure exactly (to 2^53 bytes).
fn bytes(gb: f64) -> u64 {
    (gb.max(0.0) * 1e9).round() as u64
}

/// The first non-empty text, else `fallback`.
fn first<'a, const N: usize>(texts: [&'a str; N], fallback: &'a str) -> &'a str {
    texts.into_iter().find(|t| !t.is_empty()).unwrap_or(fallback)
}

/// Where a model's details come from: its node's `/api/tags` metadata, or what `/api/ps` said
/// of the loaded copy.
#[derive(Copy, Clone)]
enum Source<'a> {
    Tags(&'a ModelMeta),
    Ps(&'a LoadedModel),
}

impl<'a> Source<'a> {
    fn format(self) -> &'a str {
        match self {
            Source::Tags(m) => &m.format,
            Source::Ps(l) => &l.format,
        }
    }
    fn family(self) -> &'a str {
        match self {
            Source::Tags(m) => &m.family,
            Source::Ps(l) => &l.family,
        }
    }
    fn families(self) -> Option<&'a Vec<String>> {
        match self {
            Source::Tags(m) => m.families.as_ref(),
            Source::Ps(l) => l.families.as_ref(),
        }
    }
    fn parameter_size(self) -> &'a str {
        match self {
            Source::Tags(m) => &m.parameter_size,
            Source::Ps(l) => &l.parameter_size,
        }
    }
    fn quantization_level(self) -> &'a str {
        match self {
            Source::Tags(m) => &m.quantization_level,
            Source::Ps(l) => &l.quantization,
        }
    }
    fn parent_model(self) -> &'a str {
        match self {
            Source::Tags(m) => &m.parent_model,
            Source::Ps(_) => "",
        }
    }
}

/// One model's details as its node reported them, from the first source that has each field,
/// then guesses: the family from the name, Ollama's usual `gguf` and no parent.
fn details<'a>(name: &'a ModelName, sources: &[Source<'a>]) -> Value {
    let pick = |f: fn(Source<'a>) -> &'a str, fallback: &'a str| {
        sources.iter().copied().map(f).find(|t| !t.is_empty()).unwrap_or(fallback)
    };
    json!({
        "parent_model": pick(|s| s.parent_model(), ""),
        "format": pick(|s| s.format(), "gguf"),
        "family": pick(|s| s.family(), name.family()),
        "families": sources.iter().find_map(|s| s.families()),
        "parameter_size": pick(|s| s.parameter_size(), ""),
        "quantization_level": pick(|s| s.quantization_level(), ""),
    })
}

/// The sources present, in order.
fn sources<'a>(a: Option<Source<'a>>, b: Option<Source<'a>>) -> Vec<Source<'a>> {
    a.into_iter().chain(b).collect()
}

/// The fleet's `/api/tags`: one entry per model over every node that is not offline, in
/// Ollama's shape and with the node's own digest, size, date and details (from the first node,
/// in id order, that lists the model). The nodes that have it are named twice: herd's
/// `herd_nodes` and ollama-herd's `details.fleet_nodes`. A model whose node gave no
/// `modified_at` shows when the router first saw it listed (`wall` turns that into a date),
/// as ollama-herd does.
pub fn tags(fleet: &Fleet, wall: WallClock) -> Vec<Value> {
    let mut out: BTreeMap<ModelName, (Value, Vec<String>)> = BTreeMap::new();
    for node in listed(fleet) {
        let o = &node.report().ollama;
        let names = o.models_available.iter().chain(o.models_loaded.iter().map(|m| &m.name));
        for name in names {
            let entry = out.entry(name.clone()).or_insert_with(|| (tags_entry(fleet, node, name, wall), Vec::new()));
            if !entry.1.iter().any(|n| n == node.name()) {
                entry.1.push(node.name().to_string());
            }
        }
    }
    out.into_values()
        .map(|(mut v, nodes)| {
            v["details"]["fleet_nodes"] = json!(nodes);
            v["herd_nodes"] = json!(nodes);
            v
        })
        .collect()
}

/// One `/api/tags` entry for `name` as `node` reports it.
fn tags_entry(fleet: &Fleet, node: &Node, name: &ModelName, wall: WallClock) -> Value {
    let o = &node.report().ollama;
    let meta = node.meta(name);
    let loaded = node.loaded(name);
    let size_gb = o.models_available_sizes.get(name).copied().unwrap_or_else(|| node.model_size_gb(name));
    let digest = first([meta.map_or("", |m| m.digest.as_str()), loaded.map_or("", |l| l.digest.as_str())], "");
    let modified_at = match meta.map(|m| m.modified_at.as_str()).filter(|d| !d.is_empty()) {
        Some(d) => d.to_string(),
        None => wall.rfc3339(fleet.first_seen(name).unwrap_or_else(|| node.first_seen())),
    };
    let mut v = json!({
        "name": name.as_str(),
        "model": name.as_str(),
        "modified_at": modified_at,
        "size": bytes(size_gb),
        "digest": digest_of(name.as_str(), Some(digest)),
        "details": details(name, &sources(meta.map(Source::Tags), loaded.map(Source::Ps))),
    });
    if let Some(m) = meta.filter(|m| !m.capabilities.is_empty()) {
        v["capabilities"] = json!(m.capabilities);
    }
    v
}

/// One image model of the fleet, with the servers and machines that draw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageModel {
    /// The model, as its servers list it.
    pub name: String,
    /// The kinds of server that offer it (`sdcpp`, `a1111`, ...), in order, once each.
    pub backends: Vec<&'static str>,
    /// The machines that offer it, in node order, once each.
    pub fleet_nodes: Vec<String>,
}

/// The fleet's image models: every model an image server that is up offers (a node's reported
/// servers while the node is not offline, and `--image-node` servers that answer), by name; the
/// servers and machines in the order the router learned of them.
pub fn image_models(images: &crate::image::sched::ImageFleet) -> Vec<ImageModel> {
    let mut out: BTreeMap<String, ImageModel> = BTreeMap::new();
    for (id, info, _) in images.backends() {
        if !images.available(id) {
            continue;
        }
        for m in &info.models {
            let e = out.entry(m.clone()).or_insert_with(|| ImageModel {
                name: m.clone(),
                backends: Vec::new(),
                fleet_nodes: Vec::new(),
            });
            if !e.backends.contains(&info.kind.as_str()) {
                e.backends.push(info.kind.as_str());
            }
            if !e.fleet_nodes.iter().any(|n| n == &info.machine) {
                e.fleet_nodes.push(info.machine.clone());
            }
        }
    }
    out.into_values().collect()
}

/// ollama-herd's `GET /api/image-models` entries: `{name, type: "image", backend, fleet_nodes}`
/// (`backend` is ollama-herd's `mflux` for its own servers), plus herd's `backends`.
pub fn image_models_json(models: &[ImageModel]) -> Vec<Value> {
    models
        .iter()
        .map(|m| {
            let backend = match m.backends.first() {
                Some(&"ollama-herd") | None => "mflux",
                Some(k) => k,
            };
            json!({"name": m.name, "type": "image", "backend": backend, "backends": m.backends, "fleet_nodes": m.fleet_nodes})
        })
        .collect()
}

/// The fleet's whole model list (`/api/tags`, and `/v1/models` from it): [`tags`], then the image
/// models ([`image_models`]) whose names no text model has, marked as images
/// (`details.type: "image"`, as ollama-herd marks them), with the synthetic digest and no size
/// (image servers do not say).
pub fn listing(fleet: &Fleet, images: &crate::image::sched::ImageFleet, wall: WallClock) -> Vec<Value> {
    let mut out = tags(fleet, wall);
    let text: std::collections::BTreeSet<String> =
        out.iter().filter_map(|m| m["name"].as_str().map(str::to_string)).collect();
    let image_entries = image_models(images).into_iter().filter(|m| !text.contains(&m.name)).map(|m| {
        json!({
            "name": m.name,
            "model": m.name,
            "modified_at": "1970-01-01T00:00:00Z",
            "size": 0,
            "digest": digest_of(&m.name, None),
            "details": {"parent_model": "", "format": "", "family": "", "families": null,
                        "parameter_size": "", "quantization_level": "", "type": "image",
                        "fleet_nodes": m.fleet_nodes},
            "capabilities": ["image"],
            "herd_nodes": m.fleet_nodes,
        })
    });
    out.extend(image_entries);
    out
}

/// Whether a [`listing`] entry is an image model.
pub fn is_image_entry(entry: &Value) -> bool {
    entry["details"]["type"] == "image"
}

/// When a loaded model's node gave no `expires_at`: far in the future, as Ollama shows a model
/// kept loaded for good (`keep_alive: -1`, which herd sends by default).
pub const NEVER_EXPIRES: &str = "2318-01-01T00:00:00Z";

/// The fleet's `/api/ps`: every loaded model on every listed node, with the node's own digest,
/// sizes, details, `expires_at` and `context_length`, and the node named twice: herd's
/// `herd_node` and ollama-herd's `fleet_node`.
pub fn running(fleet: &Fleet) -> Vec<Value> {
    let mut out = Vec::new();
    for node in listed(fleet) {
        for m in &node.report().ollama.models_loaded {
            let meta = node.meta(&m.name);
            let digest = first([m.digest.as_str(), meta.map_or("", |d| d.digest.as_str())], "");
            out.push(json!({
                "name": m.name.as_str(),
                "model": m.name.as_str(),
                "size": bytes(m.size_gb),
                "digest": digest_of(m.name.as_str(), Some(digest)),
                "details": details(&m.name, &sources(Some(Source::Ps(m)), meta.map(Source::Tags))),
                "expires_at": first([m.expires_at.as_str()], NEVER_EXPIRES),
                "size_vram": m.size_vram_gb.map_or(0, bytes),
                "context_length": m.context_length,
                "herd_node": node.name(),
                "fleet_node": node.name(),
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
        // ollama-herd's: sha256("ollama-herd:qwen3:8b").
        assert_eq!(digest_of("qwen3:8b", None), "7267a0ca1e0de2a6e5bedaeeea0514c88eac66fd0ae0ee4a5cba8188e736111d");
    }
}
