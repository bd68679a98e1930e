use super::*;
use crate::fleet::heartbeat::Heartbeat;
use crate::fleet::tests::hb;
use crate::request::{FallbackChoice, RequestKind};
use std::time::Duration;

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

struct T {
    r: Router,
    cmds: Vec<Command>,
    events: Vec<Event>,
}

impl T {
    /// A router whose fleet is complete from the start (no startup grace); the grace has its
    /// own tests, built with [`T::with_grace`].
    fn new(mut config: RouterConfig) -> T {
        config.fleet.startup_grace = Duration::ZERO;
        T::with_grace(config)
    }
    fn with_grace(config: RouterConfig) -> T {
        T { r: Router::new(config, 7, Instant::ZERO).unwrap(), cmds: vec![], events: vec![] }
    }
    fn drain(&mut self) {
        while let Some(c) = self.r.poll_command() {
            self.cmds.push(c);
        }
        while let Some(e) = self.r.poll_event() {
            self.events.push(e);
        }
    }
    fn node(&mut self, now: Instant, h: Heartbeat) -> NodeId {
        let id = self.r.handle_report(now, Report::Heartbeat(Box::new(h))).unwrap().node;
        self.drain();
        id
    }
    fn request(&mut self, now: Instant, spec: RequestSpec) -> RequestId {
        let id = self.r.handle_request(now, spec);
        self.drain();
        id
    }
    fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.cmds)
    }
    fn dispatch(&mut self) -> Dispatch {
        let cmds = self.take();
        match cmds.as_slice() {
            [Command::Dispatch(d)] => d.clone(),
            other => panic!("expected one dispatch, got {other:?}"),
        }
    }
    fn ended(&self, id: RequestId) -> Vec<&Trace> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Ended(t) if t.request == id => Some(t),
                _ => None,
            })
            .collect()
    }
}

fn loaded(name: &str, model: &str) -> Heartbeat {
    let mut h = hb(name, &[(model, 5.0, 8192)], &[model]);
    h.ollama.num_parallel = 1;
    h
}

fn cold(name: &str, model: &str) -> Heartbeat {
    let mut h = hb(name, &[], &[model]);
    h.ollama.num_parallel = 1;
    h
}

#[test]
fn happy_path_dispatch_commit_finish() {
    let mut t = T::new(RouterConfig::default());
    let a = t.node(secs(0), loaded("a", "m:7b"));
    let id = t.request(secs(1), RequestSpec::chat("m:7b"));
    let d = t.dispatch();
    assert_eq!((d.node, d.model.as_str(), d.attempt_no), (a, "m:7b", 1));
    assert_eq!(d.num_ctx, Some(8192), "absent num_ctx is pinned to the resident window");
    t.r.handle_connected(secs(1), d.attempt);
    t.r.handle_first_byte(secs(2), d.attempt);
    t.drain();
    let cmds = t.take();
    let [Command::Commit(c)] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!((c.node, c.attempts, c.route), (a, 1, RouteKind::Primary));
    t.r.handle_finished(secs(3), d.attempt, Usage { prompt_tokens: 10, completion_tokens: 20 });
    t.drain();
    let ended = t.ended(id);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].outcome, Outcome::Completed(Usage { prompt_tokens: 10, completion_tokens: 20 }));
    assert_eq!(ended[0].ttft, Some(Duration::from_secs(1)));
    assert_eq!(t.r.stats().live, 0);
    assert_eq!(t.r.queues().total_in_flight(), 0);
    // Inputs for a finished attempt are ignored.
    t.r.handle_failed(secs(4), d.attempt, UpstreamFailure::Reset);
    t.drain();
    assert_eq!(t.ended(id).len(), 1);
}

#[test]
fn just_after_a_start_an_unknown_model_waits_for_the_first_heartbeats() {
    // A restarted router knows no node yet: a request for a model nobody has reported is held
    // through the grace (default 10 s), served as soon as a node reports it, and 404 only after.
    let mut t = T::with_grace(RouterConfig::default());
    t.node(secs(0), loaded("a", "m:7b"));
    let late = t.request(secs(1), RequestSpec::chat("late:8b"));
    let nope = t.request(secs(1), RequestSpec::chat("nope"));
    assert!(t.take().is_empty(), "nothing is refused during the grace");
    t.node(secs(3), loaded("b", "late:8b"));
    let d = t.dispatch();
    assert_eq!((d.request, d.model.as_str()), (late, "late:8b"));
    t.r.handle_timeout(secs(9));
    t.drain();
    assert!(t.ended(nope).is_empty(), "still within the grace");
    t.r.handle_timeout(secs(10));
    t.drain();
    let cmds = t.take();
    let [Command::Reject { request, rejection }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!((*request, rejection.http_status()), (nope, 404));
    // After the grace an unknown model is refused at once again.
    let again = t.request(secs(11), RequestSpec::chat("nope"));
    let cmds = t.take();
    assert!(matches!(cmds.as_slice(), [Command::Reject { request, .. }] if *request == again), "{cmds:?}");
}

#[test]
fn unknown_model_is_404_at_once() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), loaded("a", "m:7b"));
    let id = t.request(secs(1), RequestSpec::chat("nope"));
    let cmds = t.take();
    let [Command::Reject { request, rejection }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!((*request, rejection.http_status()), (id, 404));
    assert_eq!(t.ended(id).len(), 1);
}

#[test]
fn retry_moves_to_another_node_and_headers_follow() {
    let mut t = T::new(RouterConfig::default());
    let a = t.node(secs(0), loaded("a", "m:7b"));
    let b = t.node(secs(0), loaded("b", "m:7b"));
    let mut spec = RequestSpec::chat("m:7b");
    spec.session_key = Some("s1".into());
    spec.estimated_prompt_tokens = 2000; // a pin is worth the prefill it saves
    let id = t.request(secs(1), spec.clone());
    let d1 = t.dispatch();
    t.r.handle_failed(secs(1), d1.attempt, UpstreamFailure::Connect);
    t.drain();
    let d2 = t.dispatch();
    assert_ne!(d2.node, d1.node);
    assert_eq!(d2.attempt_no, 2);
    t.r.handle_first_byte(secs(2), d2.attempt);
    t.drain();
    let cmds = t.take();
    let [Command::Commit(c)] = cmds.as_slice() else { panic!() };
    assert_eq!((c.node, c.attempts), (d2.node, 2), "X-Herd-Node / X-Herd-Attempts name the node that answered");
    assert!(t.events.iter().any(|e| matches!(e, Event::Retried { request, .. } if *request == id)));
    // After commit a failure ends the request; no new dispatch.
    t.r.handle_failed(secs(3), d2.attempt, UpstreamFailure::Reset);
    t.drain();
    assert!(t.take().is_empty());
    assert!(matches!(t.ended(id)[0].outcome, Outcome::FailedAfterCommit(UpstreamFailure::Reset)));
    // The session pin followed the retry to the node that answered.
    let next = t.request(secs(4), spec);
    let d3 = t.dispatch();
    assert_eq!(d3.node, d2.node);
    let _ = (a, b, next);
}

#[test]
fn no_retry_for_4xx_or_saturation_and_at_most_three_attempts() {
    let mut t = T::new(RouterConfig::default());
    for n in ["a", "b", "c", "d"] {
        t.node(secs(0), loaded(n, "m:7b"));
    }
    let id = t.request(secs(1), RequestSpec::chat("m:7b"));
    let d = t.dispatch();
    t.r.handle_failed(secs(1), d.attempt, UpstreamFailure::Status { code: 400, saturated: false });
    t.drain();
    let cmds = t.take();
    assert!(matches!(cmds.as_slice(), [Command::Reject { rejection: Rejection::Upstream { status: 400, .. }, .. }]));
    assert_eq!(t.ended(id).len(), 1);

    let id = t.request(secs(2), RequestSpec::chat("m:7b"));
    let d = t.dispatch();
    t.r.handle_failed(secs(2), d.attempt, UpstreamFailure::Status { code: 503, saturated: true });
    t.drain();
    let cmds = t.take();
    let [Command::Reject { rejection, .. }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!((rejection.http_status(), rejection.retry_after().is_some()), (429, true));
    assert_eq!(t.ended(id).len(), 1);

    let id = t.request(secs(3), RequestSpec::chat("m:7b"));
    let mut nodes = vec![];
    for _ in 0..3 {
        let d = t.dispatch();
        nodes.push(d.node);
        t.r.handle_failed(secs(3), d.attempt, UpstreamFailure::Status { code: 500, saturated: false });
        t.drain();
    }
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "each attempt on a different node");
    let cmds = t.take();
    assert!(matches!(
        cmds.as_slice(),
        [Command::Reject { rejection: Rejection::AttemptsExhausted { attempts: 3, .. }, .. }]
    ));
    assert_eq!(t.ended(id).len(), 1);
}

#[test]
fn queue_slots_bound_and_client_leaving_frees_a_slot() {
    let mut c = RouterConfig::default();
    c.queue.max_pending_per_queue = 1;
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    let r1 = t.request(secs(1), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    let r2 = t.request(secs(1), RequestSpec::chat("m:7b"));
    assert!(t.take().is_empty(), "num_parallel 1: the second waits");
    let r3 = t.request(secs(1), RequestSpec::chat("m:7b"));
    let cmds = t.take();
    let [Command::Reject { rejection, .. }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!((rejection.http_status(), rejection.retry_after()), (429, Some(Duration::from_secs(2))));
    assert_eq!(t.r.stats().queued, 1);
    // The first client leaves: its attempt is cancelled and the queued one starts at once.
    t.r.handle_client_gone(secs(2), r1);
    t.drain();
    let cmds = t.take();
    assert!(
        matches!(&cmds[0], Command::Cancel { attempt, reason: CancelReason::ClientGone, .. } if *attempt == d1.attempt)
    );
    assert!(matches!(&cmds[1], Command::Dispatch(d) if d.request == r2));
    for r in [r1, r2, r3] {
        assert!(t.ended(r).len() <= 1);
    }
    assert_eq!(t.ended(r1)[0].outcome, Outcome::ClientGone);
}

#[test]
fn queued_requests_time_out_with_503() {
    let mut c = RouterConfig::default();
    c.queue.max_queue_wait = Duration::from_secs(5);
    c.retry.first_byte_timeout = Duration::from_secs(600);
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    t.request(secs(1), RequestSpec::chat("m:7b"));
    t.dispatch();
    let r2 = t.request(secs(1), RequestSpec::chat("m:7b"));
    assert_eq!(t.r.poll_timeout(), Some(secs(6)), "admitted at 1 s + 5 s wait");
    t.r.handle_timeout(secs(6));
    t.drain();
    assert!(matches!(t.ended(r2)[0].outcome, Outcome::Rejected(Rejection::Unavailable { .. })));
}

#[test]
fn holding_until_a_node_returns_or_the_deadline() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), loaded("a", "m:7b"));
    t.r.handle_timeout(secs(31));
    t.drain();
    assert_eq!(t.r.node_status(NodeId(0)), Some(NodeStatus::Offline));
    let held = t.request(secs(32), RequestSpec::chat("m:7b"));
    assert!(t.take().is_empty());
    assert_eq!(t.r.stats().holding, 1);
    t.node(secs(40), loaded("a", "m:7b"));
    let d = t.dispatch();
    assert_eq!(d.request, held);
    let late = t.request(secs(41), RequestSpec::chat("other:7b"));
    assert!(matches!(t.take().as_slice(), [Command::Reject { .. }]), "unknown everywhere: no 30 s wait");
    let _ = late;
    // Offline again; a new request holds 30 s then gets a 503.
    t.r.handle_timeout(secs(80));
    t.drain();
    let r = t.request(secs(81), RequestSpec::chat("m:7b"));
    assert!(t.take().iter().all(|c| !matches!(c, Command::Dispatch(_))));
    t.r.handle_timeout(secs(111));
    t.drain();
    let ended = t.ended(r);
    assert!(matches!(&ended[0].outcome, Outcome::Rejected(r) if r.http_status() == 503));
}

#[test]
fn reaper_cancels_hung_and_stalled_attempts() {
    let mut c = RouterConfig::default();
    c.retry.first_byte_timeout = Duration::from_secs(10);
    c.retry.stall_timeout = Duration::from_secs(5);
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    t.node(secs(0), loaded("b", "m:7b"));
    let id = t.request(secs(0), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    assert!(t.r.poll_timeout().unwrap() <= d1.first_byte_deadline);
    t.r.handle_timeout(d1.first_byte_deadline);
    t.drain();
    let cmds = t.take();
    assert!(
        matches!(cmds.as_slice(), [Command::Cancel { reason: CancelReason::FirstByteTimeout, .. }]),
        "the retry waits for the adapter to say how the attempt ended: {cmds:?}"
    );
    assert_eq!(t.r.stats().in_flight, 1, "the reaped attempt holds its slot until then");
    let t0 = d1.first_byte_deadline;
    // The adapter aborted the call; whatever it saw, it counts as a timeout.
    t.r.handle_failed(t0, d1.attempt, UpstreamFailure::Reset);
    t.drain();
    let d2 = t.dispatch();
    assert_ne!(d2.node, d1.node);
    assert_eq!((d2.attempt_no, d2.commit().attempts), (2, 2));
    t.r.handle_first_byte(t0, d2.attempt);
    t.r.handle_progress(t0 + Duration::from_secs(4), d2.attempt);
    t.r.handle_timeout(t0 + Duration::from_secs(8));
    t.drain();
    assert!(t.ended(id).is_empty(), "progress pushed the stall deadline");
    t.r.handle_timeout(t0 + Duration::from_secs(9));
    t.drain();
    assert!(t.take().iter().any(|c| matches!(c, Command::Cancel { reason: CancelReason::Stalled, .. })));
    assert!(matches!(t.ended(id)[0].outcome, Outcome::FailedAfterCommit(UpstreamFailure::Timeout)));
    assert_eq!(t.r.stats().counters.reaped, 2);
}

/// A client that does not stream, with a short budget, gets its answer from the node whole,
/// within a deadline that allows for decoding the budget; a stream, a budget over the limit or
/// none, an embedding, or the limit at 0 keep the node streaming.
#[test]
fn short_answers_a_client_takes_whole_come_whole_from_the_node() {
    let mut c = RouterConfig::default();
    c.retry.first_byte_timeout = Duration::from_secs(10);
    c.retry.prefill_tokens_per_sec = 1e9;
    c.retry.decode_tokens_per_sec = 4.0;
    c.retry.unstreamed_max_tokens = 256;
    let dispatch_of = |c: &RouterConfig, spec: RequestSpec| {
        let mut t = T::new(c.clone());
        t.node(secs(0), loaded("a", "m:7b"));
        t.node(secs(0), loaded("e", "nomic-embed-text"));
        t.request(secs(1), spec);
        let d = t.dispatch();
        (d.stream_upstream, d.first_byte_deadline.saturating_since(secs(1)))
    };
    let spec = |stream: bool, budget: Option<u32>| RequestSpec {
        stream,
        max_output_tokens: budget,
        ..RequestSpec::chat("m:7b")
    };
    assert_eq!(dispatch_of(&c, spec(false, Some(16))), (false, Duration::from_secs(14)), "10 s + 16 tokens at 4/s");
    assert_eq!(dispatch_of(&c, spec(false, Some(256))), (false, Duration::from_secs(74)));
    assert_eq!(dispatch_of(&c, spec(false, Some(257))), (true, Duration::from_secs(10)));
    assert_eq!(dispatch_of(&c, spec(false, None)), (true, Duration::from_secs(10)), "no budget: no bound");
    assert_eq!(dispatch_of(&c, spec(true, Some(16))), (true, Duration::from_secs(10)));
    let embed = RequestSpec {
        kind: RequestKind::Embed,
        stream: false,
        max_output_tokens: Some(1),
        ..RequestSpec::chat("nomic-embed-text")
    };
    assert!(dispatch_of(&c, embed).0, "an embedding is not a generation");
    c.retry.unstreamed_max_tokens = 0;
    assert!(dispatch_of(&c, spec(false, Some(16))).0, "0 turns it off");
}

/// Two nodes with `m:7b` and one request whose first attempt reached its first-byte deadline:
/// the reaper's cancel was sent (and taken), and core waits for the adapter's report.
fn reaped_first_attempt() -> (T, RequestId, Dispatch) {
    let mut c = RouterConfig::default();
    c.retry.first_byte_timeout = Duration::from_secs(10);
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    t.node(secs(0), loaded("b", "m:7b"));
    let id = t.request(secs(0), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    t.r.handle_timeout(d1.first_byte_deadline);
    t.drain();
    assert!(matches!(t.take().as_slice(), [Command::Cancel { reason: CancelReason::FirstByteTimeout, .. }]));
    (t, id, d1)
}

/// A first byte that crosses the first-byte-timeout cancel commits the attempt: the adapter
/// answered the client from `Dispatch::commit` before the cancel reached it.
#[test]
fn first_byte_crossing_the_reaper_commits() {
    let (mut t, id, d1) = reaped_first_attempt();
    let t0 = d1.first_byte_deadline;
    t.r.handle_first_byte(t0 + Duration::from_millis(1), d1.attempt);
    t.drain();
    let cmds = t.take();
    assert_eq!(cmds, vec![Command::Commit(d1.commit())], "no retry: the first attempt answers");
    t.r.handle_finished(t0 + Duration::from_millis(2), d1.attempt, Usage::default());
    t.drain();
    let ended = t.ended(id);
    assert!(matches!(ended.as_slice(), [tr] if matches!(tr.outcome, Outcome::Completed(_)) && tr.attempts == 1));
    t.r.check_consistency().unwrap();
}

/// An adapter that never reports on a cancelled attempt does not hold its request forever: after
/// `CANCEL_GRACE` core fails the attempt itself and retries.
#[test]
fn cancel_grace_fails_a_silent_attempt() {
    let (mut t, _, d1) = reaped_first_attempt();
    let t0 = d1.first_byte_deadline;
    assert_eq!(t.r.poll_timeout(), Some(t0 + crate::router::CANCEL_GRACE));
    t.r.handle_timeout(t0 + crate::router::CANCEL_GRACE);
    t.drain();
    let d2 = t.dispatch();
    assert_ne!(d2.node, d1.node);
    // A late report for the failed attempt changes nothing.
    t.r.handle_first_byte(t0 + crate::router::CANCEL_GRACE, d1.attempt);
    t.drain();
    assert!(t.take().is_empty());
    assert_eq!(t.r.stats().counters.reaped, 1);
    t.r.check_consistency().unwrap();
}

#[test]
fn breaker_opens_then_probes() {
    let mut c = RouterConfig::default();
    c.retry.max_attempts = 1;
    let mut t = T::new(c);
    let a = t.node(secs(0), loaded("a", "m:7b"));
    for i in 0..3 {
        t.request(secs(1), RequestSpec::chat("m:7b"));
        let d = t.dispatch();
        t.r.handle_failed(secs(1) + Duration::from_millis(i), d.attempt, UpstreamFailure::Connect);
        t.drain();
        assert!(matches!(t.take().as_slice(), [Command::Reject { .. }]));
    }
    assert!(!t.r.breaker_allows(a));
    let explained = t.r.explain(&ModelName::new("m:7b"));
    assert_eq!(explained.eliminated[0].1, crate::score::Elimination::BreakerOpen);
    let held = t.request(secs(2), RequestSpec::chat("m:7b"));
    t.take();
    assert_eq!(t.r.poll_timeout(), Some(secs(1) + Duration::from_millis(2) + Duration::from_secs(10)));
    t.r.handle_timeout(secs(12));
    t.drain();
    let d = t.dispatch();
    assert_eq!(d.request, held, "the probe is the held request");
    t.r.handle_finished(secs(12), d.attempt, Usage::default());
    t.drain();
    assert!(t.r.breaker_allows(a));
    assert!(t.events.iter().any(|e| matches!(e, Event::Breaker { open: false, .. })));
}

#[test]
fn hot_client_fallback_beats_cold_primary() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), cold("a", "big:70b"));
    t.node(secs(0), loaded("b", "small:7b"));
    let mut spec = RequestSpec::chat("big:70b");
    spec.fallback_models = vec![ModelName::new("small:7b")];
    t.request(secs(1), spec);
    let d = t.dispatch();
    assert_eq!(d.model.as_str(), "small:7b");
    t.r.handle_first_byte(secs(2), d.attempt);
    t.drain();
    let cmds = t.take();
    assert!(matches!(&cmds[0], Command::Commit(c) if c.route == RouteKind::ClientFallback));
}

#[test]
fn vram_fallback_same_category_and_strict_mode() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), cold("a", "qwen3:8b"));
    let mut b = loaded("b", "llama3.1:8b");
    b.ollama.models_loaded.push(hb("x", &[("qwen2.5-coder:7b", 5.0, 4096)], &[]).ollama.models_loaded.remove(0));
    t.node(secs(0), b);
    t.request(secs(1), RequestSpec::chat("qwen3:8b"));
    let d = t.dispatch();
    assert_eq!(d.model.as_str(), "llama3.1:8b", "general for general, never the coder");
    let mut strict = RequestSpec::chat("qwen3:8b");
    strict.fallback = FallbackChoice::Deny;
    t.request(secs(1), strict);
    assert_eq!(t.dispatch().model.as_str(), "qwen3:8b");
    let mut images = RequestSpec::chat("llava:13b");
    images.has_images = true;
    t.node(secs(1), cold("c", "llava:13b"));
    t.request(secs(2), images);
    assert_eq!(t.dispatch().model.as_str(), "llava:13b", "no text model for images");
    let mut embed = RequestSpec::chat("nomic-embed-text");
    embed.kind = RequestKind::Embed;
    t.node(secs(2), cold("d", "nomic-embed-text"));
    t.request(secs(3), embed);
    assert_eq!(t.dispatch().model.as_str(), "nomic-embed-text:latest");
}

#[test]
fn an_embedding_request_is_never_served_by_another_embedding_model() {
    // The requested model is only on disk; another embedding model is loaded, even on the same
    // node: its vectors would be of another space, so the requested one is loaded instead.
    for fallback in [FallbackChoice::Default, FallbackChoice::Allow] {
        let mut t = T::new(RouterConfig::default());
        let mut a = loaded("a", "mxbai-embed-large");
        a.ollama.models_available.push(ModelName::new("nomic-embed-text"));
        t.node(secs(0), a);
        t.node(secs(0), loaded("b", "nomic-embed-text:v1.5"));
        let mut embed = RequestSpec::chat("nomic-embed-text");
        embed.kind = RequestKind::Embed;
        // Even when the client allows fallback explicitly.
        embed.fallback = fallback;
        t.request(secs(1), embed);
        let d = t.dispatch();
        assert_eq!((d.model.as_str(), d.route), ("nomic-embed-text:latest", RouteKind::Primary), "{fallback:?}");
    }
}

#[test]
fn per_client_cap_answers_429() {
    let mut c = RouterConfig::default();
    c.queue.client_max_in_flight = 1;
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    let mut spec = RequestSpec::chat("m:7b");
    spec.client = Some("10.0.0.5".into());
    let r1 = t.request(secs(1), spec.clone());
    t.take();
    t.request(secs(1), spec.clone());
    let cmds = t.take();
    assert!(matches!(cmds.as_slice(), [Command::Reject { rejection: Rejection::ClientLimit { limit: 1, .. }, .. }]));
    t.r.handle_client_gone(secs(2), r1);
    t.drain();
    t.take();
    t.request(secs(3), spec);
    assert!(matches!(t.take().as_slice(), [Command::Dispatch(_)]), "leaving released the client slot");
}

#[test]
fn auto_pull_only_for_allow_listed_names() {
    let mut c = RouterConfig::default();
    c.policy.auto_pull = true;
    c.policy.pull_allow = vec!["qwen3:*".into()];
    let mut t = T::new(c);
    let a = t.node(secs(0), cold("a", "m:7b"));
    let bad = t.request(secs(1), RequestSpec::chat("evil:7b"));
    assert!(matches!(t.take().as_slice(), [Command::Reject { .. }]));
    assert_eq!(t.ended(bad).len(), 1);
    let id = t.request(secs(1), RequestSpec::chat("qwen3:4b"));
    let cmds = t.take();
    assert_eq!(cmds, vec![Command::Pull { node: a, model: ModelName::new("qwen3:4b") }]);
    t.node(secs(25), cold("a", "m:7b"));
    t.r.handle_pull_result(secs(30), a, ModelName::new("qwen3:4b"), true);
    t.drain();
    let d = t.dispatch();
    assert_eq!((d.request, d.model.as_str()), (id, "qwen3:4b"));
}

#[test]
fn queued_work_moves_when_its_node_drains() {
    let mut t = T::new(RouterConfig::default());
    let a = t.node(secs(0), loaded("a", "m:7b"));
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    assert_eq!(d1.node, a);
    let r2 = t.request(secs(1), RequestSpec::chat("m:7b"));
    assert!(t.take().is_empty());
    t.r.handle_report(secs(2), Report::Drain { node_id: "a".into(), fleet_key: None, machine_id: None }).unwrap();
    t.drain();
    assert_eq!(t.r.stats().holding, 1, "nowhere to go yet: held, not lost");
    let b = t.node(secs(3), loaded("b", "m:7b"));
    let d2 = t.dispatch();
    assert_eq!((d2.request, d2.node), (r2, b));
}

#[test]
fn context_clamp_and_thinking_budget_in_dispatch() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), loaded("a", "deepseek-r1:7b"));
    let mut spec = RequestSpec::chat("deepseek-r1:7b");
    spec.num_ctx = Some(32768);
    spec.max_output_tokens = Some(500);
    t.request(secs(1), spec);
    let d = t.dispatch();
    assert_eq!(d.num_ctx, Some(8192));
    assert_eq!(d.num_predict, Some(2000));
    assert!(matches!(d.context, crate::policy::context::ContextAction::Clamped { requested: 32768, .. }));
}

#[test]
fn malformed_heartbeat_is_a_typed_error_and_changes_nothing() {
    let mut t = T::new(RouterConfig::default());
    assert!(matches!(t.r.handle_heartbeat(secs(0), b"{"), Err(ReportError::Invalid(_))));
    assert!(t.r.fleet().is_empty());
    assert!(t.r.handle_heartbeat(secs(0), br#"{"node_id":"n","cpu":{},"memory":{},"ollama":{}}"#).is_ok());
    assert_eq!(t.r.fleet().len(), 1);
}

#[test]
fn queued_work_leaves_a_node_whose_breaker_opens() {
    let mut c = RouterConfig::default();
    c.retry.breaker_failures = 1;
    c.retry.max_attempts = 1;
    let mut t = T::new(c);
    let a = t.node(secs(0), loaded("a", "m:7b"));
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    let r2 = t.request(secs(1), RequestSpec::chat("m:7b"));
    assert!(t.take().is_empty(), "one slot: queued behind the first");
    let b = t.node(secs(1), cold("b", "m:7b"));
    assert!(t.take().is_empty(), "still queued on a");
    t.r.handle_failed(secs(2), d1.attempt, UpstreamFailure::Reset);
    t.drain();
    let cmds = t.take();
    assert!(matches!(&cmds[0], Command::Reject { .. }));
    let Command::Dispatch(d2) = &cmds[1] else { panic!("{cmds:?}") };
    assert_eq!((d2.request, d2.node), (r2, b), "moved off the broken node at once");
    assert!(!t.r.breaker_allows(a));
}
// Regressions found in review.

fn dispatched_for(cmds: &[Command], id: RequestId) -> Option<Dispatch> {
    cmds.iter().find_map(|c| match c {
        Command::Dispatch(d) if d.request == id => Some(d.clone()),
        _ => None,
    })
}

/// F1: a half-open probe that is abandoned (client gone / 4xx) frees the breaker, but held
/// requests are never re-routed: they sit until the 30 s holding deadline and get a 503.
#[test]
fn held_request_released_when_probe_abandoned() {
    let mut c = RouterConfig::default();
    c.retry.breaker_failures = 1;
    c.retry.max_attempts = 1;
    c.fleet.degraded_after = Duration::from_secs(100); // no status change inside the test
    c.fleet.offline_after = Duration::from_secs(200);
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let d = t.dispatch();
    t.r.handle_failed(secs(1), d.attempt, UpstreamFailure::Connect); // breaker open until 11 s
    t.drain();
    t.take();
    let probe = t.request(secs(11), RequestSpec::chat("m:7b"));
    let p = t.dispatch();
    assert_eq!(p.request, probe);
    let held = t.request(secs(12), RequestSpec::chat("m:7b"));
    assert_eq!(t.r.stats().holding, 1);
    t.r.handle_client_gone(secs(13), probe); // probe abandoned: the held request becomes the probe
    t.drain();
    let cmds = t.take();
    // Keep driving time like an adapter would, up to the holding deadline.
    let mut at = secs(13);
    let mut all = cmds;
    while let Some(next) = t.r.poll_timeout() {
        if next > secs(41) {
            break;
        }
        at = next.max(at);
        t.r.handle_timeout(at);
        t.drain();
        all.extend(t.take());
        if at >= secs(41) {
            break;
        }
    }
    t.r.handle_timeout(secs(43));
    t.drain();
    all.extend(t.take());
    assert!(dispatched_for(&all, held).is_some(), "held request never dispatched: {:?}", t.ended(held));
}

/// F2: two requests share one auto-pull; the first one's pull deadline removes the shared
/// `pulls` entry, so the successful pull result is ignored and the second request gets a 503.
#[test]
fn shared_pull_survives_first_waiters_timeout() {
    let mut c = RouterConfig::default();
    c.policy.auto_pull = true;
    c.policy.pull_allow = vec!["qwen3:*".into()];
    let mut t = T::new(c);
    let a = t.node(secs(0), cold("a", "m:7b"));
    let r1 = t.request(secs(0), RequestSpec::chat("qwen3:4b"));
    assert!(matches!(t.take().as_slice(), [Command::Pull { .. }]));
    let mut s = 10;
    let mut r2 = None;
    while s <= 350 {
        t.node(secs(s), cold("a", "m:7b")); // keep the node online
        if s == 100 {
            r2 = Some(t.request(secs(s), RequestSpec::chat("qwen3:4b")));
            assert!(t.take().is_empty(), "joins the running pull");
        }
        s += 10;
    }
    let r2 = r2.unwrap();
    assert!(matches!(t.ended(r1)[0].outcome, Outcome::Rejected(Rejection::Unavailable { .. })));
    t.take();
    t.r.handle_pull_result(secs(350), a, ModelName::new("qwen3:4b"), true);
    t.drain();
    let cmds = t.take();
    assert!(dispatched_for(&cmds, r2).is_some(), "pull succeeded but r2 not routed: {cmds:?}");
}

/// F3: a request queued at a node whose breaker opened stays there while another node is idle,
/// and is answered 503 at max_queue_wait.
#[test]
fn queued_request_not_moved_off_breaker_open_node() {
    let mut c = RouterConfig::default();
    c.retry.breaker_failures = 1;
    c.queue.max_queue_wait = Duration::from_secs(15);
    let mut t = T::new(c);
    let a = t.node(secs(0), loaded("a", "m:7b"));
    let r1 = t.request(secs(1), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    assert_eq!(d1.node, a);
    let r2 = t.request(secs(1), RequestSpec::chat("m:7b"));
    let r3 = t.request(secs(1), RequestSpec::chat("m:7b"));
    assert!(t.take().is_empty(), "r2, r3 queued on a");
    let b = t.node(secs(1), loaded("b", "m:7b"));
    t.r.handle_failed(secs(1), d1.attempt, UpstreamFailure::Connect); // a's breaker opens
    t.drain();
    let d2 = t.dispatch();
    assert_eq!((d2.request, d2.node), (r1, b));
    t.r.handle_finished(secs(2), d2.attempt, Usage::default()); // b idle from 2 s
    t.drain();
    let mut all = vec![];
    for s in 2..=16 {
        if s > 2 {
            t.node(secs(s), loaded("a", "m:7b"));
            t.node(secs(s), loaded("b", "m:7b"));
            t.r.handle_timeout(secs(s));
            t.drain();
        }
        while !t.cmds.is_empty() {
            for cmd in t.take() {
                if let Command::Dispatch(d) = &cmd {
                    if d.node == a {
                        t.r.handle_failed(secs(s), d.attempt, UpstreamFailure::Connect); // a is dead
                        t.drain();
                    } else {
                        t.r.handle_finished(secs(s), d.attempt, Usage::default()); // b answers in < 1 s
                        t.drain();
                    }
                }
                all.push(cmd);
            }
        }
    }
    let _ = r2;
    assert!(
        !matches!(t.ended(r3).first().map(|t| &t.outcome), Some(Outcome::Rejected(_))),
        "r3 was refused while b sat idle: {:?}",
        t.ended(r3)
    );
}

/// F4: `Event::Retried` ("another will be made") and `counters.retries` are emitted even when no
/// node is left and the request is rejected at once.
#[test]
fn retried_event_only_when_a_retry_happens() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), loaded("a", "m:7b"));
    let id = t.request(secs(1), RequestSpec::chat("m:7b"));
    let d = t.dispatch();
    t.r.handle_failed(secs(1), d.attempt, UpstreamFailure::Connect);
    t.drain();
    assert!(matches!(t.take().as_slice(), [Command::Reject { .. }]));
    assert_eq!(t.ended(id).len(), 1);
    assert!(
        !t.events.iter().any(|e| matches!(e, Event::Retried { .. })),
        "Retried emitted though no retry was made; retries = {}",
        t.r.stats().counters.retries
    );
}

/// F5: an attempt that outlives its node (forgotten) recreates breaker and latency entries for
/// the dead node id; they are never removed.
#[test]
fn forgotten_node_tables_not_recreated() {
    let mut c = RouterConfig::default();
    c.fleet.forget_after = Duration::from_secs(60);
    c.retry.stall_timeout = Duration::from_secs(600);
    let mut t = T::new(c);
    let a = t.node(secs(0), loaded("a", "m:7b"));
    t.request(secs(0), RequestSpec::chat("m:7b"));
    let d = t.dispatch();
    t.r.handle_first_byte(secs(1), d.attempt);
    t.r.handle_timeout(secs(70));
    t.drain();
    assert!(t.r.fleet().node(a).is_none(), "forgotten");
    t.r.handle_finished(secs(71), d.attempt, Usage::default());
    t.drain();
    assert!(!t.r.breakers.contains_key(&a), "breaker entry for a forgotten node");
    assert!(t.r.latency.p75_ms(a, &ModelName::new("m:7b")).is_none(), "latency entry for a forgotten node");
}

/// F6: the primary is hot but every queue for it is full; the client's hot, idle fallback is
/// never tried and the request gets a 429.
#[test]
fn full_primary_queue_uses_client_fallback() {
    let mut c = RouterConfig::default();
    c.queue.max_pending_per_queue = 1;
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "big:7b"));
    let b = t.node(secs(0), loaded("b", "small:7b"));
    t.request(secs(1), RequestSpec::chat("big:7b"));
    t.dispatch();
    t.request(secs(1), RequestSpec::chat("big:7b"));
    assert!(t.take().is_empty(), "queued");
    let mut spec = RequestSpec::chat("big:7b");
    spec.fallback_models = vec![ModelName::new("small:7b")];
    let id = t.request(secs(1), spec);
    let cmds = t.take();
    assert!(
        matches!(dispatched_for(&cmds, id), Some(d) if d.node == b),
        "expected the hot idle fallback on b, got {cmds:?}"
    );
}

/// F7: `handle_progress` (and `handle_report`'s error path) run `advance` — which can reap an
/// attempt and free a slot, or change node status — but never `pump`: the queued request is not
/// dispatched until some later unrelated input.
#[test]
fn progress_reap_frees_slot_for_queue() {
    let mut c = RouterConfig::default();
    c.retry.first_byte_timeout = Duration::from_secs(10);
    let mut t = T::new(c);
    let mut h = loaded("a", "m:7b");
    h.ollama.num_parallel = 2;
    t.node(secs(0), h.clone());
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let _d2 = t.dispatch();
    let r3 = t.request(secs(1), RequestSpec::chat("m:7b"));
    assert!(t.take().is_empty(), "r3 queued");
    t.r.handle_first_byte(secs(2), d1.attempt);
    t.node(secs(10), h.clone()); // keep a online
    t.take();
    // r2's first-byte deadline (11 s) passes; the next input is r1's progress. The reaper cancels
    // r2's attempt, whose slot stays taken until the adapter reports or the grace runs out.
    t.r.handle_progress(secs(12), d1.attempt);
    t.drain();
    let cmds = t.take();
    assert!(cmds.iter().any(|c| matches!(c, Command::Cancel { reason: CancelReason::FirstByteTimeout, .. })));
    assert!(dispatched_for(&cmds, r3).is_none());
    t.node(secs(16), h.clone());
    t.take();
    // The adapter never answers; the grace (12 s + 5 s) ends inside the next progress's advance.
    t.r.handle_progress(secs(18), d1.attempt);
    t.drain();
    let cmds = t.take();
    assert!(
        dispatched_for(&cmds, r3).is_some(),
        "slot freed by the reaper but r3 still queued; poll_timeout = {:?}; cmds {cmds:?}",
        t.r.poll_timeout()
    );
}

/// F8: a retry that has to queue is refused 1 ms later once `max_queue_wait` has elapsed since
/// admission (time spent in the failed attempt counts as queue wait).
#[test]
fn retry_queue_deadline_counts_attempt_time() {
    let mut c = RouterConfig::default();
    c.queue.max_queue_wait = Duration::from_secs(20);
    c.retry.first_byte_timeout = Duration::from_secs(600);
    let mut t = T::new(c);
    let a = t.node(secs(0), loaded("a", "m:7b"));
    let b = t.node(secs(0), loaded("b", "m:7b"));
    let r1 = t.request(secs(0), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    let r2 = t.request(secs(0), RequestSpec::chat("m:7b"));
    let d2 = t.dispatch();
    assert_ne!(d1.node, d2.node);
    let _ = (a, b, r2);
    for s in [10, 20] {
        t.node(secs(s), loaded("a", "m:7b"));
        t.node(secs(s), loaded("b", "m:7b"));
    }
    t.r.handle_first_byte(secs(21), d2.attempt);
    t.r.handle_failed(secs(25), d1.attempt, UpstreamFailure::Reset); // r1 retried: other node busy
    t.drain();
    t.take();
    assert_eq!(t.r.stats().queued, 1, "retry queued behind r2");
    t.r.handle_timeout(secs(25) + Duration::from_millis(1));
    t.drain();
    assert!(t.ended(r1).is_empty(), "retry refused 1 ms after queueing: {:?}", t.ended(r1));
}

/// F9: a success from an attempt dispatched before the breaker opened closes an Open breaker
/// at once (no half-open probe), contrary to the Closed→Open→HalfOpen→probe diagram.
#[test]
fn old_success_does_not_close_open_breaker() {
    let mut c = RouterConfig::default();
    c.retry.breaker_failures = 1;
    c.retry.max_attempts = 1;
    let mut t = T::new(c);
    let mut h = loaded("a", "m:7b");
    h.ollama.num_parallel = 2;
    let a = t.node(secs(0), h);
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let d1 = t.dispatch();
    t.request(secs(1), RequestSpec::chat("m:7b"));
    let d2 = t.dispatch();
    t.r.handle_failed(secs(2), d2.attempt, UpstreamFailure::Connect);
    t.drain();
    assert!(!t.r.breaker_allows(a), "open");
    t.r.handle_finished(secs(3), d1.attempt, Usage::default());
    t.drain();
    assert!(!t.r.breaker_allows(a), "an old in-flight success closed the open breaker");
}

/// F7b: same via a refused report (drain for an unknown node).
#[test]
fn refused_report_still_pumps() {
    let mut c = RouterConfig::default();
    c.retry.first_byte_timeout = Duration::from_secs(10);
    let mut t = T::new(c);
    let mut h = loaded("a", "m:7b");
    h.ollama.num_parallel = 2;
    t.node(secs(0), h.clone());
    t.request(secs(1), RequestSpec::chat("m:7b"));
    t.dispatch();
    t.request(secs(1), RequestSpec::chat("m:7b"));
    t.dispatch();
    let r3 = t.request(secs(1), RequestSpec::chat("m:7b"));
    t.node(secs(10), h.clone());
    t.take();
    assert!(t
        .r
        .handle_report(secs(12), Report::Drain { node_id: "zzz".into(), fleet_key: None, machine_id: None })
        .is_err());
    t.drain();
    let cmds = t.take();
    assert_eq!(cmds.len(), 2, "both attempts cancelled, their slots held: {cmds:?}");
    t.node(secs(16), h);
    t.take();
    // No report from the adapter: the grace runs out inside the refused report's advance.
    assert!(t
        .r
        .handle_report(secs(18), Report::Drain { node_id: "zzz".into(), fleet_key: None, machine_id: None })
        .is_err());
    t.drain();
    let cmds = t.take();
    assert!(dispatched_for(&cmds, r3).is_some(), "reaped slots free but r3 still queued: {cmds:?}");
}

#[test]
fn baseline_policies_rotate_and_balance() {
    let mut c = RouterConfig::default();
    c.score.policy = crate::config::ScorePolicy::RoundRobin;
    let mut t = T::new(c);
    for n in ["a", "b", "c"] {
        let mut h = loaded(n, "m:7b");
        h.ollama.num_parallel = 4;
        t.node(secs(0), h);
    }
    let mut order = vec![];
    for _ in 0..6 {
        t.request(secs(1), RequestSpec::chat("m:7b"));
        order.push(t.dispatch().node.0);
    }
    assert_eq!(order, [1, 2, 0, 1, 2, 0], "round-robin rotates over the nodes");

    let mut c = RouterConfig::default();
    c.score.policy = crate::config::ScorePolicy::LeastLoaded;
    let mut t = T::new(c);
    t.node(secs(0), loaded("a", "m:7b"));
    let mut b = cold("b", "m:7b");
    b.ollama.num_parallel = 2;
    t.node(secs(0), b);
    let mut picks = vec![];
    for _ in 0..3 {
        t.request(secs(1), RequestSpec::chat("m:7b"));
        picks.push(t.dispatch().node.0);
    }
    // Ties go to the lower id; then the queue per slot decides, hot or cold alike.
    assert_eq!(picks, [0, 1, 1]);
}

#[test]
fn a_model_in_demand_is_loaded_rather_than_substituted_forever() {
    let mut t = T::new(RouterConfig::default());
    t.node(secs(0), cold("a", "qwen3:8b"));
    let mut b = loaded("b", "llama3.1:8b");
    b.ollama.num_parallel = 8;
    t.node(secs(0), b);
    let mut models = vec![];
    for i in 0..3 {
        t.request(secs(1) + Duration::from_millis(i), RequestSpec::chat("qwen3:8b"));
        models.push(t.dispatch().model.to_string());
    }
    // The first ones are served by the loaded substitute; once qwen3:8b is asked for more than
    // twice as often as llama3.1:8b, it is loaded instead.
    assert_eq!(models, ["llama3.1:8b", "llama3.1:8b", "qwen3:8b"]);
}

#[test]
fn a_num_ctx_larger_than_the_loaded_window_is_upgraded_to_a_larger_loaded_model() {
    let fleet = |t: &mut T| {
        let a = t.node(secs(0), hb("a", &[("qwen3:8b", 5.0, 8192)], &["qwen3:8b"]));
        let b = t.node(secs(0), hb("b", &[("qwen3:32b", 20.0, 32768), ("qwen3:14b", 9.0, 8192)], &["qwen3:32b"]));
        (a, b)
    };
    let ask = |ctx: u32, fallback: FallbackChoice| RequestSpec {
        num_ctx: Some(ctx),
        fallback,
        ..RequestSpec::chat("qwen3:8b")
    };
    // Too large for the 8k window: the 32b loaded with 32k serves it, at its resident window
    // (the 14b is larger but loaded with 8k too).
    let mut t = T::new(RouterConfig::default());
    let (_, b) = fleet(&mut t);
    t.request(secs(1), ask(16384, FallbackChoice::Default));
    let d = t.dispatch();
    assert_eq!(
        (d.node, d.model.as_str(), d.route, d.num_ctx),
        (b, "qwen3:32b", RouteKind::ContextUpgrade, Some(32768))
    );
    // Fits: the model asked for, pinned to its window.
    let mut t = T::new(RouterConfig::default());
    let (a, _) = fleet(&mut t);
    t.request(secs(1), ask(4096, FallbackChoice::Default));
    let d = t.dispatch();
    assert_eq!((d.node, d.model.as_str(), d.route), (a, "qwen3:8b", RouteKind::Primary));
    // The client refuses another model, or protection only warns: the model asked for.
    for (fallback, protection) in [
        (FallbackChoice::Deny, crate::config::ContextProtection::Strip),
        (FallbackChoice::Default, crate::config::ContextProtection::Warn),
    ] {
        let mut config = RouterConfig::default();
        config.policy.context_protection = protection;
        let mut t = T::new(config);
        let (a, _) = fleet(&mut t);
        t.request(secs(1), ask(16384, fallback));
        let d = t.dispatch();
        assert_eq!(
            (d.node, d.model.as_str(), d.route),
            (a, "qwen3:8b", RouteKind::Primary),
            "{fallback:?} {protection:?}"
        );
    }
    // Nothing loaded holds 64k: the model asked for (it will reload with the bigger window).
    let mut t = T::new(RouterConfig::default());
    let (a, _) = fleet(&mut t);
    t.request(secs(1), ask(65536, FallbackChoice::Default));
    assert_eq!(t.dispatch().node, a);
}

/// An Anthropic request for `model` (its id as the client spelled it).
fn claude(model: &str) -> RequestSpec {
    RequestSpec { anthropic_model: Some(model.into()), ..RequestSpec::chat(model) }
}

#[test]
fn anthropic_ids_resolve_before_routing_and_the_trace_keeps_both_names() {
    let mut config = RouterConfig::default();
    config.anthropic.model_map.insert("claude-3-5-haiku".into(), "small:1b".into());
    let mut t = T::with_grace(config);
    let a = t.node(secs(0), loaded("a", "m:7b"));
    // Auto-route: the loaded model; the dispatch says how, and which Ollama the node runs.
    let id = t.request(secs(1), claude("claude-sonnet-4-5"));
    let d = t.dispatch();
    assert_eq!((d.node, d.model.as_str()), (a, "m:7b"));
    let r = d.resolution.clone().expect("resolved");
    assert_eq!((r.model.as_str(), r.by), ("m:7b", crate::policy::anthropic::ResolvedBy::AutoLoaded));
    assert!(!d.ollama.is_known(), "the test heartbeat reports no version");
    assert!(t.events.iter().any(|e| matches!(e, Event::Resolved { request, asked, .. }
        if *request == id && asked == "claude-sonnet-4-5")));
    t.r.handle_finished(secs(2), d.attempt, Usage::default());
    t.drain();
    let trace = t.ended(id)[0].clone();
    assert_eq!(trace.requested_model.as_str(), "m:7b");
    assert_eq!(trace.anthropic_model.as_deref(), Some("claude-sonnet-4-5"));
    // A mapped model no node has reported yet is held through the grace like any other, and
    // served when a node reports it.
    t.take();
    let mapped = t.request(secs(3), claude("claude-3-5-haiku"));
    assert!(t.take().is_empty());
    t.node(secs(4), loaded("b", "small:1b"));
    let d = t.dispatch();
    assert_eq!((d.request, d.model.as_str()), (mapped, "small:1b"));
}

#[test]
fn an_anthropic_id_nothing_resolves_is_404_with_its_own_name() {
    let mut config = RouterConfig::default();
    config.anthropic.auto_route = false;
    let mut t = T::new(config);
    t.node(secs(0), loaded("a", "m:7b"));
    let id = t.request(secs(1), claude("claude-opus-4-1"));
    let cmds = t.take();
    let [Command::Reject { rejection, .. }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!(rejection.http_status(), 404);
    assert_eq!(t.ended(id)[0].anthropic_model.as_deref(), Some("claude-opus-4-1"));
}

#[test]
fn a_cold_load_goes_where_nothing_is_evicted() {
    // Both nodes have the model on disk only; "full" already holds its OLLAMA_MAX_LOADED_MODELS.
    // (No substitute for the loaded model: this is about where the cold load goes.)
    let mut config = RouterConfig::default();
    config.policy.vram_fallback = false;
    let mut t = T::new(config);
    let mut full = hb("full", &[("x:3b", 3.0, 4096)], &["m:7b", "x:3b"]);
    full.ollama.max_loaded_models = 1;
    let mut room = hb("room", &[("x:3b", 3.0, 4096)], &["m:7b", "x:3b"]);
    room.ollama.max_loaded_models = 2;
    t.node(secs(0), full);
    let room = t.node(secs(0), room);
    for i in 0..8 {
        t.request(secs(1 + i), RequestSpec::chat("m:7b"));
        let d = t.dispatch();
        assert_eq!((d.node, d.model.as_str()), (room, "m:7b"), "request {i}");
        t.r.handle_finished(secs(1 + i), d.attempt, Usage::default());
        t.drain();
        t.take();
    }
}

/// Image servers come and go with their node's reports and status.
#[test]
fn image_servers_follow_their_nodes() {
    let mut now = Instant::from_secs(0);
    let mut r = Router::new(RouterConfig::default(), 1, now).unwrap();
    let hb = |models: &str| {
        format!(
            r#"{{"node_id": "rig", "cpu": {{"cores_physical": 8}}, "memory": {{"total_gb": 64, "available_gb": 32}},
               "ollama": {{"models_available": []}},
               "image_backends": [{{"kind": "sdcpp", "port": 7860, "models": [{models}], "up": true}}]}}"#
        )
    };
    r.handle_heartbeat(now, hb(r#""z.gguf""#).as_bytes()).unwrap();
    let ranked = r.explain_image("z.gguf").expect("offered");
    assert_eq!(ranked.candidates.len(), 1);
    assert!(r.explain_image("other").is_none());
    // The node stops reporting: once it is offline its servers are down.
    now = now + r.config().fleet.offline_after + std::time::Duration::from_secs(1);
    r.handle_timeout(now);
    let ranked = r.explain_image("z.gguf").expect("still known");
    assert!(ranked.candidates.is_empty());
    assert_eq!(ranked.eliminated[0].2, crate::image::sched::Elimination::Down);
    assert!(crate::fleet::views::image_models(r.image_fleet()).is_empty());
    // Back, now offering another model: the old one is gone.
    r.handle_heartbeat(now, hb(r#""y.gguf""#).as_bytes()).unwrap();
    assert!(r.explain_image("z.gguf").is_none());
    assert_eq!(r.explain_image("y.gguf").map(|x| x.candidates.len()), Some(1));
    // A server the router polls itself (`--image-node`), up, then not answering.
    let mut info = crate::image::sched::BackendInfo::new(
        "10.0.0.9:7860",
        crate::image::backend::ImageBackendKind::A1111,
        &["sdxl.safetensors"],
    );
    r.handle_image_servers(now, "10.0.0.9:7860", vec![info.clone()]);
    assert_eq!(crate::fleet::views::image_models(r.image_fleet()).len(), 2);
    info.up = false;
    r.handle_image_servers(now, "10.0.0.9:7860", vec![info]);
    let names: Vec<String> = crate::fleet::views::image_models(r.image_fleet()).into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["y.gguf"]);
}
