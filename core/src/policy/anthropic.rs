//! Which local model answers an Anthropic client's model id (herd-router.md §11.2): Claude Code
//! and the Anthropic SDK name `claude-sonnet-4-5`, which no node has. Read from the fleet as it
//! is now; pure.
//!
//! The order: (1) the operator's map, exactly; (2) a model the fleet has, as named; (3) with
//! auto-route on, the best candidate loaded on a routable node, then (4) the best on disk of one;
//! (5) the map's `default`; else (6) nothing (the client is told 404 `not_found_error`).
//!
//! A candidate is ranked for the Claude tier its id names: `haiku` → fast, `opus` → premium,
//! anything else → balanced. `base = 50 + category bonus` (coding +15, general +5, creative and
//! reasoning −5, vision −10: a coding agent is the usual client), then premium adds
//! `0.1 × billions of parameters`, fast takes `0.5 ×` away, balanced keeps `base`; unknown size
//! counts as 30 B; ties go to the name that sorts first. ollama-herd also adds a benchmark score
//! from its catalog of about 60 models; herd has no such catalog, so every model scores the same
//! 50 there (ollama-herd's own value for a model it does not know).
//!
//! Never a candidate: embedding models (by capability or name), `decision` models, image
//! models, and for a request with images a model that cannot see.

use std::collections::BTreeMap;

use crate::config::AnthropicConfig;
use crate::fleet::heartbeat::ModelMeta;
use crate::fleet::Fleet;
use crate::ids::ModelName;
use crate::model::{self, Category};

/// The key of the map's fallback entry.
pub const DEFAULT_KEY: &str = "default";
/// Billions of parameters assumed for a model whose size nothing tells.
pub const UNKNOWN_PARAMS_B: f64 = 30.0;
/// Quality points of every model (ollama-herd's value for one its catalog does not know).
pub const BASE_QUALITY: f64 = 50.0;

/// How a model id was resolved.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResolvedBy {
    /// The operator's map named it.
    Map,
    /// The fleet has a model of that name.
    Fleet,
    /// Auto-route: the best loaded candidate.
    AutoLoaded,
    /// Auto-route: the best candidate on disk.
    AutoOnDisk,
    /// The map's `default`.
    Default,
}

impl ResolvedBy {
    /// Lower-case name, for headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedBy::Map => "map",
            ResolvedBy::Fleet => "fleet",
            ResolvedBy::AutoLoaded => "auto_loaded",
            ResolvedBy::AutoOnDisk => "auto_on_disk",
            ResolvedBy::Default => "default",
        }
    }
}

/// The local model an Anthropic model id resolved to, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The model routed to.
    pub model: ModelName,
    /// Which step found it.
    pub by: ResolvedBy,
}

/// A Claude model's tier, from its id.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tier {
    /// `haiku`: smaller is better.
    Fast,
    /// `sonnet` and anything else.
    Balanced,
    /// `opus`: bigger is better.
    Premium,
}

impl Tier {
    /// The tier an id names (case-insensitive).
    pub fn of(id: &str) -> Tier {
        let id = id.to_ascii_lowercase();
        if id.contains("haiku") {
            Tier::Fast
        } else if id.contains("opus") {
            Tier::Premium
        } else {
            Tier::Balanced
        }
    }
}

/// Resolves `asked` (as the client spelled it) against `config` and the fleet now; `has_images`
/// when the request carries images. `None`: nothing can serve it (step 6).
pub fn resolve(asked: &str, config: &AnthropicConfig, fleet: &Fleet, has_images: bool) -> Option<Resolution> {
    let asked = asked.trim();
    let mapped = |key: &str| config.model_map.get(key).map(|m| ModelName::new(m));
    if let Some(model) = mapped(asked) {
        return Some(Resolution { model, by: ResolvedBy::Map });
    }
    let named = ModelName::new(asked);
    if !asked.is_empty() && fleet.model_known(&named) {
        return Some(Resolution { model: named, by: ResolvedBy::Fleet });
    }
    if config.auto_route {
        let (loaded, on_disk) = candidates(fleet, has_images);
        let tier = Tier::of(asked);
        for (pool, by) in [(loaded, ResolvedBy::AutoLoaded), (on_disk, ResolvedBy::AutoOnDisk)] {
            if let Some(model) = best(tier, pool) {
                return Some(Resolution { model, by });
            }
        }
    }
    mapped(DEFAULT_KEY).map(|model| Resolution { model, by: ResolvedBy::Default })
}

/// What auto-route knows of one candidate.
#[derive(Clone, Debug, Default)]
struct Candidate {
    meta: Option<ModelMeta>,
    /// The loaded copy's `parameter_size`, when loaded.
    loaded_size: Option<String>,
}

/// The candidates on routable nodes: (loaded on some node, on disk only), by name.
fn candidates(fleet: &Fleet, has_images: bool) -> (BTreeMap<ModelName, Candidate>, BTreeMap<ModelName, Candidate>) {
    let mut loaded: BTreeMap<ModelName, Candidate> = BTreeMap::new();
    let mut on_disk: BTreeMap<ModelName, Candidate> = BTreeMap::new();
    for n in fleet.nodes().filter(|n| n.routable()) {
        for (name, entry) in n.models() {
            let meta = n.meta(name);
            if !eligible(name, meta, has_images) {
                continue;
            }
            let pool = if entry.is_loaded() { &mut loaded } else { &mut on_disk };
            let c = pool.entry(name.clone()).or_default();
            if c.meta.is_none() {
                c.meta = meta.cloned();
            }
            if c.loaded_size.is_none() {
                c.loaded_size = n.loaded(name).map(|l| l.parameter_size.clone()).filter(|s| !s.is_empty());
            }
        }
    }
    on_disk.retain(|name, _| !loaded.contains_key(name));
    (loaded, on_disk)
}

/// Whether a model may answer a chat from an Anthropic client at all.
fn eligible(name: &ModelName, meta: Option<&ModelMeta>, has_images: bool) -> bool {
    let lower = name.as_str().to_ascii_lowercase();
    let embed_name = ["embed", "bge-", "gte-", "e5-", "minilm", "arctic"].iter().any(|w| lower.contains(w));
    let has = |c: &str| meta.is_some_and(|m| m.capabilities.iter().any(|x| x == c));
    let category = model::classify(name, meta);
    if embed_name || has("embedding") || has("decision") || matches!(category, Category::Embedding | Category::Image) {
        return false;
    }
    !has_images || model::accepts_images(name, meta)
}

/// The best of `pool` for `tier`; ties to the name that sorts first.
fn best(tier: Tier, pool: BTreeMap<ModelName, Candidate>) -> Option<ModelName> {
    let mut best: Option<(f64, ModelName)> = None;
    for (name, c) in pool {
        let score = score(tier, &name, &c);
        // The pool is in name order: only a strictly higher score displaces.
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, name));
        }
    }
    best.map(|(_, name)| name)
}

/// A candidate's points for a tier.
fn score(tier: Tier, name: &ModelName, c: &Candidate) -> f64 {
    let bonus = match model::classify(name, c.meta.as_ref()) {
        Category::Coding => 15.0,
        Category::General => 5.0,
        Category::Creative | Category::Reasoning => -5.0,
        Category::Vision => -10.0,
        Category::Embedding | Category::Image => 0.0,
    };
    let base = BASE_QUALITY + bonus;
    let size = || {
        let reported = c.meta.as_ref().map(|m| m.parameter_size.as_str()).into_iter().chain(c.loaded_size.as_deref());
        reported.filter_map(params_b).next().or_else(|| params_from_name(name)).unwrap_or(UNKNOWN_PARAMS_B)
    };
    match tier {
        Tier::Balanced => base,
        Tier::Premium => base + 0.1 * size(),
        Tier::Fast => base - 0.5 * size(),
    }
}

/// Billions of parameters from Ollama's `parameter_size` (`8.2B`, `567M`, `1.5T`).
pub fn params_b(text: &str) -> Option<f64> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.len().checked_sub(1)?);
    let n: f64 = number.trim().parse().ok().filter(|n: &f64| n.is_finite() && *n > 0.0)?;
    match unit {
        "B" | "b" => Some(n),
        "M" | "m" => Some(n / 1000.0),
        "T" | "t" => Some(n * 1000.0),
        "K" | "k" => Some(n / 1e6),
        _ => None,
    }
}

/// Billions of parameters from a size marker in the name (`qwen3:30b-a3b` → 30, `llama3.2:1b`
/// → 1): the first `<number>b` with no letter or digit right before or after it.
pub fn params_from_name(name: &ModelName) -> Option<f64> {
    let n = name.as_str().to_ascii_lowercase();
    let bytes = n.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts =
            bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.');
        if starts {
            let end = i + bytes[i..].iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
            let after_b = bytes.get(end) == Some(&b'b');
            let clean_end = !bytes.get(end + 1).is_some_and(u8::is_ascii_alphanumeric);
            if after_b && clean_end {
                if let Some(v) = n[i..end].parse::<f64>().ok().filter(|v| *v > 0.0) {
                    return Some(v);
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests;
