//! Prometheus metrics: what herd counts, under which names and labels, and the text `/metrics`
//! answers (text exposition format 0.0.4).
//!
//! The adapter keeps one [`Metrics`] beside the router on the task that drives it, and feeds it
//! every finished request ([`Metrics::observe_end`]), every event ([`Metrics::observe_event`]),
//! every commit ([`Metrics::observe_commit`]) and the gaps between a stream's chunks
//! ([`Metrics::observe_gaps`]). A scrape asks for [`Metrics::render`], which adds the fleet's
//! gauges as the router sees them at that moment. Nothing here takes a lock: the counters are
//! plain numbers owned by that one task.
//!
//! Naming follows Prometheus' conventions: prefix `herd_`, base units (seconds, bytes), `_total`
//! on counters, histograms for every latency (so quantiles aggregate across routers). Labels are
//! bounded: `model` and `node` take at most [`MetricsConfig::max_models`] and
//! [`MetricsConfig::max_nodes`] values, the rest counted as `other`; a model name the fleet does
//! not have never becomes a label (it counts as `other`), and tags and client identities are
//! never labels.

use crate::api::Surface;
use crate::fleet::NodeStatus;
use crate::ids::ModelName;
use crate::policy::breaker::BreakerState;
use crate::policy::context::ContextAction;
use crate::router::{Event, Outcome, Rejection, RouteKind, Router, Trace};
use crate::time::Instant;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Bucket bounds, seconds, of request durations, time to first token and queue waits.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Bucket bounds, seconds, of the gaps between a streamed answer's chunks.
pub const CHUNK_GAP_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Bucket bounds, seconds, of cold loads (dispatch to first byte when the model was not loaded).
pub const LOAD_BUCKETS: [f64; 11] = [0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// The label value counted for models and nodes beyond the configured number.
pub const OTHER: &str = "other";

/// How many label values the metrics keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Distinct `model` label values; the rest are `other`.
    pub max_models: usize,
    /// Distinct `node` label values; the rest are `other`.
    pub max_nodes: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { max_models: 100, max_nodes: 256 }
    }
}

/// What the binary says of itself in `herd_build_info`.
#[derive(Clone, Copy, Debug)]
pub struct BuildInfo<'a> {
    /// The binary (`herd`, `herd-lite`).
    pub binary: &'a str,
    /// Its version.
    pub version: &'a str,
}

/// The gaps between one streamed answer's chunks, gathered by the task that relays it and
/// handed over once at its end (so the relay pays no shared state per chunk).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChunkGaps {
    counts: [u32; CHUNK_GAP_BUCKETS.len() + 1],
    sum: f64,
}

impl ChunkGaps {
    /// Counts one gap.
    pub fn observe(&mut self, gap: Duration) {
        let v = gap.as_secs_f64();
        let i = CHUNK_GAP_BUCKETS.partition_point(|&b| b < v);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.sum += v;
    }

    /// Gaps counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// Whether none were counted.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

/// A histogram's buckets (not cumulative; the last is `+Inf`) and sum.
#[derive(Clone, Debug, PartialEq)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram { counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
    }
}

/// Label values in first-seen order, at most `max`, the rest [`OTHER`].
#[derive(Clone, Debug)]
struct Labels {
    index: BTreeMap<String, u16>,
    names: Vec<String>,
    max: usize,
}

/// The index of [`OTHER`].
const OTHER_INDEX: u16 = u16::MAX;
/// The index of "no node" (a request refused before any node was tried): an empty label.
const NO_NODE: u16 = u16::MAX - 1;

impl Labels {
    fn new(max: usize) -> Self {
        Labels { index: BTreeMap::new(), names: Vec::new(), max: max.min(usize::from(NO_NODE)) }
    }

    fn known(&self, name: &str) -> Option<u16> {
        self.index.get(name).copied()
    }

    fn of(&mut self, name: &str) -> u16 {
        if let Some(i) = self.known(name) {
            return i;
        }
        if self.names.len() >= self.max {
            return OTHER_INDEX;
        }
        let i = self.names.len() as u16;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    fn name(&self, i: u16) -> &str {
        match i {
            OTHER_INDEX => OTHER,
            NO_NODE => "",
            i => &self.names[usize::from(i)],
        }
    }
}

const OUTCOMES: [&str; 4] = ["completed", "rejected", "failed_after_commit", "client_gone"];

fn outcome_index(o: &Outcome) -> u8 {
    match o {
        Outcome::Completed(_) => 0,
        Outcome::Rejected(_) => 1,
        Outcome::FailedAfterCommit(_) => 2,
        Outcome::ClientGone => 3,
    }
}

fn surface_index(s: Surface) -> u8 {
    Surface::ALL.iter().position(|&x| x == s).unwrap_or(0) as u8
}

fn kind_name(s: Surface) -> &'static str {
    match s.kind() {
        crate::request::RequestKind::Chat => "chat",
        crate::request::RequestKind::Generate => "generate",
        crate::request::RequestKind::Embed => "embed",
    }
}

fn context_name(a: &ContextAction) -> &'static str {
    match a {
        ContextAction::Untouched => "untouched",
        ContextAction::Pinned { .. } => "pinned",
        ContextAction::Clamped { .. } => "clamped",
        ContextAction::Warned { .. } => "warned",
    }
}

/// herd's counters and histograms since start. See the module docs.
#[derive(Clone, Debug)]
pub struct Metrics {
    models: Labels,
    nodes: Labels,
    /// (surface, model, node, outcome) → requests.
    requests: BTreeMap<(u8, u16, u16, u8), u64>,
    /// (surface, model) → completed requests' durations.
    duration: BTreeMap<(u8, u16), Histogram>,
    ttft: BTreeMap<u16, Histogram>,
    queue_wait: BTreeMap<u16, Histogram>,
    cold_load: BTreeMap<u16, Histogram>,
    gaps: BTreeMap<u16, Histogram>,
    /// (model, completion?) → tokens.
    tokens: BTreeMap<(u16, bool), u64>,
    retries: BTreeMap<(u16, &'static str), u64>,
    exhausted: BTreeMap<u16, u64>,
    fallbacks: BTreeMap<(u16, u16, &'static str), u64>,
    decisions: BTreeMap<&'static str, u64>,
    rejections: BTreeMap<&'static str, u64>,
    reaped: BTreeMap<(u16, &'static str), u64>,
    breaker_opens: BTreeMap<u16, u64>,
    context: BTreeMap<&'static str, u64>,
    held: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(MetricsConfig::default())
    }
}

impl Metrics {
    /// Empty metrics keeping at most `config`'s label values.
    pub fn new(config: MetricsConfig) -> Self {
        Metrics {
            models: Labels::new(config.max_models),
            nodes: Labels::new(config.max_nodes),
            requests: BTreeMap::new(),
            duration: BTreeMap::new(),
            ttft: BTreeMap::new(),
            queue_wait: BTreeMap::new(),
            cold_load: BTreeMap::new(),
            gaps: BTreeMap::new(),
            tokens: BTreeMap::new(),
            retries: BTreeMap::new(),
            exhausted: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            decisions: BTreeMap::new(),
            rejections: BTreeMap::new(),
            reaped: BTreeMap::new(),
            breaker_opens: BTreeMap::new(),
            context: BTreeMap::new(),
            held: 0,
        }
    }

    /// The label of a model the fleet serves (or served): its own name while there is room.
    fn served(&mut self, model: &ModelName) -> u16 {
        self.models.of(model.as_str())
    }

    /// The label of a model a client asked for: its name only when it already is a label or some
    /// node has it, so a client cannot fill the labels with made-up names.
    fn asked(&mut self, router: &Router, model: &ModelName) -> u16 {
        if let Some(i) = self.models.known(model.as_str()) {
            return i;
        }
        if router.fleet().nodes().any(|n| n.has_model(model)) {
            self.models.of(model.as_str())
        } else {
            OTHER_INDEX
        }
    }

    fn node(&mut self, router: &Router, node: Option<crate::ids::NodeId>) -> u16 {
        match node.and_then(|n| router.fleet().node(n)) {
            Some(n) => self.nodes.of(n.name()),
            None => NO_NODE,
        }
    }

    /// Counts a finished request (the router's [`Event::Ended`]) asked on `surface`.
    pub fn observe_end(&mut self, router: &Router, surface: Surface, trace: &Trace) {
        let model = match &trace.served_model {
            Some(m) => self.served(m),
            None => self.asked(router, &trace.requested_model),
        };
        let node = self.node(router, trace.node);
        let s = surface_index(surface);
        *self.requests.entry((s, model, node, outcome_index(&trace.outcome))).or_insert(0) += 1;
        if trace.attempts > 0 {
            self.queue_wait
                .entry(model)
                .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
                .observe(&LATENCY_BUCKETS, trace.queued.as_secs_f64());
        }
        if let Some(t) = trace.ttft {
            self.ttft
                .entry(model)
                .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
                .observe(&LATENCY_BUCKETS, t.as_secs_f64());
        }
        if let Some(t) = trace.cold_load {
            self.cold_load
                .entry(model)
                .or_insert_with(|| Histogram::new(&LOAD_BUCKETS))
                .observe(&LOAD_BUCKETS, t.as_secs_f64());
        }
        match &trace.outcome {
            Outcome::Completed(usage) => {
                self.duration
                    .entry((s, model))
                    .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
                    .observe(&LATENCY_BUCKETS, trace.total.as_secs_f64());
                *self.tokens.entry((model, false)).or_insert(0) += u64::from(usage.prompt_tokens);
                *self.tokens.entry((model, true)).or_insert(0) += u64::from(usage.completion_tokens);
            }
            Outcome::Rejected(r) => {
                *self.rejections.entry(r.as_str()).or_insert(0) += 1;
                if matches!(r, Rejection::AttemptsExhausted { .. }) {
                    *self.exhausted.entry(model).or_insert(0) += 1;
                }
            }
            Outcome::FailedAfterCommit(_) | Outcome::ClientGone => {}
        }
    }

    /// Counts what an event tells (retries, fallbacks, reaps, breakers, context protection,
    /// holding). [`Event::Ended`] goes to [`Metrics::observe_end`], which knows the surface.
    pub fn observe_event(&mut self, router: &Router, event: &Event) {
        match event {
            Event::Retried { node, failure, .. } => {
                let node = self.node(router, Some(*node));
                *self.retries.entry((node, failure.as_str())).or_insert(0) += 1;
            }
            Event::Fallback { from, to, route, .. } => {
                let (from, to) = (self.asked(router, from), self.served(to));
                *self.fallbacks.entry((from, to, route.as_str())).or_insert(0) += 1;
            }
            Event::Reaped { node, reason, .. } => {
                let node = self.node(router, Some(*node));
                let reason = match reason {
                    crate::router::CancelReason::FirstByteTimeout => "first_byte_timeout",
                    crate::router::CancelReason::Stalled => "stalled",
                    crate::router::CancelReason::ClientGone => "client_gone",
                };
                *self.reaped.entry((node, reason)).or_insert(0) += 1;
            }
            Event::Breaker { node, open: true } => {
                let node = self.node(router, Some(*node));
                *self.breaker_opens.entry(node).or_insert(0) += 1;
            }
            Event::Context { action, .. } => *self.context.entry(context_name(action)).or_insert(0) += 1,
            Event::Holding { .. } => self.held += 1,
            Event::Breaker { open: false, .. }
            | Event::Ended(_)
            | Event::NodeStatus { .. }
            | Event::Resolved { .. } => {}
        }
    }

    /// Counts a routing decision carried out: the route of a committed attempt.
    pub fn observe_commit(&mut self, route: RouteKind) {
        *self.decisions.entry(route.as_str()).or_insert(0) += 1;
    }

    /// Adds the gaps between the chunks of one streamed answer of `model`.
    pub fn observe_gaps(&mut self, model: &ModelName, gaps: &ChunkGaps) {
        if gaps.is_empty() {
            return;
        }
        let m = self.served(model);
        let h = self.gaps.entry(m).or_insert_with(|| Histogram::new(&CHUNK_GAP_BUCKETS));
        for (c, &n) in h.counts.iter_mut().zip(&gaps.counts) {
            *c += u64::from(n);
        }
        h.sum += gaps.sum;
    }

    /// The text a scrape answers: every counter and histogram, and the fleet's gauges as `router`
    /// sees them at `now`.
    pub fn render(&mut self, router: &Router, now: Instant, build: BuildInfo<'_>, out: &mut String) {
        let mut w = Writer { out };
        self.render_requests(&mut w);
        let stats = router.stats();
        self.render_routing(&stats, &mut w);
        self.render_fleet(router, now, &mut w);
        w.family("herd_requests_in_flight", "gauge", "Attempts running on nodes now.");
        w.sample("herd_requests_in_flight", &[], stats.in_flight);
        w.family("herd_requests_queued", "gauge", "Requests waiting in a node's queue now.");
        w.sample("herd_requests_queued", &[], stats.queued);
        w.family("herd_requests_holding", "gauge", "Requests waiting for any node to be able to serve them now.");
        w.sample("herd_requests_holding", &[], stats.holding);
        w.family("herd_build_info", "gauge", "The running binary and its version (always 1).");
        w.sample("herd_build_info", &[("binary", build.binary), ("version", build.version)], 1u8);
    }

    fn render_requests(&self, w: &mut Writer<'_>) {
        let (m, n) = (&self.models, &self.nodes);
        w.family(
            "herd_requests_total",
            "counter",
            "Requests ended, by endpoint, kind, model that ran, node and outcome.",
        );
        for (&(s, model, node, o), &v) in &self.requests {
            let surface = Surface::ALL[usize::from(s)];
            w.sample(
                "herd_requests_total",
                &[
                    ("endpoint", surface.name()),
                    ("kind", kind_name(surface)),
                    ("model", m.name(model)),
                    ("node", n.name(node)),
                    ("outcome", OUTCOMES[usize::from(o)]),
                ],
                v,
            );
        }
        w.family(
            "herd_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to the end of its answer, completed requests only.",
        );
        for (&(s, model), h) in &self.duration {
            let labels = [("endpoint", Surface::ALL[usize::from(s)].name()), ("model", m.name(model))];
            w.histogram("herd_request_duration_seconds", &labels, &LATENCY_BUCKETS, h);
        }
        let per_model: [PerModel<'_>; 4] = [
            (
                "herd_time_to_first_token_seconds",
                "Time from a request's arrival to the first byte of its answer.",
                &LATENCY_BUCKETS,
                &self.ttft,
            ),
            (
                "herd_queue_wait_seconds",
                "Time a request waited in the router before its first attempt was sent.",
                &LATENCY_BUCKETS,
                &self.queue_wait,
            ),
            (
                "herd_inter_chunk_seconds",
                "Gaps between the chunks of streamed answers as the router received them.",
                &CHUNK_GAP_BUCKETS,
                &self.gaps,
            ),
            (
                "herd_cold_load_seconds",
                "Time from dispatch to first byte of attempts whose model was not loaded on the node (load and prefill).",
                &LOAD_BUCKETS,
                &self.cold_load,
            ),
        ];
        for (name, help, bounds, map) in per_model {
            w.family(name, "histogram", help);
            for (&model, h) in map {
                w.histogram(name, &[("model", m.name(model))], bounds, h);
            }
        }
        w.family(
            "herd_tokens_total",
            "counter",
            "Tokens of completed requests, by model and type (prompt, completion).",
        );
        for (&(model, completion), &v) in &self.tokens {
            let kind = if completion { "completion" } else { "prompt" };
            w.sample("herd_tokens_total", &[("model", m.name(model)), ("type", kind)], v);
        }
    }

    fn render_routing(&self, stats: &crate::router::Stats, w: &mut Writer<'_>) {
        let (m, n) = (&self.models, &self.nodes);
        w.family(
            "herd_retries_total",
            "counter",
            "Attempts retried on another node, by the failed node and why it failed.",
        );
        for (&(node, reason), &v) in &self.retries {
            w.sample("herd_retries_total", &[("node", n.name(node)), ("reason", reason)], v);
        }
        w.family("herd_retries_exhausted_total", "counter", "Requests refused after every attempt failed, by model.");
        for (&model, &v) in &self.exhausted {
            w.sample("herd_retries_exhausted_total", &[("model", m.name(model))], v);
        }
        w.family(
            "herd_fallbacks_total",
            "counter",
            "Requests served by another model than asked, by requested and served model and route.",
        );
        for (&(from, to, route), &v) in &self.fallbacks {
            w.sample(
                "herd_fallbacks_total",
                &[("requested", m.name(from)), ("served", m.name(to)), ("route", route)],
                v,
            );
        }
        w.family(
            "herd_routing_decisions_total",
            "counter",
            "Committed attempts by route: primary, client_fallback or substitute.",
        );
        for (&route, &v) in &self.decisions {
            w.sample("herd_routing_decisions_total", &[("route", route)], v);
        }
        w.family("herd_rejections_total", "counter", "Requests refused before an answer started, by reason.");
        for (&reason, &v) in &self.rejections {
            w.sample("herd_rejections_total", &[("reason", reason)], v);
        }
        w.family("herd_reaped_total", "counter", "Attempts the reaper ended, by node and reason.");
        for (&(node, reason), &v) in &self.reaped {
            w.sample("herd_reaped_total", &[("node", n.name(node)), ("reason", reason)], v);
        }
        w.family("herd_breaker_opens_total", "counter", "Times a node's breaker opened after repeated failures.");
        for (&node, &v) in &self.breaker_opens {
            w.sample("herd_breaker_opens_total", &[("node", n.name(node))], v);
        }
        w.family("herd_context_actions_total", "counter", "Context protection acting on a request, by action.");
        for (&action, &v) in &self.context {
            w.sample("herd_context_actions_total", &[("action", action)], v);
        }
        w.family("herd_requests_held_total", "counter", "Requests that waited because no node could serve them yet.");
        w.sample("herd_requests_held_total", &[], self.held);
        w.family("herd_auto_pulls_total", "counter", "Model pulls the router started on a node.");
        w.sample("herd_auto_pulls_total", &[], stats.counters.pulls);
    }

    fn render_fleet(&mut self, router: &Router, now: Instant, w: &mut Writer<'_>) {
        let fleet = router.fleet();
        const GB: f64 = 1e9;
        w.family("herd_nodes", "gauge", "Nodes known, by status.");
        for status in [NodeStatus::Online, NodeStatus::Degraded, NodeStatus::Offline, NodeStatus::Draining] {
            let count = fleet.nodes().filter(|n| n.status() == status).count();
            w.sample("herd_nodes", &[("status", status.as_str())], count);
        }
        type Gauge = (&'static str, &'static str, fn(&crate::fleet::Node, Instant) -> f64);
        let per_node: [Gauge; 6] = [
            ("herd_node_up", "1 when the node is routable (online or degraded), else 0.", |n, _| {
                f64::from(u8::from(n.routable()))
            }),
            ("herd_node_draining", "1 when the node is draining, else 0.", |n, _| {
                f64::from(u8::from(n.status() == NodeStatus::Draining))
            }),
            ("herd_node_heartbeat_age_seconds", "Seconds since the node's last report.", |n, now| {
                now.saturating_since(n.last_report()).as_secs_f64()
            }),
            ("herd_node_memory_total_bytes", "The node's memory, as it reports it.", |n, _| {
                (n.report().memory.total_gb * GB).round()
            }),
            ("herd_node_memory_used_bytes", "The node's memory in use, as it reports it.", |n, _| {
                (n.report().memory.used_gb * GB).round()
            }),
            ("herd_node_models_loaded", "Models the node has in memory.", |n, _| {
                n.report().ollama.models_loaded.len() as f64
            }),
        ];
        for (name, help, f) in per_node {
            w.family(name, "gauge", help);
            for n in fleet.nodes() {
                w.sample(name, &[("node", n.name())], f(n, now));
            }
        }
        w.family(
            "herd_node_breaker_open",
            "gauge",
            "1 when the node's breaker keeps attempts away (open or probing), else 0.",
        );
        for n in fleet.nodes() {
            let open = !matches!(router.breaker_state(n.id()), BreakerState::Closed);
            w.sample("herd_node_breaker_open", &[("node", n.name())], u8::from(open));
        }
        for (name, help, used) in [
            ("herd_node_gpu_memory_total_bytes", "A GPU's memory, as its node reports it.", false),
            ("herd_node_gpu_memory_used_bytes", "A GPU's memory in use, as its node reports it.", true),
        ] {
            w.family(name, "gauge", help);
            for n in fleet.nodes() {
                for g in &n.report().gpus {
                    let index = g.index.to_string();
                    let v = if used { g.vram_used_bytes } else { g.vram_total_bytes };
                    w.sample(name, &[("node", n.name()), ("gpu", index.as_str())], v);
                }
            }
        }
        // Attempts running and requests waiting per node, in one pass over the queues.
        let mut load: BTreeMap<crate::ids::NodeId, (u32, usize)> = BTreeMap::new();
        for (node, _, q) in router.queues().iter() {
            let e = load.entry(node).or_default();
            e.0 += q.in_flight;
            e.1 += q.pending.len();
        }
        w.family("herd_model_loaded_bytes", "gauge", "Memory a loaded model takes on a node, by node and model.");
        let mut rows: BTreeMap<u16, f64> = BTreeMap::new();
        for n in fleet.nodes() {
            // Models beyond the label limit add up under `other`.
            rows.clear();
            for l in &n.report().ollama.models_loaded {
                *rows.entry(self.served(&l.name)).or_insert(0.0) += l.size_gb * GB;
            }
            for (&model, &bytes) in &rows {
                w.sample(
                    "herd_model_loaded_bytes",
                    &[("node", n.name()), ("model", self.models.name(model))],
                    bytes.round(),
                );
            }
        }
        let in_flight: Vec<(u32, usize)> =
            fleet.nodes().map(|n| load.get(&n.id()).copied().unwrap_or_default()).collect();
        w.family("herd_node_in_flight_requests", "gauge", "Attempts running on the node now.");
        for (n, (running, _)) in fleet.nodes().zip(&in_flight) {
            w.sample("herd_node_in_flight_requests", &[("node", n.name())], *running);
        }
        w.family("herd_node_queued_requests", "gauge", "Requests waiting in the router for a slot on the node.");
        for (n, (_, waiting)) in fleet.nodes().zip(&in_flight) {
            w.sample("herd_node_queued_requests", &[("node", n.name())], *waiting);
        }
    }
}

/// A histogram family labelled by model: name, help, bounds, series.
type PerModel<'a> = (&'static str, &'static str, &'static [f64], &'a BTreeMap<u16, Histogram>);

/// Writes the text format.
struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for &(k, v) in labels {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        self.labels(labels);
        self.out.push(' ');
        value.write(self.out);
        self.out.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], h: &Histogram) {
        // The series' labels are written once, then copied before each bucket's `le`.
        let start = self.out.len();
        self.labels(labels);
        let written: String = self.out[start..].to_string();
        self.out.truncate(start);
        let open = written.strip_suffix('}').map_or_else(|| "{".to_string(), |l| format!("{l},"));
        let mut cumulative = 0u64;
        for (i, &c) in h.counts.iter().enumerate() {
            cumulative += c;
            self.out.push_str(name);
            self.out.push_str("_bucket");
            self.out.push_str(&open);
            self.out.push_str("le=\"");
            match bounds.get(i) {
                Some(b) => b.write(self.out),
                None => self.out.push_str("+Inf"),
            }
            self.out.push_str("\"} ");
            cumulative.write(self.out);
            self.out.push('\n');
        }
        let _ = write!(self.out, "{name}_sum{written} ");
        h.sum.write(self.out);
        let _ = write!(self.out, "\n{name}_count{written} ");
        cumulative.write(self.out);
        self.out.push('\n');
    }
}

/// A sample value in the text format.
trait Value {
    fn write(&self, out: &mut String);
}

impl Value for f64 {
    fn write(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn write(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_value!(u8, u32, u64, usize);

#[cfg(test)]
mod tests;
