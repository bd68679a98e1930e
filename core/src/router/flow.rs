//! The request flow behind the facade: admission, routing (chain, hot-first, substitution,
//! holding, auto-pull), dispatch with request shaping, commit, retries, reaping and the single
//! end of every request.

use super::*;
use crate::model;
use crate::policy::context::{self, ContextAction, ShapeInput};
use crate::policy::fallback;
use crate::policy::pins::PinKey;
use crate::queue;
use crate::score::{self, Candidate, Elimination, Facts, Want};

/// One way to serve a request: a model, how it relates to the asked one, and its candidates.
type Choice = (ModelName, RouteKind, Vec<Candidate>);

/// What routing decided for one request.
enum Plan {
    /// Serve it by the first of these choices that has room (best choice first).
    Go(Vec<Choice>),
    /// Nothing can serve now but a node knows the model: wait.
    Hold,
    /// Pull the model onto this node, then route.
    Pull { node: NodeId, model: ModelName },
    /// No node has any of the models.
    Unknown,
}

impl Router {
    pub(super) fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside core, whatever the adapter's clock does.
        self.now = self.now.max(now);
        let now = self.now;
        for ch in self.fleet.handle_timeout(now) {
            if ch.to != Some(NodeStatus::Degraded) {
                self.pins.unpin_node(ch.node);
            }
            if ch.to.is_none() {
                self.latency.forget(ch.node);
                self.breakers.remove(&ch.node);
            }
            self.fleet_dirty = true;
            self.events.push_back(Event::NodeStatus { node: ch.node, name: ch.name, from: Some(ch.from), to: ch.to });
        }
        while let Some(&(t, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Request(id) => self.request_expired(id),
                Timer::Attempt(id) => self.reap(id),
            }
        }
        // A breaker reaching half-open may let held requests through.
        if self.breakers.values().any(|b| b.deadline().is_some_and(|t| t <= now)) {
            self.fleet_dirty = true;
        }
    }

    pub(super) fn admit(&mut self, spec: RequestSpec) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.counters.requests += 1;
        let req = Req {
            spec,
            admitted: self.now,
            state: ReqState::Holding,
            deadline: None,
            attempts: 0,
            tried: Vec::new(),
            served: None,
            node: None,
            first_dispatch: None,
            first_byte: None,
            counted_client: false,
        };
        let q = &self.config.queue;
        let refusal = if self.requests.len() >= q.max_requests {
            Some(Rejection::Overloaded { retry_after: q.retry_after })
        } else {
            match &req.spec.client {
                Some(c)
                    if q.client_max_in_flight > 0
                        && self.clients.get(c).copied().unwrap_or(0) >= q.client_max_in_flight =>
                {
                    Some(Rejection::ClientLimit { limit: q.client_max_in_flight, retry_after: q.retry_after })
                }
                _ => None,
            }
        };
        self.requests.insert(id, req);
        if let Some(r) = refusal {
            self.reject(id, r);
            return id;
        }
        if let Some(c) = self.requests[&id].spec.client.clone() {
            *self.clients.entry(c).or_insert(0) += 1;
            self.requests.get_mut(&id).expect("just inserted").counted_client = true;
        }
        self.route(id);
        id
    }

    /// Dispatches what queues allow and re-routes what waits on a changed fleet.
    pub(super) fn pump(&mut self) {
        for (node, model) in self.queues.with_pending() {
            let busy_here = self.queues.get(node, &model).is_some_and(|q| q.in_flight > 0);
            let breaker_open = !self.breaker_allows(node);
            let usable = self.fleet.node(node).is_some_and(|n| match score::eliminate(n, &model, breaker_open) {
                None => true,
                // While our own attempts load or run the model here, the memory they take is
                // not a reason to leave.
                Some(Elimination::DoesNotFit { .. } | Elimination::MemoryCritical) => busy_here,
                Some(_) => false,
            });
            if !usable {
                // The node left, lost the model, tripped its breaker or can no longer take the
                // model: everyone waiting there is routed afresh (elsewhere, or held).
                while let Some(id) = self.queues.pop(node, &model) {
                    self.route(id);
                }
                continue;
            }
            let Some(n) = self.fleet.node(node) else { continue };
            let slots = queue::slots(&self.config.queue, n, &model);
            while self.queues.get(node, &model).is_some_and(|q| q.in_flight < slots && !q.pending.is_empty())
                && self.breaker_allows(node)
            {
                let Some(id) = self.queues.pop(node, &model) else { break };
                self.clear_request_deadline(id);
                self.dispatch(id, node, model.clone());
            }
        }
        if std::mem::take(&mut self.fleet_dirty) {
            let waiting: Vec<RequestId> = self.holding.iter().copied().collect();
            for id in waiting {
                self.route(id);
            }
            // A heartbeat may show a pulled model before the pull's own result arrives.
            let arrived: Vec<(NodeId, ModelName)> = self
                .pulls
                .keys()
                .filter(|(n, m)| self.fleet.node(*n).is_some_and(|node| node.has_model(m)))
                .cloned()
                .collect();
            for (node, model) in arrived {
                self.pull_done(node, model, true);
            }
        }
    }

    /// Scores `model` on every node for `spec`, excluding `tried`.
    /// With `full`, `ranked` is completely sorted (explain); otherwise only the best is first.
    pub(super) fn decide(
        &self,
        model: &ModelName,
        spec: &RequestSpec,
        tried: &[NodeId],
        tie_seed: u64,
        full: bool,
    ) -> Decision {
        let c = &self.config;
        let want = Want { model, estimated_tokens: spec.estimated_prompt_tokens, warm_window: c.fleet.warm_window };
        let session = spec.session_key.as_ref().and_then(|k| self.pins.get(&PinKey::Session(k.clone()), self.now));
        let prefix = spec.prefix_key.and_then(|k| self.pins.get(&PinKey::Prefix(k), self.now));
        let median = self.fleet.median_bandwidth();
        let key = model.key();
        let mut d = Decision::default();
        let mut scored = Vec::with_capacity(self.fleet.len());
        // Merge-join the registry with the per-node tables (all in node order): one pass, no
        // lookups per node.
        let mut breakers = Join::new(self.breakers.iter().map(|(&k, v)| (k, v)));
        let mut queues = Join::new(self.queues.by_node().map(|(&k, v)| (k, v)));
        let mut latency = Join::new(self.latency.by_node());
        for n in self.fleet.nodes() {
            let id = n.id();
            let breaker = breakers.at(id);
            let node_queues = queues.at(id);
            let node_latency = latency.at(id);
            if tried.contains(&id) {
                continue;
            }
            let breaker_open = breaker.is_some_and(|b| !b.allows(self.now));
            let entry = n.entry_by_key(key, model);
            if let Some(e) = score::eliminate_entry(n, entry, breaker_open) {
                d.eliminated.push((id, e));
                continue;
            }
            let Some(entry) = entry else { continue };
            let facts = Facts {
                depth: node_queues.and_then(|q| q.get(model)).map_or(0, queue::Queue::depth),
                slots: queue::slots_for(&c.queue, n, entry.serial),
                p75_ms: node_latency.and_then(|l| l.p75_ms(model)),
                breaker_open,
                session_pinned: session == Some(id),
                prefix_pinned: prefix == Some(id),
            };
            let b = score::breakdown_entry(&c.score, n, entry, &want, &facts, median, self.now);
            scored.push((id, b, entry.temperature(self.now, c.fleet.warm_window), facts));
        }
        d.ranked = if full {
            score::rank(&c.score, scored, tie_seed)
        } else {
            score::rank_best_first(&c.score, scored, tie_seed)
        };
        d
    }

    fn plan(&mut self, id: RequestId) -> Plan {
        let req = &self.requests[&id];
        let spec = req.spec.clone();
        let tried = req.tried.clone();
        let chain = fallback::model_chain(&spec);
        let tie = self.rng.next_u64();
        let hot = |c: &Candidate| c.temperature == crate::fleet::Temperature::Hot;
        let mut choices: Vec<Choice> = Vec::new();
        for (i, m) in chain.iter().enumerate() {
            let d = self.decide(m, &spec, &tried, tie, false);
            let route = if i == 0 { RouteKind::Primary } else { RouteKind::ClientFallback };
            if !d.ranked.is_empty() {
                choices.push((m.clone(), route, d.ranked));
            }
        }
        if choices.is_empty() {
            if chain.iter().any(|m| self.fleet.model_known(m)) {
                return Plan::Hold;
            }
            if fallback::pull_allowed(&self.config.policy, &spec.model) {
                if let Some(node) = self.pull_target(&spec.model) {
                    return Plan::Pull { node, model: spec.model };
                }
            }
            return Plan::Unknown;
        }
        // Hot first: the first model whose best node has it loaded, even a client fallback over
        // a cold primary; the rest stay in chain order behind it, for when its queues are full.
        if let Some(i) = choices.iter().position(|(_, _, r)| r.first().is_some_and(hot)) {
            let first = choices.remove(i);
            choices.insert(0, first);
        } else if !choices.iter().any(|(_, _, r)| r.iter().any(hot))
            && fallback::substitution_allowed(&self.config.policy, &spec)
        {
            // Nothing asked for is loaded anywhere: a loaded model of the same kind beats a
            // cold load.
            if let Some((sub, ranked)) = self.substitute(&spec, &chain, &tried, tie) {
                choices.insert(0, (sub, RouteKind::Substitute, ranked));
            }
        }
        Plan::Go(choices)
    }

    /// VRAM-aware fallback: the best loaded model of a compatible category on any node.
    fn substitute(
        &self,
        spec: &RequestSpec,
        chain: &[ModelName],
        tried: &[NodeId],
        tie: u64,
    ) -> Option<(ModelName, Vec<Candidate>)> {
        let cat = model::classify(&spec.model, self.fleet.meta(&spec.model));
        let mut loaded: Vec<ModelName> = Vec::new();
        for n in self.fleet.nodes().filter(|n| n.routable()) {
            for lm in &n.report().ollama.models_loaded {
                if !chain.contains(&lm.name)
                    && !loaded.contains(&lm.name)
                    && fallback::may_substitute(&self.config.policy, spec, cat, &lm.name, n.meta(&lm.name))
                {
                    loaded.push(lm.name.clone());
                }
            }
        }
        loaded.sort();
        let mut best: Option<(ModelName, Vec<Candidate>)> = None;
        for m in loaded {
            let d = self.decide(&m, spec, tried, tie, false);
            let mut hot: Vec<Candidate> =
                d.ranked.into_iter().filter(|c| c.temperature == crate::fleet::Temperature::Hot).collect();
            let Some(i) = score::best_index(&hot) else { continue };
            hot.swap(0, i);
            let top = &hot[0];
            if best.as_ref().is_none_or(|(_, b)| top.total > b[0].total) {
                best = Some((m, hot));
            }
        }
        best
    }

    fn pull_target(&self, model: &ModelName) -> Option<NodeId> {
        let need = model::size_from_name_gb(model).unwrap_or(model::UNKNOWN_SIZE_GB);
        self.fleet
            .nodes()
            .filter(|n| n.routable() && self.breaker_allows(n.id()) && n.free_memory_gb() >= need)
            .max_by(|a, b| a.free_memory_gb().total_cmp(&b.free_memory_gb()).then(b.id().cmp(&a.id())))
            .map(|n| n.id())
    }

    /// Routes a request that is not running: dispatch, queue, hold, pull or reject.
    pub(super) fn route(&mut self, id: RequestId) {
        if !self.requests.contains_key(&id) {
            return;
        }
        let was_holding = self.holding.remove(&id);
        match self.plan(id) {
            Plan::Go(choices) => {
                if !self.place_any(id, choices) {
                    let retry_after = self.config.queue.retry_after;
                    self.reject(id, Rejection::QueueFull { retry_after });
                }
            }
            Plan::Hold => {
                self.holding.insert(id);
                let req = self.requests.get_mut(&id).expect("checked");
                req.state = ReqState::Holding;
                if !was_holding {
                    self.counters.held += 1;
                    let model = req.spec.model.clone();
                    self.events.push_back(Event::Holding { request: id, model });
                    let deadline = self.now + self.config.queue.holding;
                    self.set_request_deadline(id, deadline);
                }
            }
            Plan::Pull { node, model } => {
                let req = self.requests.get_mut(&id).expect("checked");
                req.state = ReqState::PullWait { node, model: model.clone() };
                let deadline = self.now + self.config.policy.pull_timeout;
                self.set_request_deadline(id, deadline);
                if let std::collections::btree_map::Entry::Vacant(e) = self.pulls.entry((node, model.clone())) {
                    e.insert(deadline);
                    self.counters.pulls += 1;
                    self.commands.push_back(Command::Pull { node, model });
                }
            }
            Plan::Unknown => {
                let model = self.requests[&id].spec.model.clone();
                self.reject(id, Rejection::UnknownModel(model));
            }
        }
    }

    /// Places a request by the first choice with room; false when every queue is full.
    fn place_any(&mut self, id: RequestId, choices: Vec<Choice>) -> bool {
        choices.into_iter().any(|(model, route, ranked)| self.place(id, model, route, ranked))
    }

    /// Puts a routed request on the best candidate that has a free slot or queue room; false
    /// when every candidate's queue is full.
    fn place(&mut self, id: RequestId, model: ModelName, route: RouteKind, ranked: Vec<Candidate>) -> bool {
        let max_pending = self.config.queue.max_pending_per_queue;
        let max_wait = self.config.queue.max_queue_wait;
        let now = self.now;
        let mut rest = ranked;
        while let Some(i) = score::best_index(&rest) {
            let cand = rest.swap_remove(i);
            let Some(n) = self.fleet.node(cand.node) else { continue };
            let slots = queue::slots(&self.config.queue, n, &model);
            let (in_flight, pending) =
                self.queues.get(cand.node, &model).map_or((0, 0), |qq| (qq.in_flight, qq.pending.len()));
            let req = self.requests.get_mut(&id).expect("routed requests exist");
            if in_flight < slots && pending == 0 {
                req.served = Some((model.clone(), route, cand.total));
                self.clear_request_deadline(id);
                self.dispatch(id, cand.node, model);
                return true;
            }
            if pending < max_pending {
                req.served = Some((model.clone(), route, cand.total));
                req.state = ReqState::Queued { node: cand.node, model: model.clone() };
                // A first try waits at most `max_wait` since admission; a retry gets its own wait.
                let deadline = if req.attempts == 0 { req.admitted + max_wait } else { now + max_wait };
                self.queues.push(cand.node, &model, id);
                self.set_request_deadline(id, deadline.max(now + std::time::Duration::from_millis(1)));
                return true;
            }
        }
        false
    }

    fn dispatch(&mut self, id: RequestId, node: NodeId, model: ModelName) {
        let aid = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        self.counters.dispatched += 1;
        let now = self.now;
        let c = &self.config;
        let n = self.fleet.node(node).expect("dispatch targets a known node");
        let req = self.requests.get_mut(&id).expect("dispatched requests exist");
        req.attempts += 1;
        req.tried.push(node);
        req.node = Some(node);
        req.first_dispatch.get_or_insert(now);
        req.state = ReqState::Attempting(aid);
        let resident = n.loaded(&model).map(|l| l.context_length);
        let shape = context::shape(
            &c.policy,
            &ShapeInput {
                client_num_ctx: req.spec.num_ctx,
                resident_ctx: resident,
                estimated_tokens: req.spec.estimated_prompt_tokens,
                max_output: req.spec.max_output_tokens,
                think: req.spec.think,
                thinking_model: model::is_thinking(&model, n.meta(&model)),
            },
        );
        // First byte needs: a load when not resident, prefill of the prompt, then the base allowance.
        let load_s = if resident.is_some() { 0.0 } else { n.model_size_gb(&model) / c.retry.load_gb_per_sec };
        let prefill_s = f64::from(req.spec.estimated_prompt_tokens) / c.retry.prefill_tokens_per_sec;
        let allowance =
            std::time::Duration::try_from_secs_f64(load_s + prefill_s).unwrap_or(std::time::Duration::from_secs(3600));
        let deadline = now + c.retry.first_byte_timeout + allowance;
        let attempt_no = req.attempts;
        self.queues.start(node, &model);
        self.breakers.entry(node).or_default().on_dispatch(now);
        if !matches!(shape.context, ContextAction::Untouched | ContextAction::Pinned { .. }) {
            self.events.push_back(Event::Context { request: id, node, action: shape.context });
        }
        self.attempts.insert(
            aid,
            Attempt { request: id, node, model: model.clone(), state: AttState::Dispatched, started: now, deadline },
        );
        self.timers.insert((deadline, Timer::Attempt(aid)));
        self.commands.push_back(Command::Dispatch(Dispatch {
            request: id,
            attempt: aid,
            attempt_no,
            node,
            model,
            num_ctx: shape.num_ctx,
            num_predict: shape.num_predict,
            context: shape.context,
            first_byte_deadline: deadline,
        }));
    }

    pub(super) fn commit(&mut self, aid: AttemptId) {
        let Some(a) = self.attempts.get_mut(&aid) else { return };
        if a.state == AttState::Streaming {
            return;
        }
        a.state = AttState::Streaming;
        let (rid, node, model) = (a.request, a.node, a.model.clone());
        let deadline = self.now + self.config.retry.stall_timeout;
        self.set_attempt_deadline(aid, deadline);
        let req = self.requests.get_mut(&rid).expect("attempts belong to live requests");
        req.state = ReqState::Committed(aid);
        req.first_byte = Some(self.now);
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
        self.commands.push_back(Command::Commit(Commit {
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
        }
        self.end(a.request, Outcome::Completed(usage));
    }

    pub(super) fn fail(&mut self, aid: AttemptId, failure: UpstreamFailure) {
        let Some(a) = self.end_attempt(aid) else { return };
        if self.fleet.node(a.node).is_some() {
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
                Rejection::Upstream { status: code, saturated }
            }
            last => Rejection::AttemptsExhausted { attempts, last },
        };
        self.reject(a.request, rejection);
    }

    fn reap(&mut self, aid: AttemptId) {
        let Some(a) = self.attempts.get(&aid) else { return };
        let reason =
            if a.state == AttState::Streaming { CancelReason::Stalled } else { CancelReason::FirstByteTimeout };
        let (request, node) = (a.request, a.node);
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
            self.fleet.note_pulled(node, &model);
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

    fn request_expired(&mut self, id: RequestId) {
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
        let retry_after = self.config.queue.retry_after;
        self.reject(id, Rejection::Unavailable { model, retry_after });
    }

    fn end_attempt(&mut self, aid: AttemptId) -> Option<Attempt> {
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
    fn end(&mut self, id: RequestId, outcome: Outcome) {
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
            tags: req.spec.tags,
            client: req.spec.client,
        }));
    }

    fn set_request_deadline(&mut self, id: RequestId, at: Instant) {
        self.clear_request_deadline(id);
        if let Some(r) = self.requests.get_mut(&id) {
            r.deadline = Some(at);
            self.timers.insert((at, Timer::Request(id)));
        }
    }

    fn clear_request_deadline(&mut self, id: RequestId) {
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

/// A cursor over a node-ordered table, advanced in step with the registry's node order.
struct Join<I: Iterator> {
    it: std::iter::Peekable<I>,
}

impl<V, I: Iterator<Item = (NodeId, V)>> Join<I> {
    fn new(it: I) -> Self {
        Join { it: it.peekable() }
    }

    /// The row for `id`, if any; ids must be asked in increasing order.
    fn at(&mut self, id: NodeId) -> Option<V> {
        while self.it.peek().is_some_and(|(k, _)| *k < id) {
            self.it.next();
        }
        if self.it.peek().is_some_and(|(k, _)| *k == id) {
            self.it.next().map(|(_, v)| v)
        } else {
            None
        }
    }
}
