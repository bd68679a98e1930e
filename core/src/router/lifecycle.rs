//! An attempt's life after dispatch: commit, finish, failure and retry, reaping, the client
//! leaving, pull results, deadlines, and the single end of every request.

use super::flow::Plan;
use super::*;
use crate::policy::pins::PinKey;

impl Router {
    pub(super) fn commit(&mut self, aid: AttemptId) {
        let Some(a) = self.attempts.get_mut(&aid) else { return };
        if a.state == AttState::Streaming {
            return;
        }
        a.state = AttState::Streaming;
        let (rid, node, model) = (a.request, a.node, a.model.clone());
        let cold_since = a.cold.then_some(a.started);
        let deadline = self.now + self.config.retry.stall_timeout;
        self.set_attempt_deadline(aid, deadline);
        let req = self.requests.get_mut(&rid).expect("attempts belong to live requests");
        req.state = ReqState::Committed(aid);
        req.first_byte = Some(self.now);
        req.cold_load = cold_since.map(|t| self.now.saturating_since(t));
        let (_, route, score) = req.served.clone().unwrap_or((model.clone(), RouteKind::Primary, 0.0));
        // Pins follow where the request actually runs, not where it was first sent.
        if let Some(k) = req.spec.session_key.clone() {
            self.pins.set(PinKey::Session(k), node, self.now);
        }
        if let Some(k) = req.spec.prefix_key {
            self.pins.set(PinKey::Prefix(k), node, self.now);
        }
        if route != RouteKind::Primary {
            self.counters.fallbacks += 1;
            let from = req.spec.model.clone();
            self.events.push_back(Event::Fallback { request: rid, from, to: model.clone(), route });
        }
        let attempts = req.attempts;
        let (affinity, overflow) = (req.affinity, req.overflow);
        self.commands.push_back(Command::Commit(Commit {
            affinity,
            overflow,
            request: rid,
            attempt: aid,
            node,
            model,
            attempts,
            score,
            route,
        }));
    }

    pub(super) fn finish(&mut self, aid: AttemptId, usage: Usage) {
        self.commit(aid);
        let Some(a) = self.end_attempt(aid) else { return };
        // A node forgotten while this attempt ran gets no new breaker or latency history.
        if self.fleet.node(a.node).is_some() {
            if self.breakers.entry(a.node).or_default().on_success(self.now) {
                self.events.push_back(Event::Breaker { node: a.node, open: false });
                self.fleet_dirty = true;
            }
            let ms = self.now.saturating_since(a.started).as_secs_f64() * 1000.0;
            self.latency.record(a.node, &a.model, ms);
            self.history.completed(a.node, &a.model, ms, usage.prompt_tokens, usage.completion_tokens);
        }
        self.end(a.request, Outcome::Completed(usage));
    }

    pub(super) fn fail(&mut self, aid: AttemptId, failure: UpstreamFailure) {
        let Some(a) = self.end_attempt(aid) else { return };
        // However the adapter saw a reaped attempt end, the node failed to answer in time.
        let failure = if a.state == AttState::Cancelling { UpstreamFailure::Timeout } else { failure };
        if self.fleet.node(a.node).is_some() {
            self.history.failed(a.node, &a.model);
            let breaker = self.breakers.entry(a.node).or_default();
            if failure.blames_node() {
                if breaker.on_failure(self.now, &self.config.retry) {
                    self.counters.breaker_opens += 1;
                    self.events.push_back(Event::Breaker { node: a.node, open: true });
                }
            } else if breaker.on_abandoned(self.now) {
                self.fleet_dirty = true;
            }
        }
        let req = &self.requests[&a.request];
        if a.state == AttState::Streaming || matches!(req.state, ReqState::Committed(_)) {
            self.end(a.request, Outcome::FailedAfterCommit(failure));
            return;
        }
        let attempts = req.attempts;
        if failure.retryable() && attempts < self.config.retry.max_attempts {
            // A retry is routed afresh without the nodes already tried: hot-first and client
            // fallbacks apply again, and a substitute is chosen anew rather than cold-loaded.
            let retried = match self.plan(a.request) {
                Plan::Go(choices) => {
                    if self.place_any(a.request, choices) {
                        true
                    } else {
                        let retry_after = self.config.queue.retry_after;
                        self.reject(a.request, Rejection::QueueFull { retry_after });
                        return;
                    }
                }
                Plan::Hold | Plan::Pull { .. } | Plan::Unknown => false,
            };
            if retried {
                self.counters.retries += 1;
                self.events.push_back(Event::Retried { request: a.request, attempt: aid, node: a.node, failure });
            } else {
                self.reject(a.request, Rejection::AttemptsExhausted { attempts, last: failure });
            }
            return;
        }
        let rejection = match failure {
            UpstreamFailure::Status { code, saturated } if !failure.retryable() => {
                let busy = saturated || matches!(code, 429 | 503);
                let retry_after = busy.then_some(self.config.queue.retry_after);
                Rejection::Upstream { status: code, saturated, retry_after }
            }
            last => Rejection::AttemptsExhausted { attempts, last },
        };
        self.reject(a.request, rejection);
    }

    pub(super) fn reap(&mut self, aid: AttemptId) {
        let Some(a) = self.attempts.get_mut(&aid) else { return };
        let (request, node) = (a.request, a.node);
        let reason = match a.state {
            AttState::Streaming => CancelReason::Stalled,
            AttState::Dispatched | AttState::Connected => {
                // Before the first byte the adapter may be committing this very moment (its first
                // byte and this cancel cross): the attempt ends when the adapter says how.
                a.state = AttState::Cancelling;
                self.counters.reaped += 1;
                let reason = CancelReason::FirstByteTimeout;
                self.events.push_back(Event::Reaped { request, attempt: aid, node, reason });
                self.commands.push_back(Command::Cancel { request, attempt: aid, reason });
                let grace = self.now + CANCEL_GRACE;
                self.set_attempt_deadline(aid, grace);
                return;
            }
            // The adapter never answered the cancel: fail the attempt for it.
            AttState::Cancelling => {
                self.fail(aid, UpstreamFailure::Timeout);
                return;
            }
        };
        self.counters.reaped += 1;
        self.events.push_back(Event::Reaped { request, attempt: aid, node, reason });
        // The reaper ends the upstream call too, not only the accounting.
        self.commands.push_back(Command::Cancel { request, attempt: aid, reason });
        self.fail(aid, UpstreamFailure::Timeout);
    }

    pub(super) fn client_gone(&mut self, id: RequestId) {
        let Some(req) = self.requests.get(&id) else { return };
        match req.state.clone() {
            ReqState::Attempting(aid) | ReqState::Committed(aid) => {
                if let Some(a) = self.end_attempt(aid) {
                    if self.breakers.get_mut(&a.node).is_some_and(|b| b.on_abandoned(self.now)) {
                        self.fleet_dirty = true;
                    }
                }
                self.commands.push_back(Command::Cancel {
                    request: id,
                    attempt: aid,
                    reason: CancelReason::ClientGone,
                });
            }
            ReqState::Queued { node, model } => {
                self.queues.remove(node, &model, id);
            }
            ReqState::Holding | ReqState::PullWait { .. } => {}
        }
        self.end(id, Outcome::ClientGone);
    }

    pub(super) fn pull_done(&mut self, node: NodeId, model: ModelName, ok: bool) {
        self.pulls.remove(&(node, model.clone()));
        let waiting: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.state == ReqState::PullWait { node, model: model.clone() })
            .map(|(&id, _)| id)
            .collect();
        if ok {
            self.fleet.note_pulled(self.now, node, &model);
            self.fleet_dirty = true;
        }
        for id in waiting {
            self.clear_request_deadline(id);
            if ok {
                self.route(id);
            } else {
                self.reject(id, Rejection::UnknownModel(model.clone()));
            }
        }
    }

    pub(super) fn request_expired(&mut self, id: RequestId) {
        let Some(req) = self.requests.get_mut(&id) else { return };
        req.deadline = None;
        let model = req.spec.model.clone();
        if let ReqState::Queued { node, model } = req.state.clone() {
            self.queues.remove(node, &model, id);
        }
        if let ReqState::PullWait { node, model } = req.state.clone() {
            // The pull itself goes on for whoever else waits on it.
            let others = self
                .requests
                .iter()
                .any(|(&r, q)| r != id && q.state == ReqState::PullWait { node, model: model.clone() });
            if !others {
                self.pulls.remove(&(node, model));
            }
        }
        let held_unknown =
            self.requests.get(&id).is_some_and(|r| r.state == ReqState::Holding && !self.chain_known(&r.spec));
        if held_unknown && !self.in_startup_grace() {
            // Held through the startup grace and still no node has it: route it as any unknown
            // model now (404, or an auto-pull where allowed).
            self.route(id);
            return;
        }
        let retry_after = self.config.queue.retry_after;
        self.reject(id, Rejection::Unavailable { model, retry_after });
    }

    pub(super) fn end_attempt(&mut self, aid: AttemptId) -> Option<Attempt> {
        let a = self.attempts.remove(&aid)?;
        self.timers.remove(&(a.deadline, Timer::Attempt(aid)));
        self.queues.finish(a.node, &a.model);
        Some(a)
    }

    pub(super) fn reject(&mut self, id: RequestId, rejection: Rejection) {
        self.commands.push_back(Command::Reject { request: id, rejection: rejection.clone() });
        self.end(id, Outcome::Rejected(rejection));
    }

    /// The one place a request ends: frees everything it held and emits its trace.
    pub(super) fn end(&mut self, id: RequestId, outcome: Outcome) {
        let Some(req) = self.requests.remove(&id) else { return };
        self.holding.remove(&id);
        if let Some(d) = req.deadline {
            self.timers.remove(&(d, Timer::Request(id)));
        }
        if req.counted_client {
            if let Some(c) = &req.spec.client {
                if let Some(n) = self.clients.get_mut(c) {
                    *n -= 1;
                    if *n == 0 {
                        self.clients.remove(c);
                    }
                }
            }
        }
        match &outcome {
            Outcome::Completed(_) => self.counters.completed += 1,
            Outcome::Rejected(_) => self.counters.rejected += 1,
            Outcome::FailedAfterCommit(_) => self.counters.failed_after_commit += 1,
            Outcome::ClientGone => self.counters.client_gone += 1,
        }
        let now = self.now;
        self.events.push_back(Event::Ended(Trace {
            request: id,
            requested_model: req.spec.model,
            served_model: req.served.map(|s| s.0),
            node: req.node,
            attempts: req.attempts,
            outcome,
            queued: req.first_dispatch.unwrap_or(now).saturating_since(req.admitted),
            ttft: req.first_byte.map(|t| t.saturating_since(req.admitted)),
            total: now.saturating_since(req.admitted),
            cold_load: req.cold_load,
            tags: req.spec.tags,
            client: req.spec.client,
            anthropic_model: req.spec.anthropic_model,
        }));
    }

    pub(super) fn set_request_deadline(&mut self, id: RequestId, at: Instant) {
        self.clear_request_deadline(id);
        if let Some(r) = self.requests.get_mut(&id) {
            r.deadline = Some(at);
            self.timers.insert((at, Timer::Request(id)));
        }
    }

    pub(super) fn clear_request_deadline(&mut self, id: RequestId) {
        if let Some(d) = self.requests.get_mut(&id).and_then(|r| r.deadline.take()) {
            self.timers.remove(&(d, Timer::Request(id)));
        }
    }

    pub(super) fn set_attempt_deadline(&mut self, aid: AttemptId, at: Instant) {
        if let Some(a) = self.attempts.get_mut(&aid) {
            self.timers.remove(&(a.deadline, Timer::Attempt(aid)));
            a.deadline = at;
            self.timers.insert((at, Timer::Attempt(aid)));
        }
    }
}
