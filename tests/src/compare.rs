//! The routing-quality comparison: the same trace on the same fleet under each policy, with
//! time to first token, latency, cold loads, failures and throughput per policy.

use crate::fleet::default_fleet;
use crate::workload::Arrival;
use crate::world::{Violation, World, WorldConfig};
use herd_core::config::{RouterConfig, ScorePolicy};
use std::fmt::Write as _;

/// The policies compared, in table order.
pub const POLICIES: [(&str, ScorePolicy); 4] = [
    ("classic", ScorePolicy::Classic),
    ("herd", ScorePolicy::Herd),
    ("round-robin", ScorePolicy::RoundRobin),
    ("least-loaded", ScorePolicy::LeastLoaded),
];

/// One policy's figures (milliseconds of simulated time).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Mean time to first token.
    pub ttft_mean: f64,
    /// Median time to first token.
    pub ttft_p50: f64,
    /// 99th percentile time to first token.
    pub ttft_p99: f64,
    /// Mean total latency.
    pub latency_mean: f64,
    /// 99th percentile total latency.
    pub latency_p99: f64,
    /// Model loads on all nodes.
    pub cold_loads: u64,
    /// Requests that did not complete.
    pub failures: u64,
    /// Completed requests per second of simulated time.
    pub throughput_rps: f64,
    /// Requests.
    pub requests: usize,
    /// Requests served by another model than asked (client fallbacks and substitutes).
    pub fallbacks: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Runs one policy over the arrivals on the default fleet.
///
/// # Errors
/// A broken invariant (the comparison runs with checks on only when asked).
pub fn run_policy(policy: ScorePolicy, arrivals: &[Arrival], seed: u64, check: bool) -> Result<Figures, Violation> {
    let mut router = RouterConfig::default();
    router.score.policy = policy;
    let config = WorldConfig { router, seed, check, ..WorldConfig::default() };
    let mut world = World::new(config, default_fleet(), arrivals.to_vec());
    world.run()?;
    Ok(figures(&world, arrivals))
}

fn figures(world: &World, arrivals: &[Arrival]) -> Figures {
    let done: Vec<_> = world.finished().iter().filter(|f| f.ok).collect();
    let mut ttft: Vec<f64> = done.iter().filter_map(|f| f.ttft_ms).collect();
    let mut latency: Vec<f64> = done.iter().map(|f| f.latency_ms).collect();
    ttft.sort_by(f64::total_cmp);
    latency.sort_by(f64::total_cmp);
    let first = arrivals.first().map_or(0, |a| a.at.as_micros());
    let span_s = (world.last_end().as_micros().saturating_sub(first) as f64 / 1e6).max(1e-9);
    Figures {
        ttft_mean: mean(&ttft),
        ttft_p50: percentile(&ttft, 50.0),
        ttft_p99: percentile(&ttft, 99.0),
        latency_mean: mean(&latency),
        latency_p99: percentile(&latency, 99.0),
        cold_loads: world.nodes().iter().map(|n| n.stats().cold_loads).sum(),
        failures: (world.finished().len() - done.len()) as u64,
        throughput_rps: done.len() as f64 / span_s,
        requests: world.finished().len(),
        fallbacks: world.counters().fallbacks,
    }
}

/// Every policy's figures, in [`POLICIES`] order.
///
/// # Errors
/// The first broken invariant.
pub fn compare(arrivals: &[Arrival], seed: u64, check: bool) -> Result<Vec<(&'static str, Figures)>, Violation> {
    POLICIES.iter().map(|&(name, p)| run_policy(p, arrivals, seed, check).map(|f| (name, f))).collect()
}

/// A plain-text table.
pub fn table(rows: &[(&str, Figures)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<13} {:>10} {:>10} {:>10} {:>11} {:>11} {:>6} {:>8} {:>8} {:>9}",
        "policy", "ttft mean", "ttft p50", "ttft p99", "lat mean", "lat p99", "loads", "failed", "req/s", "fallbacks"
    );
    for (name, f) in rows {
        let _ = writeln!(
            s,
            "{:<13} {:>8.0}ms {:>8.0}ms {:>8.0}ms {:>9.0}ms {:>9.0}ms {:>6} {:>8} {:>8.2} {:>9}",
            name,
            f.ttft_mean,
            f.ttft_p50,
            f.ttft_p99,
            f.latency_mean,
            f.latency_p99,
            f.cold_loads,
            f.failures,
            f.throughput_rps,
            f.fallbacks
        );
    }
    s
}

/// The JSON object `{"policies": {"<policy>": {"ttft_ms": {...}, "latency_ms": {...}, ...}}}`.
pub fn json(rows: &[(&str, Figures)]) -> serde_json::Value {
    let mut policies = serde_json::Map::new();
    for (name, f) in rows {
        policies.insert(
            (*name).to_string(),
            serde_json::json!({
                "ttft_ms": {"mean": f.ttft_mean, "p50": f.ttft_p50, "p99": f.ttft_p99},
                "latency_ms": {"mean": f.latency_mean, "p99": f.latency_p99},
                "cold_loads": f.cold_loads,
                "failures": f.failures,
                "throughput_rps": f.throughput_rps,
                "fallbacks": f.fallbacks,
            }),
        );
    }
    serde_json::json!({ "policies": policies })
}
