//! A self-check of the router's tables against each other, for tests, the simulation and
//! fuzzing: timers match their owners, queue counts match live attempts, every waiting request
//! has a deadline, client counts match. Compiled only with `testing` (or in tests).

use super::*;

impl Router {
    /// Checks that the router's internal tables agree with each other.
    ///
    /// # Errors
    /// A description of the first disagreement found.
    pub fn check_consistency(&self) -> Result<(), String> {
        // timers
        for (t, timer) in &self.timers {
            match timer {
                Timer::Request(id) => match self.requests.get(id) {
                    Some(r) if r.deadline == Some(*t) => {}
                    other => return Err(format!("stale request timer {id} at {t:?}: {:?}", other.map(|r| r.deadline))),
                },
                Timer::Attempt(a) => match self.attempts.get(a) {
                    Some(x) if x.deadline == *t => {}
                    _ => return Err(format!("stale attempt timer {a:?}")),
                },
            }
            if *t <= self.now && !self.config.queue.holding.is_zero() {
                return Err(format!("timer {timer:?} at {t:?} not later than now {:?}", self.now));
            }
        }
        let mut inflight: BTreeMap<(NodeId, ModelName), u32> = BTreeMap::new();
        for (aid, a) in &self.attempts {
            *inflight.entry((a.node, a.model.clone())).or_default() += 1;
            match self.requests.get(&a.request).map(|r| &r.state) {
                Some(ReqState::Attempting(x) | ReqState::Committed(x)) if x == aid => {}
                s => return Err(format!("attempt {aid:?} of {} in state {s:?}", a.request)),
            }
            if !self.timers.contains(&(a.deadline, Timer::Attempt(*aid))) {
                return Err(format!("attempt {aid:?} without timer"));
            }
        }
        for (n, m, q) in self.queues.iter() {
            if inflight.get(&(n, m.clone())).copied().unwrap_or(0) != q.in_flight {
                return Err(format!("queue {n}/{m} in_flight {} != attempts", q.in_flight));
            }
            for id in &q.pending {
                match self.requests.get(id).map(|r| &r.state) {
                    Some(ReqState::Queued { node, model }) if *node == n && model == m => {}
                    s => return Err(format!("{id} pending at {n}/{m} in state {s:?}")),
                }
            }
        }
        let mut clients: BTreeMap<String, u32> = BTreeMap::new();
        for (id, r) in &self.requests {
            if r.counted_client {
                *clients.entry(r.spec.client.clone().unwrap_or_default()).or_default() += 1;
            }
            match &r.state {
                ReqState::Holding if !self.holding.contains(id) => {
                    return Err(format!("{id} Holding but not in holding set"));
                }
                ReqState::Queued { node, model } => {
                    let n = self.queues.get(*node, model).map_or(0, |q| q.pending.iter().filter(|x| *x == id).count());
                    if n != 1 {
                        return Err(format!("{id} Queued at {node}/{model} but {n} times in queue"));
                    }
                }
                _ => {}
            }
            let running = matches!(r.state, ReqState::Attempting(_) | ReqState::Committed(_));
            if running == r.deadline.is_some() {
                return Err(format!("{id} state {:?} deadline {:?}", r.state, r.deadline));
            }
        }
        for id in &self.holding {
            if self.requests.get(id).map(|r| &r.state) != Some(&ReqState::Holding) {
                return Err(format!("{id} in holding set but not Holding"));
            }
        }
        if clients != self.clients {
            return Err(format!("client counts {:?} != {:?}", self.clients, clients));
        }
        Ok(())
    }
}
