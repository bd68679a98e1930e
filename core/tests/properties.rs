//! Properties of the router over random fleets and random operation sequences.
//! Case counts are fixed here so CI is deterministic; `PROPTEST_CASES` raises them locally.

use herd_core::config::{RouterConfig, ScoreConfig, ScorePolicy};
use herd_core::fleet::heartbeat::Report;
use herd_core::fleet::Fleet;
use herd_core::ids::ModelName;
use herd_core::rng::Rng;
use herd_core::score::{breakdown, Facts, Want};
use herd_core::testing::{self, strategies, Harness, Op};
use herd_core::time::Instant;
use proptest::prelude::*;
use std::time::Duration;

fn config(auto_pull: bool, policy: ScorePolicy) -> RouterConfig {
    let mut c = RouterConfig::default();
    c.queue.max_pending_per_queue = 3;
    c.queue.max_requests = 40;
    c.queue.client_max_in_flight = 3;
    c.policy.auto_pull = auto_pull;
    c.policy.pull_allow = vec!["llama3.3:*".into()];
    c.score.policy = policy;
    c
}

fn run(ops: &[Op], seed: u64, c: RouterConfig) -> Result<Harness, TestCaseError> {
    let mut h = Harness::new(c, seed);
    for op in ops {
        h.apply(op).map_err(|v| TestCaseError::fail(format!("{v:?} after {op:?}")))?;
    }
    h.settle().map_err(|v| TestCaseError::fail(format!("{v:?}")))?;
    Ok(h)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Every admitted request ends exactly once; no dispatch to an offline, draining or
    /// breaker-open node; no retry after commit; attempts ≤ max; queues within bounds;
    /// in-flight counters equal open attempts; poll_timeout never in the past. The harness
    /// checks all of these after every step.
    #[test]
    fn router_invariants_hold(ops in strategies::ops(150), seed in any::<u64>(), pull in any::<bool>(), p in 0u8..4) {
        let policy = [ScorePolicy::Herd, ScorePolicy::Classic, ScorePolicy::RoundRobin, ScorePolicy::LeastLoaded][usize::from(p)];
        run(&ops, seed, config(pull, policy))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Same seed and inputs, same command and event trace.
    #[test]
    fn same_seed_same_trace(ops in strategies::ops(120), seed in any::<u64>()) {
        let a = run(&ops, seed, config(true, ScorePolicy::Herd))?;
        let b = run(&ops, seed, config(true, ScorePolicy::Herd))?;
        prop_assert_eq!(a.trace_hash(), b.trace_hash());
    }
}

fn node_fleet(loaded: bool, free_gb: u8, bw: u16, parallel: u8, size: u8, ctx_shift: u8) -> Fleet {
    let mut hb = testing::heartbeat(0, if loaded { 1 } else { 0 }, 1, parallel, free_gb, false);
    hb.memory_bandwidth_gbps = f64::from(bw);
    hb.ollama.models_available_sizes.insert(ModelName::new(testing::MODELS[0]), f64::from(size) + 0.5);
    for m in &mut hb.ollama.models_loaded {
        m.context_length = 1024 << (ctx_shift % 6);
    }
    let mut f = Fleet::new(Default::default());
    f.handle_report(Instant::ZERO, Report::Heartbeat(Box::new(hb))).unwrap();
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// More queue never raises a node's score.
    #[test]
    fn more_queue_never_raises_a_score(
        loaded in any::<bool>(), free in 0u8..200, bw in 0u16..1200, parallel in 0u8..8, size in 0u8..80,
        ctx in any::<u8>(), tokens in 0u32..50_000, depth in 0u32..50, extra in 1u32..50, p75 in proptest::option::of(1f64..100_000.0),
        median in 0f64..1000.0, classic in any::<bool>(),
    ) {
        let c = ScoreConfig { policy: if classic { ScorePolicy::Classic } else { ScorePolicy::Herd }, ..ScoreConfig::default() };
        let f = node_fleet(loaded, free, bw, parallel, size, ctx);
        let n = f.nodes().next().unwrap();
        let m = ModelName::new(testing::MODELS[0]);
        let want = Want { model: &m, estimated_tokens: tokens, warm_window: Duration::from_secs(1800), expected_output_tokens: 256 };
        let facts = |depth| Facts { depth, slots: u32::from(parallel.max(1)), p75_ms: p75, ..Facts::default() };
        let less = breakdown(&c, n, &want, &facts(depth), median, Instant::ZERO).total();
        let more = breakdown(&c, n, &want, &facts(depth + extra), median, Instant::ZERO).total();
        prop_assert!(more <= less, "{more} > {less}");
    }

    /// Having the model loaded never lowers a node's score (nor eliminates it).
    #[test]
    fn loaded_never_lowers_a_score(
        free in 0u8..200, bw in 0u16..1200, parallel in 0u8..8, size in 0u8..80, ctx in any::<u8>(),
        tokens in 0u32..50_000, depth in 0u32..20, median in 0f64..1000.0,
    ) {
        let c = ScoreConfig::default();
        let m = ModelName::new(testing::MODELS[0]);
        let want = Want { model: &m, estimated_tokens: tokens, warm_window: Duration::from_secs(1800), expected_output_tokens: 256 };
        let facts = Facts { depth, slots: 1, ..Facts::default() };
        let cold = node_fleet(false, free, bw, parallel, size, ctx);
        let hot = node_fleet(true, free, bw, parallel, size, ctx);
        let (cn, hn) = (cold.nodes().next().unwrap(), hot.nodes().next().unwrap());
        prop_assert!(herd_core::score::eliminate(hn, &m, false).is_none());
        if herd_core::score::eliminate(cn, &m, false).is_none() {
            let c_total = breakdown(&c, cn, &want, &facts, median, Instant::ZERO).total();
            let h_total = breakdown(&c, hn, &want, &facts, median, Instant::ZERO).total();
            // Equal totals may differ in the last bit from summation order.
            prop_assert!(h_total >= c_total - 1e-9 * c_total.abs().max(1.0), "hot {h_total} < cold {c_total}");
        }
    }

    /// No bytes make the heartbeat parser or a router panic.
    #[test]
    fn heartbeat_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        testing::fuzz_heartbeat(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random byte strings as operation sequences (the fuzz target's decoder) keep every invariant.
    #[test]
    fn byte_decoded_ops_keep_invariants(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        testing::fuzz_router_ops(&data);
    }
}

/// A swarm sweep over fixed seeds: each seed draws its own mix of operations. Beyond the
/// invariants, the sweep must exercise every rare path at least once ("sometimes" counters).
#[test]
fn swarm_sweep_reaches_every_rare_path() {
    let mut totals = herd_core::router::Counters::default();
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed);
        // Swarm testing: each seed weights the operation kinds differently.
        let weights: Vec<u64> = (0..8).map(|_| 1 + rng.below(6)).collect();
        let mut h = Harness::new(
            config(seed % 2 == 0, if seed % 3 == 0 { ScorePolicy::Classic } else { ScorePolicy::Herd }),
            seed,
        );
        for _ in 0..400 {
            let total: u64 = weights.iter().sum();
            let mut pick = rng.below(total);
            let kind = weights
                .iter()
                .position(|&w| {
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap();
            let r = rng.next_u64();
            let b = |s: u32| (r >> s) as u8;
            let op = match kind {
                0 => Op::Heartbeat {
                    node: b(0) % 6,
                    loaded: b(8),
                    available: b(16),
                    parallel: b(24) % 5,
                    free_gb: b(32) % 60,
                    gpu: b(40) % 4 == 0,
                },
                1 => Op::Request {
                    model: b(0) % 6,
                    fallback: (b(8) % 3 == 0).then_some(b(16) % 6),
                    client: (b(24) % 2 == 0).then_some(b(32) % 4),
                    session: (b(40) % 2 == 0).then_some(b(48) % 4),
                    images: b(56) % 10 == 0,
                    strict: b(60) % 5 == 0,
                    embed: b(52) % 8 == 0,
                    num_ctx: (b(44) % 4 == 0).then_some(32768),
                },
                2 => Op::FirstByte(b(0).into()),
                3 => Op::Finished(b(0).into()),
                4 => Op::Failed(b(0).into(), b(8)),
                5 => Op::Advance(u32::from(b(0)) * 100),
                6 => {
                    if b(0) % 4 == 0 {
                        Op::Drain { node: b(8) % 6 }
                    } else {
                        Op::ClientGone(b(16).into())
                    }
                }
                _ => {
                    if b(0) % 2 == 0 {
                        Op::JumpToTimeout
                    } else {
                        Op::PullResult(b(8).into(), b(16) % 2 == 0)
                    }
                }
            };
            if let Err(v) = h.apply(&op) {
                panic!("seed {seed}: {v:?} after {op:?}\nreplay: SIM_SEED={seed} cargo test -p herd-core --test properties swarm");
            }
        }
        if let Err(v) = h.settle() {
            panic!("seed {seed}: {v:?} while settling");
        }
        totals.add(&h.router.stats().counters);
    }
    let pulls = totals.pulls;
    println!("swarm totals: {totals:?}");
    for (name, n) in [
        ("completed", totals.completed),
        ("retry", totals.retries),
        ("fallback", totals.fallbacks),
        ("breaker-open", totals.breaker_opens),
        ("holding", totals.held),
        ("reaping", totals.reaped),
        ("commit-then-fail", totals.failed_after_commit),
        ("client-gone", totals.client_gone),
        ("rejection", totals.rejected),
        ("auto-pull", pulls),
    ] {
        assert!(n > 0, "the sweep never exercised {name}");
    }
}
