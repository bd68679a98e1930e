//! Policies around the scorer, each a small pure piece: the circuit breaker, latency history,
//! affinity pins, retry classification, context protection, fallbacks and the resolution of
//! Anthropic model ids to local models.

pub mod anthropic;
pub mod breaker;
pub mod context;
pub mod fallback;
pub mod latency;
pub mod pins;
pub mod retry;
