//! The real service in the deterministic world (herd_sim::service): 200 seeds in CI, each with
//! its own swarm of machine faults, network partitions and resets, and clients that leave; every
//! promise checked for every call. Every tenth seed runs twice and must give the same byte trace.
//! `SIM_SEED=n` runs only seed n; `herd-sim service --seeds N` runs many more.

use herd_sim::service::{run_seed, Report};

#[test]
fn the_service_keeps_every_promise_over_two_hundred_seeds() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        // Seeds that once found a bug, kept: 335 (a client that left before its request was
        // admitted kept its place in core's queue).
        None => (0..200).chain([335, 1706, 6220]).collect(),
    };
    let mut total = Report::default();
    for &seed in &seeds {
        let r = run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        if seed % 10 == 0 {
            let again = run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r, again, "seed {seed} is not deterministic");
        }
        total.add(&r);
    }
    println!("service sweep over {} seeds: {total:?}", seeds.len());
    if seeds.len() > 1 {
        for (name, n) in [
            ("a complete answer", total.answers),
            ("an error before the answer", total.errors.values().sum()),
            ("an error inside a stream", total.stream_errors),
            ("a client leaving", total.left),
            ("a machine cut mid-answer", total.machine_cut),
            ("a machine failing before answering", total.machine_failed),
            ("a cancelled machine call", total.machine_cancelled),
            ("an Anthropic call passed to a node's /v1/messages", total.messages_passed),
            ("an Anthropic call translated to a node's /api/chat", total.messages_translated),
        ] {
            assert!(n > 0, "no seed of the sweep exercised {name}");
        }
    }
}
