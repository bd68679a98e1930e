//! The seed sweep: each seed draws a slice of the trace, a swarm of fault kinds and the router
//! policy, runs the world with the invariants checked after every step, and reports what rare
//! paths it reached.

use crate::fleet::default_fleet;
use crate::trace::TraceRow;
use crate::workload::{workload, WorkloadConfig};
use crate::world::{FaultKind, World, WorldConfig};
use herd_core::config::{RouterConfig, ScorePolicy};
use herd_core::rng::Rng;
use herd_core::router::Counters;
use std::time::Duration;

/// Sweep settings.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// Requests per seed.
    pub max_requests: usize,
    /// Arrival time scale (below 1 compresses the trace: more load).
    pub time_scale: f64,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig { max_requests: 200, time_scale: 2.0 }
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// Requests run.
    pub requests: usize,
    /// Fault kinds turned on.
    pub faults: Vec<FaultKind>,
    /// Trace hash.
    pub hash: u64,
    /// Router counters.
    pub counters: Counters,
}

/// Runs one seed.
///
/// # Errors
/// A message with the broken invariant and the command that replays it.
pub fn run_seed(rows: &[TraceRow], seed: u64, c: &SweepConfig) -> Result<SeedReport, String> {
    let mut rng = Rng::new(seed);
    // A window of the trace, so seeds see different traffic.
    let start = rng.below(rows.len().saturating_sub(c.max_requests).max(1) as u64) as usize;
    let slice = &rows[start..(start + c.max_requests).min(rows.len())];
    let base = slice.first().map_or(0, |r| r.offset_ms);
    let rows: Vec<TraceRow> = slice.iter().map(|r| TraceRow { offset_ms: r.offset_ms - base, ..*r }).collect();
    let arrivals = workload(&rows, &WorkloadConfig { time_scale: c.time_scale, ..WorkloadConfig::default() }, seed);
    // Swarm testing: each seed turns on its own subset of fault kinds.
    let faults: Vec<FaultKind> = FaultKind::ALL.iter().copied().filter(|_| rng.below(2) == 1).collect();
    let mut router = RouterConfig::default();
    router.score.policy = [ScorePolicy::Herd, ScorePolicy::Classic][rng.below(2) as usize];
    router.retry.first_byte_timeout = Duration::from_secs(20 + rng.below(40));
    router.retry.stall_timeout = Duration::from_secs(5 + rng.below(20));
    router.queue.max_pending_per_queue = 4 + rng.below(60) as usize;
    let config = WorldConfig {
        router,
        seed,
        faults: faults.clone(),
        fault_every: Duration::from_secs(3 + rng.below(12)),
        check: true,
    };
    let mut world = World::new(config, default_fleet(), arrivals);
    world.run().map_err(|v| {
        format!(
            "seed {seed}: {v:?}\nreplay: SIM_SEED={seed} cargo run -p herd-sim --bin herd-sim -- run --max {}",
            c.max_requests
        )
    })?;
    Ok(SeedReport { requests: world.finished().len(), faults, hash: world.trace_hash(), counters: world.counters() })
}
