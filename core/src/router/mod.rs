//! The router facade: `handle_*(now, ...)` inputs, `poll_*()` outputs, plain-noun queries. It
//! owns the registry, queues, breakers, pins and live requests; the decisions themselves live in
//! `score`, `queue` and `policy`, and the request flow in `flow`.
//!
//! Driving contract: after every `handle_*` call, drain `poll_command()` and `poll_event()`
//! until `None`, then sleep until `poll_timeout()` and call `handle_timeout`. Forgetting to drain
//! never corrupts state: outputs simply wait in bounded-by-requests queues.

#[cfg(any(test, feature = "testing"))]
mod check;
mod flow;
mod lifecycle;
#[cfg(test)]
mod tests;
mod types;
mod views;

use crate::config::{ConfigError, RouterConfig};
use crate::fleet::heartbeat::{Heartbeat, HeartbeatError, Report};
use crate::fleet::{Fleet, FleetError, NodeStatus, Registered};
use crate::ids::{AttemptId, ModelName, NodeId, RequestId};
use crate::policy::breaker::Breaker;
use crate::policy::latency::Latency;
use crate::policy::pins::Pins;
use crate::policy::retry::UpstreamFailure;
use crate::queue::{History, Queues};
use crate::request::RequestSpec;
use crate::rng::Rng;
use crate::score::Decision;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
pub use types::*;

/// How long core waits, after a first-byte-timeout [`Command::Cancel`], for the adapter to report
/// how the attempt ended before it fails the attempt itself.
pub const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a node report was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The body is not a valid report.
    #[error(transparent)]
    Invalid(#[from] HeartbeatError),
    /// The registry refused it.
    #[error(transparent)]
    Refused(#[from] FleetError),
    /// The address the node would be reached at is one no node may use.
    #[error(transparent)]
    Address(#[from] crate::fleet::address::AddressError),
}

impl ReportError {
    /// The HTTP status the report is answered with, from the error's type.
    pub fn http_status(&self) -> u16 {
        match self {
            ReportError::Invalid(e) => e.http_status(),
            ReportError::Refused(e) => e.http_status(),
            ReportError::Address(_) => 403,
        }
    }
}

/// A request's life in the router.
///
/// ```text
///  handle_request ──▶ (route) ──no node now, model exists──▶ Holding ──fleet changes──▶ (route)
///                       │  │                                  │ holding deadline
///                       │  └──best node busy──▶ Queued ───────┼──────────────▶ Ended(Rejected 503)
///                       │       slot frees ──────┘│           │
///                       ▼                         ▼           │
///                   Attempting ◀──retry (pre-commit, < max)───┘
///                       │ first byte: Commit (no retry after this point)
///                       ▼
///                   Committed ──finished──▶ Ended(Completed)
///                       └──failed / stalled──▶ Ended(FailedAfterCommit)
///  (any state) ──client gone──▶ Ended(ClientGone)      unknown model ──▶ Ended(Rejected 404)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReqState {
    /// No node can serve now; re-routed when the fleet changes.
    Holding,
    /// Waiting for a slot on a node+model queue.
    Queued { node: NodeId, model: ModelName },
    /// Waiting for an auto-pull.
    PullWait { node: NodeId, model: ModelName },
    /// An attempt runs, nothing sent to the client yet.
    Attempting(AttemptId),
    /// The client is being answered.
    Committed(AttemptId),
}

#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub(crate) spec: RequestSpec,
    pub(crate) admitted: Instant,
    pub(crate) state: ReqState,
    pub(crate) deadline: Option<Instant>,
    pub(crate) attempts: u32,
    pub(crate) tried: Vec<NodeId>,
    pub(crate) served: Option<(ModelName, RouteKind, f64)>,
    pub(crate) node: Option<NodeId>,
    pub(crate) first_dispatch: Option<Instant>,
    pub(crate) first_byte: Option<Instant>,
    /// How long the committed attempt's node took to its first byte, when it had to load the
    /// model first (a cold load).
    pub(crate) cold_load: Option<Duration>,
    /// How pins weighed in the choice of the node it was placed on.
    pub(crate) affinity: Affinity,
    /// The last dispatch's context overflow (estimated need, context), for the commit.
    pub(crate) overflow: Option<(u32, u32)>,
    pub(crate) counted_client: bool,
    /// The local model an Anthropic model id resolved to, once it has.
    pub(crate) resolution: Option<crate::policy::anthropic::Resolution>,
}

/// An attempt's life.
///
/// ```text
///  Dispatched ──connected──▶ Connected ──first byte (Commit)──▶ Streaming ──finished──▶ (done)
///      │                        │                                 ▲  │
///      ├────────fail (retry allowed)────────┘                     │  └──fail / stall deadline (no retry)
///      └──first-byte deadline: Cancel──▶ Cancelling ──first byte──┘
///                                          └──adapter's failure, or CANCEL_GRACE──▶ fail (retry allowed)
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttState {
    Dispatched,
    Connected,
    Streaming,
    /// Reaped before its first byte: a first-byte-timeout cancel was sent, and core waits (at
    /// most [`CANCEL_GRACE`]) for the adapter to report the attempt failed, or committed if its
    /// first byte crossed the cancel.
    Cancelling,
}

#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub(crate) request: RequestId,
    pub(crate) node: NodeId,
    pub(crate) model: ModelName,
    pub(crate) state: AttState,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    /// The model was not loaded on the node at dispatch.
    pub(crate) cold: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Request(RequestId),
    Attempt(AttemptId),
}

/// Recent demand per model: requests, decayed with a 10-minute time constant. It keeps a model
/// that clients keep asking for from being substituted forever (ollama-herd's priority guard).
#[derive(Clone, Debug, Default)]
pub(crate) struct Demand {
    models: BTreeMap<ModelName, (f64, Instant)>,
}

impl Demand {
    const TAU_SECS: f64 = 600.0;
    const MAX_MODELS: usize = 4096;

    fn decayed(value: f64, since: Instant, now: Instant) -> f64 {
        value * (-now.saturating_since(since).as_secs_f64() / Self::TAU_SECS).exp()
    }

    /// Counts one request for `model`.
    pub(crate) fn record(&mut self, model: &ModelName, now: Instant) {
        if !self.models.contains_key(model) && self.models.len() >= Self::MAX_MODELS {
            let coldest = self
                .models
                .iter()
                .min_by(|a, b| Self::decayed(a.1 .0, a.1 .1, now).total_cmp(&Self::decayed(b.1 .0, b.1 .1, now)))
                .map(|(m, _)| m.clone());
            if let Some(m) = coldest {
                self.models.remove(&m);
            }
        }
        let e = self.models.entry(model.clone()).or_insert((0.0, now));
        *e = (Self::decayed(e.0, e.1, now) + 1.0, now);
    }

    /// Recent demand for `model`.
    pub(crate) fn of(&self, model: &ModelName, now: Instant) -> f64 {
        self.models.get(model).map_or(0.0, |&(v, t)| Self::decayed(v, t, now))
    }
}

/// Counters since start, for metrics and the simulation's "sometimes" checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests admitted or refused.
    pub requests: u64,
    /// Ended completed.
    pub completed: u64,
    /// Ended with a rejection.
    pub rejected: u64,
    /// Ended failed after commit.
    pub failed_after_commit: u64,
    /// Ended because the client left.
    pub client_gone: u64,
    /// Attempts dispatched.
    pub dispatched: u64,
    /// Retries.
    pub retries: u64,
    /// Served by another model.
    pub fallbacks: u64,
    /// Attempts reaped.
    pub reaped: u64,
    /// Breakers opened.
    pub breaker_opens: u64,
    /// Requests that went through holding.
    pub held: u64,
    /// Auto-pulls started.
    pub pulls: u64,
}

impl Counters {
    /// Adds another router's counters to these (for sweeps over many runs).
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.completed += o.completed;
        self.rejected += o.rejected;
        self.failed_after_commit += o.failed_after_commit;
        self.client_gone += o.client_gone;
        self.dispatched += o.dispatched;
        self.retries += o.retries;
        self.fallbacks += o.fallbacks;
        self.reaped += o.reaped;
        self.breaker_opens += o.breaker_opens;
        self.held += o.held;
        self.pulls += o.pulls;
    }
}

/// A snapshot of the router's load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live requests.
    pub live: usize,
    /// Of which holding.
    pub holding: usize,
    /// Of which queued.
    pub queued: usize,
    /// Attempts running.
    pub in_flight: usize,
    /// Nodes known.
    pub nodes: usize,
    /// Since start.
    pub counters: Counters,
}

/// herd's routing engine. Pure and deterministic: same config, seed and inputs, same outputs.
#[derive(Debug)]
pub struct Router {
    pub(crate) config: RouterConfig,
    pub(crate) seed: u64,
    pub(crate) rng: Rng,
    pub(crate) now: Instant,
    pub(crate) fleet: Fleet,
    pub(crate) queues: Queues,
    pub(crate) history: History,
    pub(crate) latency: Latency,
    pub(crate) pins: Pins,
    pub(crate) breakers: BTreeMap<NodeId, Breaker>,
    pub(crate) requests: BTreeMap<RequestId, Req>,
    pub(crate) attempts: BTreeMap<AttemptId, Attempt>,
    pub(crate) clients: BTreeMap<String, u32>,
    pub(crate) timers: BTreeSet<(Instant, Timer)>,
    pub(crate) holding: BTreeSet<RequestId>,
    /// When the router was created (the start of the startup grace).
    pub(crate) started: Instant,
    pub(crate) pulls: BTreeMap<(NodeId, ModelName), Instant>,
    pub(crate) commands: VecDeque<Command>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) next_request: u64,
    pub(crate) next_attempt: u64,
    pub(crate) fleet_dirty: bool,
    pub(crate) counters: Counters,
    pub(crate) rotation: u64,
    pub(crate) demand: Demand,
    /// The fleet's image servers, from the nodes' reports (issue 13).
    pub(crate) images: crate::image::sched::ImageFleet,
    pub(crate) image_config: crate::image::sched::ImageSchedConfig,
}

impl Router {
    /// A router with an empty fleet. `seed` fixes every random choice (tie-breaks).
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration cannot work.
    pub fn new(config: RouterConfig, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        let config = config.validate()?;
        Ok(Router {
            fleet: Fleet::new(config.fleet.clone()),
            latency: Latency::new(config.score.latency_samples),
            pins: Pins::new(config.score.pin_ttl, config.score.pin_capacity),
            config,
            seed,
            rng: Rng::new(seed),
            now,
            started: now,
            queues: Queues::default(),
            history: History::default(),
            breakers: BTreeMap::new(),
            requests: BTreeMap::new(),
            attempts: BTreeMap::new(),
            clients: BTreeMap::new(),
            timers: BTreeSet::new(),
            holding: BTreeSet::new(),
            pulls: BTreeMap::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 1,
            next_attempt: 1,
            fleet_dirty: false,
            counters: Counters::default(),
            rotation: 0,
            demand: Demand::default(),
            images: crate::image::sched::ImageFleet::new(),
            image_config: crate::image::sched::ImageSchedConfig::default(),
        })
    }

    /// A heartbeat or drain body arrived from a node (`POST /heartbeat`).
    ///
    /// # Errors
    /// [`ReportError`] when the body is not a report or the registry refuses it; nothing changes.
    pub fn handle_heartbeat(&mut self, now: Instant, body: &[u8]) -> Result<Registered, ReportError> {
        match Heartbeat::parse_within(body, &self.config.fleet.report_limits()) {
            Ok(report) => self.handle_report(now, report),
            Err(e) => {
                self.advance(now);
                self.pump();
                Err(e.into())
            }
        }
    }

    /// An already-parsed report (static nodes the adapter polls itself, the simulation).
    ///
    /// # Errors
    /// [`ReportError::Refused`] when the registry refuses it.
    pub fn handle_report(&mut self, now: Instant, report: Report) -> Result<Registered, ReportError> {
        self.advance(now);
        let draining = matches!(report, Report::Drain { .. } | Report::AdminDrain { .. });
        let reg = match self.fleet.handle_report(self.now, report) {
            Ok(reg) => reg,
            Err(e) => {
                // Time still passed: what it freed is dispatched before answering.
                self.pump();
                return Err(e.into());
            }
        };
        if reg.previous != Some(reg.status) {
            let name = self.fleet.node(reg.node).map(|n| n.name().to_string()).unwrap_or_default();
            self.events.push_back(Event::NodeStatus { node: reg.node, name, from: reg.previous, to: Some(reg.status) });
        }
        if let Some(node) = self.fleet.node(reg.node) {
            // Its image servers, as this report (or the last full one, for a drain) says.
            let servers = node.report().image_backends().into_iter().map(|(info, _)| info).collect();
            let name = node.name().to_string();
            self.images.sync_machine(&name, servers);
            self.images.set_machine_reachable(&name, node.status() != crate::fleet::NodeStatus::Offline);
        }
        if draining {
            self.pins.unpin_node(reg.node);
        }
        self.fleet_dirty = true;
        self.pump();
        Ok(reg)
    }

    /// A client request arrived. Returns its id; what happens next comes out of `poll_command`
    /// (Dispatch, or Reject) and the request ends with exactly one `Event::Ended`.
    pub fn handle_request(&mut self, now: Instant, spec: RequestSpec) -> RequestId {
        self.advance(now);
        let id = self.admit(spec);
        self.pump();
        id
    }

    /// The upstream connection for an attempt is open and the request was sent.
    pub fn handle_connected(&mut self, now: Instant, attempt: AttemptId) {
        self.advance(now);
        if let Some(a) = self.attempts.get_mut(&attempt) {
            if a.state == AttState::Dispatched {
                a.state = AttState::Connected;
            }
        }
        self.pump();
    }

    /// The first byte of the answer arrived: the router commits (emits `Commit`). The adapter may
    /// already be answering the client from [`Dispatch::commit`]. An attempt with a
    /// first-byte-timeout cancel still pending is committed too (the first byte crossed the
    /// cancel); attempts that ended are ignored.
    pub fn handle_first_byte(&mut self, now: Instant, attempt: AttemptId) {
        self.advance(now);
        self.commit(attempt);
        self.pump();
    }

    /// The answer is still flowing (call at most about once a second); pushes the stall deadline.
    pub fn handle_progress(&mut self, now: Instant, attempt: AttemptId) {
        self.advance(now);
        if self.attempts.get(&attempt).is_some_and(|a| a.state == AttState::Streaming) {
            let deadline = self.now + self.config.retry.stall_timeout;
            self.set_attempt_deadline(attempt, deadline);
        }
        self.pump();
    }

    /// The attempt finished successfully. Commits first if the adapter skipped `handle_first_byte`.
    pub fn handle_finished(&mut self, now: Instant, attempt: AttemptId, usage: Usage) {
        self.advance(now);
        self.finish(attempt, usage);
        self.pump();
    }

    /// The attempt failed. Before commit the router may retry elsewhere (a new `Dispatch`);
    /// after commit the request ends and the adapter reports the error in-stream.
    pub fn handle_failed(&mut self, now: Instant, attempt: AttemptId, failure: UpstreamFailure) {
        self.advance(now);
        self.fail(attempt, failure);
        self.pump();
    }

    /// The client went away. Its slot is freed at once and a running attempt is cancelled.
    pub fn handle_client_gone(&mut self, now: Instant, request: RequestId) {
        self.advance(now);
        self.client_gone(request);
        self.pump();
    }

    /// An auto-pull ended.
    pub fn handle_pull_result(&mut self, now: Instant, node: NodeId, model: ModelName, ok: bool) {
        self.advance(now);
        self.pull_done(node, model, ok);
        self.pump();
    }

    /// Time passed: status changes, deadlines, reaping, breaker probes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.pump();
    }

    /// The next effect to perform, if any.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next observation, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout` next; never earlier than the last `now` given. No side effects.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers.first().map(|(t, _)| *t);
        let breakers = self.breakers.values().filter_map(Breaker::deadline).filter(|&t| t > self.now).min();
        [timers, self.fleet.next_deadline(), breakers].into_iter().flatten().min().map(|t| t.max(self.now))
    }

    /// The registry.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The queues.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// What each node+model queue did since start (forgotten with the node).
    pub fn queue_history(&self) -> &History {
        &self.history
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Whether a node's breaker lets attempts through now.
    pub fn breaker_allows(&self, node: NodeId) -> bool {
        self.breakers.get(&node).is_none_or(|b| b.allows(self.now))
    }

    /// The full score breakdown for `model` on every node (`/fleet/explain`), as a request with
    /// no session would see it now. A query: changes nothing.
    pub fn explain(&self, model: &ModelName) -> Decision {
        self.decide(model, &RequestSpec::chat(model.as_str()), &[], self.seed, true)
    }

    /// The image servers' ranking for `model` (`/fleet/explain` for an image model): a one-image,
    /// one-megapixel job at the servers' default steps, as it would be ranked now; `None` when no
    /// server offers the model, or a node has it as a text model (whose explanation is
    /// [`Router::explain`]). A query: changes nothing.
    pub fn explain_image(&self, model: &str) -> Option<crate::image::sched::Ranking> {
        if !self.images.model_known(model) || self.fleet.model_known(&ModelName::new(model)) {
            return None;
        }
        let job = crate::image::sched::JobShape { model: model.to_string(), pixels: 1 << 20, steps: None, n: 1 };
        Some(self.images.rank(&job, &[], &self.image_config))
    }

    /// What the router's own poll of an `--image-node` server found: its servers (one, or none
    /// listed when it did not answer, reported as down) under the machine name `machine`.
    pub fn handle_image_servers(
        &mut self,
        now: Instant,
        machine: &str,
        servers: Vec<crate::image::sched::BackendInfo>,
    ) {
        self.advance(now);
        self.images.sync_machine(machine, servers);
        self.pump();
    }

    /// The fleet's image servers.
    pub fn image_fleet(&self) -> &crate::image::sched::ImageFleet {
        &self.images
    }

    /// The decision routing would make for `spec`'s model now: the best candidate first (the
    /// rest unordered), without the full sort `explain` does. A query: changes nothing.
    pub fn decision(&self, spec: &RequestSpec) -> Decision {
        self.decide(&spec.model, spec, &[], self.seed, false)
    }

    /// Load snapshot.
    pub fn stats(&self) -> Stats {
        let queued = self.requests.values().filter(|r| matches!(r.state, ReqState::Queued { .. })).count();
        Stats {
            live: self.requests.len(),
            holding: self.holding.len(),
            queued,
            in_flight: self.attempts.len(),
            nodes: self.fleet.len(),
            counters: self.counters.clone(),
        }
    }

    /// Live request ids, in order (for tests and the simulation's invariants).
    pub fn live_requests(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.requests.keys().copied()
    }

    /// The last `now` seen.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The model an attempt in progress runs.
    pub fn attempt_model(&self, attempt: AttemptId) -> Option<&ModelName> {
        self.attempts.get(&attempt).map(|a| &a.model)
    }

    /// A node's breaker state now (closed when it has none).
    pub fn breaker_state(&self, node: NodeId) -> crate::policy::breaker::BreakerState {
        self.breakers.get(&node).map_or(crate::policy::breaker::BreakerState::Closed, |b| b.state(self.now))
    }

    /// Status of a node by id.
    pub fn node_status(&self, node: NodeId) -> Option<NodeStatus> {
        self.fleet.node(node).map(|n| n.status())
    }
}
