//! `herd-sim`: the deterministic fleet simulation from the command line.
//!
//! - `herd-sim compare [--trace FILE] [--seed N] [--json] [--max N] [--time-scale X] [--check]`
//!   replays a trace on the default fleet under each policy and prints TTFT, latency, cold
//!   loads, failures and throughput per policy. `--time-scale` stretches arrivals (default 8:
//!   the Azure trace is a cloud service's load; see `DEFAULT_TIME_SCALE`).
//! - `herd-sim run [--seed N] [--trace FILE] [--max N]` runs one seed with its swarm of faults
//!   and the invariants checked after every step; `SIM_SEED=n` picks the seed too.

use herd_sim::compare::{compare, json, table};
use herd_sim::sweep::{run_seed, SweepConfig};
use herd_sim::trace::parse_trace;
use herd_sim::workload::{workload, WorkloadConfig};
use std::process::ExitCode;

/// The Azure trace is a cloud service's load (~5.5 requests/s); a four-machine home fleet serves
/// about an eighth of it, so `compare` stretches arrivals 8× unless told otherwise.
const DEFAULT_TIME_SCALE: f64 = 8.0;

const DEFAULT_TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/azure-llm-2023-conv.csv");

struct Args {
    cmd: String,
    trace: String,
    seed: u64,
    json: bool,
    max: Option<usize>,
    time_scale: f64,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it
        .next()
        .ok_or("usage: herd-sim compare|run [--trace FILE] [--seed N] [--json] [--max N] [--time-scale X] [--check]")?;
    let mut a = Args {
        cmd,
        trace: DEFAULT_TRACE.into(),
        seed: std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1),
        json: false,
        max: None,
        time_scale: DEFAULT_TIME_SCALE,
        check: false,
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--trace" => a.trace = value("--trace")?,
            "--seed" => a.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--max" => a.max = Some(value("--max")?.parse().map_err(|e| format!("--max: {e}"))?),
            "--time-scale" => {
                a.time_scale = value("--time-scale")?.parse().map_err(|e| format!("--time-scale: {e}"))?
            }
            "--json" => a.json = true,
            "--check" => a.check = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&args.trace) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.trace);
            return ExitCode::from(2);
        }
    };
    let rows = match parse_trace(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: {e}", args.trace);
            return ExitCode::from(2);
        }
    };
    match args.cmd.as_str() {
        "compare" => {
            let cfg =
                WorkloadConfig { max_requests: args.max, time_scale: args.time_scale, ..WorkloadConfig::default() };
            let arrivals = workload(&rows, &cfg, args.seed);
            match compare(&arrivals, args.seed, args.check) {
                Ok(rows) if args.json => println!("{}", json(&rows)),
                Ok(rows) => {
                    println!(
                        "{} requests from {}, seed {}, default fleet (see tests/src/fleet.rs)\n",
                        arrivals.len(),
                        args.trace,
                        args.seed
                    );
                    print!("{}", table(&rows));
                }
                Err(v) => {
                    eprintln!(
                        "invariant broken: {v:?}\nreplay: cargo run -p herd-sim --bin herd-sim -- compare --check --seed {} --trace {} --time-scale {}{}",
                        args.seed,
                        args.trace,
                        args.time_scale,
                        args.max.map(|m| format!(" --max {m}")).unwrap_or_default()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        "run" => {
            let cfg = SweepConfig {
                max_requests: args.max.unwrap_or(SweepConfig::default().max_requests),
                ..SweepConfig::default()
            };
            match run_seed(&rows, args.seed, &cfg) {
                Ok(r) => println!(
                    "seed {}: ok, {} requests, faults {:?}, hash {:016x}, counters {:?}",
                    args.seed, r.requests, r.faults, r.hash, r.counters
                ),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        other => {
            eprintln!("unknown command {other}; use compare or run");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
