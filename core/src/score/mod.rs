//! Scoring: which node should serve a model. Eliminations first, each with a reason; then every
//! signal (one function each, private to this module) added up; then a ranking whose ties break from the seed (herd) or by
//! registration order (classic, as ollama-herd). Every decision keeps its breakdown for
//! `/fleet/explain` and the `X-Herd-Score` header.

mod eta;
mod signals;

use crate::config::{ScoreConfig, ScorePolicy};
use crate::fleet::heartbeat::Pressure;
use crate::fleet::{ModelEntry, Node, NodeStatus, Temperature};
use crate::ids::{ModelName, NodeId};
use crate::rng::mix;
use crate::time::Instant;
use std::cmp::Ordering;
use std::time::Duration;

/// Why a node cannot serve a model at all.
#[derive(Clone, Debug, PartialEq)]
pub enum Elimination {
    /// Silent too long.
    Offline,
    /// Shutting down.
    Draining,
    /// The agent reports its Ollama unreachable.
    OllamaDown,
    /// The node's circuit breaker is open after recent failures.
    BreakerOpen,
    /// Memory pressure is critical and the model is not loaded.
    MemoryCritical,
    /// The capacity learner paused the node.
    CapacityPaused,
    /// The model is neither loaded nor on disk here.
    ModelAbsent,
    /// Loading the model needs more memory than is free.
    DoesNotFit {
        /// Memory the model needs, GB.
        need_gb: f64,
        /// Memory free, GB (VRAM on GPU nodes).
        free_gb: f64,
    },
}

impl Elimination {
    /// Short machine-readable reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Elimination::Offline => "offline",
            Elimination::Draining => "draining",
            Elimination::OllamaDown => "ollama_down",
            Elimination::BreakerOpen => "breaker_open",
            Elimination::MemoryCritical => "memory_critical",
            Elimination::CapacityPaused => "capacity_paused",
            Elimination::ModelAbsent => "model_absent",
            Elimination::DoesNotFit { .. } => "does_not_fit",
        }
    }
}

/// The signals, in breakdown order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// Hot / warm / cold.
    ModelTemperature,
    /// Memory headroom.
    MemoryFit,
    /// Queue penalty.
    QueueDepth,
    /// Expected wait penalty.
    WaitTime,
    /// Model size vs machine.
    RoleAffinity,
    /// Capacity learner.
    Availability,
    /// Prompt vs loaded window.
    ContextFit,
    /// Session pin.
    SessionAffinity,
    /// Prefix pin.
    PrefixAffinity,
    /// herd policy: a load on a node whose hot-model cap is full evicts a resident model.
    Eviction,
}

impl Signal {
    /// All signals in order.
    pub const ALL: [Signal; 10] = [
        Signal::ModelTemperature,
        Signal::MemoryFit,
        Signal::QueueDepth,
        Signal::WaitTime,
        Signal::RoleAffinity,
        Signal::Availability,
        Signal::ContextFit,
        Signal::SessionAffinity,
        Signal::PrefixAffinity,
        Signal::Eviction,
    ];

    /// Breakdown key (ollama-herd's names where it has one).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::ModelTemperature => "thermal",
            Signal::MemoryFit => "memory_fit",
            Signal::QueueDepth => "queue_depth",
            Signal::WaitTime => "wait_time",
            Signal::RoleAffinity => "role_affinity",
            Signal::Availability => "availability_trend",
            Signal::ContextFit => "context_fit",
            Signal::SessionAffinity => "session_affinity",
            Signal::PrefixAffinity => "prefix_affinity",
            Signal::Eviction => "eviction",
        }
    }
}

/// Points per signal for one candidate.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Breakdown(pub [f64; 10]);

impl Breakdown {
    /// Points for one signal.
    pub fn get(&self, s: Signal) -> f64 {
        self.0[s as usize]
    }
    /// The sum.
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }
    /// `(name, points)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (Signal, f64)> + '_ {
        Signal::ALL.iter().map(|&s| (s, self.get(s)))
    }
}

/// Load and history facts about one node for one model, gathered by the router.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Pending + in-flight requests in this node+model queue.
    pub depth: u32,
    /// Parallel slots of this node+model queue.
    pub slots: u32,
    /// Observed p75 end-to-end latency, ms.
    pub p75_ms: Option<f64>,
    /// The breaker forbids new attempts.
    pub breaker_open: bool,
    /// This request's session is pinned here.
    pub session_pinned: bool,
    /// This request's prefix is pinned here.
    pub prefix_pinned: bool,
}

/// What is being scored.
#[derive(Copy, Clone, Debug)]
pub struct Want<'a> {
    /// The model.
    pub model: &'a ModelName,
    /// Estimated prompt tokens (0 = unknown).
    pub estimated_tokens: u32,
    /// Warm window for the temperature signal.
    pub warm_window: Duration,
    /// Output tokens expected (herd policy's service time).
    pub expected_output_tokens: u32,
}

/// A node that can serve, with its score.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// Its points per signal.
    pub breakdown: Breakdown,
    /// The sum.
    pub total: f64,
    /// Temperature of the model there.
    pub temperature: Temperature,
    /// Queue depth used.
    pub depth: u32,
    tie: u64,
}

/// A full decision for one model: ranked candidates, best first, and the eliminated nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Candidates, best first.
    pub ranked: Vec<Candidate>,
    /// Nodes that cannot serve, with why, in node order.
    pub eliminated: Vec<(NodeId, Elimination)>,
}

impl Decision {
    /// The winner.
    pub fn best(&self) -> Option<&Candidate> {
        self.ranked.first()
    }
}

/// Stage 1: the first reason this node cannot serve `model`, if any (reference §2.1 order).
pub fn eliminate(node: &Node, model: &ModelName, breaker_open: bool) -> Option<Elimination> {
    eliminate_entry(node, node.entry(model), breaker_open)
}

/// [`eliminate`] with the model's entry already looked up (the hot path does one lookup).
pub fn eliminate_entry(node: &Node, entry: Option<&ModelEntry>, breaker_open: bool) -> Option<Elimination> {
    match node.status() {
        NodeStatus::Offline => return Some(Elimination::Offline),
        NodeStatus::Draining => return Some(Elimination::Draining),
        NodeStatus::Online | NodeStatus::Degraded => {}
    }
    if node.report().ollama.reachable == Some(false) {
        return Some(Elimination::OllamaDown);
    }
    if breaker_open {
        return Some(Elimination::BreakerOpen);
    }
    let loaded = entry.is_some_and(ModelEntry::is_loaded);
    if node.pressure() == Pressure::Critical && !loaded {
        return Some(Elimination::MemoryCritical);
    }
    if node.capacity_paused() {
        return Some(Elimination::CapacityPaused);
    }
    let Some(entry) = entry else {
        return Some(Elimination::ModelAbsent);
    };
    if !loaded && node.memory_known() {
        let need_gb = entry.fit_cost_gb;
        let free_gb = node.free_memory_gb();
        if free_gb < need_gb {
            return Some(Elimination::DoesNotFit { need_gb, free_gb });
        }
    }
    None
}

/// Stage 2: every signal for a node that passed stage 1. Session and prefix bonuses are
/// filled in by [`rank`], which knows the other candidates' queues.
pub fn breakdown(c: &ScoreConfig, node: &Node, want: &Want<'_>, f: &Facts, median_bw: f64, now: Instant) -> Breakdown {
    match node.entry(want.model) {
        Some(e) => breakdown_entry(c, node, e, want, f, median_bw, now),
        None => Breakdown::default(),
    }
}

/// [`breakdown`] with the model's entry already looked up.
pub fn breakdown_entry(
    c: &ScoreConfig,
    node: &Node,
    e: &ModelEntry,
    want: &Want<'_>,
    f: &Facts,
    median_bw: f64,
    now: Instant,
) -> Breakdown {
    use signals::*;
    let bw = node.bandwidth_gbps();
    let eff = effective_depth(f.depth, f.slots, c.policy);
    let mut b = [0.0; 10];
    match c.policy {
        ScorePolicy::RoundRobin => return Breakdown(b),
        ScorePolicy::LeastLoaded => {
            b[Signal::QueueDepth as usize] = -eff;
            return Breakdown(b);
        }
        ScorePolicy::Herd | ScorePolicy::Classic => {}
    }
    let temperature = e.temperature(now, want.warm_window);
    if c.policy == ScorePolicy::Herd {
        herd_signals(c, node, e, temperature, want, f, &mut b);
        return Breakdown(b);
    }
    b[Signal::ModelTemperature as usize] = model_temperature(temperature, c);
    b[Signal::MemoryFit as usize] = memory_fit(e.is_loaded(), node.free_memory_gb(), e.fit_cost_gb, c);
    b[Signal::QueueDepth as usize] = queue_depth(eff, bw, median_bw, c);
    if eff > 0.0 {
        let p75 = f.p75_ms.unwrap_or_else(|| cold_start_p75_ms(e.size_gb, bw));
        b[Signal::WaitTime as usize] = wait_time(eff, p75, c);
    }
    b[Signal::RoleAffinity as usize] = role_affinity(e.size_gb, bw, node.ram_total_gb(), c);
    b[Signal::Availability as usize] = availability(node.availability(), c);
    b[Signal::ContextFit as usize] = context_fit(want.estimated_tokens, e.resident_ctx, c);
    if f.session_pinned {
        b[Signal::SessionAffinity as usize] = affinity(c.session_bonus, f.depth);
    } else if f.prefix_pinned {
        b[Signal::PrefixAffinity as usize] = affinity(c.prefix_bonus, f.depth);
    }
    Breakdown(b)
}

/// The herd policy: expected time in seconds, as points (see [`eta`]). Temperature is the load
/// time, queue depth the wait for a slot, wait time the request's own service on this node
/// (so faster machines win when queues are equal); memory headroom, availability and context fit
/// stay as small corrections, and a pin is worth the prefill it saves. A load on a node already
/// holding its hot-model cap (`OLLAMA_MAX_LOADED_MODELS`) makes Ollama unload a resident model,
/// which the fleet pays for again when that model is next asked for: at least the load of the
/// smallest one, so a node that can load without evicting wins when all else is equal.
fn herd_signals(
    c: &ScoreConfig,
    node: &Node,
    e: &ModelEntry,
    temperature: Temperature,
    want: &Want<'_>,
    f: &Facts,
    b: &mut [f64; 10],
) {
    use signals::*;
    let w = c.eta_points_per_sec;
    let bw = node.bandwidth_gbps();
    let output = want.expected_output_tokens;
    let service =
        f.p75_ms.map(|ms| ms / 1000.0).unwrap_or_else(|| eta::service_s(want.estimated_tokens, output, e.size_gb, bw));
    let load = eta::load_s(temperature, e.size_gb, c.load_gb_per_sec);
    b[Signal::ModelTemperature as usize] = c.model_hot - w * load;
    b[Signal::MemoryFit as usize] = 0.5 * memory_fit(e.is_loaded(), node.free_memory_gb(), e.fit_cost_gb, c);
    b[Signal::QueueDepth as usize] = -w * eta::queue_s(f.depth, f.slots, service);
    b[Signal::WaitTime as usize] = -w * service;
    b[Signal::Availability as usize] = availability(node.availability(), c);
    let fit = context_fit(want.estimated_tokens, e.resident_ctx, c);
    // A resident window too small for the prompt costs at most what loading afresh would, so a
    // loaded model never scores below the same model cold.
    let cold_load = w * eta::load_s(Temperature::Cold, e.size_gb, c.load_gb_per_sec);
    b[Signal::ContextFit as usize] = if fit < 0.0 { fit.max(-cold_load) } else { fit };
    if !e.is_loaded() && node.free_slots() == 0 {
        let evicted_gb = node.smallest_loaded_gb().unwrap_or(0.0);
        b[Signal::Eviction as usize] = -w * eta::load_s(Temperature::Cold, evicted_gb, c.load_gb_per_sec);
    }
    let saved = w * f64::from(want.estimated_tokens) / (eta::decode_tps(e.size_gb, bw) * eta::PREFILL_OVER_DECODE);
    if f.session_pinned {
        b[Signal::SessionAffinity as usize] = affinity(saved.min(c.session_bonus), f.depth);
    } else if f.prefix_pinned {
        b[Signal::PrefixAffinity as usize] = affinity(saved.min(c.prefix_bonus), f.depth);
    }
}

/// Adds affinity bonuses and sorts, best first. For `round-robin`, `tie_seed` is the rotation
/// offset (a node id). Under the herd policy a pin is ignored when its
/// node's queue is `pin_imbalance_guard` longer than the shortest candidate queue, so a pin never
/// holds a conversation behind a long line; ties break by a per-decision key from `tie_seed`.
/// Under classic, ties keep node order, as ollama-herd's stable sort does.
pub fn rank(c: &ScoreConfig, scored: Vec<(NodeId, Breakdown, Temperature, Facts)>, tie_seed: u64) -> Vec<Candidate> {
    let mut out = candidates(c, scored, tie_seed);
    out.sort_unstable_by(order);
    out
}

/// Like [`rank`], but only the best is guaranteed first; the rest stay unordered. Routing
/// nearly always takes the best, so it skips the full sort (use [`best_index`] for the rest).
pub fn rank_best_first(
    c: &ScoreConfig,
    scored: Vec<(NodeId, Breakdown, Temperature, Facts)>,
    tie_seed: u64,
) -> Vec<Candidate> {
    let mut out = candidates(c, scored, tie_seed);
    if let Some(i) = best_index(&out) {
        out.swap(0, i);
    }
    out
}

/// The index of the best candidate by the ranking order.
pub fn best_index(c: &[Candidate]) -> Option<usize> {
    (0..c.len()).min_by(|&a, &b| order(&c[a], &c[b]))
}

/// Ranking order: higher total first, then the tie key (distinct per node, so total).
fn order(a: &Candidate, b: &Candidate) -> Ordering {
    b.total.total_cmp(&a.total).then(a.tie.cmp(&b.tie))
}

fn candidates(c: &ScoreConfig, scored: Vec<(NodeId, Breakdown, Temperature, Facts)>, tie_seed: u64) -> Vec<Candidate> {
    let min_depth = scored.iter().map(|s| s.3.depth).min().unwrap_or(0);
    scored
        .into_iter()
        .map(|(node, mut b, temperature, f)| {
            let guarded = c.policy == ScorePolicy::Herd
                && c.pin_imbalance_guard > 0
                && f.depth >= min_depth.saturating_add(c.pin_imbalance_guard);
            if guarded {
                b.0[Signal::SessionAffinity as usize] = 0.0;
                b.0[Signal::PrefixAffinity as usize] = 0.0;
            }
            let tie = match c.policy {
                ScorePolicy::Herd => mix(tie_seed ^ u64::from(node.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                ScorePolicy::Classic | ScorePolicy::LeastLoaded => u64::from(node.0),
                // `tie_seed` is the rotation offset: nodes from it upwards first, then the rest.
                ScorePolicy::RoundRobin => u64::from(node.0).wrapping_sub(tie_seed) & u64::from(u32::MAX),
            };
            Candidate { node, total: b.total(), breakdown: b, temperature, depth: f.depth, tie }
        })
        .collect()
}

#[cfg(test)]
mod tests;
