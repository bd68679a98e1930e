//! The real router service in the deterministic world: herd-service's driver, proxy, relay, node
//! pool, fleet routes and HTTP/1.1 server (the code `herd-lite` runs, with herd's one-trace-per-
//! request driver) on a virtual-time executor ([`exec`]), an in-memory network with faults
//! ([`net`]), simulated Ollama machines speaking real HTTP bytes ([`ollama`]) and clients that
//! check every answer ([`client`]).
//!
//! [`run_seed`] draws a world from a seed (machines, their swarm of faults, the network's
//! latency and partitions, a burst of client calls of every kind, some of which leave early),
//! runs it to the end and checks what every client saw and what the router kept:
//! - every call ends once: a complete answer with the right text, or one error in its
//!   protocol; never an end marker after a machine failed mid-answer (the text would be short);
//! - a client that left is not written to and its machine call is cancelled: no machine is
//!   still answering at the end;
//! - one trace per routed call, with the outcome the client saw;
//! - no connection leaks: every router connection to a machine still open is idle in the pool,
//!   and no task is left but the ones serving those; no body bytes held;
//! - the same seed gives the same byte trace (checked by running it twice).

pub mod client;
pub mod exec;
pub mod net;
pub mod ollama;
pub mod wire;

use clap::Parser;
use client::{Call, Got, Kind, Leave};
use exec::{Exec, Stop};
use herd_core::rng::Rng;
use herd_core::time::Instant;
use herd_service::driver::{TraceRecord, TraceSink};
use herd_service::upstream::Pool;
use net::{Net, SimConn};
use ollama::{Faults, Machine, MachineConfig, Served};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The router's address.
pub const ROUTER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 11435);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    router: herd_service::args::RouterArgs,
}

#[derive(Clone, Default)]
struct Traces(Arc<Mutex<Vec<TraceRecord>>>);

impl TraceSink for Traces {
    fn record(&self, rec: TraceRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Client calls made.
    pub calls: u64,
    /// Complete answers.
    pub answers: u64,
    /// Errors before an answer, by status.
    pub errors: BTreeMap<u16, u64>,
    /// Streams that ended with their protocol's error element.
    pub stream_errors: u64,
    /// Clients that left.
    pub left: u64,
    /// Machine requests answered whole.
    pub machine_whole: u64,
    /// Machine requests cut mid-answer by a fault.
    pub machine_cut: u64,
    /// Machine requests failed before answering (status or reset).
    pub machine_failed: u64,
    /// Machine answers the router cancelled (its caller went away).
    pub machine_cancelled: u64,
    /// Anthropic calls a machine served on its own `/v1/messages`.
    pub messages_passed: u64,
    /// Anthropic calls translated to a machine's `/api/chat`.
    pub messages_translated: u64,
    /// Traces written.
    pub traces: u64,
    /// Bytes the network carried.
    pub bytes: u64,
    /// Hash of every byte the network carried, in order.
    pub hash: u64,
    /// Virtual time the seed took, ms.
    pub virtual_ms: u64,
}

impl Report {
    /// Adds `other`'s counts to this one's (the hash is mixed).
    pub fn add(&mut self, other: &Report) {
        self.calls += other.calls;
        self.answers += other.answers;
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        self.stream_errors += other.stream_errors;
        self.left += other.left;
        self.machine_whole += other.machine_whole;
        self.machine_cut += other.machine_cut;
        self.machine_failed += other.machine_failed;
        self.machine_cancelled += other.machine_cancelled;
        self.messages_passed += other.messages_passed;
        self.messages_translated += other.messages_translated;
        self.traces += other.traces;
        self.bytes += other.bytes;
        self.hash = herd_core::rng::mix(self.hash ^ other.hash);
        self.virtual_ms += other.virtual_ms;
    }
}

/// What each call got, and when it ended, by call id.
type Results = BTreeMap<u64, (Result<Got, String>, Instant)>;

const MODELS: [&str; 3] = ["llama3.1:8b", "mistral:7b", "qwen2.5-coder:7b"];

fn machine_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8))
}

fn client_ip(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1 + (i % 200) as u8))
}

/// Draws a swarm of faults: each kind on or off for this machine, at a chance drawn for it.
fn draw_faults(rng: &mut Rng) -> Faults {
    let mut pick = |max: u64| if rng.below(2) == 0 { 0 } else { 1 + rng.below(max) as u32 };
    Faults {
        status_before: pick(250),
        reset_before: pick(150),
        reset_mid: pick(200),
        close_mid: pick(150),
        stall_mid: pick(150),
    }
}

/// Runs the world of `seed` and checks it.
///
/// # Errors
///
/// A promise was broken; the message says which, for which call.
pub fn run_seed(seed: u64) -> Result<Report, String> {
    let mut rng = Rng::new(herd_core::rng::mix(seed ^ 0x5e41_11ce));
    let exec = Exec::new(seed);
    let net = Net::new(&exec, Duration::from_micros(100 + rng.below(3000)));
    let rt = exec.runtime();

    let cli = Cli::try_parse_from(["herd", "--host", "10.0.0.1", "--seed", &seed.to_string()])
        .map_err(|e| format!("router arguments: {e}"))?;
    let traces = Traces::default();
    let pool_net = net.clone();
    let connect = move |target: String| pool_net.connect(ROUTER.ip(), target);
    let pool: Pool<SimConn> = Pool::new(rt.clone(), Arc::new(connect));
    let app = cli
        .router
        .start_service(Arc::new(pool.clone()), rt.clone(), Some(Box::new(traces.clone())), None, "herd")
        .map_err(|e| format!("router: {e}"))?;
    let draining = herd_service::server::Draining::default();
    let listener = net.listen(ROUTER);
    {
        let (exec2, app2, draining2) = (exec.clone(), app.clone(), draining.clone());
        exec.spawn(Box::pin(async move {
            loop {
                let (conn, peer) = listener.accept().await;
                exec2.spawn(Box::pin(herd_service::server::serve_connection(
                    conn,
                    peer,
                    app2.clone(),
                    draining2.clone(),
                )));
            }
        }));
    }

    // The machines: each loads a subset of the models (every model somewhere).
    let n_machines = 2 + rng.below(3) as usize;
    let mut machines = Vec::new();
    for i in 0..n_machines {
        let mut models: Vec<String> = MODELS.iter().filter(|_| rng.below(2) == 0).map(|m| m.to_string()).collect();
        if let Some(own) = MODELS.get(i).filter(|m| !models.iter().any(|x| x == *m)) {
            models.push(own.to_string());
        }
        let mut config = MachineConfig {
            name: format!("m{i}"),
            ip: machine_ip(i),
            models,
            parallel: 1 + rng.below(4) as u32,
            first_token: Duration::from_millis(5 + rng.below(200)),
            token_every: Duration::from_millis(1 + rng.below(40)),
            faults: draw_faults(&mut rng),
            stall: Duration::from_secs(5 + rng.below(400)),
            seed: rng.next_u64(),
            ollama_version: herd_fake_ollama::machine::OLLAMA_VERSION.into(),
            reports_context: true,
        };
        // From the machine's own seed, so the world's other draws stay as they were: a third
        // of the machines run an Ollama without `/v1/messages`, half do not report their window.
        if config.seed % 3 == 0 {
            config.ollama_version = "0.13.5".into();
        }
        config.reports_context = (config.seed >> 8) % 2 == 0;
        machines.push(Machine::start(&exec, &net, config, ROUTER, Duration::from_secs(5)));
    }
    // Every machine registered before the clients come.
    let registered = || machines.iter().all(|m| m.log.lock().unwrap_or_else(|p| p.into_inner()).heartbeats_ok > 0);
    if exec.run_until(Instant::from_secs(10), registered) != Stop::Done {
        return Err(format!("seed {seed}: the machines did not register"));
    }
    let base_tasks = exec.live_tasks();

    // Network faults during the calls.
    let partitions: Vec<(u64, usize, u64)> = (0..rng.below(3))
        .map(|_| (10_000 + rng.below(60_000), rng.below(n_machines as u64) as usize, 1_000 + rng.below(20_000)))
        .collect();
    let resets: Vec<(u64, usize)> =
        (0..rng.below(3)).map(|_| (10_000 + rng.below(60_000), rng.below(n_machines as u64) as usize)).collect();
    for &(at_ms, m, len_ms) in &partitions {
        let (net2, rt2) = (net.clone(), rt.clone());
        let start = exec.now();
        exec.spawn(Box::pin(async move {
            rt2.sleep(Duration::from_millis(at_ms) - Duration::from_micros(start.as_micros().min(at_ms * 1000))).await;
            net2.partition(machine_ip(m), Duration::from_millis(len_ms));
        }));
    }
    for (at_ms, m) in resets {
        let (net2, rt2) = (net.clone(), rt.clone());
        let start = exec.now();
        exec.spawn(Box::pin(async move {
            rt2.sleep(Duration::from_millis(at_ms) - Duration::from_micros(start.as_micros().min(at_ms * 1000))).await;
            net2.reset_host(machine_ip(m));
        }));
    }

    // The clients.
    let n_calls = 10 + rng.below(40);
    let results: Arc<Mutex<Results>> = Arc::default();
    let mut calls = Vec::new();
    for id in 0..n_calls {
        let kind = match Kind::ALL[rng.below(Kind::ALL.len() as u64) as usize] {
            // Every other OpenAI chat call speaks the Responses API instead: no extra draw, so
            // a seed keeps its machines, faults and timings from before that surface existed.
            Kind::OpenAiChat if id % 2 == 1 => Kind::Responses,
            k => k,
        };
        let stream = rng.below(2) == 0 && !matches!(kind, Kind::Embed | Kind::Tags | Kind::Ps);
        let model =
            if rng.below(20) == 0 { "no-such-model:1b".to_string() } else { MODELS[rng.below(3) as usize].to_string() };
        let leave = match rng.below(10) {
            0 => Leave::BeforeHead,
            1 => Leave::AfterBytes(1 + rng.below(400) as usize),
            _ => Leave::Never,
        };
        let call = Call { id, kind, stream, model, prompt: format!("prompt {seed}/{id}"), leave };
        let at = Duration::from_millis(rng.below(60_000));
        calls.push(call.clone());
        let (net2, rt2, results2) = (net.clone(), rt.clone(), results.clone());
        exec.spawn(Box::pin(async move {
            rt2.sleep(at).await;
            let got = client::run(&net2, client_ip(id), ROUTER, &call).await;
            results2.lock().unwrap_or_else(|p| p.into_inner()).insert(call.id, (got, rt2.now()));
        }));
    }
    let all_done = || results.lock().unwrap_or_else(|p| p.into_inner()).len() as u64 == n_calls;
    let limit = exec.now() + Duration::from_secs(3600);
    match exec.run_until(limit, all_done) {
        Stop::Done => {}
        other => {
            let done = results.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect::<Vec<_>>();
            let missing: Vec<_> = calls.iter().filter(|c| !done.contains(&c.id)).collect();
            return Err(format!("seed {seed}: stopped ({other:?}) with calls unanswered: {missing:?}"));
        }
    }
    // Let what the clients' leaving set off play out (cancellations, reaping, trace writes),
    // then wait for a moment with no heartbeat in flight.
    let settle = exec.now() + Duration::from_secs(600);
    let open_to_machines = || (0..n_machines).map(|i| net.open_from(ROUTER.ip(), machine_ip(i))).sum::<usize>();
    // Quiet: no machine answering, and no task but the ones waiting on open pooled connections
    // (a machine serves each connection the pool keeps open).
    let quiet = || {
        machines.iter().all(|m| m.log.lock().unwrap_or_else(|p| p.into_inner()).answering == 0)
            && exec.live_tasks() == base_tasks + open_to_machines()
    };
    let stop = exec.run_until(settle, quiet);

    let mut report = Report { calls: n_calls, ..Report::default() };
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    let traces = std::mem::take(&mut *traces.0.lock().unwrap_or_else(|p| p.into_inner()));
    let fail = |what: String| Err(format!("seed {seed}: {what}"));
    if std::env::var_os("SIM_DEBUG").is_some() {
        for t in &traces {
            eprintln!(
                "trace {:?} {} {} node={:?} attempts={} error={:?}",
                t.tags, t.outcome, t.status, t.node, t.attempts, t.error
            );
        }
        for m in &machines {
            for s in &m.log.lock().unwrap_or_else(|p| p.into_inner()).seen {
                eprintln!("machine {} {} {:?} {:?}", m.config.name, s.path, s.prompt, s.served);
            }
        }
    }

    for call in &calls {
        let (got, ended_at) = match &results[&call.id] {
            (Ok(g), at) => (g.clone(), *at),
            (Err(e), _) => return fail(format!("call {call:?}: {e}")),
        };
        if got == Got::Left {
            // Its machine call is cancelled: the machine notices at its next write, a token
            // later (or once its stall ends), plus the network's round trip. A request the
            // router sent just before it heard the client leave, held by a partition of the
            // machine, arrives when the partition heals: the machine can notice only then.
            for (mi, m) in machines.iter().enumerate() {
                let log = m.log.lock().unwrap_or_else(|p| p.into_inner());
                for s in log.seen.iter().filter(|s| s.prompt.as_deref() == Some(call.prompt.as_str())) {
                    let mut grace = m.config.token_every + m.config.first_token + Duration::from_millis(50);
                    if s.stalled {
                        grace += m.config.stall;
                    }
                    let healed = partitions
                        .iter()
                        .filter(|&&(_, pm, _)| pm == mi)
                        .map(|&(at, _, len)| (Instant::from_millis(at), Instant::from_millis(at + len)))
                        .filter(|&(from, to)| from <= ended_at + grace && to >= ended_at)
                        .map(|(_, to)| to)
                        .max()
                        .unwrap_or(ended_at)
                        .max(ended_at);
                    if s.served == Served::Whole && s.ended_at > healed + grace {
                        return fail(format!(
                            "machine {} answered {call:?} to the end at {:?}, after its client left at {ended_at:?}",
                            m.config.name, s.ended_at
                        ));
                    }
                }
            }
        }
        match &got {
            Got::Answer => report.answers += 1,
            Got::Error(s) => *report.errors.entry(*s).or_default() += 1,
            Got::StreamError => report.stream_errors += 1,
            Got::Left => report.left += 1,
        }
        if !call.kind.is_inference() {
            continue;
        }
        if call.kind == client::Kind::Anthropic {
            for m in &machines {
                let log = m.log.lock().unwrap_or_else(|p| p.into_inner());
                for s in log.seen.iter().filter(|s| s.prompt.as_deref() == Some(call.prompt.as_str())) {
                    match s.path.as_str() {
                        "/v1/messages" if !m.config.serves_messages() => {
                            return fail(format!(
                                "{call:?} went to /v1/messages on {}, whose Ollama has none",
                                m.config.name
                            ))
                        }
                        "/v1/messages" => report.messages_passed += 1,
                        _ => report.messages_translated += 1,
                    }
                }
            }
        }
        let tag = format!("c{}", call.id);
        let mine: Vec<&TraceRecord> = traces.iter().filter(|t| t.tags.contains(&tag)).collect();
        if mine.len() != 1 {
            return fail(format!("call {call:?} has {} traces", mine.len()));
        }
        let t = mine[0];
        let agrees = match &got {
            Got::Answer => t.outcome == "completed" && t.status == 200,
            // Before commit a rejection; after it, a gathered answer that failed.
            Got::Error(s) => (t.outcome == "rejected" || t.outcome == "failed_after_commit") && t.status == *s,
            Got::StreamError => t.outcome == "failed_after_commit",
            Got::Left => true,
        };
        if !agrees {
            return fail(format!("call {call:?} got {got:?} but its trace says {} {}", t.outcome, t.status));
        }
    }
    report.traces = traces.len() as u64;
    let routed = calls.iter().filter(|c| c.kind.is_inference()).count();
    if traces.len() != routed {
        return fail(format!("{} traces for {routed} routed calls", traces.len()));
    }
    for m in &machines {
        let log = m.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.answering != 0 {
            return fail(format!(
                "machine {} is still answering {} requests after every client is done ({stop:?})",
                m.config.name, log.answering
            ));
        }
        for s in &log.seen {
            match s.served {
                Served::Whole => report.machine_whole += 1,
                Served::Cut => report.machine_cut += 1,
                Served::Status(_) | Served::ResetBefore => report.machine_failed += 1,
                Served::CallerGone => report.machine_cancelled += 1,
            }
        }
    }
    // Every router connection to a machine still open is idle in the pool (the pool may also
    // hold some the machines have since closed: found and dropped on their next checkout).
    let idle = pool.idle_connections();
    let open = open_to_machines();
    if open > idle {
        return fail(format!("{open} router connections to machines are open but {idle} are idle in the pool"));
    }
    if exec.live_tasks() != base_tasks + open {
        return fail(format!(
            "{} tasks live at the end; expected {base_tasks} + {open} serving open pooled connections ({stop:?})",
            exec.live_tasks()
        ));
    }
    if app.body_budget.held() != 0 {
        return fail(format!("{} body bytes still held", app.body_budget.held()));
    }
    let stats = net.stats();
    if stats.writes_after_close > 1 {
        return fail(format!(
            "a connection end was written to {} times after its reader left",
            stats.writes_after_close
        ));
    }
    report.bytes = stats.delivered;
    report.hash = stats.hash;
    report.virtual_ms = exec.now().as_micros() / 1000;
    exec.shutdown();
    Ok(report)
}
