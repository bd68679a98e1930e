//! Per node+model queues: how many requests may run at once (slots) and who waits, in order.
//! Queues are created on first use and dropped when empty, so they never grow without bound
//! (ollama-herd kept every queue it ever made).

use crate::config::QueueConfig;
use crate::fleet::Node;
use crate::ids::{ModelName, NodeId, RequestId};
use std::collections::{BTreeMap, VecDeque};

/// Concurrency for a model on a node (reference §4.2): memory headroom / KV cost per request,
/// clamped to `[1, max_slots]`, capped by `OLLAMA_NUM_PARALLEL`, and 1 for models Ollama runs
/// serially. A node that does not report its memory gets `OLLAMA_NUM_PARALLEL` alone: there is
/// no headroom to estimate from.
pub fn slots(c: &QueueConfig, node: &Node, model: &ModelName) -> u32 {
    slots_for(c, node, node.entry(model).is_some_and(|e| e.serial))
}

/// [`slots`] when the caller already knows whether the model is serial.
pub fn slots_for(c: &QueueConfig, node: &Node, serial: bool) -> u32 {
    if serial {
        return 1;
    }
    if !node.memory_known() {
        return node.num_parallel();
    }
    let headroom = node.free_memory_gb().max(0.0);
    let by_memory = ((headroom / c.kv_slot_gb).floor() as u32).clamp(1, c.max_slots.max(1));
    by_memory.min(node.num_parallel())
}

/// One node+model queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// Requests waiting for a slot, oldest first.
    pub pending: VecDeque<RequestId>,
    /// Attempts running.
    pub in_flight: u32,
}

impl Queue {
    /// Pending plus running: the depth the scorer penalises.
    pub fn depth(&self) -> u32 {
        self.pending.len() as u32 + self.in_flight
    }
}

/// All queues.
#[derive(Clone, Debug, Default)]
pub struct Queues {
    map: BTreeMap<NodeId, BTreeMap<ModelName, Queue>>,
}

impl Queues {
    /// A queue, if it exists.
    pub fn get(&self, node: NodeId, model: &ModelName) -> Option<&Queue> {
        self.map.get(&node)?.get(model)
    }

    /// Per-node queues in node order, for merge-joins with the registry.
    pub fn by_node(&self) -> std::collections::btree_map::Iter<'_, NodeId, BTreeMap<ModelName, Queue>> {
        self.map.iter()
    }

    /// Depth of a queue (0 when absent).
    pub fn depth(&self, node: NodeId, model: &ModelName) -> u32 {
        self.get(node, model).map_or(0, Queue::depth)
    }

    /// Running attempts on a node, all models.
    pub fn node_in_flight(&self, node: NodeId) -> u32 {
        self.map.get(&node).map_or(0, |m| m.values().map(|q| q.in_flight).sum())
    }

    /// Pending requests on a node, all models.
    pub fn node_pending(&self, node: NodeId) -> usize {
        self.map.get(&node).map_or(0, |m| m.values().map(|q| q.pending.len()).sum())
    }

    fn entry(&mut self, node: NodeId, model: &ModelName) -> &mut Queue {
        self.map.entry(node).or_default().entry(model.clone()).or_default()
    }

    /// Adds a waiting request at the back.
    pub fn push(&mut self, node: NodeId, model: &ModelName, id: RequestId) {
        self.entry(node, model).pending.push_back(id);
    }

    /// Removes a waiting request wherever it is in the queue.
    pub fn remove(&mut self, node: NodeId, model: &ModelName, id: RequestId) -> bool {
        let found = self.map.get_mut(&node).and_then(|m| m.get_mut(model)).is_some_and(|q| {
            let before = q.pending.len();
            q.pending.retain(|&r| r != id);
            q.pending.len() != before
        });
        self.gc(node, model);
        found
    }

    /// Counts a started attempt.
    pub fn start(&mut self, node: NodeId, model: &ModelName) {
        self.entry(node, model).in_flight += 1;
    }

    /// Counts an ended attempt.
    pub fn finish(&mut self, node: NodeId, model: &ModelName) {
        if let Some(q) = self.map.get_mut(&node).and_then(|m| m.get_mut(model)) {
            q.in_flight = q.in_flight.saturating_sub(1);
        }
        self.gc(node, model);
    }

    /// Takes the oldest waiting request.
    pub fn pop(&mut self, node: NodeId, model: &ModelName) -> Option<RequestId> {
        let id = self.map.get_mut(&node)?.get_mut(model)?.pending.pop_front();
        self.gc(node, model);
        id
    }

    /// Every queue with waiting requests: `(node, model)` in order.
    pub fn with_pending(&self) -> Vec<(NodeId, ModelName)> {
        self.map
            .iter()
            .flat_map(|(&n, m)| {
                m.iter().filter(|(_, q)| !q.pending.is_empty()).map(move |(model, _)| (n, model.clone()))
            })
            .collect()
    }

    /// Every queue, for stats.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &ModelName, &Queue)> {
        self.map.iter().flat_map(|(&n, m)| m.iter().map(move |(model, q)| (n, model, q)))
    }

    /// Total running attempts.
    pub fn total_in_flight(&self) -> u32 {
        self.iter().map(|(_, _, q)| q.in_flight).sum()
    }

    fn gc(&mut self, node: NodeId, model: &ModelName) {
        if let Some(m) = self.map.get_mut(&node) {
            if m.get(model).is_some_and(|q| q.pending.is_empty() && q.in_flight == 0) {
                m.remove(model);
            }
            if m.is_empty() {
                self.map.remove(&node);
            }
        }
    }
}

/// Most models per node whose queue history is kept; attempts on further models of that node
/// go uncounted.
pub const MAX_HISTORY_MODELS_PER_NODE: usize = 2048;

/// What one node+model queue did since the router started: ollama-herd's per-queue counters
/// and running averages (`/fleet/queue`). Kept apart from [`Queue`], which is dropped when it
/// empties, and forgotten with the node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    /// Attempts that ended with a whole answer.
    pub completed: u64,
    /// Attempts the node failed (an error, a refused or broken connection, a stall, a timeout).
    /// A client that leaves fails nothing.
    pub failed: u64,
    /// Sum of the completed attempts' times, dispatch to end, ms.
    pub latency_ms_sum: f64,
    /// Sum of their prompt tokens.
    pub prompt_tokens_sum: u64,
    /// Sum of their generated tokens.
    pub completion_tokens_sum: u64,
}

impl QueueStats {
    /// Mean of `sum` over the completed attempts; 0 before the first (ollama-herd's
    /// convention: read it with `completed`, its sample count).
    pub fn mean(&self, sum: f64) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            sum / self.completed as f64
        }
    }
}

/// [`QueueStats`] per node+model.
#[derive(Clone, Debug, Default)]
pub struct History {
    map: BTreeMap<NodeId, BTreeMap<ModelName, QueueStats>>,
}

impl History {
    fn entry(&mut self, node: NodeId, model: &ModelName) -> Option<&mut QueueStats> {
        let models = self.map.entry(node).or_default();
        if !models.contains_key(model) && models.len() >= MAX_HISTORY_MODELS_PER_NODE {
            return None;
        }
        Some(models.entry(model.clone()).or_default())
    }

    /// Counts an attempt that completed after `latency_ms`, with its token counts.
    pub fn completed(&mut self, node: NodeId, model: &ModelName, latency_ms: f64, prompt: u32, output: u32) {
        if let Some(s) = self.entry(node, model) {
            s.completed += 1;
            s.latency_ms_sum += latency_ms.max(0.0);
            s.prompt_tokens_sum += u64::from(prompt);
            s.completion_tokens_sum += u64::from(output);
        }
    }

    /// Counts an attempt the node failed.
    pub fn failed(&mut self, node: NodeId, model: &ModelName) {
        if let Some(s) = self.entry(node, model) {
            s.failed += 1;
        }
    }

    /// One queue's history.
    pub fn get(&self, node: NodeId, model: &ModelName) -> Option<&QueueStats> {
        self.map.get(&node)?.get(model)
    }

    /// Every queue's history, in node then model order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &ModelName, &QueueStats)> {
        self.map.iter().flat_map(|(&n, m)| m.iter().map(move |(model, s)| (n, model, s)))
    }

    /// Drops a forgotten node's history.
    pub fn forget(&mut self, node: NodeId) {
        self.map.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::heartbeat::{Heartbeat, ModelMeta, Report};
    use crate::fleet::tests::hb;
    use crate::fleet::Fleet;
    use crate::time::Instant;

    fn node(h: Heartbeat) -> Fleet {
        let mut f = Fleet::new(Default::default());
        f.handle_report(Instant::ZERO, Report::Heartbeat(Box::new(h))).unwrap();
        f
    }

    #[test]
    fn slots_from_memory_parallelism_and_serial_models() {
        let c = QueueConfig::default();
        let m = ModelName::new("m:7b");
        let mut h = hb("a", &[], &["m:7b"]);
        h.memory.available_gb = 40.0;
        h.ollama.num_parallel = 4;
        let f = node(h.clone());
        assert_eq!(slots(&c, f.by_name("a").unwrap(), &m), 4, "capped by OLLAMA_NUM_PARALLEL");
        h.ollama.num_parallel = 0;
        assert_eq!(slots(&c, node(h.clone()).by_name("a").unwrap(), &m), 1, "unreported parallelism is 1");
        h.ollama.num_parallel = 16;
        h.memory.available_gb = 7.0;
        assert_eq!(slots(&c, node(h.clone()).by_name("a").unwrap(), &m), 3, "7 GB / 2 GB per request");
        h.memory.available_gb = 0.5;
        assert_eq!(slots(&c, node(h.clone()).by_name("a").unwrap(), &m), 1, "never below 1");
        h.memory.available_gb = 400.0;
        assert_eq!(slots(&c, node(h.clone()).by_name("a").unwrap(), &m), 8, "never above max_slots");
        let mut meta = std::collections::BTreeMap::new();
        meta.insert(m.clone(), ModelMeta { family: "qwen3vl".into(), ..Default::default() });
        h.ollama.models_available_meta = Some(meta);
        assert_eq!(slots(&c, node(h).by_name("a").unwrap(), &m), 1, "serial family");
    }

    #[test]
    fn a_node_without_memory_figures_gets_its_parallelism() {
        // A static node: Ollama polled by the router, so no RAM or GPU figures.
        let c = QueueConfig::default();
        let m = ModelName::new("m:7b");
        let mut h = hb("s", &[], &["m:7b"]);
        h.memory = Default::default();
        h.ollama.num_parallel = 64;
        let f = node(h.clone());
        let n = f.by_name("s").unwrap();
        assert!(!n.memory_known());
        assert_eq!(slots(&c, n, &m), 64, "not clamped to max_slots: no headroom to estimate");
        assert_eq!(crate::score::eliminate(n, &m, false), None, "a cold load is Ollama's call");
        h.ollama.num_parallel = 0;
        assert_eq!(slots(&c, node(h).by_name("s").unwrap(), &m), 1, "unreported parallelism is still 1");
    }

    #[test]
    fn queues_are_fifo_and_garbage_collected() {
        let mut q = Queues::default();
        let m = ModelName::new("m");
        q.push(NodeId(0), &m, RequestId(1));
        q.push(NodeId(0), &m, RequestId(2));
        q.start(NodeId(0), &m);
        assert_eq!(q.depth(NodeId(0), &m), 3);
        assert_eq!(q.with_pending(), vec![(NodeId(0), m.clone())]);
        assert!(q.remove(NodeId(0), &m, RequestId(2)));
        assert!(!q.remove(NodeId(0), &m, RequestId(2)));
        assert_eq!(q.pop(NodeId(0), &m), Some(RequestId(1)));
        assert_eq!(q.node_in_flight(NodeId(0)), 1);
        q.finish(NodeId(0), &m);
        assert!(q.get(NodeId(0), &m).is_none());
        assert_eq!(q.iter().count(), 0);
    }

    #[test]
    fn history_counts_per_queue_and_is_bounded() {
        let mut h = History::default();
        let (m, n) = (ModelName::new("m"), ModelName::new("n"));
        h.completed(NodeId(0), &m, 1000.0, 10, 20);
        h.completed(NodeId(0), &m, 3000.0, 30, 40);
        h.failed(NodeId(0), &m);
        h.failed(NodeId(1), &n);
        let s = h.get(NodeId(0), &m).unwrap();
        assert_eq!((s.completed, s.failed), (2, 1));
        assert_eq!((s.mean(s.latency_ms_sum), s.mean(s.prompt_tokens_sum as f64)), (2000.0, 20.0));
        let f = h.get(NodeId(1), &n).unwrap();
        assert_eq!((f.completed, f.mean(f.latency_ms_sum)), (0, 0.0), "no samples: 0, as ollama-herd");
        assert_eq!(h.iter().count(), 2);
        h.forget(NodeId(0));
        assert!(h.get(NodeId(0), &m).is_none());
        for i in 0..MAX_HISTORY_MODELS_PER_NODE + 5 {
            h.failed(NodeId(2), &ModelName::new(&format!("m{i}")));
        }
        assert_eq!(h.iter().filter(|(node, _, _)| *node == NodeId(2)).count(), MAX_HISTORY_MODELS_PER_NODE);
    }
}
