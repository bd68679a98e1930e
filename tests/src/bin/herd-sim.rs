//! `herd-sim`: the deterministic simulations from the command line.
//!
//! - `herd-sim compare [--trace FILE] [--seed N] [--json] [--max N] [--time-scale X] [--check]`
//!   replays a trace on the default fleet under each policy and prints TTFT, latency, cold
//!   loads, failures and throughput per policy. `--time-scale` stretches arrivals (default 8:
//!   the Azure trace is a cloud service's load; see `DEFAULT_TIME_SCALE`).
//! - `herd-sim run [--seed N] [--trace FILE] [--max N]` runs one seed of core's world with its
//!   swarm of faults and the invariants checked after every step; `SIM_SEED=n` picks the seed.
//! - `herd-sim service [--seeds N] [--from S] [--twice]` runs seeds of the real router service
//!   (driver, proxy, relay, pool, HTTP server) on virtual time and an in-memory network, every
//!   client's answer checked; prints the totals and the time taken.

use clap::{Parser, Subcommand};
use herd_sim::compare::{compare, json, table};
use herd_sim::sweep::{run_seed, SweepConfig};
use herd_sim::trace::parse_trace;
use herd_sim::workload::{workload, WorkloadConfig};
use std::process::ExitCode;

/// The Azure trace is a cloud service's load (~5.5 requests/s); a four-machine home fleet serves
/// about an eighth of it, so `compare` stretches arrivals 8× unless told otherwise.
const DEFAULT_TIME_SCALE: f64 = 8.0;

const DEFAULT_TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/azure-llm-2023-conv.csv");

#[derive(Parser)]
#[command(name = "herd-sim", about = "herd's deterministic simulations")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replays a trace on the default fleet under each scoring policy.
    Compare {
        /// The trace (Azure LLM inference CSV).
        #[arg(long, default_value = DEFAULT_TRACE)]
        trace: String,
        /// The seed.
        #[arg(long, env = "SIM_SEED", default_value_t = 1)]
        seed: u64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many requests.
        #[arg(long)]
        max: Option<usize>,
        /// Stretches arrivals by this factor.
        #[arg(long, default_value_t = DEFAULT_TIME_SCALE)]
        time_scale: f64,
        /// Checks core's invariants after every step.
        #[arg(long)]
        check: bool,
    },
    /// Runs one seed of core's world with its swarm of faults.
    Run {
        /// The trace.
        #[arg(long, default_value = DEFAULT_TRACE)]
        trace: String,
        /// The seed.
        #[arg(long, env = "SIM_SEED", default_value_t = 1)]
        seed: u64,
        /// At most this many requests.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Runs seeds of the real router service in the deterministic world.
    Service {
        /// How many seeds.
        #[arg(long, default_value_t = 10_000)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Runs every seed twice and checks both give the same byte trace.
        #[arg(long)]
        twice: bool,
    },
}

fn rows(trace: &str) -> Result<Vec<herd_sim::trace::TraceRow>, String> {
    let text = std::fs::read_to_string(trace).map_err(|e| format!("cannot read {trace}: {e}"))?;
    parse_trace(&text).map_err(|e| format!("{trace}: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Compare { trace, seed, json: as_json, max, time_scale, check } => {
            let rows = match rows(&trace) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = WorkloadConfig { max_requests: max, time_scale, ..WorkloadConfig::default() };
            let arrivals = workload(&rows, &cfg, seed);
            match compare(&arrivals, seed, check) {
                Ok(rows) if as_json => println!("{}", json(&rows)),
                Ok(rows) => {
                    println!(
                        "{} requests from {trace}, seed {seed}, default fleet (see tests/src/fleet.rs)\n",
                        arrivals.len()
                    );
                    print!("{}", table(&rows));
                }
                Err(v) => {
                    eprintln!(
                        "invariant broken: {v:?}\nreplay: cargo run -p herd-sim --bin herd-sim -- compare --check --seed {seed} --trace {trace} --time-scale {time_scale}{}",
                        max.map(|m| format!(" --max {m}")).unwrap_or_default()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        Cmd::Run { trace, seed, max } => {
            let rows = match rows(&trace) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = SweepConfig {
                max_requests: max.unwrap_or(SweepConfig::default().max_requests),
                ..SweepConfig::default()
            };
            match run_seed(&rows, seed, &cfg) {
                Ok(r) => println!(
                    "seed {seed}: ok, {} requests, faults {:?}, hash {:016x}, counters {:?}",
                    r.requests, r.faults, r.hash, r.counters
                ),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Cmd::Service { seeds, from, twice } => {
            let started = std::time::Instant::now();
            let mut total = herd_sim::service::Report::default();
            let mut failed = 0u64;
            for seed in from..from.saturating_add(seeds) {
                match herd_sim::service::run_seed(seed) {
                    Ok(r) => {
                        if twice {
                            match herd_sim::service::run_seed(seed) {
                                Ok(again) if again == r => {}
                                Ok(_) => {
                                    eprintln!("seed {seed}: a second run gave another byte trace");
                                    failed += 1;
                                }
                                Err(e) => {
                                    eprintln!("{e}");
                                    failed += 1;
                                }
                            }
                        }
                        total.add(&r);
                    }
                    Err(e) => {
                        eprintln!("{e}\nreplay: SIM_SEED={seed} cargo test -p herd-sim --test service_sweep");
                        failed += 1;
                    }
                }
            }
            println!(
                "{seeds} seeds from {from}{}: {failed} failed, {:.1} s\n{total:#?}",
                if twice { ", each twice" } else { "" },
                started.elapsed().as_secs_f64()
            );
            if failed > 0 {
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
