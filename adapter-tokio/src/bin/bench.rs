//! `herd-bench`: sends the same load straight to a simulated Ollama and through herd in front of
//! it, alternating rounds in one run, and prints herd's throughput and latency as ratios of
//! direct's, against the project's goals, with the router's peak memory.
//!
//! Build the three programs first (`cargo build --release -p herd-tokio`), then run
//! `target/release/herd-bench`, or `cargo run --release -p herd-tokio --bin herd-bench`.
//! Exit status: 0 when every request succeeded, 1 when some failed, 2 when setup failed.

mod bench {
    pub mod load;
    pub mod procs;
    pub mod report;
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use tokio::time::Instant;

use bench::load::{self, Scenario, ScenarioId, Unit, Window};
use bench::procs::{Bins, CpuMeter, CpuUse, Machine, Pair, PairConfig, RssSampler, Scratch, SetupError};
use bench::report::{self, Row, Tally};

/// The goals from the issue, on a 2-core machine shared by generator, router and backend.
const S1_MIN_RATIO: f64 = 0.35;
const STREAM_MIN_RATIO: f64 = 0.5;
const S4_MIN_RATIO: f64 = 0.97;
const S4_MAX_P99_DELTA_MS: f64 = 1.0;
const RSS_MAX_MB: f64 = 30.0;

/// The node's parallelism is at least this, so that the router is measured, not its admission cap.
const MIN_NODE_PARALLEL: usize = 64;

#[derive(Debug, Parser)]
#[command(name = "herd-bench", about = "Measures herd against the simulated Ollama it fronts, as ratios of direct")]
struct Args {
    /// Scenarios to run (S1..S4; repeat or separate with commas); all by default.
    #[arg(long, value_enum, ignore_case = true, value_delimiter = ',')]
    scenario: Vec<ScenarioId>,
    /// Measured seconds per round.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Seconds at the start of each round whose answers are not counted.
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Rounds per target: direct, herd, direct, herd, ...
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Multiplies every scenario's concurrency.
    #[arg(long, default_value_t = 1.0)]
    concurrency_scale: f64,
    /// Print JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also measure an already running ollama-herd router at this URL, as a third column.
    #[arg(long)]
    ollama_herd: Option<String>,
    /// The simulated Ollama's port (0: any free one); fix it to point --ollama-herd at the fake.
    #[arg(long, default_value_t = 0)]
    fake_port: u16,
    /// Where herd and herd-fake-ollama are (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Tokio worker threads for the load generator; 0 runs it on the current thread.
    #[arg(long, default_value_t = 0)]
    generator_threads: usize,
    /// A request without a complete answer after this many seconds counts as an error.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Measure only the fake, without starting the router (to calibrate the load generator).
    #[arg(long)]
    direct_only: bool,
    /// Keep the scratch folder (router data, child stderr logs).
    #[arg(long)]
    keep_temp: bool,
}

/// Where one column's load goes.
struct Target {
    name: &'static str,
    column: usize,
    url: String,
}

/// One scenario's numbers, per target in column order.
struct Outcome {
    scenario: Scenario,
    tallies: Vec<Tally>,
    rss_peak_kb: u64,
    /// CPU of the three processes during each column's rounds.
    cpu: Vec<CpuUse>,
}

/// The router's memory over the run.
#[derive(Default)]
struct Memory {
    peak_kb: u64,
    hwm_kb: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = if args.generator_threads == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.generator_threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd-bench: starting tokio: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run_until_signal(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("herd-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// [`run`], abandoned on SIGINT or SIGTERM so that dropping it kills the child processes.
async fn run_until_signal(args: &Args) -> Result<bool, SetupError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        _ = term.recv() => Err("terminated".into()),
    }
}

/// Runs the chosen scenarios and prints the results; whether every request succeeded.
async fn run(args: &Args) -> Result<bool, SetupError> {
    let mut ids = if args.scenario.is_empty() { ScenarioId::ALL.to_vec() } else { args.scenario.clone() };
    ids.sort_unstable();
    ids.dedup();
    let scenarios: Vec<Scenario> = ids.iter().map(|&id| Scenario::new(id, args.concurrency_scale)).collect();
    let max_concurrency = scenarios.iter().map(|s| s.concurrency).max().unwrap_or(1);
    let parallel = max_concurrency.max(MIN_NODE_PARALLEL);
    let bins = Bins::locate(args.bin_dir.clone())?;
    let machine = Machine::detect();
    eprintln!("{}", machine_line(&machine, args));
    let client = load::client(max_concurrency * 2);
    let scratch = Scratch::create(args.keep_temp)?;
    let mut pair: Option<Pair> = None;
    let mut memory = Memory::default();
    let mut outcomes = Vec::with_capacity(scenarios.len());
    for scenario in scenarios {
        if pair.as_ref().map(|p| p.token_ms) != Some(scenario.token_ms) {
            if let Some(old) = pair.take() {
                memory.hwm_kb = memory.hwm_kb.max(old.finish().unwrap_or(0));
            }
            let config = PairConfig {
                bins: &bins,
                scratch: &scratch.path,
                token_ms: scenario.token_ms,
                parallel,
                fake_port: args.fake_port,
                router: !args.direct_only,
            };
            pair = Some(Pair::start(config, &client).await?);
        }
        let Some(p) = pair.as_ref() else { unreachable!("started above") };
        let outcome = measure(args, &client, p, scenario).await?;
        memory.peak_kb = memory.peak_kb.max(outcome.rss_peak_kb);
        outcomes.push(outcome);
    }
    if let Some(old) = pair.take() {
        memory.hwm_kb = memory.hwm_kb.max(old.finish().unwrap_or(0));
    }
    let names = target_names(args);
    let rows = rows(&mut outcomes, &memory, names.len());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(args, &machine, &names, &outcomes, &rows, &memory))?);
    } else {
        println!("{}", machine_line(&machine, args));
        print!("{}", report::table(&names, &rows));
        if memory.hwm_kb > 0 {
            println!(
                "router VmHWM {:.1} MB (the most resident memory its process ever had)",
                memory.hwm_kb as f64 / 1024.0
            );
        }
        print_cpu(&names, &outcomes);
        print_errors(&names, &outcomes);
    }
    Ok(outcomes.iter().all(|o| o.tallies.iter().all(|t| t.errors == 0)))
}

fn target_names(args: &Args) -> Vec<&'static str> {
    let mut names = vec!["direct", "herd"];
    if args.ollama_herd.is_some() {
        names.push("ollama-herd");
    }
    names
}

/// Alternates rounds of one scenario over the targets.
async fn measure(
    args: &Args,
    client: &load::HttpClient,
    pair: &Pair,
    scenario: Scenario,
) -> Result<Outcome, SetupError> {
    // Columns stay in place (direct, herd, ollama-herd) when the router is left out.
    let mut targets = vec![Target { name: "direct", column: 0, url: pair.fake.url.clone() }];
    if let Some(router) = &pair.router {
        targets.push(Target { name: "herd", column: 1, url: router.url.clone() });
    }
    if let Some(url) = &args.ollama_herd {
        targets.push(Target { name: "ollama-herd", column: 2, url: url.clone() });
    }
    let mut tallies = vec![Tally::default(); target_names(args).len()];
    let mut rss_peak_kb = 0;
    let mut cpu = vec![CpuUse::default(); tallies.len()];
    for round in 1..=args.rounds {
        for target in &targets {
            let start = Instant::now();
            let measure_from = start + Duration::from_secs_f64(args.warmup_secs);
            let window = Window {
                measure_from,
                end: measure_from + Duration::from_secs_f64(args.secs),
                request_timeout: Duration::from_secs(args.request_timeout_secs),
            };
            let router_pid = pair.router.as_ref().map(|r| r.pid());
            let sampler = router_pid.filter(|_| target.column == 1).map(RssSampler::start);
            let meter = CpuMeter::start(pair.fake.pid(), router_pid);
            let tally = load::round(client, &scenario, &target.url, window).await?;
            cpu[target.column].add(meter.stop());
            if let Some(sampler) = sampler {
                rss_peak_kb = rss_peak_kb.max(sampler.stop());
            }
            eprintln!("{}", progress_line(&scenario, target.name, round, &tally));
            tallies[target.column].merge(tally);
        }
    }
    Ok(Outcome { scenario, tallies, rss_peak_kb, cpu })
}

fn progress_line(scenario: &Scenario, target: &str, round: u32, tally: &Tally) -> String {
    let mut line = format!(
        "{} c={} {target:<11} round {round}: {:.0} req/s, {:.0} chunks/s, {} errors",
        scenario.id.name(),
        scenario.concurrency,
        tally.requests_per_s(),
        tally.chunks_per_s(),
        tally.errors
    );
    if let Some((message, _)) = tally.error_kinds.iter().next() {
        line.push_str(&format!(" (first: {message})"));
    }
    line
}

/// The table's rows, in scenario order, then memory.
fn rows(outcomes: &mut [Outcome], memory: &Memory, targets: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for o in outcomes.iter_mut() {
        let name = o.scenario.id.name();
        // The goals compare herd with direct; a third column's failures are listed, not judged.
        let errors = o.tallies.iter().take(2).any(|t| t.errors > 0);
        let (metric, rate): (&str, fn(&Tally) -> f64) = match o.scenario.unit {
            Unit::Requests => ("req/s", Tally::requests_per_s),
            Unit::Chunks => ("chunks/s", Tally::chunks_per_s),
        };
        let rates: Vec<Option<f64>> = o.tallies.iter().map(|t| (!t.measured.is_zero()).then(|| rate(t))).collect();
        let min_ratio = match o.scenario.id {
            ScenarioId::S1 => S1_MIN_RATIO,
            ScenarioId::S2 | ScenarioId::S3 => STREAM_MIN_RATIO,
            ScenarioId::S4 => S4_MIN_RATIO,
        };
        rows.push(Row::rate(name, metric, &rates, min_ratio, errors));
        if o.scenario.ttft {
            let ms: Vec<Option<(f64, f64)>> =
                o.tallies.iter_mut().map(|t| Some((t.ttft_ms(50.0)?, t.ttft_ms(99.0)?))).collect();
            rows.push(Row::ttft(name, &ms, S4_MAX_P99_DELTA_MS, errors));
        }
    }
    let peak_mb = (memory.peak_kb > 0).then(|| memory.peak_kb as f64 / 1024.0);
    rows.push(Row::rss(peak_mb, RSS_MAX_MB, targets));
    rows
}

fn machine_line(machine: &Machine, args: &Args) -> String {
    let generator = match args.generator_threads {
        0 => "current-thread".to_string(),
        n => format!("{n} worker threads"),
    };
    format!(
        "machine: {} cores, {}; commit {}; generator {generator}; {} x {} s rounds per target after {} s warm-up",
        machine.cores,
        machine.cpu,
        machine.commit.as_deref().unwrap_or("unknown"),
        args.rounds,
        args.secs,
        args.warmup_secs
    )
}

/// Where the cores went: generator/fake/router CPU per wall second during each column's rounds.
fn print_cpu(names: &[&str], outcomes: &[Outcome]) {
    let mut line = "cores busy (generator/fake/router) during rounds:".to_string();
    for o in outcomes {
        line.push_str(&format!("\n  {}", o.scenario.id.name()));
        for (name, used) in names.iter().zip(&o.cpu) {
            if used.wall_s > 0.0 {
                let [g, f, r] = used.cores();
                line.push_str(&format!("  {name} {g:.2}/{f:.2}/{r:.2}"));
            }
        }
    }
    println!("{line}");
}

fn print_errors(names: &[&str], outcomes: &[Outcome]) {
    for o in outcomes {
        for (name, t) in names.iter().zip(&o.tallies) {
            if t.errors == 0 {
                continue;
            }
            println!("{} {name}: {} failed requests", o.scenario.id.name(), t.errors);
            for (message, n) in &t.error_kinds {
                println!("  {n} x {message}");
            }
            if t.errors_unlisted > 0 {
                println!("  {} x other messages", t.errors_unlisted);
            }
        }
    }
}

fn to_json(
    args: &Args,
    machine: &Machine,
    names: &[&str],
    outcomes: &[Outcome],
    rows: &[Row],
    memory: &Memory,
) -> Value {
    let scenarios: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let targets: serde_json::Map<String, Value> = names
                .iter()
                .zip(&o.tallies)
                .map(|(name, t)| {
                    let mut sorted = t.ttft_us.clone();
                    sorted.sort_unstable();
                    let ttft = |p| report::percentile(&sorted, p).map(|us| us as f64 / 1000.0);
                    let value = json!({
                        "requests": t.requests,
                        "chunks": t.chunks,
                        "measured_s": t.measured.as_secs_f64(),
                        "req_per_s": t.requests_per_s(),
                        "chunks_per_s": t.chunks_per_s(),
                        "ttft_ms": if o.scenario.ttft { json!({"p50": ttft(50.0), "p99": ttft(99.0)}) } else { Value::Null },
                        "errors": t.errors,
                        "error_kinds": t.error_kinds,
                    });
                    (name.to_string(), value)
                })
                .collect();
            json!({
                "id": o.scenario.id.name(),
                "path": o.scenario.path,
                "concurrency": o.scenario.concurrency,
                "token_ms": o.scenario.token_ms,
                "router_rss_peak_mb": o.rss_peak_kb as f64 / 1024.0,
                "cores_busy": names.iter().zip(&o.cpu).map(|(name, used)| {
                    let [g, f, r] = used.cores();
                    (name.to_string(), json!({"generator": g, "fake": f, "router": r}))
                }).collect::<serde_json::Map<_, _>>(),
                "targets": targets,
            })
        })
        .collect();
    json!({
        "machine": {"cores": machine.cores, "cpu": machine.cpu, "commit": machine.commit},
        "config": {
            "secs": args.secs,
            "warmup_secs": args.warmup_secs,
            "rounds": args.rounds,
            "concurrency_scale": args.concurrency_scale,
            "generator_threads": args.generator_threads,
        },
        "scenarios": scenarios,
        "router_memory": {"rss_peak_mb": memory.peak_kb as f64 / 1024.0, "vm_hwm_mb": memory.hwm_kb as f64 / 1024.0},
        "rows": rows.iter().map(|r| r.to_json(names)).collect::<Vec<_>>(),
    })
}
