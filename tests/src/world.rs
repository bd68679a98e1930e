//! The deterministic simulation world: a router, simulated Ollama machines with their agents,
//! client arrivals from a trace, and seeded faults, in virtual time with no async runtime, no
//! sleeps and no threads. Each step jumps to the earliest deadline among them, applies it,
//! drains the router, and checks the invariants. Modelled on str0m's netem and TigerBeetle's VOPR.

use crate::node::{Fault, Job, MachineSpec, NodeEvent, NodeFailure, SimNode, StartError};
use crate::workload::Arrival;
use herd_core::agent::{Agent, AgentCommand, AgentConfig, RouterUrl, SendFailure, SendOutcome};
use herd_core::config::RouterConfig;
use herd_core::fleet::heartbeat::Report;
use herd_core::fleet::NodeStatus;
use herd_core::ids::{AttemptId, NodeId, RequestId};
use herd_core::policy::retry::UpstreamFailure;
use herd_core::request::RequestKind;
use herd_core::rng::Rng;
use herd_core::router::{CancelReason, Command, Counters, Event, Outcome, Router, Usage};
use herd_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The kinds of fault a run may inject (swarm testing turns on a random subset per seed).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// The machine dies (jobs fail, heartbeats stop) and comes back later, empty.
    Crash,
    /// Ollama hangs before the first byte; its agent keeps reporting.
    Hang,
    /// Streams in progress stop mid-way.
    Stall,
    /// A burst of 500s.
    ErrorBurst,
    /// Heartbeats are lost for a while; Ollama keeps serving.
    HeartbeatLoss,
    /// The node is unreachable from the router (requests and heartbeats) for a while.
    Partition,
    /// Crash and restart several times in a row.
    Flapping,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Crash,
        FaultKind::Hang,
        FaultKind::Stall,
        FaultKind::ErrorBurst,
        FaultKind::HeartbeatLoss,
        FaultKind::Partition,
        FaultKind::Flapping,
    ];
}

/// A run's settings.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// The router's configuration (its policy included).
    pub router: RouterConfig,
    /// Seed for the router, the agents and the fault schedule.
    pub seed: u64,
    /// Fault kinds turned on.
    pub faults: Vec<FaultKind>,
    /// Mean time between faults when any is on.
    pub fault_every: Duration,
    /// Check the invariants after every step (the comparison turns it off for speed).
    pub check: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            router: RouterConfig::default(),
            seed: 0,
            faults: Vec::new(),
            fault_every: Duration::from_secs(60),
            check: true,
        }
    }
}

/// A broken invariant, with the step and time it broke at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Step number.
    pub step: u64,
    /// Virtual time.
    pub at: Instant,
    /// What broke.
    pub what: String,
}

/// What one request did, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// Time to first token, ms (completed requests).
    pub ttft_ms: Option<f64>,
    /// Arrival to end, ms.
    pub latency_ms: f64,
    /// Answered in full.
    pub ok: bool,
    /// Kind of request.
    pub kind: RequestKind,
}

#[derive(Clone, Debug)]
struct Live {
    arrival: Instant,
    first_byte: Option<Instant>,
    output_tokens: u32,
    prompt_tokens: u32,
    prefix: Option<(u64, u32)>,
    kind: RequestKind,
    committed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Inject(usize, FaultAction),
    HeartbeatsLost(usize, bool),
    Partitioned(usize, bool),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FaultAction {
    Crash,
    Restart,
    Hang,
    Unhang,
    Stall,
    Burst(u32),
}

impl FaultAction {
    fn fault(&self) -> Fault {
        match *self {
            FaultAction::Crash => Fault::Crash,
            FaultAction::Restart => Fault::Restart,
            FaultAction::Hang => Fault::Hang,
            FaultAction::Unhang => Fault::Unhang,
            FaultAction::Stall => Fault::StallStreams,
            FaultAction::Burst(n) => Fault::ErrorBurst(n),
        }
    }
}

/// The world.
pub struct World {
    now: Instant,
    step: u64,
    config: WorldConfig,
    router: Router,
    nodes: Vec<SimNode>,
    agents: Vec<Agent>,
    arrivals: Vec<Arrival>,
    next_arrival: usize,
    live: BTreeMap<RequestId, Live>,
    attempts: BTreeMap<AttemptId, (usize, RequestId)>,
    finished: Vec<Finished>,
    ended: BTreeSet<RequestId>,
    schedule: Vec<(Instant, Action)>,
    next_action: usize,
    lost_heartbeats: BTreeSet<usize>,
    partitioned: BTreeSet<usize>,
    hash: u64,
    last_end: Instant,
}

fn fnv(hash: &mut u64, s: &str) {
    *hash = herd_core::rng::fnv1a(*hash, s.as_bytes());
}

impl World {
    /// A world with these machines and arrivals.
    ///
    /// # Panics
    /// When the router configuration is invalid.
    pub fn new(config: WorldConfig, machines: Vec<MachineSpec>, arrivals: Vec<Arrival>) -> World {
        let now = Instant::ZERO;
        let router = Router::new(config.router.clone(), config.seed, now).expect("valid router config");
        let url = RouterUrl::new("http://router:11435").expect("valid url");
        let nodes: Vec<SimNode> = machines.into_iter().map(|m| SimNode::new(m, now)).collect();
        let agents = (0..nodes.len())
            .map(|i| {
                Agent::new(AgentConfig::default(), vec![url.clone()], config.seed ^ (i as u64 + 1), now).expect("agent")
            })
            .collect();
        let horizon = arrivals.last().map_or(now, |a| a.at);
        let schedule = fault_schedule(&config, nodes.len(), horizon);
        World {
            now,
            step: 0,
            config,
            router,
            nodes,
            agents,
            arrivals,
            next_arrival: 0,
            live: BTreeMap::new(),
            attempts: BTreeMap::new(),
            finished: Vec::new(),
            ended: BTreeSet::new(),
            schedule,
            next_action: 0,
            lost_heartbeats: BTreeSet::new(),
            partitioned: BTreeSet::new(),
            hash: herd_core::rng::FNV_OFFSET,
            last_end: now,
        }
    }

    /// Runs to the end: every arrival admitted and every request ended.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn run(&mut self) -> Result<(), Violation> {
        // Generous bound: a run that does not settle is a bug, not a long run.
        // Only steps taken while requests are live count: idle heartbeat ticks between sparse
        // arrivals are not a lack of progress.
        let max_steps = 200 + 400 * self.arrivals.len() as u64;
        let mut busy_steps = 0u64;
        while let Some(t) = self.next_deadline() {
            if busy_steps > max_steps {
                return Err(self.violation(format!("no progress after {busy_steps} busy steps")));
            }
            if !self.live.is_empty() {
                busy_steps += 1;
            }
            self.advance(t)?;
            if self.next_arrival == self.arrivals.len()
                && self.live.is_empty()
                && self.next_action >= self.schedule.len()
            {
                break;
            }
        }
        if self.ended.len() != self.next_arrival {
            return Err(self.violation(format!("{} admitted, {} ended", self.next_arrival, self.ended.len())));
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let arrival = self.arrivals.get(self.next_arrival).map(|a| a.at);
        let action = self.schedule.get(self.next_action).map(|a| a.0);
        let nodes = self.nodes.iter().filter_map(SimNode::poll_timeout).min();
        // Agents keep ticking forever; they matter only while there is other work.
        let busy = arrival.is_some() || !self.live.is_empty() || action.is_some();
        let agents = if busy { self.agents.iter().filter_map(Agent::poll_timeout).min() } else { None };
        let router = if busy { self.router.poll_timeout() } else { None };
        [arrival, action, nodes, agents, router].into_iter().flatten().min().map(|t| t.max(self.now))
    }

    fn violation(&self, what: String) -> Violation {
        Violation { step: self.step, at: self.now, what }
    }

    fn advance(&mut self, t: Instant) -> Result<(), Violation> {
        self.step += 1;
        self.now = t;
        let now = t;
        while self.schedule.get(self.next_action).is_some_and(|a| a.0 <= now) {
            let action = self.schedule[self.next_action].1.clone();
            self.next_action += 1;
            fnv(&mut self.hash, &format!("{now:?}{action:?}"));
            match action {
                Action::Inject(i, f) => self.nodes[i].inject(now, f.fault()),
                Action::HeartbeatsLost(i, on) => toggle(&mut self.lost_heartbeats, i, on),
                Action::Partitioned(i, on) => toggle(&mut self.partitioned, i, on),
            }
        }
        for i in 0..self.agents.len() {
            self.agents[i].handle_timeout(now);
            while let Some(cmd) = self.agents[i].poll_command() {
                if let AgentCommand::SendHeartbeat { router, seq, .. } = cmd {
                    let reachable =
                        self.nodes[i].is_up() && !self.partitioned.contains(&i) && !self.lost_heartbeats.contains(&i);
                    let outcome = if reachable {
                        let hb = self.nodes[i].heartbeat(now);
                        let _ = self.router.handle_report(now, Report::Heartbeat(Box::new(hb)));
                        SendOutcome::Delivered
                    } else {
                        SendOutcome::Failed(SendFailure::Connect)
                    };
                    self.agents[i].handle_send_result(now, router, seq, outcome);
                }
            }
        }
        while self.arrivals.get(self.next_arrival).is_some_and(|a| a.at <= now) {
            let a = self.arrivals[self.next_arrival].clone();
            self.next_arrival += 1;
            let live = Live {
                arrival: now,
                first_byte: None,
                output_tokens: a.output_tokens,
                prompt_tokens: a.spec.estimated_prompt_tokens,
                prefix: a.prefix,
                kind: a.spec.kind,
                committed: false,
            };
            let id = self.router.handle_request(now, a.spec);
            self.live.insert(id, live);
            self.drain()?;
        }
        for i in 0..self.nodes.len() {
            self.nodes[i].handle_timeout(now);
            while let Some(e) = self.nodes[i].poll_event() {
                let aid = match &e {
                    NodeEvent::FirstToken { job }
                    | NodeEvent::Progress { job }
                    | NodeEvent::Done { job, .. }
                    | NodeEvent::Failed { job, .. } => AttemptId(*job),
                };
                // Nothing a partitioned node sends reaches the router: its deadlines reap the
                // attempt and cancel the job.
                if !self.attempts.contains_key(&aid) || self.partitioned.contains(&i) {
                    continue;
                }
                match e {
                    NodeEvent::FirstToken { .. } => self.router.handle_first_byte(now, aid),
                    NodeEvent::Progress { .. } => self.router.handle_progress(now, aid),
                    NodeEvent::Done { prompt_tokens, completion_tokens, .. } => {
                        self.attempts.remove(&aid);
                        self.router.handle_finished(now, aid, Usage { prompt_tokens, completion_tokens });
                    }
                    NodeEvent::Failed { failure, .. } => {
                        self.attempts.remove(&aid);
                        let f = match failure {
                            NodeFailure::Reset => UpstreamFailure::Reset,
                            NodeFailure::Status(code) => UpstreamFailure::Status { code, saturated: false },
                        };
                        self.router.handle_failed(now, aid, f);
                    }
                }
                self.drain()?;
            }
        }
        self.router.handle_timeout(now);
        self.drain()
    }

    /// Performs the router's commands and records its events until it has nothing more to say.
    fn drain(&mut self) -> Result<(), Violation> {
        loop {
            let mut progressed = false;
            while let Some(cmd) = self.router.poll_command() {
                progressed = true;
                fnv(&mut self.hash, &format!("{cmd:?}"));
                self.perform(cmd)?;
            }
            while let Some(e) = self.router.poll_event() {
                progressed = true;
                fnv(&mut self.hash, &format!("{e:?}"));
                if let Event::Ended(t) = e {
                    self.record_end(t.request, &t.outcome)?;
                }
            }
            if !progressed {
                break;
            }
        }
        if self.config.check {
            self.check()?;
        }
        Ok(())
    }

    fn perform(&mut self, cmd: Command) -> Result<(), Violation> {
        let now = self.now;
        match cmd {
            Command::Dispatch(d) => {
                match self.router.node_status(d.node) {
                    Some(NodeStatus::Online | NodeStatus::Degraded) => {}
                    s => return Err(self.violation(format!("dispatch to {} in status {s:?}", d.node))),
                }
                let Some(live) = self.live.get(&d.request) else {
                    return Err(self.violation(format!("dispatch for unknown {}", d.request)));
                };
                if live.committed {
                    return Err(self.violation(format!("retry of {} after commit", d.request)));
                }
                let Some(i) = self.node_index(d.node) else {
                    return Err(self.violation(format!("dispatch to unknown node {}", d.node)));
                };
                let job = Job {
                    id: d.attempt.0,
                    model: d.model.clone(),
                    prompt_tokens: live.prompt_tokens,
                    output_tokens: live.output_tokens,
                    prefix: live.prefix,
                    embed: live.kind == RequestKind::Embed,
                };
                let started = if self.partitioned.contains(&i) {
                    Err(StartError::NodeDown)
                } else {
                    self.nodes[i].start(now, job)
                };
                match started {
                    Ok(()) => {
                        self.attempts.insert(d.attempt, (i, d.request));
                    }
                    Err(e) => {
                        let f = match e {
                            StartError::NodeDown => UpstreamFailure::Connect,
                            StartError::ModelNotFound => UpstreamFailure::Status { code: 404, saturated: false },
                            StartError::OutOfMemory => UpstreamFailure::Status { code: 500, saturated: false },
                        };
                        self.router.handle_failed(now, d.attempt, f);
                    }
                }
            }
            Command::Commit(c) => {
                if let Some(l) = self.live.get_mut(&c.request) {
                    l.committed = true;
                    l.first_byte.get_or_insert(now);
                }
            }
            Command::Cancel { attempt, reason, .. } => {
                if let Some((i, _)) = self.attempts.remove(&attempt) {
                    self.nodes[i].cancel(now, attempt.0);
                    // A reaped attempt before its first byte ends when the adapter says so: the
                    // call was aborted (a first byte would have been delivered before the cancel).
                    if reason == CancelReason::FirstByteTimeout {
                        self.router.handle_failed(now, attempt, UpstreamFailure::Timeout);
                    }
                }
            }
            Command::Reject { .. } => {}
            Command::Pull { node, model } => self.router.handle_pull_result(now, node, model, false),
        }
        Ok(())
    }

    fn node_index(&self, id: NodeId) -> Option<usize> {
        let name = self.router.fleet().node(id)?.name();
        self.nodes.iter().position(|n| n.name() == name)
    }

    fn record_end(&mut self, id: RequestId, outcome: &Outcome) -> Result<(), Violation> {
        if !self.ended.insert(id) {
            return Err(self.violation(format!("{id} ended twice")));
        }
        let Some(l) = self.live.remove(&id) else {
            return Err(self.violation(format!("{id} ended but was never admitted")));
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let ok = matches!(outcome, Outcome::Completed(_));
        self.last_end = self.now;
        self.finished.push(Finished {
            ttft_ms: l.first_byte.filter(|_| ok).map(|t| ms(t.saturating_since(l.arrival))),
            latency_ms: ms(self.now.saturating_since(l.arrival)),
            ok,
            kind: l.kind,
        });
        // The router cancels or ends every attempt before the request ends; one left here would be
        // a job the node keeps running (a leaked slot).
        if let Some(a) = self.attempts.iter().find(|(_, (_, r))| *r == id).map(|(a, _)| *a) {
            return Err(self.violation(format!("{id} ended with {a:?} still running")));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Violation> {
        self.router.check_consistency().map_err(|w| self.violation(w))?;
        let stats = self.router.stats();
        if stats.in_flight != self.attempts.len() {
            return Err(self.violation(format!(
                "router has {} attempts, the world {}",
                stats.in_flight,
                self.attempts.len()
            )));
        }
        if stats.live != self.live.len() {
            return Err(self.violation(format!(
                "router has {} live requests, the world {}",
                stats.live,
                self.live.len()
            )));
        }
        let max = self.router.config().queue.max_pending_per_queue;
        if let Some((n, m, _)) = self.router.queues().iter().find(|(_, _, q)| q.pending.len() > max) {
            return Err(self.violation(format!("queue {n}/{m} over its bound")));
        }
        // Every job a machine holds belongs to an attempt the router still has (no leaked slot).
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(job) = n.job_ids().find(|j| !self.attempts.contains_key(&AttemptId(*j))) {
                return Err(self.violation(format!("{} holds job {job} that no attempt owns", self.nodes[i].name())));
            }
        }
        // (Timers never in the past are part of `check_consistency`.)
        Ok(())
    }

    /// Hash of every command, event and fault so far: the same seed gives the same hash.
    pub fn trace_hash(&self) -> u64 {
        self.hash
    }

    /// Every ended request.
    pub fn finished(&self) -> &[Finished] {
        &self.finished
    }

    /// The router's counters.
    pub fn counters(&self) -> Counters {
        self.router.stats().counters
    }

    /// The simulated machines.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Virtual time of the last request's end.
    pub fn last_end(&self) -> Instant {
        self.last_end
    }
}

fn toggle(set: &mut BTreeSet<usize>, i: usize, on: bool) {
    if on {
        set.insert(i);
    } else {
        set.remove(&i);
    }
}

/// A seeded schedule of faults over `[0, horizon]`, using only the enabled kinds.
fn fault_schedule(c: &WorldConfig, nodes: usize, horizon: Instant) -> Vec<(Instant, Action)> {
    let mut out = Vec::new();
    if c.faults.is_empty() || nodes == 0 {
        return out;
    }
    let mut rng = Rng::new(c.seed ^ 0xFA17);
    let every = c.fault_every.as_micros().max(1) as u64;
    let mut t = Instant::ZERO + Duration::from_micros(rng.below(every) + every / 2);
    let secs = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_secs(lo + rng.below(hi - lo + 1));
    // One fault window per node at a time, so a Restart never ends another fault's crash and a
    // partition's end never lifts another partition early.
    let mut busy_until = vec![Instant::ZERO; nodes];
    while t <= horizon {
        let kind = c.faults[rng.below(c.faults.len() as u64) as usize];
        let i = rng.below(nodes as u64) as usize;
        if busy_until[i] > t {
            t = t + Duration::from_micros(every / 2 + rng.below(every));
            continue;
        }
        let first = out.len();
        match kind {
            FaultKind::Crash => {
                out.push((t, Action::Inject(i, FaultAction::Crash)));
                out.push((t + secs(&mut rng, 20, 60), Action::Inject(i, FaultAction::Restart)));
            }
            FaultKind::Hang => {
                out.push((t, Action::Inject(i, FaultAction::Hang)));
                out.push((t + secs(&mut rng, 30, 90), Action::Inject(i, FaultAction::Unhang)));
            }
            FaultKind::Stall => out.push((t, Action::Inject(i, FaultAction::Stall))),
            FaultKind::ErrorBurst => out.push((t, Action::Inject(i, FaultAction::Burst(3 + rng.below(8) as u32)))),
            FaultKind::HeartbeatLoss => {
                out.push((t, Action::HeartbeatsLost(i, true)));
                out.push((t + secs(&mut rng, 20, 60), Action::HeartbeatsLost(i, false)));
            }
            FaultKind::Partition => {
                out.push((t, Action::Partitioned(i, true)));
                out.push((t + secs(&mut rng, 20, 60), Action::Partitioned(i, false)));
            }
            FaultKind::Flapping => {
                let mut at = t;
                for _ in 0..5 {
                    out.push((at, Action::Inject(i, FaultAction::Crash)));
                    at = at + secs(&mut rng, 3, 10);
                    out.push((at, Action::Inject(i, FaultAction::Restart)));
                    at = at + secs(&mut rng, 3, 10);
                }
            }
        }
        busy_until[i] = out[first..].iter().map(|a| a.0).max().unwrap_or(t) + Duration::from_secs(1);
        t = t + Duration::from_micros(every / 2 + rng.below(every));
    }
    out.sort_by_key(|a| a.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_core::ids::ModelName;
    use herd_core::request::RequestSpec;

    fn one_node() -> Vec<MachineSpec> {
        vec![MachineSpec {
            name: "box".into(),
            ram_gb: 64.0,
            gpu_vram_gb: vec![],
            bandwidth_gbps: 100.0,
            num_parallel: 1,
            max_loaded_models: 1,
            disk: vec![(ModelName::new("qwen3:8b"), 5.0)],
            preloaded: vec![ModelName::new("qwen3:8b")],
            context_length: 4096,
            load_gbps: 2.0,
            ollama_version: herd_fake_ollama::machine::OLLAMA_VERSION.into(),
        }]
    }

    fn arrival(at_s: u64, output_tokens: u32) -> Arrival {
        Arrival {
            at: Instant::ZERO + Duration::from_secs(at_s),
            spec: RequestSpec::chat("qwen3:8b"),
            output_tokens,
            prefix: None,
        }
    }

    /// A stream running when the node is cut off never completes through the partition.
    #[test]
    fn a_partition_cuts_running_streams() {
        // 100 GB/s, 5 GB: 14 tok/s, so 1000 tokens take about 71 s.
        let mut w = World::new(WorldConfig::default(), one_node(), vec![arrival(10, 1000)]);
        let (on, off) = (Instant::from_secs(20), Instant::from_secs(200));
        w.schedule = vec![(on, Action::Partitioned(0, true)), (off, Action::Partitioned(0, false))];
        w.run().unwrap();
        let f = &w.finished()[0];
        let end = Instant::from_secs(10) + Duration::from_secs_f64(f.latency_ms / 1000.0);
        assert!(!(f.ok && end > on && end < off), "completed at {end:?} inside the partition");
        assert!(!f.ok, "the stalled stream is reaped and the request fails after commit");
    }

    /// Arrivals twelve hours apart are not a lack of progress.
    #[test]
    fn sparse_arrivals_settle() {
        let mut w = World::new(WorldConfig::default(), one_node(), vec![arrival(0, 10), arrival(12 * 3600, 10)]);
        w.run().unwrap();
        assert!(w.finished().iter().all(|f| f.ok));
    }

    /// Fault windows on one node never overlap.
    #[test]
    fn fault_windows_do_not_overlap() {
        for seed in 0..50 {
            let c = WorldConfig {
                seed,
                faults: FaultKind::ALL.to_vec(),
                fault_every: Duration::from_secs(5),
                ..WorldConfig::default()
            };
            let s = fault_schedule(&c, 4, Instant::from_secs(600));
            for i in 0..4 {
                let mut down = 0i32;
                let mut cut = 0i32;
                for (_, a) in s.iter() {
                    match a {
                        Action::Inject(n, FaultAction::Crash) if *n == i => down += 1,
                        Action::Inject(n, FaultAction::Restart) if *n == i => down -= 1,
                        Action::Partitioned(n, on) if *n == i => cut += if *on { 1 } else { -1 },
                        _ => {}
                    }
                    assert!((0..=1).contains(&down) && (0..=1).contains(&cut), "seed {seed} node {i}: {s:?}");
                }
                assert_eq!((down, cut), (0, 0), "every crash restarts and every partition ends");
            }
        }
    }
}
