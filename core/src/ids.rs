//! Identifiers core allocates (requests, attempts, nodes) and model names as Ollama spells them.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// One client request, from admission to its single end.
    RequestId(u64)
);
id!(
    /// One try of a request on one node; a retry is a new attempt.
    AttemptId(u64)
);
id!(
    /// A node in the registry. Allocated on first report and never reused, even after the node is
    /// forgotten, so a stale id can never name a different machine.
    NodeId(u32)
);

/// A model name normalised the way Ollama does: a name without a tag gets `:latest`.
///
/// `llama3` and `llama3:latest` are the same model; `hf.co/x/y:Q4` keeps its tag. Names compare
/// case-sensitively, as Ollama's registry does for tags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ModelName(String);

impl ModelName {
    /// Normalises `raw`: trims spaces and appends `:latest` when the last path segment has no tag.
    pub fn new(raw: &str) -> Self {
        let raw = raw.trim();
        let last = raw.rsplit('/').next().unwrap_or(raw);
        if raw.is_empty() || last.contains(':') {
            ModelName(raw.to_string())
        } else {
            ModelName(format!("{raw}:latest"))
        }
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable 64-bit key of the name (FNV-1a), for fast per-node lookups; equal names have
    /// equal keys, and lookups confirm the name itself.
    pub fn key(&self) -> u64 {
        crate::rng::fnv1a(crate::rng::FNV_OFFSET, self.0.as_bytes())
    }

    /// The name without its tag (`qwen3:8b` → `qwen3`).
    pub fn family(&self) -> &str {
        match self.0.rfind(':') {
            Some(i) if !self.0[i..].contains('/') => &self.0[..i],
            _ => &self.0,
        }
    }
}

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ModelName::new(&s))
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ModelName {
    fn from(s: &str) -> Self {
        ModelName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_appended_only_without_a_tag() {
        assert_eq!(ModelName::new("llama3").as_str(), "llama3:latest");
        assert_eq!(ModelName::new(" qwen3:8b ").as_str(), "qwen3:8b");
        assert_eq!(ModelName::new("registry.io:5000/x/y").as_str(), "registry.io:5000/x/y:latest");
        assert_eq!(ModelName::new("hf.co/org/m:Q4_K_M").as_str(), "hf.co/org/m:Q4_K_M");
        assert_eq!(ModelName::new("llama3"), ModelName::new("llama3:latest"));
        assert_eq!(ModelName::new("qwen3:8b").family(), "qwen3");
    }
}
