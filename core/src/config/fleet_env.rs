//! ollama-herd's router settings (`FLEET_*`, herd-router.md §16.1) as herd reads them: one
//! table ([`FLEET_VARS`]), one row per variable, saying what herd does with it. Pure: the service
//! reads the environment and ollama-herd's env file and hands the pairs in; [`map`] decides what
//! they mean: `HERD_*` variables to set before the command line is read, configuration fields,
//! names herd does not support (with why), and values that cannot be read.

use super::{ContextProtection, RouterConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One `FLEET_*` variable and what herd does with it.
#[derive(Copy, Clone, Debug)]
pub struct Row {
    /// The variable, as ollama-herd spells it.
    pub var: &'static str,
    /// What herd does with it.
    pub target: Target,
}

/// What herd does with one `FLEET_*` variable.
#[derive(Copy, Clone, Debug)]
pub enum Target {
    /// Stands for a command-line option: its `HERD_*` variable is set to the translated value
    /// when neither it nor any of `also` is set (and the option itself still wins over both).
    Flag {
        /// The option's variable.
        herd: &'static str,
        /// Other `HERD_*` variables that say the same and win too (`HERD_LOG` for the level).
        also: &'static [&'static str],
        /// The value herd's option takes, from the `FLEET_*` one.
        value: fn(&str, Option<&str>) -> Result<String, Expected>,
    },
    /// Sets a field of the router configuration (see [`FleetEnv::apply`] for the order).
    Config {
        /// The field, as a `--config` file names it (`score.model_hot`).
        field: &'static str,
        /// Sets it from the value.
        apply: fn(&mut RouterConfig, &str) -> Result<(), Expected>,
    },
    /// `FLEET_ENV_FILE`: where the env file is, read by the service before anything else.
    EnvFile,
    /// Read by the service itself, beside the option that says the same (the Anthropic model
    /// map, auto-route and key, which combine several variables); nothing to do here.
    Service(&'static str),
    /// Not supported; the reason goes into the start-up warning.
    Unsupported(&'static str),
}

/// What a value should have been, for [`FleetEnvError`].
pub type Expected = &'static str;

/// A `FLEET_*` value herd cannot read: the router refuses to start, as it does for a bad
/// `HERD_*` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: expected {expected}")]
pub struct FleetEnvError {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// What it should have been.
    pub expected: Expected,
}

/// A `FLEET_*` variable herd does not support, and why (`None`: not an ollama-herd router
/// setting herd knows of, perhaps misspelt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The variable.
    pub var: String,
    /// Why herd has no equivalent.
    pub reason: Option<&'static str>,
}

/// A `HERD_*` variable to set from a `FLEET_*` one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagSetting {
    /// The `HERD_*` variable.
    pub herd: &'static str,
    /// Its value.
    pub value: String,
    /// The `FLEET_*` variable it comes from.
    pub from: &'static str,
}

/// A configuration field set from a `FLEET_*` variable.
#[derive(Clone, Debug)]
pub struct ConfigSetting {
    /// The `FLEET_*` variable.
    pub var: &'static str,
    /// The field it sets.
    pub field: &'static str,
    /// Its value, already known to read.
    pub value: String,
    apply: fn(&mut RouterConfig, &str) -> Result<(), Expected>,
}

/// What the `FLEET_*` variables mean to herd (see [`map`]).
#[derive(Clone, Debug, Default)]
pub struct FleetEnv {
    /// `HERD_*` variables to set before the command line is read.
    pub flags: Vec<FlagSetting>,
    /// Configuration fields, for [`FleetEnv::apply`].
    pub config: Vec<ConfigSetting>,
    /// `FLEET_*` variables left unused because a `HERD_*` one says the same: (fleet, herd).
    pub overridden: Vec<(&'static str, &'static str)>,
    /// Variables herd does not support: each is logged once at start-up.
    pub unsupported: Vec<Unsupported>,
    /// Values that cannot be read: the router does not start.
    pub errors: Vec<FleetEnvError>,
}

impl FleetEnv {
    /// Sets the configuration fields the `FLEET_*` variables name. herd layers its configuration
    /// as core's defaults, then these, then the `--config` file, then `HERD_*` variables and
    /// flags: herd's own settings always win over ollama-herd's.
    pub fn apply(&self, config: &mut RouterConfig) {
        for s in &self.config {
            // Each value was read once already by `map`, against the same parsers.
            let _ = (s.apply)(config, &s.value);
        }
    }
}

/// What the `FLEET_*` variables in `vars` mean to herd. `vars` is the environment as the router
/// sees it (ollama-herd's env file under the real environment) and may hold other names, which
/// are left alone; `herd_set` names the `HERD_*` variables that are set; `home` expands a
/// leading `~` in a path. Empty values count as unset. Node-side variables (`FLEET_NODE_*`, and
/// the telemetry names ollama-herd's router reads as aliases of them) are herd-node's and are
/// passed over without a word.
pub fn map<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    herd_set: &BTreeSet<String>,
    home: Option<&str>,
) -> FleetEnv {
    let fleet: BTreeMap<&str, &str> =
        vars.into_iter().filter(|(k, v)| k.starts_with("FLEET_") && !v.trim().is_empty() && !node_side(k)).collect();
    let mut out = FleetEnv::default();
    let mut scratch = RouterConfig::default();
    for row in FLEET_VARS {
        let Some(&value) = fleet.get(row.var) else { continue };
        let bad = |expected| FleetEnvError { var: row.var.into(), value: value.into(), expected };
        match row.target {
            Target::Flag { herd, also, value: translate } => {
                if let Some(set) = std::iter::once(&herd).chain(also).find(|h| herd_set.contains(**h)) {
                    out.overridden.push((row.var, *set));
                    continue;
                }
                match translate(value, home) {
                    // An earlier row for the same option wins (the console level over the file's).
                    Ok(_) if out.flags.iter().any(|f| f.herd == herd) => out.overridden.push((row.var, herd)),
                    Ok(v) => out.flags.push(FlagSetting { herd, value: v, from: row.var }),
                    Err(e) => out.errors.push(bad(e)),
                }
            }
            Target::Config { field, apply } => match apply(&mut scratch, value) {
                Ok(()) => out.config.push(ConfigSetting { var: row.var, field, value: value.into(), apply }),
                Err(e) => out.errors.push(bad(e)),
            },
            Target::EnvFile | Target::Service(_) => {}
            Target::Unsupported(reason) => {
                out.unsupported.push(Unsupported { var: row.var.into(), reason: Some(reason) })
            }
        }
    }
    for name in fleet.keys().filter(|k| row(k).is_none()) {
        out.unsupported.push(Unsupported { var: (*name).into(), reason: None });
    }
    out
}

/// The row of `var`, if herd knows it.
pub fn row(var: &str) -> Option<&'static Row> {
    FLEET_VARS.iter().find(|r| r.var == var)
}

/// herd-node's variables, and the telemetry names ollama-herd's router reads as aliases of
/// them (herd sends no telemetry).
fn node_side(var: &str) -> bool {
    var.starts_with("FLEET_NODE_") || matches!(var, "FLEET_TELEMETRY" | "FLEET_TELEMETRY_URL" | "FLEET_HERD_NICKNAME")
}

// ---------------------------------------------------------------------------------------------
// Reading values as pydantic-settings read them.

/// pydantic's booleans: `1/0`, `true/false`, `yes/no`, `on/off`, `t/f`, `y/n`, in any case.
fn boolean(v: &str) -> Result<bool, Expected> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
        _ => Err("true or false"),
    }
}

/// A finite number >= 0 (herd's weights are never negative).
fn weight(v: &str) -> Result<f64, Expected> {
    v.trim().parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0).ok_or("a number >= 0")
}

/// Seconds > 0, fractions allowed.
fn seconds(v: &str) -> Result<Duration, Expected> {
    const E: Expected = "a number of seconds > 0";
    let n = v.trim().parse::<f64>().map_err(|_| E)?;
    Duration::try_from_secs_f64(n).ok().filter(|d| !d.is_zero()).ok_or(E)
}

/// A whole number; negative counts as 0 (ollama-herd turns a feature off at `<= 0`).
fn whole(v: &str) -> Result<u32, Expected> {
    let n = v.trim().parse::<i64>().map_err(|_| "a whole number")?;
    Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

/// `FLEET_CONTEXT_PROTECTION`.
fn context_protection(v: &str) -> Result<ContextProtection, Expected> {
    match v.trim().to_ascii_lowercase().as_str() {
        "strip" => Ok(ContextProtection::Strip),
        "warn" => Ok(ContextProtection::Warn),
        "passthrough" => Ok(ContextProtection::Passthrough),
        _ => Err("strip, warn or passthrough"),
    }
}

/// `--host`: an IP address (`localhost` is loopback).
fn host(v: &str, _: Option<&str>) -> Result<String, Expected> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("localhost") {
        return Ok("127.0.0.1".into());
    }
    v.parse::<std::net::IpAddr>().map(|ip| ip.to_string()).map_err(|_| "an IP address such as 0.0.0.0")
}

/// `--port`.
fn port(v: &str, _: Option<&str>) -> Result<String, Expected> {
    v.trim().parse::<u16>().map(|p| p.to_string()).map_err(|_| "a port number (0 to 65535)")
}

/// A folder, `~` expanded as ollama-herd's `Path.expanduser` does.
fn folder(v: &str, home: Option<&str>) -> Result<String, Expected> {
    let v = v.trim();
    match (v.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => Ok(format!("{home}{rest}")),
        _ => Ok(v.to_string()),
    }
}

/// Python's level names as tracing's (`CRITICAL` is `error`, tracing's highest).
fn level(v: &str, _: Option<&str>) -> Result<String, Expected> {
    match v.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Ok("trace".into()),
        "DEBUG" | "NOTSET" => Ok("debug".into()),
        "INFO" => Ok("info".into()),
        "WARNING" | "WARN" => Ok("warn".into()),
        "ERROR" | "CRITICAL" | "FATAL" => Ok("error".into()),
        _ => Err("DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    }
}

/// An mDNS name or type, as given.
fn text(v: &str, _: Option<&str>) -> Result<String, Expected> {
    Ok(v.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// The table.

const fn row_of(var: &'static str, target: Target) -> Row {
    Row { var, target }
}

const fn flag(herd: &'static str, value: fn(&str, Option<&str>) -> Result<String, Expected>) -> Target {
    Target::Flag { herd, also: &[], value }
}

const fn unsupported(reason: &'static str) -> Target {
    Target::Unsupported(reason)
}

/// A [`Target::Config`] that sets `$field` (a path into [`RouterConfig`]) to `$read(value)`.
macro_rules! field {
    ($($field:ident).+ = $read:expr) => {
        Target::Config {
            field: stringify!($($field).+),
            apply: |c: &mut RouterConfig, v: &str| {
                c.$($field).+ = $read(v)?;
                Ok(())
            },
        }
    };
}

const NO_REBALANCER: &str = "herd has no rebalancer or pre-warmer (it scores every request as it arrives)";
const NO_MEDIA: &str = "herd routes no image generation, transcription or vision embeddings";
const NO_CTX_OPTIMIZER: &str =
    "herd has no context optimizer (num_ctx overrides); it pins num_ctx to the resident context instead";
const NO_COMPACTION: &str = "herd does not rewrite or compact conversations";
const NO_MLX: &str = "MLX proxy is not part of herd";
const NO_PRELOADER: &str = "herd has no model preloader or pinned models";

/// Every router variable of ollama-herd 0.11.4 (herd-router.md §16.1), in the order of the
/// README's table.
pub const FLEET_VARS: &[Row] = &[
    row_of("FLEET_HOST", flag("HERD_HOST", host)),
    row_of("FLEET_PORT", flag("HERD_PORT", port)),
    row_of("FLEET_DATA_DIR", flag("HERD_DATA_DIR", folder)),
    row_of("FLEET_CONSOLE_LOG_LEVEL", Target::Flag { herd: "HERD_LOG_LEVEL", also: &["HERD_LOG"], value: level }),
    row_of("FLEET_LOG_LEVEL", Target::Flag { herd: "HERD_LOG_LEVEL", also: &["HERD_LOG"], value: level }),
    row_of("FLEET_MDNS_SERVICE_TYPE", flag("HERD_MDNS_SERVICE", text)),
    row_of("FLEET_MDNS_SERVICE_NAME", flag("HERD_MDNS_NAME", text)),
    row_of("FLEET_ENV_FILE", Target::EnvFile),
    row_of(
        "FLEET_HEARTBEAT_INTERVAL",
        unsupported(
            "herd needs no status monitor period (a node turns degraded and offline the moment its silence \
             passes fleet.degraded_after and fleet.offline_after)",
        ),
    ),
    row_of("FLEET_HEARTBEAT_TIMEOUT", field!(fleet.degraded_after = seconds)),
    row_of("FLEET_HEARTBEAT_OFFLINE", field!(fleet.offline_after = seconds)),
    row_of("FLEET_SCORE_MODEL_HOT", field!(score.model_hot = weight)),
    row_of("FLEET_SCORE_MODEL_WARM", field!(score.model_warm = weight)),
    row_of("FLEET_SCORE_MODEL_COLD", field!(score.model_cold = weight)),
    row_of("FLEET_SCORE_MEMORY_FIT_MAX", field!(score.memory_fit_max = weight)),
    row_of("FLEET_SCORE_QUEUE_DEPTH_MAX_PENALTY", field!(score.queue_max_penalty = weight)),
    row_of("FLEET_SCORE_QUEUE_DEPTH_PENALTY_PER", field!(score.queue_penalty_per = weight)),
    row_of("FLEET_SCORE_WAIT_TIME_MAX_PENALTY", field!(score.wait_max_penalty = weight)),
    row_of(
        "FLEET_SCORE_ROLE_AFFINITY_MAX",
        unsupported("ollama-herd does not read it either (role affinity is capped at 25 in both)"),
    ),
    row_of("FLEET_SCORE_ROLE_LARGE_THRESHOLD_GB", field!(score.role_large_gb = weight)),
    row_of("FLEET_SCORE_ROLE_SMALL_THRESHOLD_GB", field!(score.role_small_gb = weight)),
    row_of("FLEET_SCORE_AVAILABILITY_TREND_MAX", field!(score.availability_max = weight)),
    row_of("FLEET_SCORE_CONTEXT_FIT_MAX", field!(score.context_fit_max = weight)),
    row_of("FLEET_BANDWIDTH_AWARE_SCORING", field!(score.bandwidth_aware = boolean)),
    row_of("FLEET_QUEUE_PENALTY_BANDWIDTH_NORMALIZE", field!(score.queue_bandwidth_normalize = boolean)),
    row_of(
        "FLEET_AUTO_PULL",
        Target::Config {
            field: "policy.auto_pull",
            apply: |c, v| {
                c.policy.auto_pull = boolean(v)?;
                // ollama-herd pulls any name; herd pulls only allow-listed ones, so `true` with
                // no list means ollama-herd's "anything".
                if c.policy.auto_pull && c.policy.pull_allow.is_empty() {
                    c.policy.pull_allow = vec!["*".into()];
                }
                Ok(())
            },
        },
    ),
    row_of("FLEET_AUTO_PULL_TIMEOUT", field!(policy.pull_timeout = seconds)),
    row_of("FLEET_VRAM_FALLBACK", field!(policy.vram_fallback = boolean)),
    row_of("FLEET_CONTEXT_PROTECTION", field!(policy.context_protection = context_protection)),
    row_of("FLEET_THINKING_OVERHEAD", field!(policy.thinking_overhead = weight)),
    row_of("FLEET_THINKING_MIN_PREDICT", field!(policy.thinking_min_predict = whole)),
    row_of(
        "FLEET_MAX_RETRIES",
        Target::Config {
            field: "retry.max_attempts",
            // ollama-herd counts retries, herd counts attempts, the first included.
            apply: |c, v| {
                c.retry.max_attempts = whole(v)?.saturating_add(1);
                Ok(())
            },
        },
    ),
    row_of("FLEET_CLIENT_MAX_IN_FLIGHT", field!(queue.client_max_in_flight = whole)),
    row_of("FLEET_CLIENT_CONCURRENCY_RETRY_AFTER", field!(queue.retry_after = seconds)),
    row_of(
        "FLEET_STALE_TIMEOUT",
        unsupported(
            "herd's reaper differs (it ends an attempt and its call to the node after retry.first_byte_timeout, \
             plus load and prefill allowances, before the first byte, and after retry.stall_timeout without \
             progress after it; ollama-herd's only repaired its own accounting after 600 s)",
        ),
    ),
    row_of("FLEET_REBALANCE_INTERVAL", unsupported(NO_REBALANCER)),
    row_of("FLEET_REBALANCE_THRESHOLD", unsupported(NO_REBALANCER)),
    row_of("FLEET_REBALANCE_MAX_PER_CYCLE", unsupported(NO_REBALANCER)),
    row_of("FLEET_PRE_WARM_THRESHOLD", unsupported(NO_REBALANCER)),
    row_of("FLEET_PRE_WARM_MIN_AVAILABILITY", unsupported(NO_REBALANCER)),
    row_of("FLEET_IMAGE_GENERATION", unsupported(NO_MEDIA)),
    row_of("FLEET_IMAGE_TIMEOUT", unsupported(NO_MEDIA)),
    row_of("FLEET_TRANSCRIPTION", unsupported(NO_MEDIA)),
    row_of("FLEET_TRANSCRIPTION_TIMEOUT", unsupported(NO_MEDIA)),
    row_of("FLEET_VISION_EMBEDDING", unsupported(NO_MEDIA)),
    row_of("FLEET_VISION_EMBEDDING_TIMEOUT", unsupported(NO_MEDIA)),
    row_of("FLEET_DYNAMIC_NUM_CTX", unsupported(NO_CTX_OPTIMIZER)),
    row_of("FLEET_NUM_CTX_OVERRIDES", unsupported(NO_CTX_OPTIMIZER)),
    row_of("FLEET_NUM_CTX_AUTO_CALCULATE", unsupported(NO_CTX_OPTIMIZER)),
    row_of("FLEET_FLEET_INTELLIGENCE", unsupported("herd has no dashboard briefing")),
    row_of("FLEET_FLEET_INTELLIGENCE_MODEL", unsupported("herd has no dashboard briefing")),
    row_of("FLEET_DEBUG_REQUEST_BODIES", unsupported("herd never records request or response bodies")),
    row_of("FLEET_DEBUG_REQUEST_RETENTION_DAYS", unsupported("herd never records request or response bodies")),
    row_of("FLEET_OFFLINE_ALERT", unsupported("herd sends no offline alerts")),
    row_of("FLEET_OFFLINE_ALERT_URL", unsupported("herd sends no offline alerts")),
    row_of("FLEET_CORS_ORIGINS", flag("HERD_CORS_ORIGINS", text)),
    row_of("FLEET_ANTHROPIC_MODEL_MAP", Target::Service("--anthropic-model-map")),
    row_of("FLEET_ANTHROPIC_AUTO_ROUTE", Target::Service("--anthropic-auto-route")),
    row_of("FLEET_ANTHROPIC_REQUIRE_KEY", Target::Service("--anthropic-api-key")),
    row_of("FLEET_ANTHROPIC_API_KEY", Target::Service("--anthropic-api-key")),
    row_of("FLEET_ANTHROPIC_DEFAULT_MAX_TOKENS", unsupported("ollama-herd does not read it either")),
    row_of("FLEET_ANTHROPIC_VISION_MODEL", unsupported("herd does not swap models for requests with images")),
    row_of("FLEET_ANTHROPIC_TOOL_SCHEMA_FIXUP", unsupported("herd does not rewrite tool schemas")),
    row_of("FLEET_ANTHROPIC_AUTO_CLEAR_TOOL_USES_TRIGGER_TOKENS", unsupported(NO_COMPACTION)),
    row_of("FLEET_ANTHROPIC_AUTO_CLEAR_TOOL_USES_KEEP_RECENT", unsupported(NO_COMPACTION)),
    row_of("FLEET_ANTHROPIC_TOOLS_DENY", unsupported("herd does not filter tools")),
    row_of("FLEET_ANTHROPIC_SIZE_ESCALATION_TOKENS", unsupported("herd does not escalate models by prompt size")),
    row_of("FLEET_ANTHROPIC_SIZE_ESCALATION_MODEL", unsupported("herd does not escalate models by prompt size")),
    row_of(
        "FLEET_ANTHROPIC_MAX_PROMPT_TOKENS",
        unsupported("herd bounds request bodies instead (--max-body-mb, --max-messages, --max-parts)"),
    ),
    row_of("FLEET_CONTEXT_COMPACTION_FORCE_TRIGGER_TOKENS", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_ENABLED", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_BUDGET_TOKENS", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_MODEL", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_PRESERVE_TURNS", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_CURATOR_TIMEOUT_S", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_IDLE_WINDOW_S", unsupported(NO_COMPACTION)),
    row_of("FLEET_CONTEXT_COMPACTION_CURATOR_MIN_PARAMS_B", unsupported(NO_COMPACTION)),
    row_of("FLEET_MLX_ENABLED", unsupported(NO_MLX)),
    row_of("FLEET_MLX_URL", unsupported(NO_MLX)),
    row_of("FLEET_MLX_WALL_CLOCK_TIMEOUT_S", unsupported(NO_MLX)),
    row_of("FLEET_MLX_READ_TIMEOUT_S", unsupported(NO_MLX)),
    row_of("FLEET_MLX_MAX_QUEUE_DEPTH", unsupported(NO_MLX)),
    row_of("FLEET_MLX_MAX_INFLIGHT_PER_MODEL", unsupported(NO_MLX)),
    row_of("FLEET_MLX_RETRY_AFTER_SECONDS", unsupported(NO_MLX)),
    row_of("FLEET_PINNED_MODELS", unsupported(NO_PRELOADER)),
    row_of("FLEET_MODEL_PRELOAD_MAX_COUNT", unsupported(NO_PRELOADER)),
    row_of("FLEET_DISABLE_MODEL_PRELOADER", unsupported(NO_PRELOADER)),
];

#[cfg(test)]
mod tests;
