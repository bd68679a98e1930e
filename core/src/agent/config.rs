//! What the heartbeat agent is configured with: its timings and the routers it reports to (URLs
//! and the indices the agent allocates for them), and the typed reasons either can be refused.

use std::fmt;
use std::time::Duration;

/// The shortest duration any [`AgentConfig`] field may hold; core time has microsecond resolution.
pub const MIN_CONFIG_DURATION: Duration = Duration::from_millis(1);
/// The longest router URL accepted, in bytes.
pub use crate::url::MAX_URL_BYTES;

/// How often and how patiently the agent talks to its routers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Heartbeat period while a router answers. Tick `k` is at `start + k * interval`.
    pub interval: Duration,
    /// First backoff step after a failure; step `n` is `backoff_base * 2^(n-1)`, before jitter.
    pub backoff_base: Duration,
    /// Cap on one backoff step, before jitter.
    pub backoff_max: Duration,
    /// How long a heartbeat may stay in flight before it counts as a failed `Timeout`.
    pub send_timeout: Duration,
    /// How long shutdown waits for drain results before `Exit`.
    pub drain_timeout: Duration,
    /// The most routers the agent tracks at once (bounds every table and the command queue).
    pub max_routers: usize,
    /// Consecutive failed heartbeats to a router found by discovery (mDNS) before the agent asks
    /// for a fresh look ([`AgentCommand::Rescan`](super::AgentCommand::Rescan)): it may have moved.
    pub rescan_after_failures: u32,
    /// The most often the agent asks for a fresh look because of failures.
    pub rescan_every: Duration,
}

impl Default for AgentConfig {
    /// 5 s heartbeats (ollama-herd's rate), 1 s..60 s backoff, 4 s send timeout, 2 s drain.
    fn default() -> Self {
        AgentConfig {
            interval: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            send_timeout: Duration::from_secs(4),
            drain_timeout: Duration::from_secs(2),
            max_routers: 16,
            rescan_after_failures: 3,
            rescan_every: Duration::from_secs(30),
        }
    }
}

/// Names one duration field of [`AgentConfig`] in an error.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DurationField {
    /// [`AgentConfig::interval`].
    Interval,
    /// [`AgentConfig::backoff_base`].
    BackoffBase,
    /// [`AgentConfig::backoff_max`].
    BackoffMax,
    /// [`AgentConfig::send_timeout`].
    SendTimeout,
    /// [`AgentConfig::drain_timeout`].
    DrainTimeout,
}

impl fmt::Display for DurationField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationField::Interval => "interval",
            DurationField::BackoffBase => "backoff_base",
            DurationField::BackoffMax => "backoff_max",
            DurationField::SendTimeout => "send_timeout",
            DurationField::DrainTimeout => "drain_timeout",
        })
    }
}

/// Why an [`AgentConfig`] or the router list given to [`Agent::new`](super::Agent::new) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentConfigError {
    /// A duration is zero or below [`MIN_CONFIG_DURATION`].
    #[error("{field} is {value:?}; it must be at least 1 ms")]
    TooShort {
        /// Which field.
        field: DurationField,
        /// The value given.
        value: Duration,
    },
    /// The first backoff step is larger than the cap.
    #[error("backoff_base ({base:?}) is above backoff_max ({max:?})")]
    BackoffBaseAboveMax {
        /// The configured base.
        base: Duration,
        /// The configured cap.
        max: Duration,
    },
    /// `max_routers` is zero, so the agent could never report anywhere.
    #[error("max_routers is 0")]
    ZeroMaxRouters,
    /// More distinct routers were given than `max_routers` allows.
    #[error("{given} routers given, at most {max} allowed")]
    TooManyRouters {
        /// Distinct routers given.
        given: usize,
        /// The configured limit.
        max: usize,
    },
}

impl AgentConfig {
    /// Checks the config before an [`Agent`](super::Agent) uses it.
    ///
    /// # Errors
    /// [`AgentConfigError::TooShort`] for a duration under 1 ms,
    /// [`AgentConfigError::BackoffBaseAboveMax`], [`AgentConfigError::ZeroMaxRouters`].
    pub fn validate(&self) -> Result<(), AgentConfigError> {
        let fields = [
            (DurationField::Interval, self.interval),
            (DurationField::BackoffBase, self.backoff_base),
            (DurationField::BackoffMax, self.backoff_max),
            (DurationField::SendTimeout, self.send_timeout),
            (DurationField::DrainTimeout, self.drain_timeout),
        ];
        if let Some(&(field, value)) = fields.iter().find(|(_, v)| *v < MIN_CONFIG_DURATION) {
            return Err(AgentConfigError::TooShort { field, value });
        }
        if self.backoff_base > self.backoff_max {
            return Err(AgentConfigError::BackoffBaseAboveMax { base: self.backoff_base, max: self.backoff_max });
        }
        if self.max_routers == 0 {
            return Err(AgentConfigError::ZeroMaxRouters);
        }
        Ok(())
    }
}

/// A router's base URL in [`BaseUrl`](crate::url::BaseUrl)'s normal form: lowercase scheme
/// (`http` added when missing) and host, the port (11435, the router's, when not given), no
/// trailing `/`. Two spellings of one router compare equal, which is how duplicates are ignored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterUrl(crate::url::BaseUrl);

/// Why a string is not a usable [`RouterUrl`]: the one URL parser's reasons.
pub type RouterUrlError = crate::url::UrlError;

/// The router's port, when a router URL gives none.
pub use crate::api::names::ROUTER_PORT;

impl RouterUrl {
    /// Normalises `raw` (`10.0.0.5:11435/` becomes `http://10.0.0.5:11435`, `router.lan`
    /// becomes `http://router.lan:11435`).
    ///
    /// # Errors
    /// See [`RouterUrlError`].
    pub fn new(raw: &str) -> Result<Self, RouterUrlError> {
        Ok(RouterUrl(crate::url::BaseUrl::parse(raw, ROUTER_PORT)?))
    }

    /// The normalised URL; the adapter appends `/heartbeat`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL, to connect to.
    pub fn base(&self) -> &crate::url::BaseUrl {
        &self.0
    }
}

impl serde::Serialize for RouterUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for RouterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A router the agent tracks. Allocated by the agent and never reused, so a result that names a
/// removed router can never be applied to a newer one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct RouterIdx(pub u32);

impl fmt::Display for RouterIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why [`Agent::add_router`](super::Agent::add_router) refused a router.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddRouterError {
    /// `max_routers` routers are already tracked.
    #[error("already tracking the maximum of {0} routers")]
    Full(usize),
    /// Shutdown has begun; no new router will hear from this node.
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// Every router index has been handed out (after 2^32 additions).
    #[error("router indices exhausted")]
    IdsExhausted,
}
