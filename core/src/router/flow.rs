//! Routing behind the facade: admission, the pump, scoring decisions, the plan (chain,
//! hot-first, substitution, holding, auto-pull), placement in queues and dispatch with request
//! shaping. What happens to an attempt after dispatch lives in `lifecycle`.

use super::*;
use crate::model;
use crate::policy::context::{self, ContextAction, ShapeInput};
use crate::policy::pins::PinKey;
use crate::policy::{anthropic, fallback};
use crate::queue;
use crate::score::{self, Candidate, Elimination, Facts, Want};

/// One way to serve a request: a model, how it relates to the asked one, and its candidates.
pub(super) type Choice = (ModelName, RouteKind, Vec<Candidate>);

/// What routing decided for one request.
pub(super) enum Plan {
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
                self.history.forget(ch.node);
                self.breakers.remove(&ch.node);
            }
            self.fleet_dirty = true;
            let reachable = matches!(ch.to, Some(s) if s != NodeStatus::Offline);
            self.images.set_machine_reachable(&ch.name, reachable);
            if ch.to.is_none() {
                self.images.sync_machine(&ch.name, Vec::new());
            }
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
        self.demand.record(&spec.model, self.now);
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
            cold_load: None,
            affinity: Affinity::New,
            overflow: None,
            counted_client: false,
            resolution: None,
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
        let want = Want {
            model,
            estimated_tokens: spec.estimated_prompt_tokens,
            warm_window: c.fleet.warm_window,
            expected_output_tokens: spec.max_output_tokens.unwrap_or(c.score.expected_output_tokens).min(4096),
        };
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

    /// Whether some node has reported the request's model or one of its fallbacks.
    pub(super) fn chain_known(&self, spec: &RequestSpec) -> bool {
        fallback::model_chain(spec).iter().any(|m| self.fleet.model_known(m))
    }

    /// Whether nodes may still be about to report for the first time since this router started.
    pub(super) fn in_startup_grace(&self) -> bool {
        self.now < self.started + self.config.fleet.startup_grace
    }

    pub(super) fn plan(&mut self, id: RequestId) -> Plan {
        let req = &self.requests[&id];
        let spec = req.spec.clone();
        let tried = req.tried.clone();
        let chain = fallback::model_chain(&spec);
        let tie = self.tie_seed();
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
            if self.chain_known(&spec) || self.in_startup_grace() {
                // Known but busy or offline: wait for a node. Unknown just after a start: wait
                // for the first heartbeats before saying 404 or pulling it somewhere.
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
                // Priority guard (ollama-herd §3): a model asked for more than twice as often as
                // the substitute is loaded instead, or it would never come back.
                let (asked, other) = (self.demand.of(&spec.model, self.now), self.demand.of(&sub, self.now));
                if asked <= 2.0 * other.max(1.0) {
                    choices.insert(0, (sub, RouteKind::Substitute, ranked));
                }
            }
        }
        if let Some(upgrade) = self.context_upgrade(&spec, &chain, &choices, &tried, tie) {
            choices.insert(0, upgrade);
        }
        Plan::Go(choices)
    }

    /// Context protection's upgrade (ollama-herd §6.2): the client asks for a `num_ctx` larger
    /// than the context the requested model is loaded with wherever it is hot, so serving it
    /// would reload it with a bigger window. A larger loaded model of a compatible kind whose
    /// resident context holds the request serves it instead (the smallest such), when the client
    /// allows a fallback and protection is `strip`. Unlike ollama-herd's, the upgrade is routed:
    /// it goes to a node where that model is loaded, and traces and headers name it.
    fn context_upgrade(
        &self,
        spec: &RequestSpec,
        chain: &[ModelName],
        choices: &[Choice],
        tried: &[NodeId],
        tie: u64,
    ) -> Option<Choice> {
        let want = spec.num_ctx?;
        let policy = &self.config.policy;
        if policy.context_protection != crate::config::ContextProtection::Strip
            || !fallback::substitution_allowed(policy, spec)
        {
            return None;
        }
        let (first, route, ranked) = choices.first()?;
        if *route == RouteKind::Substitute {
            return None;
        }
        let hot: Vec<&Candidate> = ranked.iter().filter(|c| c.temperature == crate::fleet::Temperature::Hot).collect();
        let resident = |node: NodeId, m: &ModelName| {
            self.fleet.node(node).and_then(|n| n.loaded(m)).map(|l| l.context_length).filter(|&c| c > 0)
        };
        // Only when every hot copy is known to be too small (unknown contexts are not judged).
        if hot.is_empty() || !hot.iter().all(|c| resident(c.node, first).is_some_and(|ctx| ctx < want)) {
            return None;
        }
        let size = |m: &ModelName| {
            self.fleet
                .nodes()
                .find_map(|n| n.loaded(m).map(|l| l.size_gb))
                .unwrap_or_else(|| model::size_from_name_gb(m).unwrap_or(model::UNKNOWN_SIZE_GB))
        };
        let current = size(first);
        let cat = model::classify(first, self.fleet.meta(first));
        let mut options: Vec<(f64, ModelName)> = Vec::new();
        for n in self.fleet.nodes().filter(|n| n.routable()) {
            for lm in &n.report().ollama.models_loaded {
                if !chain.contains(&lm.name)
                    && lm.context_length >= want
                    && lm.size_gb > current
                    && !options.iter().any(|(_, m)| *m == lm.name)
                    && fallback::may_substitute(policy, spec, cat, &lm.name, n.meta(&lm.name))
                {
                    options.push((lm.size_gb, lm.name.clone()));
                }
            }
        }
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, m) in options {
            // Only the nodes where it is loaded with a window that holds the request.
            let d = self.decide(&m, spec, tried, tie, false);
            let mut fit: Vec<Candidate> =
                d.ranked.into_iter().filter(|c| resident(c.node, &m).is_some_and(|ctx| ctx >= want)).collect();
            if let Some(i) = score::best_index(&fit) {
                fit.swap(0, i);
                return Some((m, RouteKind::ContextUpgrade, fit));
            }
        }
        None
    }

    /// The tie-break seed for one routing decision: random from the seed, or for round-robin
    /// the next rotation offset over node ids.
    fn tie_seed(&mut self) -> u64 {
        if self.config.score.policy == crate::config::ScorePolicy::RoundRobin {
            self.rotation = self.rotation.wrapping_add(1);
            let span = self.fleet.nodes().last().map_or(1, |n| u64::from(n.id().0) + 1);
            self.rotation % span
        } else {
            self.rng.next_u64()
        }
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

    /// The node a pull of `model` should go to: routable, breaker closed, without the model, with
    /// the most free memory that fits it (nodes that do not report memory come last). Auto-pull
    /// uses it, and so does an admin pull that names no node. A query: changes nothing.
    pub fn pull_target(&self, model: &ModelName) -> Option<NodeId> {
        let need = model::size_from_name_gb(model).unwrap_or(model::UNKNOWN_SIZE_GB);
        self.fleet
            .nodes()
            .filter(|n| n.routable() && self.breaker_allows(n.id()) && !n.has_model(model))
            .filter(|n| !n.memory_known() || n.free_memory_gb() >= need)
            .max_by(|a, b| a.free_memory_gb().total_cmp(&b.free_memory_gb()).then(b.id().cmp(&a.id())))
            .map(|n| n.id())
    }

    /// Resolves an Anthropic model id to a local model (once: a resolved request keeps its
    /// model). Unresolved, the id stays the model: routing holds it through the startup grace
    /// (nodes may not have reported yet, and it is tried again when they do) and refuses it 404
    /// after.
    fn resolve_model(&mut self, id: RequestId) {
        let Some(req) = self.requests.get(&id) else { return };
        let Some(asked) = req.spec.anthropic_model.as_deref().filter(|_| req.resolution.is_none()) else { return };
        let Some(r) = anthropic::resolve(asked, &self.config.anthropic, &self.fleet, req.spec.has_images) else {
            return;
        };
        let asked = asked.to_string();
        self.demand.record(&r.model, self.now);
        self.events.push_back(Event::Resolved { request: id, asked, model: r.model.clone(), by: r.by });
        let req = self.requests.get_mut(&id).expect("checked");
        req.spec.model = r.model.clone();
        req.resolution = Some(r);
    }

    /// Routes a request that is not running: dispatch, queue, hold, pull or reject.
    pub(super) fn route(&mut self, id: RequestId) {
        if !self.requests.contains_key(&id) {
            return;
        }
        self.resolve_model(id);
        let was_holding = self.holding.remove(&id);
        match self.plan(id) {
            Plan::Go(choices) => {
                if !self.place_any(id, choices) {
                    let retry_after = self.config.queue.retry_after;
                    self.reject(id, Rejection::QueueFull { retry_after });
                }
            }
            Plan::Hold => {
                // Held only because of the startup grace: no longer than the grace.
                let grace_end = (!self.chain_known(&self.requests[&id].spec))
                    .then_some(self.started + self.config.fleet.startup_grace);
                self.holding.insert(id);
                let req = self.requests.get_mut(&id).expect("checked");
                req.state = ReqState::Holding;
                if !was_holding {
                    self.counters.held += 1;
                    let model = req.spec.model.clone();
                    self.events.push_back(Event::Holding { request: id, model });
                    let holding = self.now + self.config.queue.holding;
                    self.set_request_deadline(id, grace_end.map_or(holding, |end| holding.min(end)));
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
    pub(super) fn place_any(&mut self, id: RequestId, choices: Vec<Choice>) -> bool {
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
            req.affinity = if cand.breakdown.get(score::Signal::SessionAffinity) > 0.0 {
                Affinity::Matched
            } else if cand.breakdown.get(score::Signal::PrefixAffinity) > 0.0 {
                Affinity::Prefix
            } else {
                Affinity::New
            };
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
        let thinking_model = model::is_thinking(&model, n.meta(&model));
        let ollama = n.ollama_version();
        let shape = context::shape(
            &c.policy,
            &ShapeInput {
                client_num_ctx: req.spec.num_ctx,
                resident_ctx: resident,
                estimated_tokens: req.spec.estimated_prompt_tokens,
                max_output: req.spec.max_output_tokens,
                think: req.spec.think,
                thinking_model,
            },
        );
        // First byte needs: a load when not resident, prefill of the prompt, then the base allowance.
        let load_s = if resident.is_some() { 0.0 } else { n.model_size_gb(&model) / c.retry.load_gb_per_sec };
        let prefill_s = f64::from(req.spec.estimated_prompt_tokens) / c.retry.prefill_tokens_per_sec;
        // A short answer a client takes whole comes whole from the node: its first byte is its
        // last, so the deadline allows for decoding the whole budget.
        let budget = shape.num_predict.or(req.spec.max_output_tokens).filter(|&n| n > 0);
        let stream_upstream = req.spec.stream
            || !matches!(req.spec.kind, crate::request::RequestKind::Chat | crate::request::RequestKind::Generate)
            || budget.is_none_or(|n| n > c.retry.unstreamed_max_tokens);
        let decode_s =
            if stream_upstream { 0.0 } else { f64::from(budget.unwrap_or(0)) / c.retry.decode_tokens_per_sec };
        let allowance = std::time::Duration::try_from_secs_f64(load_s + prefill_s + decode_s)
            .unwrap_or(std::time::Duration::from_secs(3600));
        let deadline = now + c.retry.first_byte_timeout + allowance;
        let attempt_no = req.attempts;
        let (_, route, score) = req.served.clone().unwrap_or((model.clone(), RouteKind::Primary, 0.0));
        // The context the request runs with: what herd sets, else the client's, else the resident.
        let need = u64::from(req.spec.estimated_prompt_tokens) + u64::from(req.spec.max_output_tokens.unwrap_or(0));
        let overflow = shape.num_ctx.or(req.spec.num_ctx).or(resident).filter(|&ctx| ctx > 0 && need > u64::from(ctx));
        let overflow = overflow.map(|ctx| (u32::try_from(need).unwrap_or(u32::MAX), ctx));
        req.overflow = overflow;
        let affinity = req.affinity;
        let resolution = req.resolution.clone();
        self.queues.start(node, &model);
        self.breakers.entry(node).or_default().on_dispatch(now);
        if !matches!(shape.context, ContextAction::Untouched | ContextAction::Pinned { .. }) {
            self.events.push_back(Event::Context { request: id, node, action: shape.context });
        }
        self.attempts.insert(
            aid,
            Attempt {
                request: id,
                node,
                model: model.clone(),
                state: AttState::Dispatched,
                started: now,
                deadline,
                cold: resident.is_none(),
            },
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
            keep_alive: c.policy.keep_alive.clone(),
            context: shape.context,
            first_byte_deadline: deadline,
            route,
            affinity,
            overflow,
            score,
            ollama,
            thinking_model,
            resolution,
            stream_upstream,
        }));
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
