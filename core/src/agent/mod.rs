//! The node side of heartbeats: when `herd-node` sends a heartbeat to each router it knows, how it
//! backs off from a router that is down, and how it says goodbye on shutdown. Sans-IO: the adapter
//! builds the JSON, performs the HTTP calls this machine asks for, and reports how each one ended.
//!
//! Compared with ollama-herd (reference `herd-node.md` §1.5, §1.15, §8.1): the cadence is fixed-rate
//! (no drift from collection time), every router has its own schedule and backoff, routers can come
//! and go while running (mDNS), and a heartbeat in flight can no longer land after the drain.

use crate::rng::Rng;
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

mod config;
#[cfg(test)]
mod tests;

pub use config::{
    AddRouterError, AgentConfig, AgentConfigError, DurationField, RouterIdx, RouterUrl, RouterUrlError, MAX_URL_BYTES,
    MIN_CONFIG_DURATION,
};

/// Why one send did not reach the router or was not accepted by it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SendFailure {
    /// No connection (refused, unreachable, DNS).
    Connect,
    /// The adapter's own timeout fired. (The agent also times out by itself at `send_timeout`.)
    Timeout,
    /// The router answered with a non-2xx status.
    Status(u16),
    /// The connection broke mid-exchange or the reply was unreadable.
    Protocol,
}

/// How one send ended, as the adapter reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SendOutcome {
    /// The router answered 2xx. (Commands in the reply are the adapter's business.)
    Delivered,
    /// It did not; counts as a connection failure and starts or extends the backoff. Every kind
    /// counts (ollama-herd counted only connect errors): a router answering 500 is no more use.
    Failed(SendFailure),
}

/// A side effect the adapter must perform; drained with [`Agent::poll_command`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AgentCommand {
    /// POST a heartbeat to `{url}/heartbeat`, then report with [`Agent::handle_send_result`]
    /// quoting `router` and `seq`. The counters go into the payload as ollama-herd's fields.
    SendHeartbeat {
        /// Which router.
        router: RouterIdx,
        /// Its URL.
        url: RouterUrl,
        /// Identifies this send; results quoting an older seq are ignored.
        seq: u64,
        /// Failed sends to this router since its last success.
        connection_failures: u32,
        /// Failed sends to this router since the agent started.
        connection_failures_total: u64,
        /// After this long the agent counts the send as failed; abort the request then.
        timeout: Duration,
    },
    /// POST the drain message (`"draining": true`) to `{url}/heartbeat`, then report with
    /// [`Agent::handle_drain_result`]. A heartbeat still in flight to this router must not land
    /// after the drain (it would mark the node online again, reference §1.15 step 3): wait for it
    /// at most `settle` (its answer means the router applied it), then abort it and send the
    /// drain, giving up after `timeout`.
    SendDrain {
        /// Which router.
        router: RouterIdx,
        /// Its URL.
        url: RouterUrl,
        /// How long to let a heartbeat in flight finish first (`None`: none was in flight).
        settle: Option<Duration>,
        /// How long the drain POST may take.
        timeout: Duration,
    },
    /// Ask discovery (mDNS) for a fresh look now: a router it found stopped answering and may
    /// have moved. Report what it finds with [`Agent::handle_discovered`].
    Rescan,
    /// Shutdown is complete; stop driving the agent. Emitted at most once, and last.
    Exit,
}

impl AgentCommand {
    /// The router this command is about, if any.
    pub fn router(&self) -> Option<RouterIdx> {
        match self {
            AgentCommand::SendHeartbeat { router, .. } | AgentCommand::SendDrain { router, .. } => Some(*router),
            AgentCommand::Rescan | AgentCommand::Exit => None,
        }
    }
}

/// Where one router stands, as [`Agent::routers`] reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RouterState {
    /// On the fixed-rate schedule; the next heartbeat goes at `next_send`.
    Scheduled {
        /// When.
        next_send: Instant,
    },
    /// Backing off after failures; the next try goes at `retry_at`.
    BackingOff {
        /// When.
        retry_at: Instant,
    },
    /// A heartbeat is in flight.
    InFlight {
        /// Its seq.
        seq: u64,
        /// When the agent gives up on it.
        deadline: Instant,
    },
    /// Shutdown: the drain message was requested and has no result yet.
    Draining,
    /// Shutdown: the drain message has a result (delivered or not).
    Drained,
}

/// One router's counters and state, for `--once` output and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterStatus<'a> {
    /// Its index.
    pub idx: RouterIdx,
    /// Its URL.
    pub url: &'a RouterUrl,
    /// Where it stands.
    pub state: RouterState,
    /// Failed sends since the last success.
    pub connection_failures: u32,
    /// Failed sends since the agent started.
    pub connection_failures_total: u64,
    /// Heartbeats the router accepted.
    pub delivered: u64,
    /// Ticks skipped because the previous heartbeat was still in flight (or the driver was late).
    pub missed_ticks: u64,
    /// When the last heartbeat was accepted.
    pub last_success: Option<Instant>,
    /// How the last failed send failed.
    pub last_failure: Option<SendFailure>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Waiting { at: Instant },
    InFlight { seq: u64, sent_at: Instant, deadline: Instant },
    Draining,
    Drained,
}

#[derive(Clone, Debug)]
struct Router {
    url: RouterUrl,
    phase: Phase,
    failures: u32,
    failures_total: u64,
    delivered: u64,
    missed_ticks: u64,
    last_success: Option<Instant>,
    last_failure: Option<SendFailure>,
}

/// The fixed-rate grid and backoff arithmetic, in microseconds.
#[derive(Clone, Debug)]
struct Schedule {
    start: u64,
    interval: u64,
    base: u64,
    max: u64,
    send_timeout: Duration,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Schedule {
    /// Index of the last grid point at or before `t` (`t` is never before `start`).
    fn index(&self, t: Instant) -> u64 {
        t.as_micros().saturating_sub(self.start) / self.interval
    }

    fn point(&self, k: u64) -> Instant {
        Instant::from_micros(self.start.saturating_add(k.saturating_mul(self.interval)))
    }

    /// The first grid point strictly after `t`.
    fn after(&self, t: Instant) -> Instant {
        self.point(self.index(t).saturating_add(1))
    }

    /// The first grid point at or after `t`.
    fn at_or_after(&self, t: Instant) -> Instant {
        let k = t.as_micros().saturating_sub(self.start).div_ceil(self.interval);
        self.point(k)
    }

    /// How many grid points lie in `(a, b]`.
    fn count(&self, a: Instant, b: Instant) -> u64 {
        self.index(b).saturating_sub(self.index(a))
    }

    /// Equal jitter after the `n`-th consecutive failure: `d/2 + rand(0..d/2)`,
    /// `d = min(max, base * 2^(n-1))`. Never zero, never above the cap.
    fn backoff(&self, n: u32, rng: &mut Rng) -> Duration {
        let shift = n.saturating_sub(1).min(63);
        let d = self.base.saturating_mul(1u64 << shift).min(self.max);
        let half = d / 2;
        Duration::from_micros(d - half + rng.below(half))
    }
}

impl Router {
    fn new(url: RouterUrl, now: Instant) -> Self {
        Router {
            url,
            phase: Phase::Waiting { at: now },
            failures: 0,
            failures_total: 0,
            delivered: 0,
            missed_ticks: 0,
            last_success: None,
            last_failure: None,
        }
    }

    /// Runs this router's timers due at `now`; returns the heartbeat to send, if one is due.
    fn advance(
        &mut self,
        idx: RouterIdx,
        now: Instant,
        s: &Schedule,
        rng: &mut Rng,
        seq: &mut u64,
    ) -> Option<AgentCommand> {
        if let Phase::InFlight { deadline, .. } = self.phase {
            if now >= deadline {
                self.fail(deadline, SendFailure::Timeout, s, rng);
            }
        }
        let Phase::Waiting { at } = self.phase else {
            return None;
        };
        if at > now {
            return None;
        }
        if self.failures == 0 {
            // The driver came late: every grid point after `at` up to now was skipped.
            self.missed_ticks = self.missed_ticks.saturating_add(s.count(at, now));
        }
        *seq = seq.saturating_add(1);
        self.phase = Phase::InFlight { seq: *seq, sent_at: now, deadline: now + s.send_timeout };
        Some(AgentCommand::SendHeartbeat {
            router: idx,
            url: self.url.clone(),
            seq: *seq,
            connection_failures: self.failures,
            connection_failures_total: self.failures_total,
            timeout: s.send_timeout,
        })
    }

    /// Counts the grid points skipped while the heartbeat sent at `sent_at` was in flight, until
    /// `end` (exclusive: a result at a grid point lets that tick go out).
    fn count_skipped(&mut self, sent_at: Instant, end: Instant, s: &Schedule) {
        if self.failures == 0 && end > sent_at {
            let skipped = s.count(sent_at, Instant::from_micros(end.as_micros() - 1));
            self.missed_ticks = self.missed_ticks.saturating_add(skipped);
        }
    }

    /// The in-flight heartbeat failed at `at`: count it and schedule the backoff retry.
    fn fail(&mut self, at: Instant, failure: SendFailure, s: &Schedule, rng: &mut Rng) {
        if let Phase::InFlight { sent_at, .. } = self.phase {
            self.count_skipped(sent_at, at, s);
        }
        self.failures = self.failures.saturating_add(1);
        self.failures_total = self.failures_total.saturating_add(1);
        self.last_failure = Some(failure);
        self.phase = Phase::Waiting { at: at + s.backoff(self.failures, rng) };
    }

    /// The in-flight heartbeat was accepted at `now`: back to the grid, on the original phase.
    fn succeed(&mut self, sent_at: Instant, now: Instant, s: &Schedule) {
        self.count_skipped(sent_at, now, s);
        self.failures = 0;
        self.delivered = self.delivered.saturating_add(1);
        self.last_success = Some(now);
        self.phase = Phase::Waiting { at: s.after(sent_at).max(s.at_or_after(now)) };
    }

    fn wake(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at } => Some(at),
            Phase::InFlight { deadline, .. } => Some(deadline),
            Phase::Draining | Phase::Drained => None,
        }
    }

    fn status(&self, idx: RouterIdx) -> RouterStatus<'_> {
        let state = match self.phase {
            Phase::Waiting { at } if self.failures == 0 => RouterState::Scheduled { next_send: at },
            Phase::Waiting { at } => RouterState::BackingOff { retry_at: at },
            Phase::InFlight { seq, deadline, .. } => RouterState::InFlight { seq, deadline },
            Phase::Draining => RouterState::Draining,
            Phase::Drained => RouterState::Drained,
        };
        RouterStatus {
            idx,
            url: &self.url,
            state,
            connection_failures: self.failures,
            connection_failures_total: self.failures_total,
            delivered: self.delivered,
            missed_ticks: self.missed_ticks,
            last_success: self.last_success,
            last_failure: self.last_failure,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    Running,
    Draining { exit_at: Instant },
    Exited,
}

/// The heartbeat state machine of one `herd-node`, one schedule per router.
///
/// Drive it like quinn-proto: after every `handle_*` (or [`Agent::add_router`]) drain
/// [`Agent::poll_command`], then sleep until [`Agent::poll_timeout`] and call
/// [`Agent::handle_timeout`]. Every input applies itself, then runs the timers due at its `now`;
/// a `now` earlier than one already seen is treated as the latest one seen.
///
/// ```
/// use herd_core::agent::{Agent, AgentCommand, AgentConfig, RouterUrl, SendOutcome};
/// use herd_core::time::Instant;
///
/// let router = RouterUrl::new("10.0.0.5:11435").unwrap();
/// let mut agent = Agent::new(AgentConfig::default(), vec![router], 42, Instant::ZERO).unwrap();
/// let (mut now, mut sent) = (Instant::ZERO, Vec::new());
/// while now < Instant::from_secs(12) {
///     while let Some(cmd) = agent.poll_command() {
///         if let AgentCommand::SendHeartbeat { router, seq, .. } = cmd {
///             sent.push(now.as_micros() / 1_000_000); // the adapter POSTs; it answers at once
///             agent.handle_send_result(now, router, seq, SendOutcome::Delivered);
///         }
///     }
///     now = agent.poll_timeout().expect("a router is tracked");
///     agent.handle_timeout(now);
/// }
/// assert_eq!(sent, [0, 5, 10]);
/// ```
///
/// Each router moves through these states (`n` = failures since the last success):
///
/// ```text
///   add_router / new                           tick at start + k*interval, previous one
///        |                                     still in flight: skipped, missed_ticks += 1
///        v                                                   +----+
///   +----------+   at <= now: SendHeartbeat(seq)   +----------+   |
///   | Waiting  | --------------------------------> | InFlight | <-+
///   |   {at}   | <-------------------------------- |  {seq}   |
///   +----------+  Delivered: n = 0, at = next grid +----------+
///      ^   ^       point after the send (and >= now)    |
///      |   |                                            | Failed, or deadline
///      |   +--------------------------------------------+ (sent + send_timeout):
///      |        n += 1, at = then + jitter(min(max, base * 2^(n-1)))
///      |
///   any state --handle_shutdown--> Draining --drain result--> Drained
/// ```
///
/// The agent as a whole is `Running`, then `Draining` from [`Agent::handle_shutdown`] until every
/// drain has a result or `drain_timeout` has passed, then `Exited` after emitting
/// [`AgentCommand::Exit`] once.
#[derive(Clone, Debug)]
pub struct Agent {
    config: AgentConfig,
    sched: Schedule,
    last_now: Instant,
    rng: Rng,
    routers: BTreeMap<RouterIdx, Router>,
    next_idx: u32,
    seq: u64,
    mode: Mode,
    commands: VecDeque<AgentCommand>,
    /// Routers found by discovery, by the name they announce (mDNS instance).
    discovered: BTreeMap<String, RouterIdx>,
    last_rescan: Option<Instant>,
}

/// What [`Agent::handle_discovered`] made of a router discovery found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Discovered {
    /// A router not tracked before; its first heartbeat is due at once.
    New(RouterIdx),
    /// Already tracked at that address: nothing changes.
    Known(RouterIdx),
    /// The instance announced a new address (a DHCP change): the old one is no longer tracked.
    Moved {
        /// The router at the old address, now removed.
        from: RouterIdx,
        /// The router at the new one.
        to: RouterIdx,
    },
}

impl Agent {
    /// Starts the agent at `now`, the phase of its fixed-rate grid. The first heartbeat to every
    /// router is due at once; duplicates in `routers` are ignored. `seed` fixes all jitter.
    ///
    /// # Errors
    /// Whatever [`AgentConfig::validate`] says, or [`AgentConfigError::TooManyRouters`].
    pub fn new(
        config: AgentConfig,
        routers: Vec<RouterUrl>,
        seed: u64,
        now: Instant,
    ) -> Result<Agent, AgentConfigError> {
        config.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        let distinct: Vec<RouterUrl> = routers.into_iter().filter(|u| seen.insert(u.clone())).collect();
        if distinct.len() > config.max_routers {
            return Err(AgentConfigError::TooManyRouters { given: distinct.len(), max: config.max_routers });
        }
        let sched = Schedule {
            start: now.as_micros(),
            interval: micros(config.interval),
            base: micros(config.backoff_base),
            max: micros(config.backoff_max),
            send_timeout: config.send_timeout,
        };
        let mut agent = Agent {
            config,
            sched,
            last_now: now,
            rng: Rng::new(seed),
            routers: BTreeMap::new(),
            next_idx: 0,
            seq: 0,
            mode: Mode::Running,
            commands: VecDeque::new(),
            discovered: BTreeMap::new(),
            last_rescan: None,
        };
        for url in distinct {
            // Cannot fail: the agent is running, below its limit, and has handed out no ids.
            let _ = agent.insert(url, now);
        }
        agent.advance(now);
        Ok(agent)
    }

    /// The config the agent runs with.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Starts reporting to a router found later (mDNS). Its first heartbeat is due at once; later
    /// ones follow the agent's original grid. A URL already tracked returns its existing index.
    ///
    /// # Errors
    /// [`AddRouterError::Full`], [`AddRouterError::ShuttingDown`], [`AddRouterError::IdsExhausted`].
    pub fn add_router(&mut self, now: Instant, url: RouterUrl) -> Result<RouterIdx, AddRouterError> {
        let now = self.clamp(now);
        let idx = self.insert(url, now)?;
        self.advance(now);
        Ok(idx)
    }

    fn insert(&mut self, url: RouterUrl, now: Instant) -> Result<RouterIdx, AddRouterError> {
        if self.mode != Mode::Running {
            return Err(AddRouterError::ShuttingDown);
        }
        if let Some((&idx, _)) = self.routers.iter().find(|(_, r)| r.url == url) {
            return Ok(idx);
        }
        if self.routers.len() >= self.config.max_routers {
            return Err(AddRouterError::Full(self.config.max_routers));
        }
        let idx = RouterIdx(self.next_idx);
        self.next_idx = self.next_idx.checked_add(1).ok_or(AddRouterError::IdsExhausted)?;
        self.routers.insert(idx, Router::new(url, now));
        Ok(idx)
    }

    /// Stops tracking a router (mDNS lost it, or the operator removed it). Its queued command is
    /// dropped and later results naming it are ignored. During shutdown it no longer holds up
    /// `Exit`. Returns whether it was tracked.
    pub fn remove_router(&mut self, idx: RouterIdx) -> bool {
        if self.routers.remove(&idx).is_none() {
            return false;
        }
        self.discovered.retain(|_, i| *i != idx);
        self.commands.retain(|c| c.router() != Some(idx));
        self.exit_if_drained();
        true
    }

    /// Reports a router discovery found: `instance` (the name it announces) at `url`. A new one
    /// is tracked; one that announces a new address is followed there (the old address is
    /// dropped). Routers found this way are the ones a run of failures makes the agent ask for
    /// a [`AgentCommand::Rescan`].
    ///
    /// # Errors
    /// As [`Agent::add_router`]; the instance is then not remembered.
    pub fn handle_discovered(
        &mut self,
        now: Instant,
        instance: &str,
        url: RouterUrl,
    ) -> Result<Discovered, AddRouterError> {
        let now = self.clamp(now);
        let old = self.discovered.get(instance).copied();
        if let Some(old) = old {
            if self.routers.get(&old).is_some_and(|r| r.url == url) {
                return Ok(Discovered::Known(old));
            }
        } else if self.discovered.len() >= self.config.max_routers * 4 {
            // Every name maps to a tracked router (removing one forgets its names), so this many
            // is many names for few routers: noise, and a bound on the table.
            return Err(AddRouterError::Full(self.config.max_routers));
        }
        if let Some(old) = old {
            self.remove_router(old);
        }
        let idx = self.insert(url, now)?;
        self.discovered.insert(instance.to_string(), idx);
        self.advance(now);
        Ok(match old {
            Some(from) => Discovered::Moved { from, to: idx },
            None => Discovered::New(idx),
        })
    }

    /// Whether `router` was found by discovery.
    pub fn is_discovered(&self, router: RouterIdx) -> bool {
        self.discovered.values().any(|&i| i == router)
    }

    /// Runs every timer due at `now`: heartbeats on the grid, backoff retries, send deadlines,
    /// the drain deadline. Call it at [`Agent::poll_timeout`] (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.advance(now);
    }

    /// Reports how heartbeat `seq` to `router` ended. A result that is not for the heartbeat now
    /// in flight (older seq, removed router, past its deadline, after shutdown) is ignored.
    pub fn handle_send_result(&mut self, now: Instant, router: RouterIdx, seq: u64, outcome: SendOutcome) {
        let now = self.clamp(now);
        if let Some(r) = self.routers.get_mut(&router) {
            if let Phase::InFlight { seq: current, sent_at, deadline } = r.phase {
                if current == seq && now < deadline {
                    match outcome {
                        SendOutcome::Delivered => r.succeed(sent_at, now, &self.sched),
                        SendOutcome::Failed(f) => r.fail(now, f, &self.sched, &mut self.rng),
                    }
                }
            }
        }
        self.rescan_if_lost(now, router);
        self.advance(now);
    }

    /// A router found by discovery that keeps failing may have moved: ask discovery again now
    /// rather than at its ever longer query interval, at most every `rescan_every`.
    fn rescan_if_lost(&mut self, now: Instant, router: RouterIdx) {
        let failures = self.routers.get(&router).map_or(0, |r| r.failures);
        let due = self.last_rescan.is_none_or(|t| now.saturating_since(t) >= self.config.rescan_every);
        if self.mode == Mode::Running
            && failures >= self.config.rescan_after_failures
            && due
            && self.is_discovered(router)
        {
            self.last_rescan = Some(now);
            if !self.commands.contains(&AgentCommand::Rescan) {
                self.commands.push_back(AgentCommand::Rescan);
            }
        }
    }

    /// Begins shutdown: no more heartbeats, a [`AgentCommand::SendDrain`] for every router (it
    /// replaces any heartbeat not yet polled), and [`AgentCommand::Exit`] once every drain has a
    /// result or `drain_timeout` has passed. With no routers, `Exit` comes at once. Calling it
    /// again does nothing.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.mode != Mode::Running {
            return;
        }
        self.mode = Mode::Draining { exit_at: now + self.config.drain_timeout };
        self.commands.retain(|c| *c != AgentCommand::Rescan);
        // Half the drain budget for a heartbeat in flight to land, half for the drain itself.
        let half = self.config.drain_timeout / 2;
        for (&idx, r) in self.routers.iter_mut() {
            let settle = matches!(r.phase, Phase::InFlight { .. }).then_some(half);
            r.phase = Phase::Draining;
            let cmd = AgentCommand::SendDrain { router: idx, url: r.url.clone(), settle, timeout: half };
            push(&mut self.commands, cmd);
        }
        self.exit_if_drained();
    }

    /// Reports how the drain message to `router` ended; either outcome settles that router (a
    /// drain is not retried: the router marks the node offline on its own once heartbeats stop).
    pub fn handle_drain_result(&mut self, now: Instant, router: RouterIdx, outcome: SendOutcome) {
        let now = self.clamp(now);
        if let Some(r) = self.routers.get_mut(&router) {
            if r.phase == Phase::Draining {
                r.phase = Phase::Drained;
                match outcome {
                    SendOutcome::Delivered => r.last_success = Some(now),
                    SendOutcome::Failed(f) => r.last_failure = Some(f),
                }
            }
        }
        self.exit_if_drained();
        self.advance(now);
    }

    /// The next side effect to perform, oldest first. At most one command per router is queued
    /// (a newer one replaces an unpolled older one), so forgetting to poll cannot grow memory.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<AgentCommand> {
        self.commands.pop_front()
    }

    /// When to call [`Agent::handle_timeout`] next; `None` when no timer is set (no routers, or
    /// exited). Never earlier than the latest `now` given. Has no side effects.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = match self.mode {
            Mode::Exited => None,
            Mode::Draining { exit_at } => Some(exit_at),
            Mode::Running => self.routers.values().filter_map(Router::wake).min(),
        };
        next.map(|t| t.max(self.last_now))
    }

    /// Every tracked router's state and counters, in index order.
    pub fn routers(&self) -> impl Iterator<Item = RouterStatus<'_>> + '_ {
        self.routers.iter().map(|(&idx, r)| r.status(idx))
    }

    /// One router's state and counters, if it is tracked.
    pub fn router(&self, idx: RouterIdx) -> Option<RouterStatus<'_>> {
        self.routers.get(&idx).map(|r| r.status(idx))
    }

    /// Whether [`AgentCommand::Exit`] has been emitted (it may still be waiting in the queue).
    pub fn is_exited(&self) -> bool {
        self.mode == Mode::Exited
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn advance(&mut self, now: Instant) {
        match self.mode {
            Mode::Exited => {}
            Mode::Draining { exit_at } => {
                if now >= exit_at {
                    self.exit();
                }
            }
            Mode::Running => {
                for (&idx, r) in self.routers.iter_mut() {
                    if let Some(cmd) = r.advance(idx, now, &self.sched, &mut self.rng, &mut self.seq) {
                        push(&mut self.commands, cmd);
                    }
                }
            }
        }
    }

    fn exit_if_drained(&mut self) {
        let draining = matches!(self.mode, Mode::Draining { .. });
        if draining && self.routers.values().all(|r| r.phase == Phase::Drained) {
            self.exit();
        }
    }

    fn exit(&mut self) {
        if self.mode != Mode::Exited {
            self.mode = Mode::Exited;
            self.commands.push_back(AgentCommand::Exit);
        }
    }
}

/// Queues `cmd`, dropping any unpolled command for the same router: that one is stale now.
fn push(commands: &mut VecDeque<AgentCommand>, cmd: AgentCommand) {
    if let Some(router) = cmd.router() {
        commands.retain(|c| c.router() != Some(router));
    }
    commands.push_back(cmd);
}
