//! Session and prefix affinity pins: key → node, with a TTL and an LRU bound. Pins are written
//! when an attempt commits, so they follow a request that a retry moved (ollama-herd wrote them
//! before the request ran and never moved them).

use crate::ids::NodeId;
use crate::time::Instant;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a pin is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PinKey {
    /// A session key.
    Session(String),
    /// A prefix hash.
    Prefix(u64),
}

/// Bounded LRU of pins.
#[derive(Clone, Debug)]
pub struct Pins {
    ttl: Duration,
    cap: usize,
    clock: u64,
    pins: BTreeMap<PinKey, (NodeId, Instant, u64)>,
    order: BTreeMap<u64, PinKey>,
}

impl Pins {
    /// At most `cap` pins, each valid for `ttl`.
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Pins { ttl, cap: cap.max(1), clock: 0, pins: BTreeMap::new(), order: BTreeMap::new() }
    }

    /// The node a key is pinned to, if the pin is younger than the TTL.
    pub fn get(&self, key: &PinKey, now: Instant) -> Option<NodeId> {
        self.pins.get(key).filter(|(_, at, _)| now.saturating_since(*at) < self.ttl).map(|p| p.0)
    }

    /// Pins `key` to `node`, evicting the least recently written pin when full.
    pub fn set(&mut self, key: PinKey, node: NodeId, now: Instant) {
        self.clock += 1;
        if let Some((_, _, stamp)) = self.pins.remove(&key) {
            self.order.remove(&stamp);
        }
        while self.pins.len() >= self.cap {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.pins.remove(&oldest);
        }
        self.order.insert(self.clock, key.clone());
        self.pins.insert(key, (node, now, self.clock));
    }

    /// Drops every pin to `node` (it went offline or was forgotten).
    pub fn unpin_node(&mut self, node: NodeId) {
        let order = &mut self.order;
        self.pins.retain(|_, (n, _, stamp)| {
            let keep = *n != node;
            if !keep {
                order.remove(stamp);
            }
            keep
        });
    }

    /// Number of pins held.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether no pin is held.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_lru_and_unpin() {
        let mut p = Pins::new(Duration::from_secs(900), 2);
        let s = |x: &str| PinKey::Session(x.into());
        p.set(s("a"), NodeId(1), Instant::ZERO);
        p.set(PinKey::Prefix(7), NodeId(2), Instant::ZERO);
        assert_eq!(p.get(&s("a"), Instant::from_secs(899)), Some(NodeId(1)));
        assert_eq!(p.get(&s("a"), Instant::from_secs(900)), None);
        p.set(s("a"), NodeId(3), Instant::from_secs(1)); // rewrite refreshes recency
        p.set(s("c"), NodeId(4), Instant::from_secs(2)); // evicts the prefix pin
        assert_eq!(p.get(&PinKey::Prefix(7), Instant::from_secs(2)), None);
        assert_eq!(p.get(&s("a"), Instant::from_secs(2)), Some(NodeId(3)));
        assert_eq!(p.len(), 2);
        p.unpin_node(NodeId(3));
        assert_eq!(p.get(&s("a"), Instant::from_secs(2)), None);
        assert_eq!(p.len(), 1);
    }
}
