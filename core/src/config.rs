//! Every tunable of the router with ollama-herd's defaults, and its validation into a typed error.
//! Adapters deserialise this from a file or build it from flags; core only ever sees a validated one.

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub mod fleet_env;
mod keep_alive;

pub use keep_alive::{KeepAlive, KeepAliveError};

/// How the scorer weighs nodes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScorePolicy {
    /// herd's scoring: ollama-herd's signals plus GPU-aware fit, slot-relative queue penalty,
    /// the pin imbalance guard and a seeded tie-break.
    #[default]
    Herd,
    /// ollama-herd 0.11.4's scoring exactly (§2 of the reference), for comparison.
    Classic,
    /// Baseline: rotate over the nodes that can serve, ignoring every signal.
    RoundRobin,
    /// Baseline: the node with the shortest queue per parallel slot.
    LeastLoaded,
}

/// What the router does with a client's `num_ctx` (ollama-herd's `context_protection`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContextProtection {
    /// Pin `num_ctx` to the resident window so the model never reloads.
    #[default]
    Strip,
    /// Leave the client's value, but report it.
    Warn,
    /// Do nothing.
    Passthrough,
}

/// Node liveness thresholds (reference §1.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetConfig {
    /// Silence after which a node is degraded (still routable). Default 15 s.
    #[serde(with = "secs")]
    pub degraded_after: Duration,
    /// Silence after which a node is offline (not routable). Default 30 s.
    #[serde(with = "secs")]
    pub offline_after: Duration,
    /// Silence after which an offline node is forgotten entirely. Default 1 h.
    #[serde(with = "secs")]
    pub forget_after: Duration,
    /// How long an unloaded model counts as "warm" on its node. Default 1800 s.
    #[serde(with = "secs")]
    pub warm_window: Duration,
    /// Most nodes the registry holds; reports from more are refused. Default 1024.
    pub max_nodes: usize,
    /// A node's `OLLAMA_MAX_LOADED_MODELS` when it does not report one. Default 3.
    pub default_max_loaded_models: u32,
    /// When set, reports (heartbeats and drains) must present this key. Default none.
    pub fleet_key: Option<String>,
    /// After the router starts, a request for a model no node has reported yet is held (up to
    /// this long after start) instead of answered 404: a restarted router knows no node until
    /// each sends its next heartbeat. 0 = off. Default 10 s, two heartbeat periods.
    #[serde(with = "secs")]
    pub startup_grace: Duration,
    /// Largest heartbeat body, bytes. Default 512 KiB.
    pub max_report_bytes: usize,
    /// Most models a heartbeat may list in each of its lists. Default 2048.
    pub max_models_per_node: usize,
    /// Longest model name a heartbeat may carry, bytes. Default 256.
    pub max_model_name_bytes: usize,
    /// When not empty, an agent's node must be reached at an IP address inside one of these
    /// networks (CIDR, `10.0.0.0/8`); link-local and metadata addresses are refused always.
    /// Default empty (any other address).
    pub node_networks: Vec<String>,
}

impl FleetConfig {
    /// The parsed [`FleetConfig::node_networks`]; entries that do not parse are refused by
    /// [`RouterConfig::validate`], so none is dropped here once validated.
    pub fn node_networks(&self) -> Vec<crate::fleet::address::Network> {
        self.node_networks.iter().filter_map(|n| n.parse().ok()).collect()
    }

    /// The bounds on one report.
    pub fn report_limits(&self) -> crate::fleet::heartbeat::ReportLimits {
        crate::fleet::heartbeat::ReportLimits {
            max_bytes: self.max_report_bytes,
            max_models: self.max_models_per_node,
            max_name_bytes: self.max_model_name_bytes,
        }
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            degraded_after: Duration::from_secs(15),
            offline_after: Duration::from_secs(30),
            forget_after: Duration::from_secs(3600),
            warm_window: Duration::from_secs(1800),
            max_nodes: 1024,
            default_max_loaded_models: 3,
            fleet_key: None,
            startup_grace: Duration::from_secs(10),
            max_report_bytes: 512 * 1024,
            max_models_per_node: 2048,
            max_model_name_bytes: 256,
            node_networks: Vec::new(),
        }
    }
}

/// Scoring weights (reference §2.2 defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreConfig {
    /// Which scorer.
    pub policy: ScorePolicy,
    /// Points when the model is loaded on the node. Default 50.
    pub model_hot: f64,
    /// Points when the model left the node less than `warm_window` ago. Default 30.
    pub model_warm: f64,
    /// Points when the model is only on disk. Default 10.
    pub model_cold: f64,
    /// Most points for memory fit. Default 20.
    pub memory_fit_max: f64,
    /// Penalty per queued request. Default 6.
    pub queue_penalty_per: f64,
    /// Most queue penalty. Default 30.
    pub queue_max_penalty: f64,
    /// Normalise the queue penalty by node bandwidth against the fleet median. Default on.
    pub queue_bandwidth_normalize: bool,
    /// Most wait-time penalty. Default 25.
    pub wait_max_penalty: f64,
    /// Models above this size (GB) are "large" for role affinity. Default 20.
    pub role_large_gb: f64,
    /// Models below this size (GB) are "small" for role affinity. Default 8.
    pub role_small_gb: f64,
    /// Use bandwidth rather than RAM tiers for role affinity. Default on.
    pub bandwidth_aware: bool,
    /// Most availability points. Default 10.
    pub availability_max: f64,
    /// Most context-fit points (and the overflow penalty). Default 15.
    pub context_fit_max: f64,
    /// Session pin bonus. Default 20.
    pub session_bonus: f64,
    /// Prefix pin bonus. Default 10.
    pub prefix_bonus: f64,
    /// How long a pin lasts. Default 900 s.
    #[serde(with = "secs")]
    pub pin_ttl: Duration,
    /// Most pins kept (LRU). Default 2000.
    pub pin_capacity: usize,
    /// A pin is ignored when its node's queue is this many requests longer than the shortest
    /// candidate queue (herd policy only); 0 turns the guard off. Default 3.
    pub pin_imbalance_guard: u32,
    /// Latency samples kept per node+model for the p75. Default 64.
    pub latency_samples: usize,
    /// herd policy: points per second of expected time (load, queue, service). Default 2.
    pub eta_points_per_sec: f64,
    /// herd policy: expected model load rate, GB/s (the deadline allowance in `RetryConfig`
    /// is deliberately more pessimistic). Default 1.
    pub load_gb_per_sec: f64,
    /// herd policy: output tokens expected when the client gives no budget. Default 256.
    pub expected_output_tokens: u32,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            policy: ScorePolicy::Herd,
            model_hot: 50.0,
            model_warm: 30.0,
            model_cold: 10.0,
            memory_fit_max: 20.0,
            queue_penalty_per: 6.0,
            queue_max_penalty: 30.0,
            queue_bandwidth_normalize: true,
            wait_max_penalty: 25.0,
            role_large_gb: 20.0,
            role_small_gb: 8.0,
            bandwidth_aware: true,
            availability_max: 10.0,
            context_fit_max: 15.0,
            session_bonus: 20.0,
            prefix_bonus: 10.0,
            pin_ttl: Duration::from_secs(900),
            pin_capacity: 2000,
            pin_imbalance_guard: 3,
            latency_samples: 64,
            eta_points_per_sec: 2.0,
            load_gb_per_sec: 1.0,
            expected_output_tokens: 256,
        }
    }
}

/// Admission and queueing (reference §4, with bounds ollama-herd lacks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Most pending (not yet dispatched) requests per node+model queue. Default 64.
    pub max_pending_per_queue: usize,
    /// Most requests alive in the router at once (all states). Default 4096.
    pub max_requests: usize,
    /// Longest a request waits in a node queue before a 503. Default 120 s.
    #[serde(with = "secs")]
    pub max_queue_wait: Duration,
    /// Longest a request is held when no node can serve it right now. Default 30 s.
    #[serde(with = "secs")]
    pub holding: Duration,
    /// Assumed memory per concurrent request for the slot count, in GB. Default 2.
    pub kv_slot_gb: f64,
    /// Most concurrent requests per node+model from memory headroom. Default 8.
    pub max_slots: u32,
    /// Per-client cap on live requests; 0 = off. Default 0.
    pub client_max_in_flight: u32,
    /// `Retry-After` for 429 answers. Default 2 s.
    #[serde(with = "secs")]
    pub retry_after: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_pending_per_queue: 64,
            max_requests: 4096,
            max_queue_wait: Duration::from_secs(120),
            holding: Duration::from_secs(30),
            kv_slot_gb: 2.0,
            max_slots: 8,
            client_max_in_flight: 0,
            retry_after: Duration::from_secs(2),
        }
    }
}

/// Attempts, deadlines and the circuit breaker (reference §5, §4.6, faster).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryConfig {
    /// Most attempts per request, first included. Default 3.
    pub max_attempts: u32,
    /// Time to the first byte from a hot model. Default 60 s.
    #[serde(with = "secs")]
    pub first_byte_timeout: Duration,
    /// Assumed model load rate for the cold-start allowance, GB per second. Default 0.5.
    pub load_gb_per_sec: f64,
    /// Assumed prefill rate for the first-byte allowance, tokens per second. Default 200.
    pub prefill_tokens_per_sec: f64,
    /// No progress for this long after the first byte ends the attempt. Default 30 s.
    #[serde(with = "secs")]
    pub stall_timeout: Duration,
    /// A client that does not stream, with an output budget of at most this many tokens, gets
    /// its answer from the node in one piece (`stream: false`) instead of token by token: one
    /// read instead of one per token, and a node failing during generation is retried, as the
    /// client has seen nothing. The attempt's deadline grows by the budget at
    /// `decode_tokens_per_sec`. 0 = always stream from the node. Default 256.
    pub unstreamed_max_tokens: u32,
    /// The slowest decoding an unstreamed answer's deadline allows for, tokens per second.
    /// Default 5.
    pub decode_tokens_per_sec: f64,
    /// Failures within `breaker_window` that open a node's breaker. Default 3.
    pub breaker_failures: u32,
    /// Window for counting failures. Default 30 s.
    #[serde(with = "secs")]
    pub breaker_window: Duration,
    /// How long an open breaker stays open before one probe. Default 10 s.
    #[serde(with = "secs")]
    pub breaker_open_for: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            first_byte_timeout: Duration::from_secs(60),
            load_gb_per_sec: 0.5,
            prefill_tokens_per_sec: 200.0,
            stall_timeout: Duration::from_secs(30),
            unstreamed_max_tokens: 256,
            decode_tokens_per_sec: 5.0,
            breaker_failures: 3,
            breaker_window: Duration::from_secs(30),
            breaker_open_for: Duration::from_secs(10),
        }
    }
}

/// Fallbacks, auto-pull and context shaping (reference §3, §6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Substitute a loaded model of the same category instead of a cold load. Default on.
    pub vram_fallback: bool,
    /// Also substitute across categories (ollama-herd does; herd does not by default).
    pub cross_category_fallback: bool,
    /// Pull a model nobody has. Default off; only names matching `pull_allow` are pulled.
    pub auto_pull: bool,
    /// Allow-list for auto-pull: exact names or prefixes ending in `*`.
    pub pull_allow: Vec<String>,
    /// Longest a request waits for an auto-pull. Default 300 s.
    #[serde(with = "secs")]
    pub pull_timeout: Duration,
    /// What to do with a client's `num_ctx`.
    pub context_protection: ContextProtection,
    /// Thinking models: `num_predict` multiplier. Default 4.
    pub thinking_overhead: f64,
    /// Thinking models: least `num_predict` after inflation. Default 1024.
    pub thinking_min_predict: u32,
    /// `keep_alive` for a body sent to a native Ollama endpoint without one (the client's own
    /// always wins). Default `-1`, ollama-herd's: models stay loaded.
    pub keep_alive: KeepAlive,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            vram_fallback: true,
            cross_category_fallback: false,
            auto_pull: false,
            pull_allow: Vec::new(),
            pull_timeout: Duration::from_secs(300),
            context_protection: ContextProtection::Strip,
            thinking_overhead: 4.0,
            thinking_min_predict: 1024,
            keep_alive: KeepAlive::default(),
        }
    }
}

/// The whole router configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    /// Liveness.
    pub fleet: FleetConfig,
    /// Scoring.
    pub score: ScoreConfig,
    /// Admission.
    pub queue: QueueConfig,
    /// Attempts and breaker.
    pub retry: RetryConfig,
    /// Fallbacks and request shaping.
    pub policy: PolicyConfig,
    /// What one request body may hold.
    pub body: crate::api::body::BodyLimits,
    /// How `claude-*` model ids on `/v1/messages` become local models.
    pub anthropic: AnthropicConfig,
}

/// How an Anthropic client's model id (`claude-sonnet-4-5`) becomes a local model
/// (herd-router.md §11.2; [`crate::policy::anthropic::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnthropicConfig {
    /// Client model id → local model, looked up first and exactly; the key `default` names the
    /// model used when nothing else resolves. Default empty.
    pub model_map: std::collections::BTreeMap<String, String>,
    /// Pick the best local model for a Claude tier (haiku: fast, sonnet: balanced, opus:
    /// premium) when the map has no entry and the fleet has no model of that name: a loaded one
    /// first, else one on disk. Default on.
    pub auto_route: bool,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig { model_map: std::collections::BTreeMap::new(), auto_route: true }
    }
}

/// Why an Anthropic model map (`--anthropic-model-map`, JSON) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelMapError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("must be a JSON object of model ids to local models, like {{\"claude-sonnet-4-5\": \"qwen3:32b\"}}")]
    NotAnObject,
    /// A key is empty.
    #[error("a model id (key) is empty")]
    EmptyKey,
    /// A value is not a string.
    #[error("the value for {key:?} is not a string")]
    NotAString {
        /// The key.
        key: String,
    },
    /// A value is not a model name a server could accept.
    #[error("the value for {key:?} is not a valid model name: {value:?}")]
    BadModel {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

impl AnthropicConfig {
    /// Reads a model map written as a JSON object (`{"claude-sonnet-4-5": "qwen3:32b",
    /// "default": "qwen3:8b"}`), as `--anthropic-model-map` and ollama-herd's
    /// `FLEET_ANTHROPIC_MODEL_MAP` give it. Keys and values are trimmed; an empty text is an
    /// empty map.
    ///
    /// # Errors
    /// [`ModelMapError`]: not JSON, not an object, an empty key, a value that is not a string or
    /// not a valid model name.
    pub fn parse_model_map(text: &str) -> Result<std::collections::BTreeMap<String, String>, ModelMapError> {
        let mut map = std::collections::BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(map);
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ModelMapError::NotJson(e.to_string()))?;
        let serde_json::Value::Object(object) = value else { return Err(ModelMapError::NotAnObject) };
        for (key, value) in object {
            let key = key.trim().to_string();
            if key.is_empty() {
                return Err(ModelMapError::EmptyKey);
            }
            let serde_json::Value::String(model) = value else { return Err(ModelMapError::NotAString { key }) };
            model_name(&key, &model)?;
            map.insert(key, model.trim().to_string());
        }
        Ok(map)
    }

    fn check(&self) -> Result<(), ModelMapError> {
        for (key, model) in &self.model_map {
            if key.trim().is_empty() {
                return Err(ModelMapError::EmptyKey);
            }
            model_name(key, model)?;
        }
        Ok(())
    }
}

/// `model` as a model name, or why the map entry `key` is refused.
fn model_name(key: &str, model: &str) -> Result<crate::ids::ModelName, ModelMapError> {
    crate::api::parse_model_name(model).map_err(|_| ModelMapError::BadModel { key: key.into(), value: model.into() })
}

/// A configuration value that cannot work.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
    /// A number is negative, NaN or infinite.
    #[error("{field} must be a finite number >= 0, got {value}")]
    BadNumber {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// Two thresholds are out of order.
    #[error("{smaller} must be less than {larger}")]
    Order {
        /// The one that must be smaller.
        smaller: &'static str,
        /// The one that must be larger.
        larger: &'static str,
    },
    /// A value that cannot be read.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl RouterConfig {
    /// Checks every field and returns the configuration unchanged when it can work.
    ///
    /// # Errors
    /// The first field that cannot work, as a [`ConfigError`].
    pub fn validate(self) -> Result<Self, ConfigError> {
        let f = &self.fleet;
        nonzero("fleet.degraded_after", f.degraded_after)?;
        nonzero("fleet.offline_after", f.offline_after)?;
        nonzero("fleet.forget_after", f.forget_after)?;
        order("fleet.degraded_after", f.degraded_after, "fleet.offline_after", f.offline_after)?;
        order("fleet.offline_after", f.offline_after, "fleet.forget_after", f.forget_after)?;
        count("fleet.max_nodes", f.max_nodes)?;
        count("fleet.max_report_bytes", f.max_report_bytes)?;
        count("body.max_messages", self.body.max_messages)?;
        count("body.max_parts", self.body.max_parts)?;
        count("body.max_values", self.body.max_values)?;
        count("fleet.max_models_per_node", f.max_models_per_node)?;
        count("fleet.max_model_name_bytes", f.max_model_name_bytes)?;
        for n in &f.node_networks {
            n.parse::<crate::fleet::address::Network>()
                .map_err(|e| ConfigError::Invalid { field: "fleet.node_networks", reason: e.to_string() })?;
        }
        let s = &self.score;
        for (name, v) in [
            ("score.model_hot", s.model_hot),
            ("score.model_warm", s.model_warm),
            ("score.model_cold", s.model_cold),
            ("score.memory_fit_max", s.memory_fit_max),
            ("score.queue_penalty_per", s.queue_penalty_per),
            ("score.queue_max_penalty", s.queue_max_penalty),
            ("score.wait_max_penalty", s.wait_max_penalty),
            ("score.role_large_gb", s.role_large_gb),
            ("score.role_small_gb", s.role_small_gb),
            ("score.availability_max", s.availability_max),
            ("score.context_fit_max", s.context_fit_max),
            ("score.session_bonus", s.session_bonus),
            ("score.prefix_bonus", s.prefix_bonus),
            ("queue.kv_slot_gb", self.queue.kv_slot_gb),
            ("score.eta_points_per_sec", s.eta_points_per_sec),
            ("score.load_gb_per_sec", s.load_gb_per_sec),
            ("retry.load_gb_per_sec", self.retry.load_gb_per_sec),
            ("retry.prefill_tokens_per_sec", self.retry.prefill_tokens_per_sec),
            ("policy.thinking_overhead", self.policy.thinking_overhead),
        ] {
            finite(name, v)?;
        }
        if s.role_small_gb > s.role_large_gb {
            return Err(ConfigError::Order { smaller: "score.role_small_gb", larger: "score.role_large_gb" });
        }
        count("score.pin_capacity", s.pin_capacity)?;
        count("score.latency_samples", s.latency_samples)?;
        if s.load_gb_per_sec == 0.0 {
            return Err(ConfigError::BadNumber { field: "score.load_gb_per_sec", value: 0.0 });
        }
        let q = &self.queue;
        count("queue.max_pending_per_queue", q.max_pending_per_queue)?;
        count("queue.max_requests", q.max_requests)?;
        count("queue.max_slots", q.max_slots as usize)?;
        nonzero("queue.max_queue_wait", q.max_queue_wait)?;
        nonzero("queue.holding", q.holding)?;
        nonzero("queue.retry_after", q.retry_after)?;
        if q.kv_slot_gb == 0.0 {
            return Err(ConfigError::BadNumber { field: "queue.kv_slot_gb", value: 0.0 });
        }
        let r = &self.retry;
        count("retry.max_attempts", r.max_attempts as usize)?;
        nonzero("retry.first_byte_timeout", r.first_byte_timeout)?;
        nonzero("retry.stall_timeout", r.stall_timeout)?;
        nonzero("retry.breaker_window", r.breaker_window)?;
        nonzero("retry.breaker_open_for", r.breaker_open_for)?;
        count("retry.breaker_failures", r.breaker_failures as usize)?;
        for (name, v) in [
            ("retry.load_gb_per_sec", r.load_gb_per_sec),
            ("retry.prefill_tokens_per_sec", r.prefill_tokens_per_sec),
            ("retry.decode_tokens_per_sec", r.decode_tokens_per_sec),
        ] {
            if v == 0.0 {
                return Err(ConfigError::BadNumber { field: name, value: v });
            }
        }
        nonzero("policy.pull_timeout", self.policy.pull_timeout)?;
        self.anthropic
            .check()
            .map_err(|e| ConfigError::Invalid { field: "anthropic.model_map", reason: e.to_string() })?;
        Ok(self)
    }
}

fn nonzero(name: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::ZeroDuration(name))
    } else {
        Ok(())
    }
}

fn count(name: &'static str, n: usize) -> Result<(), ConfigError> {
    if n == 0 {
        Err(ConfigError::ZeroCount(name))
    } else {
        Ok(())
    }
}

fn finite(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::BadNumber { field, value })
    }
}

fn order(smaller: &'static str, a: Duration, larger: &'static str, b: Duration) -> Result<(), ConfigError> {
    if a < b {
        Ok(())
    } else {
        Err(ConfigError::Order { smaller, larger })
    }
}

/// Durations in config files are seconds (fractions allowed), as operators write them.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_reference() {
        let c = RouterConfig::default().validate().unwrap();
        assert_eq!(c.fleet.degraded_after, Duration::from_secs(15));
        assert_eq!(c.fleet.offline_after, Duration::from_secs(30));
        assert_eq!((c.score.model_hot, c.score.model_warm, c.score.model_cold), (50.0, 30.0, 10.0));
        assert_eq!(c.queue.holding, Duration::from_secs(30));
        assert_eq!(c.retry.max_attempts, 3);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let mut c = RouterConfig::default();
        c.fleet.offline_after = Duration::from_secs(10);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Order { smaller: "fleet.degraded_after", larger: "fleet.offline_after" })
        );
        let mut c = RouterConfig::default();
        c.score.model_hot = f64::NAN;
        assert!(matches!(c.validate(), Err(ConfigError::BadNumber { field: "score.model_hot", .. })));
        let mut c = RouterConfig::default();
        c.retry.max_attempts = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroCount("retry.max_attempts")));
    }

    #[test]
    fn parses_partial_json_with_seconds() {
        let c: RouterConfig =
            serde_json::from_str(r#"{"queue":{"holding":2.5},"score":{"policy":"classic"}}"#).unwrap();
        assert_eq!(c.queue.holding, Duration::from_millis(2500));
        assert_eq!(c.score.policy, ScorePolicy::Classic);
        assert_eq!(c.fleet, FleetConfig::default());
    }
}
