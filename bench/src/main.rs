//! `herd-bench`: sends the same load straight to a simulated Ollama and through herd in front of
//! it, alternating rounds in one run, and prints herd's throughput and latency as ratios of
//! direct's, against the project's goals, with the router's peak memory. With `--lite`, herd-lite
//! runs next to herd against the same fake and is measured as one more column, against direct
//! and against herd.
//!
//! Build the programs first (`cargo build --release -p herd-tokio -p herd-fake-ollama -p
//! herd-bench`, with `-p herd-smol` for `--lite`), then run `target/release/herd-bench`.
//! Exit status: 0 when every request succeeded, 1 when some failed, 2 when setup failed.

mod bench {
    pub mod load;
    pub mod procs;
    pub mod report;
    pub mod scrape;
    pub mod soak;
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use tokio::time::Instant;

use bench::load::{self, Scenario, ScenarioId, Unit, Window};
use bench::procs::{Bins, CpuMeter, CpuUse, Machine, Pair, PairConfig, Routers, RssSampler, Scratch, SetupError};
use bench::report::{self, Row, Tally};

/// The goals from the issue, on a 2-core machine shared by generator, router and backend.
const S1_MIN_RATIO: f64 = 0.35;
const STREAM_MIN_RATIO: f64 = 0.5;
const S4_MIN_RATIO: f64 = 0.97;
const S4_MAX_P99_DELTA_MS: f64 = 1.0;
const RSS_MAX_MB: f64 = 30.0;
/// herd-lite's goal from its issue: its throughput within 20% of herd's.
const LITE_MIN_RATIO_TO_HERD: f64 = 0.8;

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
    /// Rounds per target: direct, herd, direct, herd, ... (with herd-lite and ollama-herd after
    /// herd when measured).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Multiplies every scenario's concurrency.
    #[arg(long, default_value_t = 1.0)]
    concurrency_scale: f64,
    /// Print JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also measure herd-lite (built by -p herd-smol, next to herd), started next to herd against
    /// the same fake, as a column after herd's.
    #[arg(long, conflicts_with = "direct_only")]
    lite: bool,
    /// Also measure an already running ollama-herd router at this URL, as the last column.
    #[arg(long)]
    ollama_herd: Option<String>,
    /// The simulated Ollama's port (0: any free one); fix it to point --ollama-herd at the fake.
    #[arg(long, default_value_t = 0)]
    fake_port: u16,
    /// Where herd, herd-fake-ollama and herd-lite are (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Tokio worker threads for the load generator; 0 runs it on the current thread.
    #[arg(long, default_value_t = 0)]
    generator_threads: usize,
    /// A request without a complete answer after this many seconds counts as an error.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Let the simulated Ollama put tokens due at once into shared writes (its behaviour before
    /// it wrote and flushed each token, as Ollama does), to compare with older figures.
    #[arg(long)]
    batch_tokens: bool,
    /// Instead of a benchmark: the long-run check. Every scenario's requests at once against herd
    /// for this many minutes (concurrency times --concurrency-scale), then: no request failed,
    /// the router's RSS at most 10 % above its value at one minute, every request in the trace
    /// store. Exits 1 when a check fails.
    #[arg(long, value_name = "MINUTES", conflicts_with_all = ["direct_only", "lite", "scrape"])]
    soak: Option<f64>,
    /// Measure only the fake, without starting the router (to calibrate the load generator).
    #[arg(long)]
    direct_only: bool,
    /// Keep the scratch folder (router data, child stderr logs).
    #[arg(long)]
    keep_temp: bool,
    /// Instead of a benchmark: watch process PID for --proc-secs seconds and print one JSON line
    /// with its RSS, peak RSS (VmHWM) and CPU use, from /proc (the footprint scripts use it).
    #[arg(long, value_name = "PID")]
    proc: Option<u32>,
    /// How long --proc watches, seconds (0: read once).
    #[arg(long, default_value_t = 0.0, requires = "proc")]
    proc_secs: f64,
    /// Instead of a benchmark: time Prometheus scrapes of a large fleet (--scrape-nodes nodes with
    /// --scrape-models models loaded each), over HTTP against herd (and herd-lite with --lite)
    /// and in process with every series filled.
    #[arg(long)]
    scrape: bool,
    /// Nodes in the --scrape fleet.
    #[arg(long, default_value_t = 100)]
    scrape_nodes: usize,
    /// Models loaded on each node of the --scrape fleet.
    #[arg(long, default_value_t = 20)]
    scrape_models: usize,
    /// Scrapes timed by --scrape.
    #[arg(long, default_value_t = 200)]
    scrapes: usize,
}

/// `--scrape`: one line per measurement.
fn scrape(args: &Args) -> ExitCode {
    let shape =
        bench::scrape::Shape { nodes: args.scrape_nodes, models: args.scrape_models, scrapes: args.scrapes.max(1) };
    let dir = match args.bin_dir.clone().or_else(|| std::env::current_exe().ok()?.parent().map(PathBuf::from)) {
        Some(d) => d,
        None => return ExitCode::from(2),
    };
    let scratch = std::env::temp_dir().join(format!("herd-bench-scrape-{}", std::process::id()));
    let mut ok = true;
    println!("scrape of {} nodes x {} models, {} scrapes", shape.nodes, shape.models, shape.scrapes);
    let mut programs = vec!["herd"];
    if args.lite {
        programs.push("herd-lite");
    }
    for name in programs {
        match bench::scrape::over_http(&dir.join(name), &scratch, shape) {
            Ok((p50, p99, max, bytes, series)) => println!(
                "{name:<10} over HTTP: p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  ({bytes} bytes, {series} samples)"
            ),
            Err(e) => {
                eprintln!("herd-bench: {name}: {e}");
                ok = false;
            }
        }
    }
    match bench::scrape::in_process(shape) {
        Ok((p50, p99, bytes, series)) => println!(
            "core render, every series filled: p50 {p50:.2} ms  p99 {p99:.2} ms  ({bytes} bytes, {series} samples)"
        ),
        Err(e) => {
            eprintln!("herd-bench: in process: {e}");
            ok = false;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `--proc`: one process's memory and CPU, as /proc reports them, over `secs`.
fn watch_process(pid: u32, secs: f64) -> ExitCode {
    let (Some(cpu0), started) = (bench::procs::cpu_secs(pid), std::time::Instant::now()) else {
        eprintln!("herd-bench: no process {pid}");
        return ExitCode::from(2);
    };
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    let wall = started.elapsed().as_secs_f64();
    let (Some(cpu1), Some(rss), Some(hwm)) = (
        bench::procs::cpu_secs(pid),
        bench::procs::proc_status_kb(pid, "VmRSS:"),
        bench::procs::proc_status_kb(pid, "VmHWM:"),
    ) else {
        eprintln!("herd-bench: process {pid} is gone");
        return ExitCode::from(2);
    };
    let share = if wall > 0.0 { (cpu1 - cpu0) / wall } else { 0.0 };
    println!(
        "{}",
        json!({
            "pid": pid, "rss_kb": rss, "hwm_kb": hwm, "cpu_secs": cpu1 - cpu0, "cpu_total_secs": cpu1,
            "wall_secs": wall, "cpu_cores": share,
        })
    );
    ExitCode::SUCCESS
}

/// What one column of the results measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    /// The fake, with no router.
    Direct,
    Herd,
    /// With `--lite`.
    Lite,
    /// With `--ollama-herd`: a router this run did not start.
    OllamaHerd,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Direct => "direct",
            Column::Herd => "herd",
            Column::Lite => "herd-lite",
            Column::OllamaHerd => "ollama-herd",
        }
    }
}

/// Where one column's load goes.
struct Target {
    name: &'static str,
    column: usize,
    url: String,
    /// The router process this column measures, when the run started it.
    own_pid: Option<u32>,
}

/// One scenario's numbers, per target in column order.
struct Outcome {
    scenario: Scenario,
    tallies: Vec<Tally>,
    /// The peak VmRSS of each column's own router during its rounds (0 where none).
    rss_peak_kb: Vec<u64>,
    /// CPU of the three processes during each column's rounds.
    cpu: Vec<CpuUse>,
}

/// One router's memory over the run.
#[derive(Clone, Copy, Default)]
struct Memory {
    peak_kb: u64,
    hwm_kb: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(pid) = args.proc {
        return watch_process(pid, args.proc_secs);
    }
    if args.scrape {
        return scrape(&args);
    }
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

/// `--soak`: one fake and herd, every scenario at once, then the report.
async fn soak(args: &Args, minutes: f64) -> Result<bool, SetupError> {
    let bins = Bins::locate(args.bin_dir.clone(), Routers::Herd)?;
    eprintln!("{}", machine_line(&Machine::detect(), args));
    let concurrency: usize =
        ScenarioId::ALL.iter().map(|&id| Scenario::new(id, args.concurrency_scale).concurrency).sum();
    let client = load::client(concurrency * 2);
    let scratch = Scratch::create(args.keep_temp)?;
    let config = PairConfig {
        bins: &bins,
        scratch: &scratch.path,
        token_ms: 0,
        parallel: concurrency.max(MIN_NODE_PARALLEL),
        fake_port: args.fake_port,
        routers: Routers::Herd,
        batch_tokens: args.batch_tokens,
        // Every request of the run stays in the store, to be counted (the default keeps 1 M).
        herd_args: vec!["--trace-rows".into(), "1000000000".into()],
    };
    let pair = Pair::start(config, &client).await?;
    let report = bench::soak::soak(&pair, &client, minutes, args.concurrency_scale).await?;
    print!("{}", report.render(minutes));
    drop(pair);
    Ok(report.passed())
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
    if let Some(minutes) = args.soak {
        return soak(args, minutes).await;
    }
    let mut ids = if args.scenario.is_empty() { ScenarioId::ALL.to_vec() } else { args.scenario.clone() };
    ids.sort_unstable();
    ids.dedup();
    let scenarios: Vec<Scenario> = ids.iter().map(|&id| Scenario::new(id, args.concurrency_scale)).collect();
    let max_concurrency = scenarios.iter().map(|s| s.concurrency).max().unwrap_or(1);
    let parallel = max_concurrency.max(MIN_NODE_PARALLEL);
    let routers = match (args.direct_only, args.lite) {
        (true, _) => Routers::FakeOnly,
        (false, false) => Routers::Herd,
        (false, true) => Routers::HerdAndLite,
    };
    let bins = Bins::locate(args.bin_dir.clone(), routers)?;
    let columns = columns(args);
    let machine = Machine::detect();
    eprintln!("{}", machine_line(&machine, args));
    let client = load::client(max_concurrency * 2);
    let scratch = Scratch::create(args.keep_temp)?;
    let mut pair: Option<Pair> = None;
    let mut memory = vec![Memory::default(); columns.len()];
    let mut outcomes = Vec::with_capacity(scenarios.len());
    for scenario in scenarios {
        if pair.as_ref().map(|p| p.token_ms) != Some(scenario.token_ms) {
            if let Some(old) = pair.take() {
                note_hwm(&mut memory, &columns, old.finish());
            }
            let config = PairConfig {
                bins: &bins,
                scratch: &scratch.path,
                token_ms: scenario.token_ms,
                parallel,
                fake_port: args.fake_port,
                routers,
                batch_tokens: args.batch_tokens,
                herd_args: Vec::new(),
            };
            pair = Some(Pair::start(config, &client).await?);
        }
        let Some(p) = pair.as_ref() else { unreachable!("started above") };
        let outcome = measure(args, &columns, &client, p, scenario).await?;
        for (m, kb) in memory.iter_mut().zip(&outcome.rss_peak_kb) {
            m.peak_kb = m.peak_kb.max(*kb);
        }
        outcomes.push(outcome);
    }
    if let Some(old) = pair.take() {
        note_hwm(&mut memory, &columns, old.finish());
    }
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    let rows = rows(&mut outcomes, &memory, &columns);
    if args.json {
        let json = to_json(args, &machine, &columns, &outcomes, &rows, &memory);
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{}", machine_line(&machine, args));
        print!("{}", report::table(&names, &rows));
        print_hwm(&columns, &memory);
        print_cpu(&columns, &outcomes);
        print_errors(&names, &outcomes);
    }
    Ok(outcomes.iter().all(|o| o.tallies.iter().all(|t| t.errors == 0)))
}

/// The result columns, in order: direct, herd, then herd-lite and ollama-herd when asked for.
/// herd's column stays in place when the router is left out (`--direct-only`).
fn columns(args: &Args) -> Vec<Column> {
    let mut columns = vec![Column::Direct, Column::Herd];
    if args.lite {
        columns.push(Column::Lite);
    }
    if args.ollama_herd.is_some() {
        columns.push(Column::OllamaHerd);
    }
    columns
}

fn column_of(columns: &[Column], wanted: Column) -> Option<usize> {
    columns.iter().position(|&c| c == wanted)
}

/// Keeps the larger VmHWM of each router (`[herd, herd-lite]`, as [`Pair::finish`] reads them).
fn note_hwm(memory: &mut [Memory], columns: &[Column], hwm: [Option<u64>; 2]) {
    for (router, kb) in [Column::Herd, Column::Lite].into_iter().zip(hwm) {
        if let (Some(i), Some(kb)) = (column_of(columns, router), kb) {
            memory[i].hwm_kb = memory[i].hwm_kb.max(kb);
        }
    }
}

/// Alternates rounds of one scenario over the targets: direct, herd, herd-lite, ollama-herd,
/// direct, ...
async fn measure(
    args: &Args,
    columns: &[Column],
    client: &load::HttpClient,
    pair: &Pair,
    scenario: Scenario,
) -> Result<Outcome, SetupError> {
    let targets: Vec<Target> = columns
        .iter()
        .enumerate()
        .filter_map(|(column, &c)| {
            let (url, own_pid) = match c {
                Column::Direct => (pair.fake.url.clone(), None),
                Column::Herd => pair.router.as_ref().map(|r| (r.url.clone(), Some(r.pid())))?,
                Column::Lite => pair.lite.as_ref().map(|r| (r.url.clone(), Some(r.pid())))?,
                Column::OllamaHerd => (args.ollama_herd.clone()?, None),
            };
            Some(Target { name: c.name(), column, url, own_pid })
        })
        .collect();
    let herd_pid = pair.router.as_ref().map(|r| r.pid());
    let mut tallies = vec![Tally::default(); columns.len()];
    let mut rss_peak_kb = vec![0; columns.len()];
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
            let sampler = target.own_pid.map(RssSampler::start);
            // The router's CPU is the column's own router's; columns without one show herd's
            // (idle) CPU, as they always have.
            let meter = CpuMeter::start(pair.fake.pid(), target.own_pid.or(herd_pid));
            let tally = load::round(client, &scenario, &target.url, window).await?;
            cpu[target.column].add(meter.stop());
            if let Some(sampler) = sampler {
                rss_peak_kb[target.column] = rss_peak_kb[target.column].max(sampler.stop());
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

/// The table's rows, in scenario order, then memory. With herd-lite, each scenario has two more
/// rows (herd-lite against direct, with herd's goal, and against herd, with its own goal), and
/// S4 one more for time to first token.
fn rows(outcomes: &mut [Outcome], memory: &[Memory], columns: &[Column]) -> Vec<Row> {
    let lite = column_of(columns, Column::Lite);
    let mut rows = Vec::new();
    for o in outcomes.iter_mut() {
        let name = o.scenario.id.name();
        // The goals compare herd with direct; ollama-herd's failures are listed, not judged.
        let errors = o.tallies.iter().take(2).any(|t| t.errors > 0);
        let failed = |tallies: &[Tally], of: usize, over: usize| tallies[of].errors > 0 || tallies[over].errors > 0;
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
        if let Some(l) = lite {
            let to_direct = failed(&o.tallies, l, 0);
            rows.push(Row::ratio(name, "herd-lite/direct", &rates, [l, 0], min_ratio, to_direct));
            let to_herd = failed(&o.tallies, l, 1);
            rows.push(Row::ratio(name, "herd-lite/herd", &rates, [l, 1], LITE_MIN_RATIO_TO_HERD, to_herd));
        }
        if o.scenario.ttft {
            let ms: Vec<Option<(f64, f64)>> =
                o.tallies.iter_mut().map(|t| Some((t.ttft_ms(50.0)?, t.ttft_ms(99.0)?))).collect();
            rows.push(Row::ttft(name, &ms, S4_MAX_P99_DELTA_MS, errors));
            if let Some(l) = lite {
                let failed = failed(&o.tallies, l, 0);
                let metric = "herd-lite p99 vs direct";
                rows.push(Row::ttft_delta(name, metric, &ms, [l, 0], S4_MAX_P99_DELTA_MS, failed));
            }
        }
    }
    for (metric, router) in [("router peak MB", Column::Herd), ("herd-lite peak MB", Column::Lite)] {
        let Some(i) = column_of(columns, router) else { continue };
        let peak_mb = (memory[i].peak_kb > 0).then(|| memory[i].peak_kb as f64 / 1024.0);
        rows.push(Row::rss(metric, peak_mb, RSS_MAX_MB, i, columns.len()));
    }
    rows
}

fn print_hwm(columns: &[Column], memory: &[Memory]) {
    for (c, m) in columns.iter().zip(memory) {
        let who = match c {
            Column::Herd => "router",
            Column::Lite => "herd-lite",
            Column::Direct | Column::OllamaHerd => continue,
        };
        if m.hwm_kb > 0 {
            println!("{who} VmHWM {:.1} MB (the most resident memory its process ever had)", m.hwm_kb as f64 / 1024.0);
        }
    }
}

fn machine_line(machine: &Machine, args: &Args) -> String {
    let generator = match args.generator_threads {
        0 => "current-thread".to_string(),
        n => format!("{n} worker threads"),
    };
    let fake = if args.batch_tokens { "batched writes" } else { "one write per token" };
    format!(
        "machine: {} cores, {}; commit {}; generator {generator}; fake {fake}; {} x {} s rounds per target after {} s \
         warm-up",
        machine.cores,
        machine.cpu,
        machine.commit.as_deref().unwrap_or("unknown"),
        args.rounds,
        args.secs,
        args.warmup_secs
    )
}

/// Where the cores went: generator/fake/router CPU per wall second during each column's rounds.
fn print_cpu(columns: &[Column], outcomes: &[Outcome]) {
    let mut line = "cores busy (generator/fake/router) during rounds:".to_string();
    if columns.contains(&Column::Lite) {
        line.push_str(" (router: herd-lite in herd-lite's rounds, herd in the others)");
    }
    for o in outcomes {
        line.push_str(&format!("\n  {}", o.scenario.id.name()));
        for (column, used) in columns.iter().zip(&o.cpu) {
            let name = column.name();
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

/// The results as JSON. herd's memory keeps its keys (`router_rss_peak_mb`, `router_memory`);
/// herd-lite's, with `--lite`, are `herd_lite_rss_peak_mb` and `herd_lite_memory` next to them.
fn to_json(
    args: &Args,
    machine: &Machine,
    columns: &[Column],
    outcomes: &[Outcome],
    rows: &[Row],
    memory: &[Memory],
) -> Value {
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    let herd = column_of(columns, Column::Herd).unwrap_or(1);
    let lite = column_of(columns, Column::Lite);
    let mb = |kb: u64| kb as f64 / 1024.0;
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
            let mut scenario = json!({
                "id": o.scenario.id.name(),
                "path": o.scenario.path,
                "concurrency": o.scenario.concurrency,
                "token_ms": o.scenario.token_ms,
                "router_rss_peak_mb": mb(o.rss_peak_kb[herd]),
                "cores_busy": names.iter().zip(&o.cpu).map(|(name, used)| {
                    let [g, f, r] = used.cores();
                    (name.to_string(), json!({"generator": g, "fake": f, "router": r}))
                }).collect::<serde_json::Map<_, _>>(),
                "targets": targets,
            });
            if let Some(l) = lite {
                scenario["herd_lite_rss_peak_mb"] = json!(mb(o.rss_peak_kb[l]));
            }
            scenario
        })
        .collect();
    let mut value = json!({
        "machine": {"cores": machine.cores, "cpu": machine.cpu, "commit": machine.commit},
        "config": {
            "secs": args.secs,
            "warmup_secs": args.warmup_secs,
            "rounds": args.rounds,
            "concurrency_scale": args.concurrency_scale,
            "generator_threads": args.generator_threads,
        },
        "scenarios": scenarios,
        "router_memory": {"rss_peak_mb": mb(memory[herd].peak_kb), "vm_hwm_mb": mb(memory[herd].hwm_kb)},
        "rows": rows.iter().map(|r| r.to_json(&names)).collect::<Vec<_>>(),
    });
    if let Some(l) = lite {
        value["herd_lite_memory"] = json!({"rss_peak_mb": mb(memory[l].peak_kb), "vm_hwm_mb": mb(memory[l].hwm_kb)});
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench::report::{Cell, Verdict};

    fn args(extra: &[&str]) -> Args {
        Args::parse_from([&["herd-bench"], extra].concat())
    }

    fn tally(requests: u64, ttft_ms: u64) -> Tally {
        let ttft_us = vec![ttft_ms * 1000; 10];
        Tally { requests, chunks: requests, ttft_us, measured: Duration::from_secs(1), ..Tally::default() }
    }

    fn outcome(id: ScenarioId, tallies: Vec<Tally>) -> Outcome {
        let n = tallies.len();
        Outcome { scenario: Scenario::new(id, 1.0), tallies, rss_peak_kb: vec![0; n], cpu: vec![CpuUse::default(); n] }
    }

    fn metrics(rows: &[Row]) -> Vec<(String, &'static str)> {
        rows.iter().map(|r| (r.scenario.clone(), r.metric)).collect()
    }

    #[test]
    fn columns_follow_the_flags() {
        assert_eq!(columns(&args(&[])), [Column::Direct, Column::Herd]);
        assert_eq!(columns(&args(&["--lite"])), [Column::Direct, Column::Herd, Column::Lite]);
        let both = columns(&args(&["--ollama-herd", "http://127.0.0.1:1", "--lite"]));
        assert_eq!(both, [Column::Direct, Column::Herd, Column::Lite, Column::OllamaHerd]);
        assert!(Args::try_parse_from(["herd-bench", "--lite", "--direct-only"]).is_err());
    }

    #[test]
    fn default_rows_are_herd_against_direct() {
        let columns = columns(&args(&[]));
        let mut outcomes = vec![outcome(ScenarioId::S4, vec![tally(1000, 1), tally(990, 1)])];
        let memory = [Memory::default(), Memory { peak_kb: 10 * 1024, hwm_kb: 11 * 1024 }];
        let rows = rows(&mut outcomes, &memory, &columns);
        let expected = [("S4", "req/s"), ("S4", "ttft p50/p99 ms"), ("RSS", "router peak MB")];
        assert_eq!(metrics(&rows), expected.map(|(s, m)| (s.to_string(), m)));
        assert_eq!(rows[2].cells, [Cell::Empty, Cell::Mb(10.0)]);
    }

    #[test]
    fn lite_rows_compare_with_direct_and_herd() {
        let columns = columns(&args(&["--lite"]));
        let mut lite = tally(700, 3);
        lite.error("HTTP 502: boom".into());
        let mut outcomes = vec![
            outcome(ScenarioId::S1, vec![tally(1000, 1), tally(500, 1), tally(450, 1)]),
            outcome(ScenarioId::S4, vec![tally(1000, 1), tally(990, 1), lite]),
        ];
        let memory =
            [Memory::default(), Memory { peak_kb: 10 * 1024, hwm_kb: 0 }, Memory { peak_kb: 4 * 1024, hwm_kb: 0 }];
        let rows = rows(&mut outcomes, &memory, &columns);
        let expected = [
            ("S1", "req/s"),
            ("S1", "herd-lite/direct"),
            ("S1", "herd-lite/herd"),
            ("S4", "req/s"),
            ("S4", "herd-lite/direct"),
            ("S4", "herd-lite/herd"),
            ("S4", "ttft p50/p99 ms"),
            ("S4", "herd-lite p99 vs direct"),
            ("RSS", "router peak MB"),
            ("RSS", "herd-lite peak MB"),
        ];
        assert_eq!(metrics(&rows), expected.map(|(s, m)| (s.to_string(), m)));
        assert_eq!((rows[0].compare, rows[0].verdict), (Some(0.5), Verdict::Yes));
        assert_eq!((rows[1].compare, rows[1].verdict), (Some(0.45), Verdict::Yes));
        assert_eq!((rows[2].compare, rows[2].verdict), (Some(0.9), Verdict::Yes));
        // herd-lite's failures mark its own rows, not herd's.
        assert_eq!(rows[3].verdict, Verdict::Yes);
        assert_eq!([rows[4].verdict, rows[5].verdict, rows[7].verdict], [Verdict::Errors; 3]);
        assert_eq!(rows[9].cells, [Cell::Empty, Cell::Empty, Cell::Mb(4.0)]);
    }
}
