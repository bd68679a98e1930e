//! Scoring: which node should serve a model. Eliminations first, each with a reason; then every
//! signal of [`signals`] added up; then a ranking whose ties break from the seed (herd) or by
//! registration order (classic, as ollama-herd). Every decision keeps its breakdown for
//! `/fleet/explain` and the `X-Herd-Score` header.

pub mod signals;

use crate::config::{ScoreConfig, ScorePolicy};
use crate::fleet::heartbeat::Pressure;
use crate::fleet::{Node, NodeStatus, Temperature};
use crate::ids::{ModelName, NodeId};
use crate::rng::mix;
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
}

impl Signal {
    /// All signals in order.
    pub const ALL: [Signal; 9] = [
        Signal::ModelTemperature,
        Signal::MemoryFit,
        Signal::QueueDepth,
        Signal::WaitTime,
        Signal::RoleAffinity,
        Signal::Availability,
        Signal::ContextFit,
        Signal::SessionAffinity,
        Signal::PrefixAffinity,
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
        }
    }
}

/// Points per signal for one candidate.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Breakdown(pub [f64; 9]);

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
    let loaded = node.loaded(model).is_some();
    if node.pressure() == Pressure::Critical && !loaded {
        return Some(Elimination::MemoryCritical);
    }
    if node.capacity_paused() {
        return Some(Elimination::CapacityPaused);
    }
    if !node.has_model(model) {
        return Some(Elimination::ModelAbsent);
    }
    if !loaded {
        let need_gb = node.fit_cost_gb(model);
        let free_gb = node.free_memory_gb();
        if free_gb < need_gb {
            return Some(Elimination::DoesNotFit { need_gb, free_gb });
        }
    }
    None
}

/// Stage 2: every signal for a node that passed stage 1. Session and prefix bonuses are
/// filled in by [`rank`], which knows the other candidates' queues.
pub fn breakdown(
    c: &ScoreConfig,
    node: &Node,
    want: &Want<'_>,
    f: &Facts,
    median_bw: f64,
    now: crate::time::Instant,
) -> Breakdown {
    use signals::*;
    let model = want.model;
    let loaded = node.loaded(model);
    let size = node.model_size_gb(model);
    let bw = node.bandwidth_gbps();
    let eff = effective_depth(f.depth, f.slots, c.policy);
    let p75 = f.p75_ms.unwrap_or_else(|| cold_start_p75_ms(size, bw));
    let mut b = [0.0; 9];
    b[Signal::ModelTemperature as usize] = model_temperature(node.temperature(model, now, want.warm_window), c);
    b[Signal::MemoryFit as usize] = memory_fit(loaded.is_some(), node.free_memory_gb(), node.fit_cost_gb(model), c);
    b[Signal::QueueDepth as usize] = queue_depth(eff, bw, median_bw, c);
    b[Signal::WaitTime as usize] = wait_time(eff, p75, c);
    b[Signal::RoleAffinity as usize] = role_affinity(size, bw, node.ram_total_gb(), c);
    b[Signal::Availability as usize] = availability(node.availability(), c);
    b[Signal::ContextFit as usize] = context_fit(want.estimated_tokens, loaded.map(|l| l.context_length), c);
    Breakdown(b)
}

/// Adds affinity bonuses and sorts, best first. Under the herd policy a pin is ignored when its
/// node's queue is `pin_imbalance_guard` longer than the shortest candidate queue, so a pin never
/// holds a conversation behind a long line; ties break by a per-decision key from `tie_seed`.
/// Under classic, ties keep node order, as ollama-herd's stable sort does.
pub fn rank(c: &ScoreConfig, scored: Vec<(NodeId, Breakdown, Temperature, Facts)>, tie_seed: u64) -> Vec<Candidate> {
    let min_depth = scored.iter().map(|s| s.3.depth).min().unwrap_or(0);
    let mut out: Vec<Candidate> = scored
        .into_iter()
        .map(|(node, mut b, temperature, f)| {
            let guarded = c.policy == ScorePolicy::Herd && f.depth >= min_depth.saturating_add(c.pin_imbalance_guard);
            if !guarded {
                if f.session_pinned {
                    b.0[Signal::SessionAffinity as usize] = signals::affinity(c.session_bonus, f.depth);
                } else if f.prefix_pinned {
                    b.0[Signal::PrefixAffinity as usize] = signals::affinity(c.prefix_bonus, f.depth);
                }
            }
            let tie = match c.policy {
                ScorePolicy::Herd => mix(tie_seed ^ u64::from(node.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                ScorePolicy::Classic => u64::from(node.0),
            };
            Candidate { node, total: b.total(), breakdown: b, temperature, depth: f.depth, tie }
        })
        .collect();
    out.sort_by(|a, b| match b.total.total_cmp(&a.total) {
        Ordering::Equal => a.tie.cmp(&b.tie),
        o => o,
    });
    out
}

#[cfg(test)]
mod tests;
