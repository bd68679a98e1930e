//! Worked examples and properties for the heartbeat agent, over a tiny seeded fake network.

use super::*;
use proptest::prelude::*;

/// A start that is not a multiple of anything, so phase alignment is really tested.
const T0: Instant = Instant::from_micros(1_234_567);

fn at(secs: f64) -> Instant {
    T0 + Duration::from_secs_f64(secs)
}

fn url(s: &str) -> RouterUrl {
    RouterUrl::new(s).unwrap()
}

fn cfg() -> AgentConfig {
    AgentConfig::default()
}

/// How a fake router answers.
#[derive(Copy, Clone, Debug)]
enum Behaviour {
    /// Accepts after `latency` (times 1..=10 tenths, by seq, when `vary`).
    Up { latency: Duration, vary: bool },
    /// Fails with `failure` after `latency`.
    Down { latency: Duration, failure: SendFailure },
    /// Never answers.
    Hang,
}

const UP: Behaviour = Behaviour::Up { latency: Duration::from_millis(100), vary: false };
const REFUSED: Behaviour = Behaviour::Down { latency: Duration::ZERO, failure: SendFailure::Connect };

#[derive(Copy, Clone, Debug, PartialEq)]
enum Pending {
    Heartbeat(RouterIdx, u64, SendOutcome),
    Drain(RouterIdx, SendOutcome),
}

/// A seeded fake network driving one agent with virtual time that jumps to the next event.
struct Net {
    agent: Agent,
    now: Instant,
    behaviour: BTreeMap<RouterIdx, Behaviour>,
    pending: Vec<(Instant, Pending)>,
    log: Vec<(Instant, AgentCommand)>,
}

impl Net {
    fn new(config: AgentConfig, routers: &[&str], seed: u64) -> Net {
        let urls = routers.iter().map(|s| url(s)).collect();
        let agent = Agent::new(config, urls, seed, T0).unwrap();
        Net { agent, now: T0, behaviour: BTreeMap::new(), pending: Vec::new(), log: Vec::new() }
    }

    fn set(&mut self, router: u32, b: Behaviour) {
        self.behaviour.insert(RouterIdx(router), b);
    }

    fn pump(&mut self) {
        while let Some(cmd) = self.agent.poll_command() {
            let (router, seq) = match &cmd {
                AgentCommand::SendHeartbeat { router, seq, .. } => (*router, Some(*seq)),
                AgentCommand::SendDrain { router, .. } => (*router, None),
                AgentCommand::Rescan | AgentCommand::Exit => {
                    self.log.push((self.now, cmd));
                    continue;
                }
            };
            let (latency, outcome) = match self.behaviour.get(&router).copied().unwrap_or(UP) {
                Behaviour::Up { latency, vary } => {
                    let tenths = if vary { seq.unwrap_or(0) % 10 + 1 } else { 10 };
                    (latency * tenths as u32 / 10, SendOutcome::Delivered)
                }
                Behaviour::Down { latency, failure } => (latency, SendOutcome::Failed(failure)),
                Behaviour::Hang => (Duration::ZERO, SendOutcome::Delivered),
            };
            if !matches!(self.behaviour.get(&router), Some(Behaviour::Hang)) {
                let p = match seq {
                    Some(seq) => Pending::Heartbeat(router, seq, outcome),
                    None => Pending::Drain(router, outcome),
                };
                self.pending.push((self.now + latency, p));
            }
            self.log.push((self.now, cmd));
        }
    }

    /// Delivers results and fires timers in time order up to `end`, then sets the clock to `end`.
    fn run_until(&mut self, end: Instant) {
        for _ in 0..1_000_000 {
            self.pump();
            let first = (0..self.pending.len()).min_by_key(|&i| (self.pending[i].0, i));
            let result_at = first.map(|i| self.pending[i].0);
            let timer = self.agent.poll_timeout();
            let next = match (result_at, timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            assert!(next >= self.now, "time went backwards");
            self.now = next;
            match first {
                Some(i) if self.pending[i].0 == next => match self.pending.remove(i).1 {
                    Pending::Heartbeat(r, seq, o) => self.agent.handle_send_result(next, r, seq, o),
                    Pending::Drain(r, o) => self.agent.handle_drain_result(next, r, o),
                },
                _ => self.agent.handle_timeout(next),
            }
        }
        self.pump();
        self.now = self.now.max(end);
    }

    /// (time, connection_failures, connection_failures_total) of every heartbeat to `router`.
    fn sends(&self, router: u32) -> Vec<(Instant, u32, u64)> {
        let mut out = Vec::new();
        for (t, c) in &self.log {
            if let AgentCommand::SendHeartbeat { router: r, connection_failures, connection_failures_total, .. } = c {
                if *r == RouterIdx(router) {
                    out.push((*t, *connection_failures, *connection_failures_total));
                }
            }
        }
        out
    }

    fn status(&self, router: u32) -> RouterStatus<'_> {
        self.agent.router(RouterIdx(router)).unwrap()
    }
}

fn drain_all(agent: &mut Agent) -> Vec<AgentCommand> {
    std::iter::from_fn(|| agent.poll_command()).collect()
}

#[test]
fn config_validation_names_the_problem() {
    assert_eq!(cfg().validate(), Ok(()));
    let zero = AgentConfig { interval: Duration::ZERO, ..cfg() };
    assert_eq!(
        zero.validate(),
        Err(AgentConfigError::TooShort { field: DurationField::Interval, value: Duration::ZERO })
    );
    let tiny = AgentConfig { send_timeout: Duration::from_micros(999), ..cfg() };
    assert!(matches!(tiny.validate(), Err(AgentConfigError::TooShort { field: DurationField::SendTimeout, .. })));
    let inverted = AgentConfig { backoff_base: Duration::from_secs(61), ..cfg() };
    assert!(matches!(inverted.validate(), Err(AgentConfigError::BackoffBaseAboveMax { .. })));
    let none = AgentConfig { max_routers: 0, ..cfg() };
    assert_eq!(none.validate(), Err(AgentConfigError::ZeroMaxRouters));
    let two = AgentConfig { max_routers: 2, ..cfg() };
    let urls = vec![url("a:1"), url("http://a:1/"), url("b:1"), url("c:1")];
    let err = Agent::new(two, urls, 0, T0).unwrap_err();
    assert_eq!(err, AgentConfigError::TooManyRouters { given: 3, max: 2 });
    assert!(err.to_string().contains("at most 2"));
}

#[test]
fn router_urls_are_normalised() {
    assert_eq!(url(" 10.0.0.5:11435/ ").as_str(), "http://10.0.0.5:11435");
    assert_eq!(url("HTTPS://r.lan//").as_str(), "https://r.lan:11435");
    assert_eq!(url("r.lan").as_str(), url("http://R.LAN:11435/").as_str(), "one router, two spellings");
    assert_eq!(RouterUrl::new("  "), Err(RouterUrlError::Empty));
    assert_eq!(RouterUrl::new("http://"), Err(RouterUrlError::Empty));
    assert_eq!(RouterUrl::new("a b"), Err(RouterUrlError::InvalidChar(' ')));
    assert_eq!(RouterUrl::new("ftp://x"), Err(RouterUrlError::UnsupportedScheme("ftp".to_string())));
    assert_eq!(RouterUrl::new(&"x".repeat(3000)), Err(RouterUrlError::TooLong(3000)));
}

#[test]
fn cadence_is_exactly_every_interval_over_100_ticks_despite_late_results() {
    let mut net = Net::new(cfg(), &["r1:11435"], 1);
    // Results arrive 0.39..3.9 s after each send: late, but inside the 4 s send timeout.
    net.set(0, Behaviour::Up { latency: Duration::from_millis(3900), vary: true });
    net.run_until(at(495.0));
    let sends = net.sends(0);
    assert_eq!(sends.len(), 100);
    for (k, (t, failures, total)) in sends.iter().enumerate() {
        assert_eq!(*t, at(5.0 * k as f64), "tick {k}");
        assert_eq!((*failures, *total), (0, 0));
    }
    let s = net.status(0);
    assert_eq!((s.delivered, s.missed_ticks), (99, 0));
    assert_eq!(s.state, RouterState::InFlight { seq: 100, deadline: at(499.0) });
}

#[test]
fn a_late_driver_gets_one_heartbeat_not_a_burst() {
    let mut agent = Agent::new(cfg(), vec![url("r:1")], 0, T0).unwrap();
    assert_eq!(drain_all(&mut agent).len(), 1);
    agent.handle_send_result(at(0.1), RouterIdx(0), 1, SendOutcome::Delivered);
    assert_eq!(agent.poll_timeout(), Some(at(5.0)));
    agent.handle_timeout(at(17.0));
    assert_eq!(drain_all(&mut agent).len(), 1);
    assert_eq!(agent.router(RouterIdx(0)).unwrap().missed_ticks, 2); // ticks 10 and 15
    agent.handle_send_result(at(17.1), RouterIdx(0), 2, SendOutcome::Delivered);
    assert_eq!(agent.poll_timeout(), Some(at(20.0)));
}

fn backoff_gaps(seed: u64) -> Vec<Duration> {
    let mut net = Net::new(cfg(), &["r:1"], seed);
    net.set(0, REFUSED);
    net.run_until(at(1000.0));
    let sends = net.sends(0);
    for (i, (_, failures, total)) in sends.iter().enumerate() {
        assert_eq!((*failures as usize, *total as usize), (i, i));
    }
    sends.windows(2).map(|w| w[1].0.saturating_since(w[0].0)).collect()
}

#[test]
fn backoff_doubles_is_capped_and_jitter_is_fixed_by_the_seed() {
    let gaps = backoff_gaps(7);
    assert!(gaps.len() > 15, "{}", gaps.len());
    for (i, gap) in gaps.iter().enumerate() {
        // After failure n = i + 1: d = min(60 s, 1 s * 2^i); equal jitter puts the gap in [d/2, d).
        let d = Duration::from_secs(1u64 << i.min(6)).min(Duration::from_secs(60));
        assert!(*gap >= d / 2 && *gap < d, "gap {i} = {gap:?}, d = {d:?}");
    }
    let capped = &gaps[6..];
    assert!(capped.windows(2).any(|w| w[0] != w[1]), "capped gaps are jittered");
    assert_eq!(backoff_gaps(7), gaps, "same seed, same gaps");
    assert_ne!(backoff_gaps(8), gaps, "another seed, other gaps");
}

#[test]
fn recovery_realigns_to_the_original_phase_within_one_interval() {
    let mut net = Net::new(cfg(), &["r:1"], 3);
    net.set(0, Behaviour::Down { latency: Duration::from_millis(10), failure: SendFailure::Connect });
    net.run_until(at(100.3));
    let down = net.sends(0).len();
    let failures = net.status(0).connection_failures;
    assert!(failures >= 6);
    net.set(0, Behaviour::Up { latency: Duration::from_millis(50), vary: false });
    net.run_until(at(300.0));
    let after = &net.sends(0)[down..];
    // The first try after the restart still reports the outage; it succeeds 50 ms later.
    assert_eq!(after[0].1, failures);
    let success = after[0].0 + Duration::from_millis(50);
    assert!(after[1].0 > success && after[1].0 <= success + cfg().interval);
    for (t, f, total) in &after[1..] {
        assert_eq!(t.saturating_since(T0).as_micros() % 5_000_000, 0, "on the grid: {t:?}");
        assert_eq!((*f, *total), (0, u64::from(failures)));
    }
    for w in after[1..].windows(2) {
        assert_eq!(w[1].0.saturating_since(w[0].0), cfg().interval);
    }
    assert!(net.status(0).last_success >= Some(after[after.len() - 2].0));
}

#[test]
fn a_dead_router_never_delays_a_live_one() {
    for dead in [Behaviour::Hang, REFUSED] {
        let mut net = Net::new(cfg(), &["live:1", "dead:1"], 5);
        net.set(0, Behaviour::Up { latency: Duration::from_millis(3000), vary: true });
        net.set(1, dead);
        net.run_until(at(495.0));
        let live = net.sends(0);
        assert_eq!(live.len(), 100);
        for (k, (t, f, _)) in live.iter().enumerate() {
            assert_eq!((*t, *f), (at(5.0 * k as f64), 0));
        }
        let d = net.status(1);
        assert!(d.connection_failures_total >= 10 && d.delivered == 0, "{d:?}");
        let expected = match dead {
            Behaviour::Hang => SendFailure::Timeout,
            _ => SendFailure::Connect,
        };
        assert_eq!(d.last_failure, Some(expected));
    }
}

#[test]
fn a_tick_during_a_slow_send_is_skipped_and_counted() {
    let slow = AgentConfig { send_timeout: Duration::from_secs(12), ..cfg() };
    // Hanging: ticks at 5 and 10 are skipped; the send fails at 12 and backoff takes over.
    let mut net = Net::new(slow.clone(), &["r:1"], 0);
    net.set(0, Behaviour::Hang);
    net.run_until(at(12.4));
    assert_eq!(net.sends(0).len(), 1);
    let s = net.status(0);
    assert_eq!((s.missed_ticks, s.connection_failures), (2, 1));
    let RouterState::BackingOff { retry_at } = s.state else { panic!("{s:?}") };
    assert!(retry_at >= at(12.5) && retry_at < at(13.0), "{retry_at:?}");
    // Answering after 7 s: every other tick is skipped and the rest stay on the grid.
    let mut net = Net::new(slow, &["r:1"], 0);
    net.set(0, Behaviour::Up { latency: Duration::from_secs(7), vary: false });
    net.run_until(at(100.0));
    let times: Vec<Instant> = net.sends(0).iter().map(|s| s.0).collect();
    let expected: Vec<Instant> = (0..=10).map(|k| at(10.0 * f64::from(k))).collect();
    assert_eq!(times, expected);
    assert_eq!(net.status(0).missed_ticks, 10);
}

#[test]
fn shutdown_drains_every_router_then_exits_when_all_answered() {
    let mut net = Net::new(cfg(), &["a:1", "b:1"], 0);
    net.set(1, Behaviour::Down { latency: Duration::from_millis(300), failure: SendFailure::Status(500) });
    net.run_until(at(12.0));
    net.agent.handle_shutdown(at(12.0));
    assert_eq!(net.agent.poll_timeout(), Some(at(14.0)));
    net.run_until(at(60.0));
    let after: Vec<&AgentCommand> = net.log.iter().filter(|(t, _)| *t >= at(12.0)).map(|(_, c)| c).collect();
    assert_eq!(
        after,
        [
            &AgentCommand::SendDrain {
                router: RouterIdx(0),
                url: url("a:1"),
                settle: None,
                timeout: Duration::from_secs(1)
            },
            &AgentCommand::SendDrain {
                router: RouterIdx(1),
                url: url("b:1"),
                settle: None,
                timeout: Duration::from_secs(1)
            },
            &AgentCommand::Exit,
        ]
    );
    assert_eq!(net.log.last().unwrap().0, at(12.3), "exit once the slower drain answered");
    assert!(net.agent.is_exited());
    assert_eq!(net.agent.poll_timeout(), None);
    assert_eq!(net.status(1).state, RouterState::Drained);
}

#[test]
fn shutdown_exits_after_drain_timeout_when_a_router_hangs() {
    let mut net = Net::new(cfg(), &["a:1", "b:1"], 0);
    net.run_until(at(3.0));
    net.set(1, Behaviour::Hang);
    net.agent.handle_shutdown(at(3.0));
    net.run_until(at(4.999));
    assert!(!net.agent.is_exited());
    assert_eq!(net.status(0).state, RouterState::Drained);
    assert_eq!(net.status(1).state, RouterState::Draining);
    net.run_until(at(10.0));
    assert_eq!(net.log.last().unwrap(), &(at(5.0), AgentCommand::Exit));
}

#[test]
fn shutdown_edge_cases() {
    // No routers: Exit at once, and only once.
    let mut agent = Agent::new(cfg(), vec![], 0, T0).unwrap();
    assert_eq!(agent.poll_timeout(), None);
    agent.handle_shutdown(at(1.0));
    agent.handle_shutdown(at(2.0));
    assert_eq!(drain_all(&mut agent), [AgentCommand::Exit]);
    assert_eq!(agent.add_router(at(3.0), url("r:1")), Err(AddRouterError::ShuttingDown));
    agent.handle_timeout(at(100.0));
    assert_eq!(drain_all(&mut agent), []);

    // A heartbeat in flight at shutdown: its unpolled command is replaced, its result ignored.
    let mut agent = Agent::new(cfg(), vec![url("r:1"), url("s:1")], 0, T0).unwrap();
    let first = agent.poll_command();
    assert!(matches!(first, Some(AgentCommand::SendHeartbeat { seq: 1, .. })));
    agent.handle_shutdown(at(0.5));
    let cmds = drain_all(&mut agent);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(cmds.iter().all(|c| matches!(c, AgentCommand::SendDrain { .. })));
    agent.handle_send_result(at(0.6), RouterIdx(0), 1, SendOutcome::Delivered);
    assert_eq!(agent.router(RouterIdx(0)).unwrap().delivered, 0);
    // Removing the routers still draining releases Exit.
    agent.handle_drain_result(at(0.7), RouterIdx(0), SendOutcome::Failed(SendFailure::Connect));
    assert!(!agent.is_exited());
    assert!(agent.remove_router(RouterIdx(1)));
    assert_eq!(drain_all(&mut agent), [AgentCommand::Exit]);
}

#[test]
fn stale_results_are_ignored() {
    let mut agent = Agent::new(cfg(), vec![url("r:1")], 0, T0).unwrap();
    drain_all(&mut agent);
    let inflight = agent.router(RouterIdx(0)).unwrap().state;
    agent.handle_send_result(at(1.0), RouterIdx(0), 99, SendOutcome::Delivered);
    agent.handle_send_result(at(1.0), RouterIdx(7), 1, SendOutcome::Delivered);
    assert_eq!(agent.router(RouterIdx(0)).unwrap().state, inflight);
    // A result exactly at the deadline is too late: the send has already timed out.
    agent.handle_send_result(at(4.0), RouterIdx(0), 1, SendOutcome::Delivered);
    let s = agent.router(RouterIdx(0)).unwrap();
    assert_eq!((s.delivered, s.connection_failures), (0, 1));
    assert_eq!(s.last_failure, Some(SendFailure::Timeout));
    // A second result for the same seq changes nothing either.
    agent.handle_send_result(at(4.1), RouterIdx(0), 1, SendOutcome::Failed(SendFailure::Connect));
    assert_eq!(agent.router(RouterIdx(0)).unwrap().connection_failures, 1);
    assert!(drain_all(&mut agent).is_empty());
}

#[test]
fn poll_timeout_is_never_in_the_past_even_if_now_goes_back() {
    let mut agent = Agent::new(cfg(), vec![url("r:1")], 0, T0).unwrap();
    drain_all(&mut agent);
    agent.handle_timeout(at(3.0));
    assert_eq!(agent.poll_timeout(), Some(at(4.0)));
    agent.handle_timeout(at(1.0)); // an adapter clock that stepped back
    assert_eq!(agent.poll_timeout(), Some(at(4.0)));
    // A result that lands the next tick in the past of `now` answers `now`, not earlier.
    agent.handle_timeout(at(3.99));
    agent.handle_send_result(at(2.0), RouterIdx(0), 1, SendOutcome::Delivered);
    assert_eq!(agent.poll_timeout(), Some(at(5.0)));
    assert!(agent.poll_timeout() >= Some(at(3.99)));
}

#[test]
fn routers_found_later_send_at_once_then_follow_the_original_phase() {
    let two = AgentConfig { max_routers: 2, ..cfg() };
    let mut agent = Agent::new(two, vec![], 0, T0).unwrap();
    let a = agent.add_router(at(7.3), url("a:1")).unwrap();
    assert!(matches!(agent.poll_command(), Some(AgentCommand::SendHeartbeat { router, .. }) if router == a));
    assert_eq!(agent.add_router(at(7.3), url("http://a:1/")), Ok(a), "duplicate");
    assert_eq!(agent.poll_command(), None);
    agent.handle_send_result(at(7.4), a, 1, SendOutcome::Delivered);
    assert_eq!(agent.poll_timeout(), Some(at(10.0)));
    let b = agent.add_router(at(7.5), url("b:1")).unwrap();
    assert_eq!(agent.add_router(at(7.5), url("c:1")), Err(AddRouterError::Full(2)));
    // Removing a router drops its unpolled command; a result naming it is ignored.
    assert!(agent.remove_router(b));
    assert!(!agent.remove_router(b));
    assert_eq!(agent.poll_command(), None);
    agent.handle_send_result(at(7.6), b, 2, SendOutcome::Delivered);
    let c = agent.add_router(at(8.0), url("c:1")).unwrap();
    assert_eq!(c, RouterIdx(2), "indices are never reused");
    let names: Vec<&str> = agent.routers().map(|s| s.url.as_str()).collect();
    assert_eq!(names, ["http://a:1", "http://c:1"]);
}

#[test]
fn an_unpolled_queue_stays_bounded() {
    let mut agent = Agent::new(cfg(), vec![url("a:1"), url("b:1")], 0, T0).unwrap();
    for s in 0..2000 {
        agent.handle_timeout(at(f64::from(s)));
    }
    assert!(agent.commands.len() <= 2, "{}", agent.commands.len());
    assert!(agent.router(RouterIdx(0)).unwrap().connection_failures_total > 25);
}

// ---- properties over random operation sequences ----

#[derive(Clone, Debug)]
enum Op {
    Advance(u32),
    ToTimeout,
    Result(usize, Option<SendFailure>),
    Stale(u32, u64),
    Add(u8),
    Remove(u32),
    Shutdown,
    Drain(usize, bool),
    Backwards(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let failure = prop_oneof![
        Just(None),
        Just(Some(SendFailure::Connect)),
        Just(Some(SendFailure::Timeout)),
        (400u16..600).prop_map(|s| Some(SendFailure::Status(s))),
        Just(Some(SendFailure::Protocol)),
    ];
    prop_oneof![
        12 => (0u32..15_000).prop_map(Op::Advance),
        12 => Just(Op::ToTimeout),
        12 => (any::<usize>(), failure).prop_map(|(i, f)| Op::Result(i, f)),
        2 => (0u32..6, 0u64..40).prop_map(|(r, s)| Op::Stale(r, s)),
        3 => (0u8..6).prop_map(Op::Add),
        2 => (0u32..6).prop_map(Op::Remove),
        1 => Just(Op::Shutdown),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Drain(i, ok)),
        2 => (0u32..10_000).prop_map(Op::Backwards),
    ]
}

/// Applies `ops`, checks every invariant after each, and returns the timed command trace.
fn run(config: AgentConfig, seed: u64, ops: &[Op]) -> Vec<(Instant, AgentCommand)> {
    let send_timeout = config.send_timeout;
    let mut agent = Agent::new(config, vec![url("r0:1"), url("r1:1")], seed, T0).unwrap();
    let mut now = T0;
    let mut trace = Vec::new();
    // Heartbeats sent and not yet answered by the fake network: (router, seq, sent at).
    let mut open: Vec<(RouterIdx, u64, Instant)> = Vec::new();
    let mut drains: Vec<RouterIdx> = Vec::new();
    let mut shut = false;
    for op in std::iter::once(&Op::Advance(0)).chain(ops) {
        match *op {
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms));
                agent.handle_timeout(now);
            }
            Op::ToTimeout => {
                if let Some(t) = agent.poll_timeout() {
                    now = t;
                    agent.handle_timeout(now);
                }
            }
            Op::Result(i, failure) if !open.is_empty() => {
                let (r, seq, _) = open.remove(i % open.len());
                let outcome = failure.map_or(SendOutcome::Delivered, SendOutcome::Failed);
                agent.handle_send_result(now, r, seq, outcome);
            }
            Op::Result(..) => {}
            Op::Stale(r, seq) => {
                // Usually stale; if it happens to name the open heartbeat, it answers it.
                open.retain(|o| (o.0, o.1) != (RouterIdx(r), seq));
                agent.handle_send_result(now, RouterIdx(r), seq, SendOutcome::Delivered)
            }
            Op::Add(n) => {
                let added = agent.add_router(now, url(&format!("r{n}:1")));
                assert_eq!(added.is_err(), shut, "{added:?}"); // 6 names, room for 8
            }
            Op::Remove(r) => {
                agent.remove_router(RouterIdx(r));
            }
            Op::Shutdown => {
                shut = true;
                agent.handle_shutdown(now);
            }
            Op::Drain(i, ok) if !drains.is_empty() => {
                let r = drains.remove(i % drains.len());
                let outcome = if ok { SendOutcome::Delivered } else { SendOutcome::Failed(SendFailure::Connect) };
                agent.handle_drain_result(now, r, outcome);
            }
            Op::Drain(..) => {}
            Op::Backwards(ms) => agent.handle_timeout(now - Duration::from_millis(u64::from(ms))),
        }
        assert!(agent.commands.len() <= agent.routers.len() + 1, "queue bounded");
        while let Some(cmd) = agent.poll_command() {
            assert!(!trace.iter().any(|(_, c)| *c == AgentCommand::Exit), "nothing after Exit");
            match &cmd {
                AgentCommand::SendHeartbeat { router, seq, connection_failures, connection_failures_total, .. } => {
                    assert!(!shut, "no heartbeat after shutdown");
                    assert!(u64::from(*connection_failures) <= *connection_failures_total);
                    for (r, _, sent) in &open {
                        assert!(r != router || *sent + send_timeout <= now, "two in flight");
                    }
                    open.push((*router, *seq, now));
                }
                AgentCommand::SendDrain { router, .. } => drains.push(*router),
                AgentCommand::Rescan => assert!(!shut, "no rescan after shutdown"),
                AgentCommand::Exit => assert!(shut),
            }
            trace.push((now, cmd));
        }
        if let Some(t) = agent.poll_timeout() {
            assert!(t >= now, "poll_timeout {t:?} before now {now:?}");
        }
        assert_eq!(agent.poll_timeout(), agent.poll_timeout(), "side-effect free");
    }
    trace
}

fn config() -> impl Strategy<Value = AgentConfig> {
    (1u64..4, 0usize..4).prop_map(|(base, t)| AgentConfig {
        backoff_base: Duration::from_secs(base),
        send_timeout: Duration::from_secs([2, 4, 7, 12][t]),
        max_routers: 8,
        ..cfg()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never two heartbeats in flight to one router; poll_timeout never before now; Exit at most
    /// once and last; no heartbeat after shutdown; queue bounded (all checked inside `run`).
    #[test]
    fn invariants_hold_for_any_operation_sequence(
        config in config(), seed: u64, ops in prop::collection::vec(op(), 0..200)
    ) {
        run(config, seed, &ops);
    }

    /// Same config, seed and inputs give the same command trace.
    #[test]
    fn same_seed_and_ops_give_the_same_trace(
        config in config(), seed: u64, ops in prop::collection::vec(op(), 0..200)
    ) {
        prop_assert_eq!(run(config.clone(), seed, &ops), run(config, seed, &ops));
    }

    /// Without shutdown every router keeps being tried: with nobody answering, each one gets a
    /// heartbeat at least once per `send_timeout + backoff_max`.
    #[test]
    fn a_silent_network_never_starves_a_router(seed: u64, n in 1usize..5) {
        let urls = (0..n).map(|i| url(&format!("r{i}:1"))).collect();
        let mut agent = Agent::new(cfg(), urls, seed, T0).unwrap();
        let mut last = vec![T0; n];
        while let Some(t) = agent.poll_timeout().filter(|t| *t < at(3600.0)) {
            agent.handle_timeout(t);
            while let Some(AgentCommand::SendHeartbeat { router, .. }) = agent.poll_command() {
                let gap = t.saturating_since(last[router.0 as usize]);
                prop_assert!(gap <= Duration::from_secs(64), "{:?}", gap);
                last[router.0 as usize] = t;
            }
        }
        prop_assert!(last.iter().all(|t| *t > at(3500.0)));
    }
}

/// "Sometimes" counters: the random operations do reach the rare paths the properties guard.
#[test]
fn random_operations_reach_the_rare_paths() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (config(), any::<u64>(), prop::collection::vec(op(), 0..200));
    let (mut exits, mut drains, mut backoffs, mut added) = (0, 0, 0, 0);
    for _ in 0..200 {
        let (config, seed, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let trace = run(config, seed, &ops);
        exits += usize::from(trace.iter().any(|(_, c)| *c == AgentCommand::Exit));
        drains += usize::from(trace.iter().any(|(_, c)| matches!(c, AgentCommand::SendDrain { .. })));
        let retried = |c: &AgentCommand| matches!(c, AgentCommand::SendHeartbeat { connection_failures: 3.., .. });
        backoffs += usize::from(trace.iter().any(|(_, c)| retried(c)));
        // A router found later (by `Add`) was sent a heartbeat.
        added += usize::from(trace.iter().any(|(_, c)| c.router() > Some(RouterIdx(1))));
    }
    let seen = [exits, drains, backoffs, added];
    assert!(seen.iter().all(|&n| n > 20), "exits, drains, backoffs, added: {seen:?}");
}

#[test]
fn discovery_tracks_new_routers_and_follows_a_move() {
    let mut agent = Agent::new(cfg(), vec![], 1, at(0.0)).unwrap();
    let first = agent.handle_discovered(at(1.0), "herd", url("10.0.0.1:11435")).unwrap();
    let Discovered::New(a) = first else { panic!("{first:?}") };
    assert!(agent.is_discovered(a));
    assert_eq!(agent.handle_discovered(at(2.0), "herd", url("10.0.0.1:11435")).unwrap(), Discovered::Known(a));
    // A DHCP change: the same instance at a new address replaces the old router.
    let moved = agent.handle_discovered(at(3.0), "herd", url("10.0.0.9:11435")).unwrap();
    let Discovered::Moved { from, to } = moved else { panic!("{moved:?}") };
    assert_eq!(from, a);
    assert!(agent.router(a).is_none(), "the old address is no longer tracked");
    assert_eq!(agent.router(to).unwrap().url, &url("10.0.0.9:11435"));
    assert!(agent.is_discovered(to) && !agent.is_discovered(a));
}

#[test]
fn a_discovered_router_that_keeps_failing_asks_for_a_rescan_at_most_every_period() {
    let mut net = Net::new(cfg(), &[], 0);
    let Discovered::New(idx) = net.agent.handle_discovered(at(0.0), "herd", url("a:1")).unwrap() else { panic!() };
    net.set(idx.0, Behaviour::Down { latency: Duration::from_millis(10), failure: SendFailure::Connect });
    net.run_until(at(200.0));
    let rescans: Vec<Instant> = net.log.iter().filter(|(_, c)| *c == AgentCommand::Rescan).map(|(t, _)| *t).collect();
    assert!(!rescans.is_empty(), "three failures ask for a rescan");
    for w in rescans.windows(2) {
        assert!(w[1].saturating_since(w[0]) >= Duration::from_secs(30), "throttled: {rescans:?}");
    }
    // A router the operator named is never rescanned for.
    let mut named = Net::new(cfg(), &["b:1"], 0);
    named.set(0, Behaviour::Down { latency: Duration::from_millis(10), failure: SendFailure::Connect });
    named.run_until(at(200.0));
    assert!(!named.log.iter().any(|(_, c)| *c == AgentCommand::Rescan));
}

#[test]
fn a_heartbeat_in_flight_at_shutdown_gets_half_the_drain_budget_to_land() {
    let mut agent = Agent::new(cfg(), vec![url("a:1"), url("b:1")], 1, at(0.0)).unwrap();
    // Both heartbeats go out; only b's answers.
    let mut seqs = Vec::new();
    while let Some(c) = agent.poll_command() {
        if let AgentCommand::SendHeartbeat { router, seq, .. } = c {
            seqs.push((router, seq));
        }
    }
    agent.handle_send_result(at(0.1), seqs[1].0, seqs[1].1, SendOutcome::Delivered);
    agent.handle_shutdown(at(0.2));
    let drains: Vec<AgentCommand> = std::iter::from_fn(|| agent.poll_command()).collect();
    let half = cfg().drain_timeout / 2;
    assert_eq!(
        drains,
        [
            AgentCommand::SendDrain { router: RouterIdx(0), url: url("a:1"), settle: Some(half), timeout: half },
            AgentCommand::SendDrain { router: RouterIdx(1), url: url("b:1"), settle: None, timeout: half },
        ]
    );
}
