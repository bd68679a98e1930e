//! The scoring signals, one pure function each, with ollama-herd's formulas (reference §2.2).
//! Each takes plain numbers so it can be checked against worked examples; `score::mod` gathers
//! the numbers from the registry and queues.

use crate::config::{ScoreConfig, ScorePolicy};
use crate::fleet::Temperature;

/// Signal 1, "model temperature": loaded 50, recently unloaded 30, on disk 10.
pub fn model_temperature(t: Temperature, c: &ScoreConfig) -> f64 {
    match t {
        Temperature::Hot => c.model_hot,
        Temperature::Warm => c.model_warm,
        Temperature::Cold => c.model_cold,
        Temperature::Absent => 0.0,
    }
}

/// Signal 2, memory fit: full marks when loaded, else by headroom ratio (2×, 1.5×, 1.2×, 1×).
pub fn memory_fit(loaded: bool, free_gb: f64, fit_cost_gb: f64, c: &ScoreConfig) -> f64 {
    if loaded {
        return c.memory_fit_max;
    }
    if fit_cost_gb <= 0.0 || free_gb <= 0.0 {
        return 0.0;
    }
    let ratio = free_gb / fit_cost_gb;
    let frac = if ratio > 2.0 {
        1.0
    } else if ratio > 1.5 {
        0.75
    } else if ratio > 1.2 {
        0.4
    } else if ratio >= 1.0 {
        0.15
    } else {
        0.0
    };
    frac * c.memory_fit_max
}

/// The queue length that counts for penalties: raw depth for `classic`; for `herd`, depth
/// relative to the node's parallel slots (two requests on a 4-slot node wait for nobody).
pub fn effective_depth(depth: u32, slots: u32, policy: ScorePolicy) -> f64 {
    match policy {
        ScorePolicy::Classic | ScorePolicy::RoundRobin => f64::from(depth),
        ScorePolicy::Herd | ScorePolicy::LeastLoaded => f64::from(depth) / f64::from(slots.max(1)),
    }
}

/// Signal 3, queue depth: −6 per queued request, bandwidth-normalised against the fleet median
/// (a node twice as fast counts half the queue), at most −30.
pub fn queue_depth(eff_depth: f64, bw_gbps: f64, median_bw_gbps: f64, c: &ScoreConfig) -> f64 {
    if eff_depth <= 0.0 {
        return 0.0;
    }
    let mut eff = eff_depth;
    if c.queue_bandwidth_normalize && bw_gbps > 0.0 && median_bw_gbps > 0.0 {
        eff /= (bw_gbps / median_bw_gbps).clamp(0.25, 4.0);
    }
    -(eff * c.queue_penalty_per).min(c.queue_max_penalty)
}

/// Cold-start latency estimate for ~100 tokens, ms, when no latency was observed yet.
pub fn cold_start_p75_ms(size_gb: f64, bw_gbps: f64) -> f64 {
    let tps = if bw_gbps > 0.0 {
        (bw_gbps * 1.2 / (size_gb / 10.0).max(1.0)).max(10.0)
    } else {
        (100.0 / size_gb.max(1.0)).max(1.0)
    };
    100.0 / tps * 1000.0
}

/// Signal 4, wait time: queue × p75 latency, −1 per 10 s, at most −25.
pub fn wait_time(eff_depth: f64, p75_ms: f64, c: &ScoreConfig) -> f64 {
    if eff_depth <= 0.0 {
        return 0.0;
    }
    let wait_s = eff_depth * p75_ms / 1000.0;
    -(wait_s / 10.0).min(c.wait_max_penalty)
}

/// Signal 5, role affinity: big models to fast/big machines, small models to small ones.
pub fn role_affinity(size_gb: f64, bw_gbps: f64, ram_total_gb: f64, c: &ScoreConfig) -> f64 {
    let large = size_gb > c.role_large_gb;
    let small = size_gb < c.role_small_gb;
    if c.bandwidth_aware && bw_gbps > 0.0 {
        let b = (5.0 + bw_gbps / 40.0).min(25.0);
        return if large {
            b
        } else if small {
            (18.0 - 0.6 * b).max(3.0)
        } else {
            0.6 * b
        };
    }
    if large {
        if ram_total_gb >= 128.0 {
            15.0
        } else if ram_total_gb >= 32.0 {
            5.0
        } else {
            0.0
        }
    } else if small {
        if ram_total_gb <= 32.0 {
            15.0
        } else if ram_total_gb <= 128.0 {
            8.0
        } else {
            3.0
        }
    } else {
        5.0
    }
}

/// Signal 6, availability: the capacity learner's score × 10, 0 without one.
pub fn availability(score: Option<f64>, c: &ScoreConfig) -> f64 {
    score.map_or(0.0, |s| (s * c.availability_max).min(c.availability_max))
}

/// Signal 7, context fit of the estimated prompt in the loaded window: −15 when it overflows,
/// up to +15 with room to spare; 0 when unknown.
pub fn context_fit(estimated_tokens: u32, loaded_ctx: Option<u32>, c: &ScoreConfig) -> f64 {
    let ctx = match loaded_ctx {
        Some(ctx) if ctx > 0 && estimated_tokens > 0 => f64::from(ctx),
        _ => return 0.0,
    };
    let r = ctx / f64::from(estimated_tokens);
    let frac = if r < 1.0 {
        -1.0
    } else if r < 1.5 {
        0.2
    } else if r < 3.0 {
        0.5
    } else if r < 8.0 {
        0.8
    } else {
        1.0
    };
    frac * c.context_fit_max
}

/// Signals 8 and 8b, affinity: the bonus decays with the pinned node's queue, `b / (1 + d/2)`.
pub fn affinity(bonus: f64, depth: u32) -> f64 {
    bonus / (1.0 + f64::from(depth) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> ScoreConfig {
        ScoreConfig::default()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-3, "{a} != {b}");
    }

    #[test]
    fn temperature_tiers() {
        assert_eq!(model_temperature(Temperature::Hot, &c()), 50.0);
        assert_eq!(model_temperature(Temperature::Warm, &c()), 30.0);
        assert_eq!(model_temperature(Temperature::Cold, &c()), 10.0);
        assert_eq!(model_temperature(Temperature::Absent, &c()), 0.0);
    }

    #[test]
    fn memory_fit_tiers() {
        assert_eq!(memory_fit(true, 0.0, 50.0, &c()), 20.0);
        assert_eq!(memory_fit(false, 100.0, 40.0, &c()), 20.0); // 2.5×
        assert_eq!(memory_fit(false, 70.0, 40.0, &c()), 15.0); // 1.75×
        assert_eq!(memory_fit(false, 50.0, 40.0, &c()), 8.0); // 1.25×
        assert_eq!(memory_fit(false, 40.0, 40.0, &c()), 3.0); // 1.0×
        assert_eq!(memory_fit(false, 30.0, 40.0, &c()), 0.0);
    }

    #[test]
    fn queue_penalty_is_bandwidth_normalised_and_capped() {
        // 3 queued on an 800 GB/s node, fleet median 600: eff = 3 / 1.333 = 2.25 → −13.5.
        close(queue_depth(3.0, 800.0, 600.0, &c()), -13.5);
        // Unknown bandwidth: raw −6 per request.
        close(queue_depth(2.0, 0.0, 600.0, &c()), -12.0);
        // Ratio clamps at 0.25: a slow node counts 4× its queue, then the −30 cap.
        close(queue_depth(2.0, 50.0, 800.0, &c()), -30.0);
        assert_eq!(queue_depth(0.0, 800.0, 600.0, &c()), 0.0);
        // herd: depth per parallel slot.
        close(effective_depth(4, 4, ScorePolicy::Herd), 1.0);
        close(effective_depth(4, 4, ScorePolicy::Classic), 4.0);
    }

    #[test]
    fn wait_time_from_p75_and_cold_estimate() {
        // 42.5 GB at 800 GB/s: tps = 960 / 4.25 = 225.9 → 442.7 ms per 100 tokens.
        close(cold_start_p75_ms(42.5, 800.0), 442.708);
        // No bandwidth: 100 / 42.5 = 2.35 tps → 42.5 s.
        close(cold_start_p75_ms(42.5, 0.0), 42_500.0);
        // 3 queued × 20 s p75 = 60 s → −6.
        close(wait_time(3.0, 20_000.0, &c()), -6.0);
        close(wait_time(100.0, 20_000.0, &c()), -25.0);
        assert_eq!(wait_time(0.0, 20_000.0, &c()), 0.0);
    }

    #[test]
    fn role_affinity_by_bandwidth_and_by_ram() {
        close(role_affinity(45.0, 800.0, 192.0, &c()), 25.0); // b = min(25, 5 + 20)
        close(role_affinity(45.0, 400.0, 128.0, &c()), 15.0); // b = 15
        close(role_affinity(5.0, 400.0, 128.0, &c()), 9.0); // 18 − 0.6·15
        close(role_affinity(5.0, 800.0, 192.0, &c()), 3.0); // max(3, 18 − 15)
        close(role_affinity(10.0, 400.0, 128.0, &c()), 9.0); // mid: 0.6·15
        close(role_affinity(45.0, 0.0, 128.0, &c()), 15.0);
        close(role_affinity(5.0, 0.0, 16.0, &c()), 15.0);
        close(role_affinity(10.0, 0.0, 16.0, &c()), 5.0);
    }

    #[test]
    fn context_fit_and_affinity() {
        assert_eq!(context_fit(5000, Some(4096), &c()), -15.0);
        assert_eq!(context_fit(3000, Some(4096), &c()), 3.0);
        assert_eq!(context_fit(2000, Some(4096), &c()), 7.5);
        assert_eq!(context_fit(1000, Some(4096), &c()), 12.0);
        assert_eq!(context_fit(100, Some(4096), &c()), 15.0);
        assert_eq!(context_fit(100, None, &c()), 0.0);
        assert_eq!(context_fit(0, Some(4096), &c()), 0.0);
        assert_eq!(affinity(20.0, 0), 20.0);
        assert_eq!(affinity(20.0, 2), 10.0);
        assert_eq!(availability(Some(0.5), &c()), 5.0);
        assert_eq!(availability(None, &c()), 0.0);
    }
}
