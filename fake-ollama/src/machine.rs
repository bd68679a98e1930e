//! `SimNode`: a sans-IO, deterministic model of one machine running Ollama, for the virtual-time
//! simulation. It owns memory (which models are resident, LRU eviction), Ollama's per-model slots
//! and FIFO queue, per-model prefix caches, the load → prefill → decode timeline, and faults.
//!
//! Driving it looks like driving the router core: inputs carry `now`, outputs are drained.
//!
//! ```
//! use herd_core::ids::ModelName;
//! use herd_core::time::Instant;
//! use herd_fake_ollama::machine::{Job, MachineSpec, NodeEvent, SimNode};
//!
//! let spec = MachineSpec {
//!     name: "box".into(), ram_gb: 64.0, gpu_vram_gb: vec![24.0], bandwidth_gbps: 800.0,
//!     num_parallel: 2, max_loaded_models: 2, disk: vec![(ModelName::new("qwen3:8b"), 5.0)],
//!     preloaded: vec![], context_length: 4096, load_gbps: 2.0,
//!     ollama_version: herd_fake_ollama::machine::OLLAMA_VERSION.into(),
//! };
//! let mut node = SimNode::new(spec, Instant::ZERO);
//! let job = Job { id: 1, model: ModelName::new("qwen3:8b"), prompt_tokens: 100, output_tokens: 50,
//!                 prefix: None, embed: false };
//! node.start(Instant::ZERO, job).unwrap();
//! let mut done = false;
//! while let Some(t) = node.poll_timeout() {
//!     node.handle_timeout(t);
//!     while let Some(ev) = node.poll_event() {
//!         done |= matches!(ev, NodeEvent::Done { job: 1, .. });
//!     }
//! }
//! assert!(done);
//! ```
//!
//! # Formulas
//!
//! All sizes are decimal GB, as the heartbeat reports them. `slow` is the [`Fault::Slow`] factor
//! (1 when healthy); every rate below is divided by it.
//!
//! * Resident size: `weights + kv`, `kv = weights × 0.02 × (context_length / 4096) × num_parallel`
//!   (Ollama allocates one context window per parallel slot).
//! * Capacity: the sum of `gpu_vram_gb` on GPU machines, else `ram_gb` (unified memory or CPU).
//! * Load: `weights / load_gbps` seconds; a cold load evicts idle models, least recently used first.
//! * Decode, one sequence: `decode_tps = 0.7 × bandwidth_gbps / weights` tokens/s. With `k`
//!   sequences of that model decoding, a sequence that starts decoding gets
//!   `decode_tps / (1 + 0.25 × (k − 1))`, fixed for the rest of its life.
//! * Prefill: `(prompt_tokens − cached) / (25 × decode_tps)` seconds, where `cached` is the job's
//!   shared prefix when its conversation key is in the model's prefix cache.
//! * Keep-alive expiry is not modelled: a model stays resident until evicted, crashed or restarted.

use herd_core::ids::ModelName;
use herd_core::time::Instant;
use std::collections::VecDeque;
use std::fmt;

mod memory;
mod report;
#[cfg(test)]
mod tests;

use memory::after;

/// The Ollama version simulated nodes report unless told another ([`MachineSpec::ollama_version`]):
/// the newest stable release of the snapshot the fake's wire formats were written from
/// (wire-api.md §0).
pub const OLLAMA_VERSION: &str = "0.32.15";
/// Conversation keys remembered per loaded model.
pub const PREFIX_CACHE_ENTRIES: usize = 64;
/// Jobs one node holds at once (Ollama's `OLLAMA_MAX_QUEUE` default). A `start` beyond it is
/// accepted and fails at once with `Status(503)`, as Ollama answers "server busy".
pub const MAX_JOBS: usize = 512;

const KV_FRACTION_PER_4K: f64 = 0.02;
const DECODE_EFFICIENCY: f64 = 0.7;
const PREFILL_SPEEDUP: f64 = 25.0;
const CONCURRENCY_PENALTY: f64 = 0.25;
/// Ollama's defaults when a figure is unset (0).
const DEFAULT_CONTEXT: u32 = 4096;
const DEFAULT_MAX_LOADED: u32 = 3;
/// Fallbacks for nonsensical (non-positive or non-finite) spec rates, so no job waits forever.
const FALLBACK_BANDWIDTH_GBPS: f64 = 100.0;
const FALLBACK_LOAD_GBPS: f64 = 2.0;
/// Smallest weight size rates are computed with, so a 0 GB model does not decode infinitely fast.
const MIN_WEIGHTS_GB: f64 = 0.01;
const PROGRESS_EVERY_US: u64 = 1_000_000;
/// Timer steps one input may process; each step makes progress, this only bounds one call.
const STEP_LIMIT: usize = 1_000_000;
const GB: f64 = 1e9;
/// Rounding slack for memory comparisons, GB.
const EPS_GB: f64 = 1e-9;

/// One machine's hardware and Ollama configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineSpec {
    /// Node name; also the heartbeat's `node_id`.
    pub name: String,
    /// System RAM, GB.
    pub ram_gb: f64,
    /// VRAM per GPU, GB; empty = unified memory (Apple) or CPU only: models live in RAM.
    pub gpu_vram_gb: Vec<f64>,
    /// Memory bandwidth, GB/s: drives decode and prefill speed.
    pub bandwidth_gbps: f64,
    /// `OLLAMA_NUM_PARALLEL` (0 reads as 1).
    pub num_parallel: u32,
    /// `OLLAMA_MAX_LOADED_MODELS` (0 reads as 3).
    pub max_loaded_models: u32,
    /// Models on disk with their weight size, GB.
    pub disk: Vec<(ModelName, f64)>,
    /// Models resident at start (those that fit, in order, without counting as cold loads).
    pub preloaded: Vec<ModelName>,
    /// Context window models load with (0 reads as 4096).
    pub context_length: u32,
    /// Disk → memory load rate, GB/s.
    pub load_gbps: f64,
    /// The Ollama version it runs, as `/api/version` and heartbeats report it. Before 0.14.0 it
    /// has no `/v1/messages` (answered `404 page not found`, as such an Ollama answers).
    pub ollama_version: String,
}

/// A job's id, chosen by the caller; unique among the node's live jobs.
pub type JobId = u64;

/// One request as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Caller's id, echoed in events.
    pub id: JobId,
    /// Model to run.
    pub model: ModelName,
    /// Prompt length.
    pub prompt_tokens: u32,
    /// Tokens to generate (ignored for embeddings).
    pub output_tokens: u32,
    /// `(conversation key, tokens shared with an earlier request of it)`.
    pub prefix: Option<(u64, u32)>,
    /// An embedding: no decode.
    pub embed: bool,
}

/// Why `start` refused a job outright.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// Ollama is down: connection refused.
    NodeDown,
    /// The model is not on this node's disk (Ollama's 404).
    ModelNotFound,
    /// The model does not fit, even after evicting every idle model.
    OutOfMemory,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartError::NodeDown => "connection refused",
            StartError::ModelNotFound => "model not found",
            StartError::OutOfMemory => "model requires more memory than is available",
        })
    }
}

impl std::error::Error for StartError {}

/// What a running job shows its client.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeEvent {
    /// The first token (for an embedding: the vector is ready).
    FirstToken {
        /// The job.
        job: JobId,
    },
    /// More tokens; at least once per virtual second while decoding.
    Progress {
        /// The job.
        job: JobId,
    },
    /// Finished; terminal.
    Done {
        /// The job.
        job: JobId,
        /// Prompt tokens evaluated (cached ones included).
        prompt_tokens: u32,
        /// Tokens generated (0 for embeddings).
        completion_tokens: u32,
    },
    /// Failed; terminal.
    Failed {
        /// The job.
        job: JobId,
        /// How.
        failure: NodeFailure,
    },
}

impl NodeEvent {
    /// The job the event is about.
    pub fn job(&self) -> JobId {
        match *self {
            NodeEvent::FirstToken { job }
            | NodeEvent::Progress { job }
            | NodeEvent::Done { job, .. }
            | NodeEvent::Failed { job, .. } => job,
        }
    }
}

/// How a job failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeFailure {
    /// The connection was reset (crash).
    Reset,
    /// An HTTP error status.
    Status(u16),
}

/// A fault injected into the node.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Fault {
    /// Ollama dies: every job fails with `Reset`, models unload, `start` refuses until `Restart`.
    Crash,
    /// Ollama (re)starts empty: no model loaded, hang and error burst cleared. Fails every job
    /// with `Reset` first if it was up.
    Restart,
    /// Jobs accepted before or during the hang never reach their first token until `Unhang`
    /// (they load and prefill, then wait holding their slot). Jobs already decoding go on.
    Hang,
    /// Ends a hang: held jobs emit their first token now and start decoding.
    Unhang,
    /// Jobs decoding now stop emitting anything until cancelled (or a crash resets them).
    StallStreams,
    /// The next n `start` calls are accepted and fail at once with `Status(500)` (adds up).
    ErrorBurst(u32),
    /// Every rate is divided by this factor (1 = healthy), in-flight phases included. It survives
    /// restarts: it models the machine, not Ollama. Non-positive or non-finite factors read as 1.
    Slow(f64),
}

/// Counters for assertions and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Models loaded from disk (preloads excluded).
    pub cold_loads: u64,
    /// Models unloaded to make room.
    pub evictions: u64,
    /// Jobs that ended with `Done`.
    pub jobs_done: u64,
    /// Jobs that ended with `Failed`.
    pub jobs_failed: u64,
    /// Jobs whose shared prefix was found cached.
    pub prefix_hits: u64,
}

/// A model in memory.
#[derive(Clone, Debug)]
struct Resident {
    name: ModelName,
    weights_gb: f64,
    size_gb: f64,
    /// `Some(ready_at)` while loading from disk.
    loading_until: Option<Instant>,
    /// LRU stamp: larger = used more recently.
    last_used: u64,
    /// Conversation keys whose prefix is cached, least recent first.
    prefixes: VecDeque<u64>,
}

/// A job's state. Transitions:
///
/// ```text
///            slot free and model loaded       prefill done, not hung
/// Waiting ──────────────────────────► Prefill ─────────────────────► Decode ──► (Done)
///                                        │ prefill done, hung         ▲   │ StallStreams
///                                        └────────► Held ─────────────┘   ▼
///                                                           Unhang      Stalled (until cancel)
/// Failing ──► (Failed Status) at the next timer; any state ──Crash──► (Failed Reset)
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    Prefill { until: Instant },
    Held,
    Decode { next: Instant, end: Instant },
    Stalled,
    Failing { at: Instant, status: u16 },
}

impl Phase {
    /// Whether the job occupies one of its model's `num_parallel` slots.
    fn holds_slot(self) -> bool {
        matches!(self, Phase::Prefill { .. } | Phase::Held | Phase::Decode { .. } | Phase::Stalled)
    }
    fn decoding(self) -> bool {
        matches!(self, Phase::Decode { .. } | Phase::Stalled)
    }
    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Prefill { until } => Some(until),
            Phase::Decode { next, end } => Some(next.min(end)),
            Phase::Failing { at, .. } => Some(at),
            Phase::Waiting | Phase::Held | Phase::Stalled => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Active {
    job: Job,
    phase: Phase,
}

/// The next timer to fire.
#[derive(Copy, Clone, Debug)]
enum Due {
    Load(usize),
    Job(usize),
}

/// One simulated Ollama machine. See the module docs for the model and its formulas.
#[derive(Clone, Debug)]
pub struct SimNode {
    spec: MachineSpec,
    up: bool,
    hung: bool,
    error_burst: u32,
    slow: f64,
    /// Latest `now` seen.
    now: Instant,
    /// LRU clock.
    tick: u64,
    residents: Vec<Resident>,
    /// Jobs in admission order, which is also Ollama's FIFO order.
    jobs: Vec<Active>,
    events: VecDeque<NodeEvent>,
    stats: NodeStats,
}

impl SimNode {
    /// A node that is up at `now`, with the spec's preloaded models resident (those on disk that
    /// fit, in order).
    pub fn new(spec: MachineSpec, now: Instant) -> Self {
        let mut node = SimNode {
            spec,
            up: true,
            hung: false,
            error_burst: 0,
            slow: 1.0,
            now,
            tick: 0,
            residents: Vec::new(),
            jobs: Vec::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
        };
        for name in node.spec.preloaded.clone() {
            let Some(weights_gb) = node.disk_size(&name) else { continue };
            let size_gb = node.resident_gb(weights_gb);
            let fits = node.used_gb() + size_gb <= node.capacity_gb() + EPS_GB;
            if node.resident(&name).is_none() && fits && node.residents.len() < node.max_loaded() {
                node.tick += 1;
                node.residents.push(Resident {
                    name,
                    weights_gb,
                    size_gb,
                    loading_until: None,
                    last_used: node.tick,
                    prefixes: VecDeque::new(),
                });
            }
        }
        node
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &MachineSpec {
        &self.spec
    }

    /// Whether Ollama is up (false between `Crash` and `Restart`).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Jobs the machine holds now (running, queued, held or stalled).
    pub fn job_ids(&self) -> impl Iterator<Item = JobId> + '_ {
        self.jobs.iter().map(|a| a.job.id)
    }

    /// Counters since creation.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Accepts a job at `now`: loads its model if needed (evicting idle models, least recently
    /// used first), queues it behind busy slots, and schedules its timeline. During an
    /// [`Fault::ErrorBurst`], or when [`MAX_JOBS`] are held, the job is accepted and its `Failed`
    /// comes from the next [`handle_timeout`](Self::handle_timeout) at this instant (or from the
    /// next input: every input first fires the timers due by its `now`).
    ///
    /// # Errors
    /// [`StartError::NodeDown`] while crashed, [`StartError::ModelNotFound`] when the model is not
    /// on disk, [`StartError::OutOfMemory`] when it cannot be made to fit.
    pub fn start(&mut self, now: Instant, job: Job) -> Result<(), StartError> {
        self.advance(now);
        if !self.up {
            return Err(StartError::NodeDown);
        }
        if self.error_burst > 0 {
            self.error_burst -= 1;
            self.jobs.push(Active { job, phase: Phase::Failing { at: self.now, status: 500 } });
            return Ok(());
        }
        let weights_gb = self.disk_size(&job.model).ok_or(StartError::ModelNotFound)?;
        if self.jobs.len() >= MAX_JOBS {
            self.jobs.push(Active { job, phase: Phase::Failing { at: self.now, status: 503 } });
            return Ok(());
        }
        if self.resident(&job.model).is_none() {
            self.load(&job.model, weights_gb)?;
        }
        let model = job.model.clone();
        self.touch(&model);
        self.jobs.push(Active { job, phase: Phase::Waiting });
        self.dispatch(&model, self.now);
        Ok(())
    }

    /// Forgets job `id` at `now`: its slot goes to the next queued job and it emits nothing more.
    /// Unknown ids are ignored.
    pub fn cancel(&mut self, now: Instant, id: JobId) {
        self.advance(now);
        let mut freed: Vec<ModelName> = Vec::new();
        self.jobs.retain(|a| {
            let keep = a.job.id != id;
            if !keep && a.phase.holds_slot() && !freed.contains(&a.job.model) {
                freed.push(a.job.model.clone());
            }
            keep
        });
        for model in freed {
            self.dispatch(&model, self.now);
        }
    }

    /// Fires every timer due at or before `now`, each at its own instant, queueing the events.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work: never before the last `now`
    /// seen; `None` when nothing is scheduled (idle, or every job hung or stalled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_due().map(|(t, _)| t.max(self.now))
    }

    /// Applies `fault` at `now` (after firing timers due by then). See [`Fault`] for each one.
    pub fn inject(&mut self, now: Instant, fault: Fault) {
        self.advance(now);
        match fault {
            Fault::Crash => self.crash(),
            Fault::Restart => {
                self.crash();
                self.up = true;
            }
            Fault::Hang if self.up => self.hung = true,
            Fault::Unhang if self.up => self.unhang(),
            Fault::StallStreams => {
                for a in &mut self.jobs {
                    if matches!(a.phase, Phase::Decode { .. }) {
                        a.phase = Phase::Stalled;
                    }
                }
            }
            Fault::ErrorBurst(n) if self.up => self.error_burst = self.error_burst.saturating_add(n),
            Fault::Slow(factor) => {
                let factor = if factor.is_finite() && factor > 0.0 { factor } else { 1.0 };
                self.rescale(factor / self.slow);
                self.slow = factor;
            }
            Fault::Hang | Fault::Unhang | Fault::ErrorBurst(_) => {}
        }
    }

    // --- timers -------------------------------------------------------------------------------

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
        for _ in 0..STEP_LIMIT {
            match self.next_due() {
                Some((t, due)) if t <= self.now => self.fire(t, due),
                _ => return,
            }
        }
    }

    /// The earliest timer; ties go to loads, then jobs in admission order.
    fn next_due(&self) -> Option<(Instant, Due)> {
        let loads = self.residents.iter().enumerate().filter_map(|(i, r)| r.loading_until.map(|t| (t, Due::Load(i))));
        let jobs = self.jobs.iter().enumerate().filter_map(|(i, a)| a.phase.deadline().map(|t| (t, Due::Job(i))));
        loads.chain(jobs).fold(None, |best, (t, due)| match best {
            Some((b, _)) if b <= t => best,
            _ => Some((t, due)),
        })
    }

    fn fire(&mut self, t: Instant, due: Due) {
        match due {
            Due::Load(i) => {
                self.residents[i].loading_until = None;
                let model = self.residents[i].name.clone();
                self.dispatch(&model, t);
            }
            Due::Job(i) => match self.jobs[i].phase {
                Phase::Failing { status, .. } => {
                    let a = self.jobs.remove(i);
                    self.stats.jobs_failed += 1;
                    self.events.push_back(NodeEvent::Failed { job: a.job.id, failure: NodeFailure::Status(status) });
                }
                Phase::Prefill { .. } => self.finish_prefill(i, t),
                Phase::Decode { end, .. } if end <= t => self.finish(i, t),
                Phase::Decode { end, .. } => {
                    self.events.push_back(NodeEvent::Progress { job: self.jobs[i].job.id });
                    // A driver that jumped far gets one Progress per jump, not one per second.
                    let mut next = t + std::time::Duration::from_micros(PROGRESS_EVERY_US);
                    if next <= self.now {
                        next = self.now + std::time::Duration::from_micros(PROGRESS_EVERY_US);
                    }
                    self.jobs[i].phase = Phase::Decode { next: next.min(end), end };
                }
                Phase::Waiting | Phase::Held | Phase::Stalled => {}
            },
        }
    }

    /// Starts prefilling queued jobs of `model` while it is loaded and has free slots (FIFO).
    fn dispatch(&mut self, model: &ModelName, t: Instant) {
        let Some(r) = self.resident(model) else { return };
        if self.residents[r].loading_until.is_some() {
            return;
        }
        let busy = self.jobs.iter().filter(|a| &a.job.model == model && a.phase.holds_slot()).count();
        let mut free = self.num_parallel().saturating_sub(busy);
        let prefill_tps = PREFILL_SPEEDUP * self.decode_tps(self.residents[r].weights_gb);
        for i in 0..self.jobs.len() {
            if free == 0 {
                break;
            }
            if &self.jobs[i].job.model != model || self.jobs[i].phase != Phase::Waiting {
                continue;
            }
            free -= 1;
            let job = &self.jobs[i].job;
            let mut cached = 0;
            if let Some((key, shared)) = job.prefix {
                let prefixes = &mut self.residents[r].prefixes;
                if let Some(p) = prefixes.iter().position(|&k| k == key) {
                    prefixes.remove(p);
                    prefixes.push_back(key);
                    cached = shared.min(job.prompt_tokens);
                    self.stats.prefix_hits += 1;
                }
            }
            let secs = f64::from(job.prompt_tokens - cached) / prefill_tps;
            self.jobs[i].phase = Phase::Prefill { until: after(t, secs) };
        }
    }

    /// Prefill finished: the conversation is now cached; the first token comes unless hung.
    fn finish_prefill(&mut self, i: usize, t: Instant) {
        if let (Some((key, _)), Some(r)) = (self.jobs[i].job.prefix, self.resident(&self.jobs[i].job.model)) {
            let prefixes = &mut self.residents[r].prefixes;
            if !prefixes.contains(&key) {
                if prefixes.len() >= PREFIX_CACHE_ENTRIES {
                    prefixes.pop_front();
                }
                prefixes.push_back(key);
            }
        }
        if self.hung {
            self.jobs[i].phase = Phase::Held;
        } else {
            self.begin_decode(i, t);
        }
    }

    /// Emits the first token and fixes the job's decode rate from the concurrency now.
    fn begin_decode(&mut self, i: usize, t: Instant) {
        let job = &self.jobs[i].job;
        self.events.push_back(NodeEvent::FirstToken { job: job.id });
        if job.embed {
            self.finish(i, t);
            return;
        }
        let model = &job.model;
        let k = 1 + self.jobs.iter().filter(|a| &a.job.model == model && a.phase.decoding()).count();
        let weights = self.resident(model).map_or(MIN_WEIGHTS_GB, |r| self.residents[r].weights_gb);
        let tps = self.decode_tps(weights) / (1.0 + CONCURRENCY_PENALTY * (k - 1) as f64);
        let end = after(t, f64::from(job.output_tokens) / tps);
        let next = (t + std::time::Duration::from_micros(PROGRESS_EVERY_US)).min(end);
        self.jobs[i].phase = Phase::Decode { next, end };
    }

    fn finish(&mut self, i: usize, t: Instant) {
        let a = self.jobs.remove(i);
        self.stats.jobs_done += 1;
        let completion_tokens = if a.job.embed { 0 } else { a.job.output_tokens };
        self.events.push_back(NodeEvent::Done { job: a.job.id, prompt_tokens: a.job.prompt_tokens, completion_tokens });
        self.touch(&a.job.model);
        self.dispatch(&a.job.model, t);
    }

    // --- faults -------------------------------------------------------------------------------

    fn crash(&mut self) {
        if !self.up {
            return;
        }
        for a in self.jobs.drain(..) {
            self.stats.jobs_failed += 1;
            self.events.push_back(NodeEvent::Failed { job: a.job.id, failure: NodeFailure::Reset });
        }
        self.residents.clear();
        self.up = false;
        self.hung = false;
        self.error_burst = 0;
    }

    fn unhang(&mut self) {
        self.hung = false;
        while let Some(i) = self.jobs.iter().position(|a| a.phase == Phase::Held) {
            self.begin_decode(i, self.now);
        }
    }

    /// Stretches every pending phase's remaining time by `ratio` (new slowness / old).
    fn rescale(&mut self, ratio: f64) {
        let now = self.now;
        let stretch = |d: Instant| after(now, d.saturating_since(now).as_secs_f64() * ratio);
        for r in &mut self.residents {
            r.loading_until = r.loading_until.map(stretch);
        }
        for a in &mut self.jobs {
            a.phase = match a.phase {
                Phase::Prefill { until } => Phase::Prefill { until: stretch(until) },
                Phase::Decode { next, end } => {
                    let end = stretch(end);
                    Phase::Decode { next: next.min(end), end }
                }
                other => other,
            };
        }
    }
}
