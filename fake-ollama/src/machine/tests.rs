//! Worked examples of the node model, and a property over random operation sequences.

use super::*;
use herd_core::fleet::heartbeat::Pressure;
use proptest::prelude::*;

const A: &str = "a:5g";
const B: &str = "b:5g";
const C: &str = "c:5g";
const BIG: &str = "big:40g";
const EMBED: &str = "embed:latest";

fn m(name: &str) -> ModelName {
    ModelName::new(name)
}

fn secs(s: f64) -> Instant {
    Instant::from_micros((s * 1e6).round() as u64)
}

/// A 24 GB GPU box at 800 GB/s, two slots, 4096 context: a 5 GB model is 5.2 GB resident and
/// decodes one sequence at 0.7 × 800 / 5 = 112 tokens/s.
fn spec() -> MachineSpec {
    MachineSpec {
        name: "gpu-box".into(),
        ram_gb: 64.0,
        gpu_vram_gb: vec![24.0],
        bandwidth_gbps: 800.0,
        num_parallel: 2,
        max_loaded_models: 3,
        disk: vec![(m(A), 5.0), (m(B), 5.0), (m(C), 5.0), (m(BIG), 40.0), (m(EMBED), 0.5)],
        preloaded: vec![],
        context_length: 4096,
        load_gbps: 2.0,
        ollama_version: OLLAMA_VERSION.into(),
    }
}

fn preloaded(mut spec: MachineSpec, models: &[&str]) -> SimNode {
    spec.preloaded = models.iter().map(|s| m(s)).collect();
    SimNode::new(spec, Instant::ZERO)
}

fn job(id: JobId, model: &str, prompt_tokens: u32, output_tokens: u32) -> Job {
    Job { id, model: m(model), prompt_tokens, output_tokens, prefix: None, embed: false }
}

/// Fires every timer up to `until`, recording each event with the instant it came out.
fn run(node: &mut SimNode, until: Instant) -> Vec<(Instant, NodeEvent)> {
    let mut log = Vec::new();
    while let Some(t) = node.poll_timeout() {
        if t > until {
            break;
        }
        node.handle_timeout(t);
        while let Some(e) = node.poll_event() {
            log.push((t, e));
        }
    }
    log
}

fn drain(node: &mut SimNode) -> Vec<NodeEvent> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

fn loaded(node: &SimNode) -> Vec<String> {
    node.heartbeat(Instant::ZERO).ollama.models_loaded.iter().map(|l| l.name.to_string()).collect()
}

fn done(id: JobId, prompt_tokens: u32, completion_tokens: u32) -> NodeEvent {
    NodeEvent::Done { job: id, prompt_tokens, completion_tokens }
}

#[test]
fn decode_rate_of_a_5gb_model_at_800_gbps_is_112_tokens_per_second() {
    let node = preloaded(spec(), &[A]);
    assert!((node.decode_tps(5.0) - 112.0).abs() < 1e-9);
    assert!((node.resident_gb(5.0) - 5.2).abs() < 1e-9, "5 GB + 5 × 0.02 × 1 × 2 slots");
    // 112 tokens take one second; two sequences share the bandwidth: 112 / 1.25 = 89.6 tokens/s.
    let mut node = node;
    node.start(Instant::ZERO, job(1, A, 0, 112)).unwrap();
    node.start(Instant::ZERO, job(2, A, 0, 112)).unwrap();
    let log = run(&mut node, Instant::MAX);
    assert!(log.contains(&(secs(1.0), done(1, 0, 112))), "{log:?}");
    assert!(log.contains(&(secs(1.25), done(2, 0, 112))), "{log:?}");
}

#[test]
fn one_job_loads_prefills_and_decodes() {
    let mut node = SimNode::new(spec(), Instant::ZERO);
    node.start(Instant::ZERO, job(1, A, 560, 224)).unwrap();
    // Load 5 GB at 2 GB/s = 2.5 s; prefill 560 tokens at 25 × 112 = 2800 tokens/s = 0.2 s;
    // decode 224 tokens at 112 tokens/s = 2 s, with a Progress each second.
    assert_eq!(node.poll_timeout(), Some(secs(2.5)));
    assert_eq!(node.heartbeat(Instant::ZERO).ollama.models_loaded[0].requests_active, 1);
    let log = run(&mut node, Instant::MAX);
    assert_eq!(
        log,
        vec![
            (secs(2.7), NodeEvent::FirstToken { job: 1 }),
            (secs(3.7), NodeEvent::Progress { job: 1 }),
            (secs(4.7), done(1, 560, 224)),
        ]
    );
    assert_eq!(node.poll_timeout(), None);
    assert_eq!(node.stats(), &NodeStats { cold_loads: 1, jobs_done: 1, ..NodeStats::default() });
}

#[test]
fn embedding_finishes_right_after_prefill() {
    let mut node = preloaded(spec(), &[EMBED]);
    let mut embed = job(1, EMBED, 1000, 99);
    embed.embed = true;
    node.start(Instant::ZERO, embed).unwrap();
    // 0.7 × 800 / 0.5 = 1120 tokens/s decode, 28 000 tokens/s prefill: 1000 tokens in 1/28 s.
    let t = secs(1000.0 / 28_000.0);
    assert_eq!(run(&mut node, Instant::MAX), vec![(t, NodeEvent::FirstToken { job: 1 }), (t, done(1, 1000, 0))]);
}

#[test]
fn cached_prefix_shortens_time_to_first_token() {
    let mut node = preloaded(spec(), &[A]);
    let turn = |id, prompt, key, shared| Job { prefix: Some((key, shared)), ..job(id, A, prompt, 1) };
    node.start(Instant::ZERO, turn(1, 2800, 7, 0)).unwrap();
    assert_eq!(run(&mut node, Instant::MAX)[0], (secs(1.0), NodeEvent::FirstToken { job: 1 }));
    // The second turn shares 2800 tokens: only 280 new ones are prefilled (0.1 s).
    let t0 = secs(10.0);
    node.start(t0, turn(2, 3080, 7, 2800)).unwrap();
    assert_eq!(run(&mut node, Instant::MAX)[0], (secs(10.1), NodeEvent::FirstToken { job: 2 }));
    // Another conversation gets no discount.
    node.start(secs(20.0), turn(3, 3080, 8, 2800)).unwrap();
    assert_eq!(run(&mut node, Instant::MAX)[0], (secs(21.1), NodeEvent::FirstToken { job: 3 }));
    assert_eq!(node.stats().prefix_hits, 1);
}

#[test]
fn eviction_drops_the_prefix_cache() {
    let mut spec = spec();
    spec.max_loaded_models = 1;
    let mut node = preloaded(spec, &[A]);
    node.start(Instant::ZERO, Job { prefix: Some((7, 0)), ..job(1, A, 10, 1) }).unwrap();
    run(&mut node, Instant::MAX);
    node.start(secs(5.0), job(2, B, 10, 1)).unwrap();
    run(&mut node, Instant::MAX);
    node.start(secs(20.0), Job { prefix: Some((7, 10)), ..job(3, A, 20, 1) }).unwrap();
    run(&mut node, Instant::MAX);
    assert_eq!(node.stats().prefix_hits, 0);
    assert_eq!(node.stats().evictions, 2);
}

#[test]
fn jobs_queue_fifo_behind_busy_slots() {
    let mut spec = spec();
    spec.num_parallel = 1;
    let mut node = preloaded(spec, &[A, B]);
    node.start(Instant::ZERO, job(1, A, 0, 112)).unwrap();
    node.start(Instant::ZERO, job(2, A, 0, 112)).unwrap();
    node.start(Instant::ZERO, job(3, A, 0, 112)).unwrap();
    // Slots are per model: B runs alongside.
    node.start(Instant::ZERO, job(4, B, 0, 112)).unwrap();
    let firsts: Vec<(Instant, JobId)> = run(&mut node, Instant::MAX)
        .into_iter()
        .filter_map(|(t, e)| matches!(e, NodeEvent::FirstToken { .. }).then_some((t, e.job())))
        .collect();
    assert_eq!(firsts, vec![(secs(0.0), 1), (secs(0.0), 4), (secs(1.0), 2), (secs(2.0), 3)]);
}

#[test]
fn cancel_frees_the_slot_and_silences_the_job() {
    let mut spec = spec();
    spec.num_parallel = 1;
    let mut node = preloaded(spec, &[A]);
    node.start(Instant::ZERO, job(1, A, 0, 1000)).unwrap();
    node.start(Instant::ZERO, job(2, A, 0, 112)).unwrap();
    node.cancel(secs(0.5), 1);
    node.cancel(secs(0.5), 99);
    let log = run(&mut node, Instant::MAX);
    assert!(log.iter().all(|(_, e)| e.job() != 1 || *e == NodeEvent::FirstToken { job: 1 }), "{log:?}");
    assert_eq!(log.last(), Some(&(secs(1.5), done(2, 0, 112))));
}

#[test]
fn lru_idle_model_is_evicted_beyond_max_loaded_models() {
    let mut spec = spec();
    spec.max_loaded_models = 2;
    let mut node = preloaded(spec, &[A, B]);
    node.start(Instant::ZERO, job(1, A, 0, 1)).unwrap();
    run(&mut node, Instant::MAX);
    // A was used after B, so B is the least recently used.
    node.start(secs(1.0), job(2, C, 0, 1)).unwrap();
    assert_eq!(loaded(&node), vec![A, C]);
    assert_eq!((node.stats().evictions, node.stats().cold_loads), (1, 1));
    // Both are busy now: nothing can make room for B.
    node.start(secs(1.0), job(3, A, 0, 1000)).unwrap();
    assert_eq!(node.start(secs(1.0), job(4, B, 0, 1)), Err(StartError::OutOfMemory));
    assert_eq!(loaded(&node), vec![A, C]);
}

#[test]
fn memory_pressure_evicts_lru_first_and_never_busy_models() {
    let mut spec = spec();
    spec.gpu_vram_gb = vec![12.0];
    let mut node = preloaded(spec, &[A, B]);
    assert_eq!(loaded(&node), vec![A, B], "10.4 GB of 12");
    node.start(Instant::ZERO, job(1, A, 0, 10_000)).unwrap();
    node.start(Instant::ZERO, job(2, C, 0, 1)).unwrap();
    assert_eq!(loaded(&node), vec![A, C], "B was idle, A busy");
    // C is loading (not evictable) and A busy: 40 GB never fits anyway, 5 GB does not fit now.
    assert_eq!(node.start(Instant::ZERO, job(3, BIG, 0, 1)), Err(StartError::OutOfMemory));
    assert_eq!(node.start(Instant::ZERO, job(4, B, 0, 1)), Err(StartError::OutOfMemory));
    assert_eq!(node.start(Instant::ZERO, job(5, "nope", 0, 1)), Err(StartError::ModelNotFound));
    assert_eq!(loaded(&node), vec![A, C]);
    assert_eq!(node.stats().evictions, 1);
}

#[test]
fn crash_fails_every_job_and_refuses_until_restart() {
    let mut spec = spec();
    spec.num_parallel = 1;
    let mut node = preloaded(spec, &[A]);
    node.start(Instant::ZERO, job(1, A, 0, 1000)).unwrap();
    node.start(Instant::ZERO, job(2, A, 0, 1000)).unwrap();
    node.start(Instant::ZERO, job(3, B, 0, 1000)).unwrap();
    drain(&mut node);
    node.inject(secs(0.5), Fault::Crash);
    let reset = |job| NodeEvent::Failed { job, failure: NodeFailure::Reset };
    assert_eq!(drain(&mut node), vec![reset(1), reset(2), reset(3)]);
    assert!(!node.is_up());
    assert_eq!(node.poll_timeout(), None);
    assert_eq!(node.start(secs(2.0), job(4, A, 0, 1)), Err(StartError::NodeDown));
    let hb = node.heartbeat(secs(2.0));
    assert_eq!(hb.ollama.reachable, Some(false));
    assert!(hb.ollama.models_loaded.is_empty());
    node.inject(secs(3.0), Fault::Restart);
    assert!(node.is_up() && loaded(&node).is_empty());
    node.start(secs(3.0), job(5, A, 0, 1)).unwrap();
    assert_eq!(node.stats().cold_loads, 2, "B before the crash, A after the restart");
    assert_eq!(node.stats().jobs_failed, 3);
}

#[test]
fn hang_withholds_first_tokens_until_unhang() {
    let mut node = preloaded(spec(), &[A]);
    node.start(Instant::ZERO, job(1, A, 0, 112)).unwrap();
    node.handle_timeout(Instant::ZERO);
    assert_eq!(drain(&mut node), vec![NodeEvent::FirstToken { job: 1 }]);
    node.inject(Instant::ZERO, Fault::Hang);
    node.start(Instant::ZERO, job(2, A, 280, 112)).unwrap();
    let log = run(&mut node, secs(10.0));
    // Job 1 was already decoding and finishes; job 2 prefills but never shows a token.
    assert_eq!(log, vec![(secs(1.0), done(1, 0, 112))]);
    assert_eq!(node.poll_timeout(), None);
    node.inject(secs(10.0), Fault::Unhang);
    assert_eq!(drain(&mut node), vec![NodeEvent::FirstToken { job: 2 }]);
    assert_eq!(run(&mut node, Instant::MAX), vec![(secs(11.0), done(2, 280, 112))]);
}

#[test]
fn stalled_streams_go_silent_until_cancelled() {
    let mut spec = spec();
    spec.num_parallel = 1;
    let mut node = preloaded(spec, &[A]);
    node.start(Instant::ZERO, job(1, A, 0, 1000)).unwrap();
    node.start(Instant::ZERO, job(2, A, 0, 112)).unwrap();
    drain(&mut node);
    node.inject(secs(0.5), Fault::StallStreams);
    assert_eq!(node.poll_timeout(), None);
    assert!(run(&mut node, secs(100.0)).is_empty());
    node.cancel(secs(100.0), 1);
    let log = run(&mut node, Instant::MAX);
    assert_eq!(log.first(), Some(&(secs(100.0), NodeEvent::FirstToken { job: 2 })));
    assert_eq!(log.last(), Some(&(secs(101.0), done(2, 0, 112))));
}

#[test]
fn error_burst_fails_the_next_starts_with_500() {
    let mut node = preloaded(spec(), &[A]);
    node.inject(secs(1.0), Fault::ErrorBurst(2));
    for id in 1..=3 {
        node.start(secs(1.0), job(id, A, 0, 112)).unwrap();
    }
    assert_eq!(node.poll_timeout(), Some(secs(1.0)));
    node.handle_timeout(secs(1.0));
    let failed = |job| NodeEvent::Failed { job, failure: NodeFailure::Status(500) };
    assert_eq!(drain(&mut node), vec![failed(1), failed(2), NodeEvent::FirstToken { job: 3 }]);
    assert_eq!(run(&mut node, Instant::MAX), vec![(secs(2.0), done(3, 0, 112))]);
}

#[test]
fn slow_divides_every_rate_in_flight_phases_included() {
    let mut node = SimNode::new(spec(), Instant::ZERO);
    node.inject(Instant::ZERO, Fault::Slow(2.0));
    node.start(Instant::ZERO, job(1, A, 0, 112)).unwrap();
    assert_eq!(node.poll_timeout(), Some(secs(5.0)), "load at 1 GB/s");
    let log = run(&mut node, secs(5.0));
    assert_eq!(log, vec![(secs(5.0), NodeEvent::FirstToken { job: 1 })]);
    // Half way through a 2 s decode, healing halves the remaining second.
    node.inject(secs(6.0), Fault::Slow(1.0));
    assert_eq!(run(&mut node, Instant::MAX).last(), Some(&(secs(6.5), done(1, 0, 112))));
    node.inject(secs(7.0), Fault::Slow(f64::NAN));
    assert_eq!(node.slow, 1.0);
}

#[test]
fn heartbeat_reflects_loaded_models_and_vram() {
    let mut spec = spec();
    spec.gpu_vram_gb = vec![24.0, 24.0];
    let mut node = preloaded(spec, &[A]);
    node.start(Instant::ZERO, job(1, A, 0, 1000)).unwrap();
    let hb = node.heartbeat(secs(3.0));
    assert_eq!(hb.node_id, "gpu-box");
    assert_eq!(hb.timestamp, 3.0);
    assert_eq!((hb.memory.total_gb, hb.memory.available_gb), (64.0, 64.0), "models live in VRAM");
    assert_eq!(hb.memory_bandwidth_gbps, 800.0);
    assert_eq!(hb.gpus.len(), 2);
    assert_eq!(hb.gpus[1].vram_total_bytes, 24_000_000_000);
    assert_eq!(hb.gpus[1].vram_used_bytes, 2_600_000_000, "5.2 GB spread over two GPUs");
    assert_eq!(hb.gpus[1].vram_free_bytes, 21_400_000_000);
    let o = &hb.ollama;
    assert_eq!(o.models_loaded.len(), 1);
    let lm = &o.models_loaded[0];
    assert_eq!((lm.name.as_str(), lm.context_length, lm.requests_active), (A, 4096, 1));
    assert!((lm.size_gb - 5.2).abs() < 1e-9 && lm.size_vram_gb == Some(lm.size_gb));
    assert_eq!(o.models_available.len(), 5);
    assert_eq!(o.models_available_sizes[&m(BIG)], 40.0);
    assert_eq!((o.num_parallel, o.max_loaded_models, o.requests_active), (2, 3, 1));
    assert_eq!((o.version.as_str(), o.reachable), (OLLAMA_VERSION, Some(true)));

    // Unified memory: the model takes RAM.
    let mut mac = super::tests::spec();
    mac.gpu_vram_gb = vec![];
    mac.ram_gb = 6.0;
    let hb = preloaded(mac, &[A]).heartbeat(Instant::ZERO);
    assert!(hb.gpus.is_empty());
    assert!((hb.memory.used_gb - 5.2).abs() < 1e-9 && (hb.memory.available_gb - 0.8).abs() < 1e-9);
    assert_eq!(hb.memory.pressure, Pressure::Warn);
}

#[test]
fn preloads_that_do_not_fit_are_skipped_and_nonsense_specs_do_not_panic() {
    let mut s = spec();
    s.gpu_vram_gb = vec![f64::NAN, -3.0];
    s.bandwidth_gbps = 0.0;
    s.load_gbps = f64::INFINITY;
    s.num_parallel = 0;
    s.max_loaded_models = 0;
    s.context_length = 0;
    s.disk.push((m("weird"), f64::NAN));
    let mut node = preloaded(s, &[A, "missing"]);
    assert!(loaded(&node).is_empty());
    assert_eq!(node.start(Instant::ZERO, job(1, A, 1, 1)), Err(StartError::OutOfMemory));
    node.start(Instant::ZERO, job(2, "weird", u32::MAX, u32::MAX)).unwrap();
    node.inject(Instant::ZERO, Fault::Slow(1e300));
    run(&mut node, Instant::MAX);
    node.handle_timeout(Instant::MAX);
    assert!(node.poll_timeout().is_none_or(|t| t == Instant::MAX));
}

// --- property ----------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Start { model: u8, prompt: u16, output: u16, conversation: Option<u8>, embed: bool },
    Cancel(u8),
    Wait(u16),
    Step,
    Fault(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u16..4000, 0u16..600, proptest::option::of(0u8..4), proptest::bool::weighted(0.15))
            .prop_map(|(model, prompt, output, conversation, embed)| Op::Start { model, prompt, output, conversation, embed }),
        1 => any::<u8>().prop_map(Op::Cancel),
        3 => (0u16..5000).prop_map(Op::Wait),
        2 => Just(Op::Step),
        1 => (0u8..7, any::<u8>()).prop_map(|(k, n)| Op::Fault(k, n)),
    ]
}

fn machine() -> impl Strategy<Value = MachineSpec> {
    (any::<bool>(), 1u32..4, 1u32..4).prop_map(|(gpu, num_parallel, max_loaded_models)| MachineSpec {
        gpu_vram_gb: if gpu { vec![8.0, 8.0] } else { vec![] },
        ram_gb: 16.0,
        num_parallel,
        max_loaded_models,
        disk: vec![(m(A), 5.0), (m(B), 3.0), (m(C), 7.0), (m(BIG), 40.0), (m(EMBED), 0.5)],
        preloaded: vec![m(B), m(EMBED)],
        ..spec()
    })
}

fn fault(kind: u8, n: u8) -> Fault {
    match kind {
        0 => Fault::Crash,
        1 => Fault::Restart,
        2 => Fault::Hang,
        3 => Fault::Unhang,
        4 => Fault::StallStreams,
        5 => Fault::ErrorBurst(u32::from(n % 4)),
        _ => Fault::Slow([1.0, 2.0, 0.5, 4.0][usize::from(n % 4)]),
    }
}

/// What one run showed: the ordered event log with instants, and the per-job bookkeeping.
#[derive(Default)]
struct Record {
    log: Vec<(Instant, NodeEvent)>,
    accepted: Vec<JobId>,
    cancelled: Vec<JobId>,
    stalled: Vec<JobId>,
    first: Vec<JobId>,
    terminal: Vec<JobId>,
}

impl Record {
    fn observe(&mut self, node: &mut SimNode, now: Instant) -> Result<(), TestCaseError> {
        while let Some(e) = node.poll_event() {
            let id = e.job();
            prop_assert!(self.accepted.contains(&id), "event for a job never accepted: {e:?}");
            prop_assert!(!self.cancelled.contains(&id), "event after cancel: {e:?}");
            prop_assert!(!self.terminal.contains(&id), "event after the end: {e:?}");
            match e {
                NodeEvent::FirstToken { .. } => {
                    prop_assert!(!self.first.contains(&id), "second first token: {e:?}");
                    self.first.push(id);
                }
                NodeEvent::Progress { .. } => prop_assert!(self.first.contains(&id)),
                NodeEvent::Done { .. } => {
                    prop_assert!(self.first.contains(&id), "done before the first token");
                    self.terminal.push(id);
                }
                NodeEvent::Failed { .. } => self.terminal.push(id),
            }
            self.log.push((now, e));
        }
        let capacity = if node.spec.gpu_vram_gb.is_empty() { node.spec.ram_gb } else { 16.0 };
        let hb = node.heartbeat(now);
        let used: f64 = hb.ollama.models_loaded.iter().map(|l| l.size_gb).sum();
        prop_assert!(used <= capacity + 1e-6, "{used} GB resident of {capacity}");
        prop_assert!(hb.ollama.models_loaded.len() <= node.spec.max_loaded_models as usize);
        if let Some(t) = node.poll_timeout() {
            prop_assert!(t >= now, "timeout {t:?} before now {now:?}");
        }
        Ok(())
    }
}

fn play(spec: &MachineSpec, ops: &[Op]) -> Result<Record, TestCaseError> {
    let mut node = SimNode::new(spec.clone(), Instant::ZERO);
    let mut rec = Record::default();
    let mut now = Instant::ZERO;
    let mut next_id: JobId = 0;
    for op in ops {
        match *op {
            Op::Start { model, prompt, output, conversation, embed } => {
                next_id += 1;
                let name = [A, B, C, BIG, EMBED, "absent"][usize::from(model)];
                let prefix = conversation.map(|c| (u64::from(c), u32::from(prompt / 2)));
                let job = Job { prefix, embed, ..job(next_id, name, u32::from(prompt), u32::from(output)) };
                if node.start(now, job).is_ok() {
                    rec.accepted.push(next_id);
                }
            }
            Op::Cancel(k) if !rec.accepted.is_empty() => {
                let id = rec.accepted[usize::from(k) % rec.accepted.len()];
                node.cancel(now, id);
                rec.observe(&mut node, now)?;
                if !rec.terminal.contains(&id) && !rec.cancelled.contains(&id) {
                    rec.cancelled.push(id);
                }
            }
            Op::Cancel(_) => {}
            Op::Wait(ms) => {
                let until = now + std::time::Duration::from_millis(u64::from(ms));
                while let Some(t) = node.poll_timeout().filter(|&t| t <= until) {
                    node.handle_timeout(t);
                    now = t;
                    rec.observe(&mut node, now)?;
                }
                now = until;
            }
            Op::Step => {
                if let Some(t) = node.poll_timeout() {
                    now = t;
                    node.handle_timeout(t);
                }
            }
            Op::Fault(kind, n) => {
                let f = fault(kind, n);
                node.inject(now, f);
                rec.observe(&mut node, now)?;
                if f == Fault::StallStreams {
                    let running =
                        rec.first.iter().filter(|id| !rec.terminal.contains(id) && !rec.cancelled.contains(id));
                    let newly: Vec<JobId> = running.filter(|id| !rec.stalled.contains(id)).copied().collect();
                    rec.stalled.extend(newly);
                }
            }
        }
        rec.observe(&mut node, now)?;
    }
    // Let everything that can finish, finish: end the hang, and cancel stalled streams as a
    // client timeout would, so the jobs queued behind their slots get to run.
    node.inject(now, Fault::Unhang);
    rec.observe(&mut node, now)?;
    for id in rec.stalled.clone() {
        if !rec.terminal.contains(&id) && !rec.cancelled.contains(&id) {
            node.cancel(now, id);
            rec.observe(&mut node, now)?;
            rec.cancelled.push(id);
        }
    }
    for _ in 0..100_000 {
        let Some(t) = node.poll_timeout() else { break };
        now = t;
        node.handle_timeout(t);
        rec.observe(&mut node, now)?;
    }
    prop_assert_eq!(node.poll_timeout(), None);
    for id in &rec.accepted {
        let ends = rec
            .log
            .iter()
            .filter(|(_, e)| e.job() == *id && matches!(e, NodeEvent::Done { .. } | NodeEvent::Failed { .. }))
            .count();
        if rec.cancelled.contains(id) || rec.stalled.contains(id) {
            prop_assert!(ends <= 1, "job {id} ended {ends} times");
        } else {
            prop_assert_eq!(ends, 1, "job {} ended {} times", id, ends);
        }
    }
    let s = node.stats();
    prop_assert_eq!(
        s.jobs_done + s.jobs_failed,
        rec.log.iter().filter(|(_, e)| matches!(e, NodeEvent::Done { .. } | NodeEvent::Failed { .. })).count() as u64
    );
    Ok(rec)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_job_ends_once_and_runs_are_reproducible(spec in machine(), ops in proptest::collection::vec(op(), 1..120)) {
        let first = play(&spec, &ops)?;
        let second = play(&spec, &ops)?;
        prop_assert_eq!(first.log, second.log);
    }
}
