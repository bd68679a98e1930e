//! Test support shared by core's property tests, the simulation crate and the fuzz targets:
//! a compact operation language over the router, a harness that applies operations and checks
//! the router's invariants after every step, and decoders from raw bytes for fuzzing.
//! Fuzz targets are three-line shims over the `fuzz_*` functions here, so they never rot.

pub use crate::codec::fuzz::{fuzz_chunked, fuzz_http1, fuzz_http1_message, fuzz_ndjson, fuzz_sse};
pub use crate::translate::fuzz::fuzz_translate;

use crate::config::RouterConfig;
use crate::fleet::heartbeat::{Gpu, Heartbeat, LoadedModel, Memory, Ollama, Report};
use crate::fleet::NodeStatus;
use crate::ids::{AttemptId, ModelName, NodeId, RequestId};
use crate::policy::retry::UpstreamFailure;
use crate::request::{FallbackChoice, RequestKind, RequestSpec};
use crate::router::{CancelReason, Command, Event, Router, Usage};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The models the operation language can name.
pub const MODELS: [&str; 6] =
    ["llama3.1:8b", "qwen3:8b", "qwen2.5-coder:7b", "llava:13b", "nomic-embed-text:latest", "llama3.3:70b"];

/// Most nodes the operation language can name.
pub const NODES: u8 = 6;

/// One step applied to a router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Node `node` reports: bit i of `loaded` / `available` = model i; GPU node when `gpu`.
    Heartbeat {
        /// Node index.
        node: u8,
        /// Loaded models bitmask.
        loaded: u8,
        /// On-disk models bitmask.
        available: u8,
        /// `OLLAMA_NUM_PARALLEL` (0 = unreported).
        parallel: u8,
        /// Free memory, GB.
        free_gb: u8,
        /// Report a GPU with that much free VRAM instead of plain RAM.
        gpu: bool,
    },
    /// Node `node` drains.
    Drain {
        /// Node index.
        node: u8,
    },
    /// A client request.
    Request {
        /// Model index.
        model: u8,
        /// A client fallback model index.
        fallback: Option<u8>,
        /// Client identity.
        client: Option<u8>,
        /// Session key.
        session: Option<u8>,
        /// Carries images.
        images: bool,
        /// Strict mode.
        strict: bool,
        /// An embedding request.
        embed: bool,
        /// `num_ctx` asked for.
        num_ctx: Option<u16>,
    },
    /// The picked open attempt connected.
    Connected(u16),
    /// The picked open attempt sent its first byte.
    FirstByte(u16),
    /// The picked open attempt progressed.
    Progress(u16),
    /// The picked open attempt finished.
    Finished(u16),
    /// The picked open attempt failed (kind 0..6).
    Failed(u16, u8),
    /// The picked live request's client left.
    ClientGone(u16),
    /// The picked pending pull ended.
    PullResult(u16, bool),
    /// Time passes.
    Advance(u32),
    /// Jump to the router's next deadline.
    JumpToTimeout,
}

fn failure(kind: u8) -> UpstreamFailure {
    match kind % 6 {
        0 => UpstreamFailure::Connect,
        1 => UpstreamFailure::Reset,
        2 => UpstreamFailure::Timeout,
        3 => UpstreamFailure::Status { code: 500, saturated: false },
        4 => UpstreamFailure::Status { code: 503, saturated: true },
        _ => UpstreamFailure::Status { code: 400, saturated: false },
    }
}

/// A heartbeat for the operation language's node `i`.
pub fn heartbeat(i: u8, loaded: u8, available: u8, parallel: u8, free_gb: u8, gpu: bool) -> Heartbeat {
    let pick = |mask: u8| -> Vec<usize> { (0..MODELS.len()).filter(|b| mask & (1 << b) != 0).collect() };
    let models_loaded = pick(loaded)
        .into_iter()
        .map(|b| LoadedModel {
            context_length: 4096 << (b % 3),
            ..LoadedModel::named(ModelName::new(MODELS[b]), 5.0 + b as f64)
        })
        .collect();
    Heartbeat {
        node_id: format!("n{}", i % NODES),
        memory: Memory { total_gb: 64.0, available_gb: f64::from(free_gb), ..Memory::default() },
        memory_bandwidth_gbps: f64::from(i % NODES) * 150.0,
        gpus: if gpu {
            vec![Gpu {
                vram_total_bytes: 24_000_000_000,
                vram_free_bytes: u64::from(free_gb.min(24)) * 1_000_000_000,
                ..Gpu::default()
            }]
        } else {
            vec![]
        },
        ollama: Ollama {
            models_loaded,
            models_available: pick(available | loaded).into_iter().map(|b| ModelName::new(MODELS[b])).collect(),
            num_parallel: u32::from(parallel % 5),
            ..Ollama::default()
        },
        ..Heartbeat::default()
    }
}

/// Applies operations to a router and checks its invariants after every step.
#[derive(Debug)]
pub struct Harness {
    /// The router under test.
    pub router: Router,
    now: Instant,
    open: BTreeSet<AttemptId>,
    attempt_request: BTreeMap<AttemptId, RequestId>,
    admitted: BTreeSet<RequestId>,
    ended: BTreeMap<RequestId, u32>,
    committed: BTreeSet<RequestId>,
    breaker_open_until: BTreeMap<NodeId, Instant>,
    pulls: Vec<(NodeId, ModelName)>,
    hash: u64,
    steps: u64,
}

/// An invariant the router broke, with the step it broke at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Step number (1-based).
    pub step: u64,
    /// What broke.
    pub what: String,
}

impl Harness {
    /// A harness over a fresh router.
    ///
    /// # Panics
    /// When `config` is invalid (test inputs are expected to be valid).
    pub fn new(config: RouterConfig, seed: u64) -> Self {
        Harness {
            router: Router::new(config, seed, Instant::ZERO).expect("valid config"),
            now: Instant::ZERO,
            open: BTreeSet::new(),
            attempt_request: BTreeMap::new(),
            admitted: BTreeSet::new(),
            ended: BTreeMap::new(),
            committed: BTreeSet::new(),
            breaker_open_until: BTreeMap::new(),
            pulls: Vec::new(),
            hash: crate::rng::FNV_OFFSET,
            steps: 0,
        }
    }

    /// FNV-1a over every command and event so far: equal hashes mean equal traces.
    pub fn trace_hash(&self) -> u64 {
        self.hash
    }

    fn mix(&mut self, s: &str) {
        self.hash = crate::rng::fnv1a(self.hash, s.as_bytes());
    }

    fn pick<T: Copy>(set: impl Iterator<Item = T>, i: u16) -> Option<T> {
        let v: Vec<T> = set.collect();
        (!v.is_empty()).then(|| v[usize::from(i) % v.len()])
    }

    /// Applies one operation, drains the router and checks every invariant.
    ///
    /// # Errors
    /// The first [`Violation`] found.
    pub fn apply(&mut self, op: &Op) -> Result<(), Violation> {
        self.steps += 1;
        let now = self.now;
        let r = &mut self.router;
        match *op {
            Op::Heartbeat { node, loaded, available, parallel, free_gb, gpu } => {
                let hb = heartbeat(node, loaded, available, parallel, free_gb, gpu);
                let _ = r.handle_report(now, Report::Heartbeat(Box::new(hb)));
            }
            Op::Drain { node } => {
                let _ = r.handle_report(
                    now,
                    Report::Drain { node_id: format!("n{}", node % NODES), fleet_key: None, machine_id: None },
                );
            }
            Op::Request { model, fallback, client, session, images, strict, embed, num_ctx } => {
                let mut spec = RequestSpec::chat(MODELS[usize::from(model) % MODELS.len()]);
                spec.fallback_models =
                    fallback.map(|f| ModelName::new(MODELS[usize::from(f) % MODELS.len()])).into_iter().collect();
                spec.client = client.map(|c| format!("10.0.0.{}", c % 4));
                spec.session_key = session.map(|s| format!("session:{}", s % 4));
                spec.has_images = images;
                spec.fallback = if strict { FallbackChoice::Deny } else { FallbackChoice::Default };
                spec.kind = if embed { RequestKind::Embed } else { RequestKind::Chat };
                spec.num_ctx = num_ctx.map(u32::from);
                spec.estimated_prompt_tokens = u32::from(model) * 700;
                let id = r.handle_request(now, spec);
                self.admitted.insert(id);
            }
            Op::Connected(i) => {
                if let Some(a) = Self::pick(self.open.iter().copied(), i) {
                    r.handle_connected(now, a);
                }
            }
            Op::FirstByte(i) => {
                if let Some(a) = Self::pick(self.open.iter().copied(), i) {
                    r.handle_first_byte(now, a);
                }
            }
            Op::Progress(i) => {
                if let Some(a) = Self::pick(self.open.iter().copied(), i) {
                    r.handle_progress(now, a);
                }
            }
            Op::Finished(i) => {
                if let Some(a) = Self::pick(self.open.iter().copied(), i) {
                    r.handle_finished(now, a, Usage { prompt_tokens: 1, completion_tokens: 1 });
                    self.open.remove(&a);
                }
            }
            Op::Failed(i, kind) => {
                if let Some(a) = Self::pick(self.open.iter().copied(), i) {
                    r.handle_failed(now, a, failure(kind));
                    self.open.remove(&a);
                }
            }
            Op::ClientGone(i) => {
                if let Some(id) = Self::pick(r.live_requests(), i) {
                    r.handle_client_gone(now, id);
                }
            }
            Op::PullResult(i, ok) => {
                if let Some(k) = Self::pick(0..self.pulls.len(), i) {
                    let (node, model) = self.pulls.remove(k);
                    r.handle_pull_result(now, node, model, ok);
                }
            }
            Op::Advance(ms) => {
                self.now = self.now + Duration::from_millis(u64::from(ms));
                r.handle_timeout(self.now);
            }
            Op::JumpToTimeout => {
                if let Some(t) = r.poll_timeout() {
                    self.now = self.now.max(t);
                    r.handle_timeout(self.now);
                }
            }
        }
        self.drain()
    }

    fn drain(&mut self) -> Result<(), Violation> {
        let step = self.steps;
        let fail = |what: String| Err(Violation { step, what });
        let max_attempts = self.router.config().retry.max_attempts;
        let open_for = self.router.config().retry.breaker_open_for;
        // Commands and events come out of two queues, so their interleaving within one step is
        // unknown: commands are checked against what earlier steps established, except that a
        // breaker closed by a success in this step excuses dispatches to its node.
        let events: Vec<Event> = std::iter::from_fn(|| self.router.poll_event()).collect();
        let closed_now: BTreeSet<NodeId> = events
            .iter()
            .filter_map(|e| match e {
                Event::Breaker { node, open: false } => Some(*node),
                _ => None,
            })
            .collect();
        while let Some(c) = self.router.poll_command() {
            self.mix(&format!("{c:?}"));
            match c {
                Command::Dispatch(d) => {
                    if d.attempt_no > max_attempts {
                        return fail(format!("attempt {} > max {max_attempts}", d.attempt_no));
                    }
                    if self.committed.contains(&d.request) {
                        return fail(format!("retry of {} after commit", d.request));
                    }
                    match self.router.node_status(d.node) {
                        Some(NodeStatus::Online | NodeStatus::Degraded) => {}
                        s => return fail(format!("dispatch to node {} in status {s:?}", d.node)),
                    }
                    if self.breaker_open_until.get(&d.node).is_some_and(|&t| self.now < t)
                        && !closed_now.contains(&d.node)
                    {
                        return fail(format!("dispatch to node {} with an open breaker", d.node));
                    }
                    if self.ended.contains_key(&d.request) {
                        return fail(format!("dispatch for ended {}", d.request));
                    }
                    self.open.insert(d.attempt);
                    self.attempt_request.insert(d.attempt, d.request);
                }
                Command::Commit(c) => {
                    if !self.committed.insert(c.request) {
                        return fail(format!("{} committed twice", c.request));
                    }
                }
                // A first-byte-timeout cancel waits for the adapter's report (which may still be
                // its first byte); the other reasons end the attempt at once.
                Command::Cancel { attempt, reason, .. } => {
                    if reason != CancelReason::FirstByteTimeout {
                        self.open.remove(&attempt);
                    }
                }
                Command::Reject { request, .. } => {
                    if self.committed.contains(&request) {
                        return fail(format!("{request} rejected after commit"));
                    }
                }
                Command::Pull { node, model } => self.pulls.push((node, model)),
            }
        }
        for e in events {
            self.mix(&format!("{e:?}"));
            match e {
                Event::Ended(t) => {
                    let n = self.ended.entry(t.request).or_insert(0);
                    *n += 1;
                    if *n > 1 {
                        return fail(format!("{} ended twice", t.request));
                    }
                    if !self.admitted.contains(&t.request) {
                        return fail(format!("{} ended but was never admitted", t.request));
                    }
                }
                // A retried attempt is over (one the adapter never reported on after a cancel,
                // failed by core once its grace ran out, included).
                Event::Retried { attempt, .. } => {
                    self.open.remove(&attempt);
                }
                Event::Breaker { node, open: true } => {
                    self.breaker_open_until.insert(node, self.now + open_for);
                }
                Event::Breaker { node, open: false } => {
                    self.breaker_open_until.remove(&node);
                }
                _ => {}
            }
        }
        // Attempts end with their request; forget those the router no longer tracks.
        let ended = &self.ended;
        let attempt_request = &self.attempt_request;
        self.open.retain(|a| attempt_request.get(a).is_some_and(|r| !ended.contains_key(r)));
        let live_attempts = self.open.iter().filter(|a| self.router_has_attempt(**a)).count();
        let stats = self.router.stats();
        let in_flight = self.router.queues().total_in_flight() as usize;
        if in_flight != stats.in_flight || live_attempts != stats.in_flight {
            return fail(format!("in-flight {in_flight}, attempts {}, harness {live_attempts}", stats.in_flight));
        }
        if let Err(what) = self.router.check_consistency() {
            return fail(what);
        }
        let q = &self.router.config().queue;
        if let Some((n, m, _)) =
            self.router.queues().iter().find(|(_, _, qq)| qq.pending.len() > q.max_pending_per_queue)
        {
            return fail(format!("queue {n}/{m} over its bound"));
        }
        if stats.live > q.max_requests {
            return fail(format!("{} live requests > {}", stats.live, q.max_requests));
        }
        if self.router.poll_timeout().is_some_and(|t| t < self.router.now()) {
            return fail("poll_timeout in the past".into());
        }
        let live: BTreeSet<RequestId> = self.router.live_requests().collect();
        for id in &self.admitted {
            if live.contains(id) == self.ended.contains_key(id) {
                return fail(format!("{id} is live={} ended={}", live.contains(id), self.ended.contains_key(id)));
            }
        }
        Ok(())
    }

    fn router_has_attempt(&self, a: AttemptId) -> bool {
        self.attempt_request.get(&a).is_some_and(|r| self.router.live_requests().any(|x| x == *r))
    }

    /// Finishes every open attempt and lets time run until no request is live; then checks
    /// that every admitted request ended exactly once.
    ///
    /// # Errors
    /// A [`Violation`] if the router fails to settle or a request did not end once.
    pub fn settle(&mut self) -> Result<(), Violation> {
        for _ in 0..10_000 {
            if self.router.stats().live == 0 {
                break;
            }
            let open: Vec<AttemptId> = self.open.iter().copied().collect();
            if let Some(&a) = open.first() {
                self.router.handle_finished(self.now, a, Usage::default());
                self.open.remove(&a);
                self.drain()?;
                continue;
            }
            if let Some((node, model)) = self.pulls.pop() {
                self.router.handle_pull_result(self.now, node, model, false);
                self.drain()?;
                continue;
            }
            self.apply(&Op::JumpToTimeout)?;
        }
        for id in &self.admitted {
            if self.ended.get(id) != Some(&1) {
                return Err(Violation { step: self.steps, what: format!("{id} did not end exactly once") });
            }
        }
        Ok(())
    }

    /// Requests admitted so far.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
    }
}

/// Decodes operations from raw bytes (fuzzing); every byte string decodes to something.
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut it = data.chunks(4);
    for c in it.by_ref().take(512) {
        let b = |i: usize| c.get(i).copied().unwrap_or(0);
        let w = u16::from_le_bytes([b(1), b(2)]);
        ops.push(match b(0) % 14 {
            0 | 1 => Op::Heartbeat {
                node: b(1),
                loaded: b(2),
                available: b(3),
                parallel: b(1) >> 4,
                free_gb: b(3),
                gpu: b(2) & 0x80 != 0,
            },
            2 => Op::Drain { node: b(1) },
            3 | 4 => Op::Request {
                model: b(1),
                fallback: (b(2) & 1 != 0).then_some(b(2) >> 1),
                client: (b(3) & 1 != 0).then_some(b(3) >> 5),
                session: (b(3) & 2 != 0).then_some(b(3) >> 3),
                images: b(3) & 4 != 0,
                strict: b(3) & 8 != 0,
                embed: b(2) & 0x40 != 0,
                num_ctx: (b(2) & 0x20 != 0).then_some(2048 << (b(2) & 3)),
            },
            5 => Op::Connected(w),
            6 => Op::FirstByte(w),
            7 => Op::Progress(w),
            8 => Op::Finished(w),
            9 => Op::Failed(w, b(3)),
            10 => Op::ClientGone(w),
            11 => Op::PullResult(w, b(3) & 1 != 0),
            12 => Op::Advance(u32::from(w) * 10),
            _ => Op::JumpToTimeout,
        });
    }
    ops
}

/// Fuzz entry: any bytes as an operation sequence; panics on an invariant violation.
pub fn fuzz_router_ops(data: &[u8]) {
    let mut config = RouterConfig::default();
    config.policy.auto_pull = true;
    config.policy.pull_allow = vec!["llama3.3:*".into()];
    let mut h = Harness::new(config, data.first().copied().map_or(0, u64::from));
    for op in ops_from_bytes(data) {
        if let Err(v) = h.apply(&op) {
            panic!("invariant broken: {v:?}");
        }
    }
    if let Err(v) = h.settle() {
        panic!("invariant broken while settling: {v:?}");
    }
}

/// Fuzz entry: any bytes as an image request on both surfaces and as every backend's answer; must
/// never panic. A request that parses is within the limits, every backend's request for it is
/// JSON that carries its prompt, and an answer read as images holds PNGs only.
pub fn fuzz_image(data: &[u8]) {
    use crate::image::backend::{self, ImageBackendKind, Images};
    use crate::image::{parse, ImageLimits, ImageSurface};
    let limits = ImageLimits::default();
    for surface in [ImageSurface::Herd, ImageSurface::OpenAi] {
        match parse(surface, data, &limits) {
            Ok(job) => {
                assert!(job.width % 8 == 0 && job.pixels() <= limits.max_pixels && job.n >= 1 && job.n <= limits.max_n);
                for kind in ImageBackendKind::ALL {
                    if let Some(call) = backend::request(kind, &job) {
                        let v: serde_json::Value =
                            serde_json::from_slice(&call.body).expect("a backend request is JSON");
                        assert_eq!(v["prompt"].as_str(), Some(job.prompt.as_str()));
                    }
                }
                let template = serde_json::json!({"1": {"inputs": {"text": "{{prompt}}", "seed": "{{seed}}"}}});
                let body = backend::comfy_prompt(&template, &job, 1, backend::ComfyDefaults::default(), "fuzz");
                assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
            }
            Err(e) => assert!(e.status == 400 || e.status == 413, "image refusals are 400 or 413"),
        }
    }
    for kind in ImageBackendKind::ALL {
        match backend::parse_answer(kind, data) {
            Ok(Images::Png(png)) => assert!(crate::image::png::is_png(&png)),
            Ok(Images::Base64(b)) => assert!(!b.is_empty() && b.iter().all(|i| backend::base64_is_png(i))),
            Err(_) => {}
        }
    }
    for kind in ImageBackendKind::ALL {
        if let Ok(models) = backend::parse_models(kind, data) {
            assert!(models.len() <= backend::MAX_LISTED_MODELS && models.iter().all(|m| !m.is_empty()));
        }
    }
    let _ = backend::comfy_prompt_id(data);
    let _ = backend::comfy_history(data, "p");
    let _ = crate::image::png::dimensions(data);
}

/// Fuzz entry: any bytes as a heartbeat body; must never panic, and a router must take it.
pub fn fuzz_heartbeat(data: &[u8]) {
    let _ = crate::fleet::heartbeat::Heartbeat::parse(data);
    let mut r = Router::new(RouterConfig::default(), 0, Instant::ZERO).expect("default config is valid");
    let _ = r.handle_heartbeat(Instant::ZERO, data);
    let _ = r.explain(&ModelName::new(MODELS[0]));
}

/// Fuzz entry: any bytes as a request body on every surface; must never panic, and a body
/// that describes must round-trip through the wire types unchanged.
pub fn fuzz_request_body(data: &[u8]) {
    let ctx = crate::api::DescribeContext::default();
    for surface in crate::api::Surface::ALL {
        if let Ok(spec) = crate::api::describe(surface, data, &ctx) {
            assert!(!spec.model.as_str().is_empty(), "a described request names a model");
        }
    }
    // The router reads bodies through the index: it must agree with the whole parse.
    let patch = crate::api::patch::BodyPatch {
        model: Some(crate::ids::ModelName::new("fuzz:1b")),
        num_ctx: Some(crate::api::patch::NumCtxPatch::Set(4096)),
        num_predict: Some(64),
        max_tokens: Some(256),
        keep_alive: Some(serde_json::Value::from(-1)),
        force_stream: Some(true),
        strip_herd_fields: true,
    };
    if let Err(e) = crate::api::body::check_index_agrees(data, &patch) {
        panic!("body index disagrees: {e}");
    }
    let _ = crate::api::body::BodyIndex::new(data, &crate::api::body::BodyLimits::default());
}

#[cfg(any(test, feature = "testing"))]
pub mod strategies {
    //! proptest strategies for the operation language.
    use super::Op;
    use proptest::prelude::*;

    /// Any single operation, weighted toward the interesting ones.
    pub fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..super::NODES, any::<u8>(), any::<u8>(), 0u8..5, 0u8..80, any::<bool>()).prop_map(
                |(node, loaded, available, parallel, free_gb, gpu)| Op::Heartbeat { node, loaded, available, parallel, free_gb, gpu }
            ),
            1 => (0..super::NODES).prop_map(|node| Op::Drain { node }),
            6 => (0u8..6, proptest::option::of(0u8..6), proptest::option::of(0u8..4), proptest::option::of(0u8..4), proptest::bool::weighted(0.1), any::<bool>(), proptest::bool::weighted(0.15), proptest::option::of(prop_oneof![Just(2048u16), Just(8192), Just(32768)])).prop_map(
                |(model, fallback, client, session, images, strict, embed, num_ctx)| Op::Request { model, fallback, client, session, images, strict, embed, num_ctx }
            ),
            2 => any::<u16>().prop_map(Op::Connected),
            3 => any::<u16>().prop_map(Op::FirstByte),
            1 => any::<u16>().prop_map(Op::Progress),
            4 => any::<u16>().prop_map(Op::Finished),
            3 => (any::<u16>(), any::<u8>()).prop_map(|(i, k)| Op::Failed(i, k)),
            1 => any::<u16>().prop_map(Op::ClientGone),
            1 => (any::<u16>(), any::<bool>()).prop_map(|(i, ok)| Op::PullResult(i, ok)),
            3 => (0u32..20_000).prop_map(Op::Advance),
            1 => Just(Op::JumpToTimeout),
        ]
    }

    /// A sequence of operations that starts by registering a few nodes.
    pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(op(), 1..max)
    }
}
