//! Recent end-to-end latencies per node+model, bounded, for the wait-time signal's p75.

use crate::ids::{ModelName, NodeId};
use std::collections::{BTreeMap, VecDeque};

/// A bounded ring of latency samples per node+model.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    cap: usize,
    samples: BTreeMap<NodeId, BTreeMap<ModelName, Ring>>,
}

/// Samples of one node+model: in arrival order, and the same samples kept sorted.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    ms: VecDeque<f64>,
    sorted: Vec<f64>,
    p75: f64,
}

impl Latency {
    /// Keeps at most `cap` samples per node+model.
    pub fn new(cap: usize) -> Self {
        Latency { cap: cap.max(1), samples: BTreeMap::new() }
    }

    /// Records one completed request's latency.
    pub fn record(&mut self, node: NodeId, model: &ModelName, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let models = self.samples.entry(node).or_default();
        let ring = match models.get_mut(model) {
            Some(r) => r,
            None => models.entry(model.clone()).or_default(),
        };
        if ring.ms.len() == self.cap {
            if let Some(old) = ring.ms.pop_front() {
                // Every sample is finite, so the old one is found by its exact value.
                if let Ok(i) = ring.sorted.binary_search_by(|x| x.total_cmp(&old)) {
                    ring.sorted.remove(i);
                }
            }
        }
        ring.ms.push_back(ms);
        let at = ring.sorted.partition_point(|x| x.total_cmp(&ms).is_le());
        ring.sorted.insert(at, ms);
        // Kept current on every sample so scoring reads a cached figure.
        let n = ring.sorted.len();
        let idx = ((n as f64) * 0.75).ceil() as usize;
        ring.p75 = ring.sorted[idx.clamp(1, n) - 1];
    }

    /// The 75th percentile, if anything was recorded.
    pub fn p75_ms(&self, node: NodeId, model: &ModelName) -> Option<f64> {
        self.samples.get(&node).and_then(|m| Self::p75_in(m, model))
    }

    /// Per-node histories in node order, for merge-joins with the registry.
    pub fn by_node(&self) -> impl Iterator<Item = (NodeId, NodeLatency<'_>)> {
        self.samples.iter().map(|(&n, m)| (n, NodeLatency(m)))
    }

    fn p75_in(m: &BTreeMap<ModelName, Ring>, model: &ModelName) -> Option<f64> {
        m.get(model).map(|r| r.p75)
    }

    /// Drops a forgotten node's history.
    pub fn forget(&mut self, node: NodeId) {
        self.samples.remove(&node);
    }
}

/// One node's latency histories.
#[derive(Copy, Clone, Debug)]
pub struct NodeLatency<'a>(&'a BTreeMap<ModelName, Ring>);

impl NodeLatency<'_> {
    /// The 75th percentile for a model on this node.
    pub fn p75_ms(&self, model: &ModelName) -> Option<f64> {
        Latency::p75_in(self.0, model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p75_over_a_bounded_window() {
        let mut l = Latency::new(4);
        let m = ModelName::new("m");
        assert_eq!(l.p75_ms(NodeId(0), &m), None);
        for ms in [100.0, 200.0, 300.0, 400.0] {
            l.record(NodeId(0), &m, ms);
        }
        assert_eq!(l.p75_ms(NodeId(0), &m), Some(300.0));
        l.record(NodeId(0), &m, 1000.0); // 100 falls out: 200 300 400 1000
        assert_eq!(l.p75_ms(NodeId(0), &m), Some(400.0));
        l.record(NodeId(0), &m, f64::NAN);
        assert_eq!(l.p75_ms(NodeId(0), &m), Some(400.0));
        l.forget(NodeId(0));
        assert_eq!(l.p75_ms(NodeId(0), &m), None);
    }

    /// The kept-sorted window always gives what sorting the window afresh gives.
    #[test]
    fn p75_matches_a_fresh_sort() {
        let mut l = Latency::new(7);
        let m = ModelName::new("m");
        let mut window: VecDeque<f64> = VecDeque::new();
        let mut x: u64 = 12345;
        for _ in 0..500 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Few distinct values, so duplicates leave and enter the window often.
            let ms = ((x >> 33) % 9) as f64 * 10.0;
            l.record(NodeId(1), &m, ms);
            if window.len() == 7 {
                window.pop_front();
            }
            window.push_back(ms);
            let mut sorted: Vec<f64> = window.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let idx = ((sorted.len() as f64) * 0.75).ceil() as usize;
            assert_eq!(l.p75_ms(NodeId(1), &m), Some(sorted[idx.clamp(1, sorted.len()) - 1]));
        }
    }
}
