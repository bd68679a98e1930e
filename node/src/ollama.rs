//! The local Ollama, as the heartbeat reports it: `/api/ps`, `/api/tags` (once per cycle, not three
//! times as ollama-herd does) and `/api/version`, fetched in parallel, turned into the heartbeat's
//! Ollama section by core ([`herd_core::fleet::ollama_state`]), plus what only the environment
//! knows (`OLLAMA_NUM_PARALLEL`, `OLLAMA_MAX_LOADED_MODELS`). An Ollama that does not answer is
//! reported as unreachable; the node itself stays up.

use crate::http::{self, Endpoint};
use herd_core::fleet::heartbeat::{ModelMeta, Ollama};
use herd_core::fleet::ollama_state;
use herd_core::ids::ModelName;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long each probe call may take. Three run in parallel, well inside a heartbeat period.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Model metadata with a version that changes only when the content does, so each router is sent
/// the map only when it has not seen this version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    /// Bumped on every change; 0 = nothing known yet.
    pub version: u64,
    /// The map.
    pub map: BTreeMap<ModelName, ModelMeta>,
    hash: [u8; 32],
}

impl Meta {
    /// Takes a new map; returns whether it differs from the current one. An empty map (failed
    /// fetch, or an Ollama with no models yet) never wipes a known one.
    pub fn update(&mut self, map: BTreeMap<ModelName, ModelMeta>) -> bool {
        if map.is_empty() {
            return false;
        }
        let json = serde_json::to_vec(&map).unwrap_or_default();
        let hash: [u8; 32] = Sha256::digest(&json).into();
        if self.version != 0 && hash == self.hash {
            return false;
        }
        self.hash = hash;
        self.map = map;
        self.version += 1;
        true
    }
}

/// Probes one Ollama.
#[derive(Debug)]
pub struct OllamaProbe {
    endpoint: Endpoint,
    num_parallel: u32,
    max_loaded_models: u32,
    timeout: Duration,
    /// Metadata as last seen.
    pub meta: Meta,
}

impl OllamaProbe {
    /// A probe of the Ollama at `endpoint`, with its settings read from this process's
    /// environment, else the running Ollama's, else its systemd unit
    /// ([`crate::ollama_env::discover`]).
    pub fn new(endpoint: Endpoint) -> OllamaProbe {
        let (settings, source) = crate::ollama_env::discover(std::path::Path::new("/"), std::env::vars());
        if source != "unknown" {
            tracing::info!(
                num_parallel = settings.num_parallel,
                max_loaded_models = settings.max_loaded_models,
                source,
                "Ollama settings"
            );
        }
        OllamaProbe {
            endpoint,
            num_parallel: settings.num_parallel,
            max_loaded_models: settings.max_loaded_models,
            timeout: PROBE_TIMEOUT,
            meta: Meta::default(),
        }
    }

    /// Caps each probe call at `timeout` (never above [`PROBE_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> OllamaProbe {
        self.timeout = timeout.min(PROBE_TIMEOUT);
        self
    }

    /// Where Ollama is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One probe round. `models_available_meta` is left `None`; the sender decides per router
    /// whether to include [`OllamaProbe::meta`].
    pub async fn sample(&mut self) -> Ollama {
        let (ep, t) = (&self.endpoint, self.timeout);
        let (ps, (tags, version)) = futures_lite::future::zip(
            get_json(ep, "/api/ps", t),
            futures_lite::future::zip(get_json(ep, "/api/tags", t), get_json(ep, "/api/version", t)),
        )
        .await;
        let mut state = ollama_state::ollama_state(ps.as_ref(), tags.as_ref(), version.as_ref());
        if tags.is_some() && self.meta.update(ollama_state::models_meta(tags.as_ref())) {
            tracing::debug!(version = self.meta.version, models = self.meta.map.len(), "model metadata changed");
        }
        state.num_parallel = self.num_parallel;
        state.max_loaded_models = self.max_loaded_models;
        state
    }
}

async fn get_json(ep: &Endpoint, path: &str, timeout: Duration) -> Option<Value> {
    match http::call(ep, "GET", path, &[], None, timeout).await {
        Ok(r) if r.ok() => serde_json::from_slice(&r.body).ok(),
        Ok(r) => {
            tracing::debug!(path, status = r.status, "ollama answered an error");
            None
        }
        Err(e) => {
            tracing::debug!(path, error = %e, "ollama did not answer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(cap: &str) -> BTreeMap<ModelName, ModelMeta> {
        let m = ModelMeta { capabilities: vec![cap.to_string()], ..ModelMeta::default() };
        BTreeMap::from([(ModelName::new("qwen3:8b"), m)])
    }

    #[test]
    fn meta_version_moves_only_on_change() {
        let mut m = Meta::default();
        assert!(!m.update(BTreeMap::new()), "nothing to say yet");
        assert_eq!(m.version, 0);
        assert!(m.update(meta("tools")));
        assert_eq!(m.version, 1);
        assert!(!m.update(meta("tools")));
        assert!(!m.update(BTreeMap::new()), "an empty answer keeps what is known");
        assert_eq!((m.version, m.map.len()), (1, 1));
        assert!(m.update(meta("vision")));
        assert_eq!(m.version, 2);
    }
}
