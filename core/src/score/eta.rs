//! The herd policy's time model: what a request would wait for on a node, in seconds — a load
//! if the model is not resident, the queue ahead of it per parallel slot, and its own service
//! (prefill and decode, from memory bandwidth). Seconds become points at
//! `eta_points_per_sec`, so hot-versus-cold, busy-versus-idle and fast-versus-slow are traded
//! in one currency instead of capped, unrelated points.

use crate::fleet::Temperature;

/// Bandwidth assumed when a node reports none, GB/s (a modest desktop).
pub const UNKNOWN_BANDWIDTH_GBPS: f64 = 100.0;

/// Prefill runs this many times faster than single-sequence decode (compute-bound batches).
pub const PREFILL_OVER_DECODE: f64 = 20.0;

/// Single-sequence decode speed, tokens/s: decoding is memory-bound, each token reads the weights
/// once, at about 70 % of the bandwidth.
pub fn decode_tps(size_gb: f64, bw_gbps: f64) -> f64 {
    let bw = if bw_gbps > 0.0 { bw_gbps } else { UNKNOWN_BANDWIDTH_GBPS };
    (0.7 * bw / size_gb.max(0.1)).max(0.5)
}

/// Seconds to bring the model into memory: none when loaded, half when it left recently (the
/// file is likely still in the page cache), the full size at the load rate otherwise.
pub fn load_s(t: Temperature, size_gb: f64, load_gb_per_sec: f64) -> f64 {
    let full = size_gb.max(0.0) / load_gb_per_sec.max(1e-3);
    match t {
        Temperature::Hot => 0.0,
        Temperature::Warm => full / 2.0,
        Temperature::Cold | Temperature::Absent => full,
    }
}

/// Seconds of one request's own service: prefill of the prompt, then decode of the output.
pub fn service_s(prompt_tokens: u32, output_tokens: u32, size_gb: f64, bw_gbps: f64) -> f64 {
    let d = decode_tps(size_gb, bw_gbps);
    f64::from(prompt_tokens) / (d * PREFILL_OVER_DECODE) + f64::from(output_tokens) / d
}

/// Seconds spent waiting for a slot: nothing while a slot is free, then one service time per
/// full round of `slots` requests ahead.
pub fn queue_s(depth: u32, slots: u32, service_s: f64) -> f64 {
    let slots = slots.max(1);
    if depth < slots {
        0.0
    } else {
        f64::from(depth - slots + 1) / f64::from(slots) * service_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6, "{a} != {b}");
    }

    #[test]
    fn worked_examples() {
        // An 8B Q4 (5 GB) on an 800 GB/s Ultra decodes at 112 tok/s; a 42.5 GB 70B at 13.2 tok/s.
        close(decode_tps(5.0, 800.0), 112.0);
        close(decode_tps(42.5, 800.0), 560.0 / 42.5);
        close(decode_tps(5.0, 0.0), 14.0);
        // Loading a 5 GB model at 1 GB/s takes 5 s, half if it just left memory.
        close(load_s(Temperature::Cold, 5.0, 1.0), 5.0);
        close(load_s(Temperature::Warm, 5.0, 1.0), 2.5);
        close(load_s(Temperature::Hot, 5.0, 1.0), 0.0);
        // 1120 prompt tokens prefill in 0.5 s at 2240 tok/s, 224 output tokens decode in 2 s.
        close(service_s(1120, 224, 5.0, 800.0), 2.5);
        // Four slots: three running wait for nobody; eight ahead means five rounds of a quarter.
        close(queue_s(3, 4, 2.5), 0.0);
        close(queue_s(8, 4, 2.5), 5.0 / 4.0 * 2.5);
        close(queue_s(1, 0, 2.0), 2.0);
    }
}
