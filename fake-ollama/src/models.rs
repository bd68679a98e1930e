//! The fake's disk: which models it has, their sizes, digests and modification times, and the
//! metadata Ollama derives from them (display names, `details`, capabilities, `model_info`).
//! Lookup is case-insensitive per name part, as Ollama's is.

use std::time::SystemTime;

use herd_core::fleet::heartbeat::ModelMeta;
use herd_core::ids::ModelName;
use herd_core::model::{accepts_images, classify, is_thinking, Category};
use serde_json::{json, Value};

use super::text::{digest, rfc3339};

/// Bytes per decimal GB (heartbeats and `size_from_name_gb` speak GB).
pub(crate) const GB: f64 = 1e9;

/// One model on disk.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DiskModel {
    /// Normalised name (`qwen3:8b`, `llama3:latest`).
    pub name: ModelName,
    /// Weights, GB.
    pub size_gb: f64,
    /// 64 hex digits.
    pub digest: String,
    /// When it was pulled, created or copied.
    pub modified: SystemTime,
}

impl DiskModel {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        (self.size_gb.max(0.0) * GB) as u64
    }
}

/// The models on the fake's disk, in insertion order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    models: Vec<DiskModel>,
}

impl Registry {
    /// A disk holding `disk` (names with weight sizes in GB), all modified at `now`.
    pub fn new(disk: &[(ModelName, f64)], now: SystemTime) -> Self {
        let mut r = Registry::default();
        for (name, gb) in disk {
            r.add(name.clone(), *gb, now);
        }
        r
    }

    /// The model `raw` names (any case, with or without the default host, namespace or tag).
    pub fn find(&self, raw: &str) -> Option<&DiskModel> {
        let key = lookup_key(raw);
        self.models.iter().find(|m| lookup_key(m.name.as_str()) == key)
    }

    /// Adds or replaces `name`.
    pub fn add(&mut self, name: ModelName, size_gb: f64, now: SystemTime) {
        let key = lookup_key(name.as_str());
        self.models.retain(|m| lookup_key(m.name.as_str()) != key);
        let digest = digest(name.as_str());
        self.models.push(DiskModel { name, size_gb, digest, modified: now });
    }

    /// Removes the model `raw` names; whether it was there.
    pub fn remove(&mut self, raw: &str) -> bool {
        let key = lookup_key(raw);
        let before = self.models.len();
        self.models.retain(|m| lookup_key(m.name.as_str()) != key);
        self.models.len() != before
    }

    /// `(name, GB)` of every model, for the simulated node.
    pub fn disk(&self) -> Vec<(ModelName, f64)> {
        self.models.iter().map(|m| (m.name.clone(), m.size_gb)).collect()
    }

    /// Every model, newest first (as `/api/tags` lists them).
    pub fn newest_first(&self) -> Vec<DiskModel> {
        let mut out = self.models.clone();
        out.reverse();
        out.sort_by_key(|m| std::cmp::Reverse(m.modified));
        out
    }
}

/// Ollama's display ("shortest") form: the default host and `library/` namespace dropped, the tag
/// always kept (`registry.ollama.ai/library/llama3` → `llama3:latest`).
pub(crate) fn display(name: &ModelName) -> String {
    let s = name.as_str();
    let s = s.strip_prefix("registry.ollama.ai/").unwrap_or(s);
    s.strip_prefix("library/").unwrap_or(s).to_string()
}

fn lookup_key(raw: &str) -> String {
    display(&ModelName::new(raw)).to_ascii_lowercase()
}

/// Whether `raw` is a name Ollama accepts (wire-api.md §1.4): parts of 1–80 characters starting
/// with `[A-Za-z0-9_]`, then `[A-Za-z0-9_.-]`; no `.` in the namespace; `:` only before the tag or
/// in the host's port.
pub(crate) fn valid_name(raw: &str) -> bool {
    let part_ok = |p: &str, dots: bool| {
        (1..=80).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'))
    };
    let (path, tag) = match raw.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (raw, None),
    };
    if tag.is_some_and(|t| !part_ok(t, true)) {
        return false;
    }
    let parts: Vec<&str> = path.split('/').collect();
    let host_ok = |h: &str| (1..=350).contains(&h.len()) && h.split(':').all(|x| part_ok(x, true));
    match parts.as_slice() {
        [model] => part_ok(model, true),
        [ns, model] => part_ok(ns, false) && part_ok(model, true) || host_ok(ns) && part_ok(model, true),
        [host, ns, model] => host_ok(host) && part_ok(ns, false) && part_ok(model, true),
        _ => false,
    }
}

/// The model family as `details.family` shows it: the leading letters of the base name
/// (`llama3.1:8b` → `llama`), `bert` for embedding models.
pub(crate) fn family(name: &ModelName) -> String {
    if classify(name, None) == Category::Embedding {
        return "bert".into();
    }
    let base = name.family().rsplit('/').next().unwrap_or("");
    let letters: String = base.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if letters.is_empty() {
        "llama".into()
    } else {
        letters.to_ascii_lowercase()
    }
}

/// Parameters in billions: from a size marker in the tag (`:8b`, `-70b`), else from the weight
/// size at about 0.6 GB per billion parameters (Q4_K_M).
pub(crate) fn parameters_b(name: &ModelName, size_gb: f64) -> f64 {
    let tag = name.as_str().rsplit(':').next().unwrap_or("");
    for part in tag.split(['-', '_']) {
        if let Some(num) = part.strip_suffix(['b', 'B']) {
            if let Ok(b) = num.parse::<f64>() {
                return b;
            }
        }
    }
    (size_gb / 0.6).max(0.1)
}

/// Capabilities as `/api/show` and `/api/tags` list them.
pub(crate) fn capabilities(name: &ModelName) -> Vec<&'static str> {
    if classify(name, None) == Category::Embedding {
        return vec!["embedding"];
    }
    let mut caps = vec!["completion", "tools"];
    if is_thinking(name, None) || name.as_str().starts_with("qwen3") {
        caps.push("thinking");
    }
    if accepts_images(name, None) {
        caps.push("vision");
    }
    caps
}

/// The `details` object every listing carries, all six fields present.
pub(crate) fn details(m: &DiskModel) -> Value {
    let fam = family(&m.name);
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": fam,
        "families": [fam],
        "parameter_size": format!("{:.1}B", parameters_b(&m.name, m.size_gb)),
        "quantization_level": "Q4_K_M",
    })
}

/// The heartbeat's metadata for `m` (what an ollama-herd agent reads from `/api/tags`).
pub(crate) fn meta(m: &DiskModel) -> ModelMeta {
    let fam = family(&m.name);
    ModelMeta {
        format: "gguf".into(),
        family: fam.clone(),
        families: Some(vec![fam]),
        parameter_size: format!("{:.1}B", parameters_b(&m.name, m.size_gb)),
        quantization_level: "Q4_K_M".into(),
        capabilities: capabilities(&m.name).into_iter().map(str::to_string).collect(),
        digest: m.digest.clone(),
        modified_at: rfc3339(m.modified),
        parent_model: String::new(),
    }
}

/// One `/api/tags` entry.
pub(crate) fn tags_entry(m: &DiskModel) -> Value {
    let name = display(&m.name);
    json!({
        "name": name,
        "model": name,
        "modified_at": rfc3339(m.modified),
        "size": m.size_bytes(),
        "digest": m.digest,
        "details": details(m),
        "capabilities": capabilities(&m.name),
    })
}

/// The `/api/show` answer for `m`, whose context window is `context_length`.
pub(crate) fn show(m: &DiskModel, context_length: u32) -> Value {
    let fam = family(&m.name);
    let params = parameters_b(&m.name, m.size_gb);
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), fam.clone().into());
    info.insert("general.parameter_count".into(), ((params * 1e9) as u64).into());
    info.insert(format!("{fam}.context_length"), context_length.into());
    info.insert(format!("{fam}.embedding_length"), 4096.into());
    let template = "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>";
    json!({
        "license": "Apache License 2.0",
        "modelfile": format!(
            "# Modelfile generated by \"ollama show\"\nFROM {}\nTEMPLATE \"\"\"{template}\"\"\"\n",
            display(&m.name)
        ),
        "parameters": format!("{:<30} {}\n{:<30} {:?}", "num_ctx", context_length, "stop", "<|user|>"),
        "template": template,
        "system": "",
        "details": details(m),
        "model_info": Value::Object(info),
        "capabilities": capabilities(&m.name),
        "modified_at": rfc3339(m.modified),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_tag_aware() {
        let now = SystemTime::UNIX_EPOCH;
        let mut r = Registry::new(&[(ModelName::new("qwen3:8b"), 5.2), (ModelName::new("llama3"), 4.0)], now);
        assert!(r.find("QWEN3:8B").is_some());
        assert!(r.find("llama3:latest").is_some());
        assert!(r.find("registry.ollama.ai/library/llama3").is_some());
        assert!(r.find("qwen3").is_none());
        assert!(r.remove("Llama3"));
        assert!(!r.remove("llama3"));
        assert_eq!(r.disk().len(), 1);
    }

    #[test]
    fn names_and_metadata() {
        assert_eq!(display(&ModelName::new("registry.ollama.ai/library/llama3.2")), "llama3.2:latest");
        assert_eq!(display(&ModelName::new("me/mine")), "me/mine:latest");
        assert!(valid_name("llama3.2:latest") && valid_name("hf.co/org/repo:Q4_K_M") && valid_name("me/m"));
        assert!(!valid_name("model:") && !valid_name("/model") && !valid_name("a b") && !valid_name(":x"));
        assert_eq!(family(&ModelName::new("llama3.1:8b")), "llama");
        assert_eq!(family(&ModelName::new("nomic-embed-text")), "bert");
        assert_eq!(parameters_b(&ModelName::new("qwen3:8b"), 5.2), 8.0);
        assert_eq!(parameters_b(&ModelName::new("qwen3:30b-a3b"), 19.0), 30.0);
        assert!(capabilities(&ModelName::new("qwen3:8b")).contains(&"thinking"));
        assert_eq!(capabilities(&ModelName::new("nomic-embed-text")), ["embedding"]);
        let m = DiskModel {
            name: ModelName::new("qwen3:8b"),
            size_gb: 5.2,
            digest: digest("qwen3:8b"),
            modified: SystemTime::UNIX_EPOCH,
        };
        let show = show(&m, 8192);
        assert_eq!(show["model_info"]["qwen.context_length"], 8192);
        assert!(show["parameters"].as_str().unwrap().starts_with("num_ctx                        8192"));
        assert_eq!(tags_entry(&m)["size"], 5_200_000_000u64);
    }
}
