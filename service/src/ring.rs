//! Traces kept in memory: a bounded ring of the latest requests, for routers without a database
//! (`herd-lite`). It serves `/fleet/traces` and `/fleet/usage` with the same JSON as `herd`'s
//! SQLite store; what falls off the ring is gone.

use crate::driver::{TraceRecord, TraceSink};
use crate::{BoxFuture, TraceLog};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The latest `capacity` traces. Cheap to clone; clones share the ring.
#[derive(Clone)]
pub struct TraceRing {
    inner: Arc<Mutex<VecDeque<TraceRecord>>>,
    capacity: usize,
}

impl TraceRing {
    /// An empty ring of at most `capacity` traces (at least 1).
    pub fn new(capacity: usize) -> Self {
        TraceRing { inner: Arc::new(Mutex::new(VecDeque::new())), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<TraceRecord>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many traces it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest `limit`, newest first.
    pub fn recent(&self, limit: usize) -> Vec<TraceRecord> {
        self.lock().iter().rev().take(limit).cloned().collect()
    }

    /// Usage since `since_unix_ms`: (by tag, by model), busiest first, as `herd`'s store gives it.
    pub fn usage(&self, since_unix_ms: i64) -> (Value, Value) {
        let ring = self.lock();
        let mut by_tag: BTreeMap<&str, Counts> = BTreeMap::new();
        let mut by_model: BTreeMap<&str, Counts> = BTreeMap::new();
        for t in ring.iter().filter(|t| t.started_unix_ms >= since_unix_ms) {
            let model = t.served_model.as_deref().unwrap_or(&t.requested_model);
            by_model.entry(model).or_default().add(t);
            let mut seen: Vec<&str> = Vec::new();
            for tag in &t.tags {
                if !seen.contains(&tag.as_str()) {
                    seen.push(tag);
                    by_tag.entry(tag).or_default().add(t);
                }
            }
        }
        (rows(by_tag, "tag"), rows(by_model, "model"))
    }
}

#[derive(Default)]
struct Counts {
    requests: u64,
    completed: u64,
    failed: u64,
    client_gone: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    ttft_sum: f64,
    ttft_n: u64,
    total_ms_sum: f64,
}

impl Counts {
    fn add(&mut self, t: &TraceRecord) {
        self.requests += 1;
        match t.outcome.as_str() {
            "completed" => self.completed += 1,
            "client_gone" => self.client_gone += 1,
            _ => self.failed += 1,
        }
        self.prompt_tokens += u64::from(t.prompt_tokens);
        self.completion_tokens += u64::from(t.completion_tokens);
        if let Some(ms) = t.ttft_ms {
            self.ttft_sum += ms;
            self.ttft_n += 1;
        }
        self.total_ms_sum += t.total_ms;
    }
}

fn rows(groups: BTreeMap<&str, Counts>, key: &str) -> Value {
    let mut list: Vec<(&str, Counts)> = groups.into_iter().collect();
    // Busiest first, then by name (the map gave name order; the sort is stable).
    list.sort_by_key(|(_, c)| std::cmp::Reverse(c.requests));
    Value::Array(
        list.into_iter()
            .map(|(name, c)| {
                json!({
                    key: name,
                    "requests": c.requests,
                    "completed": c.completed,
                    "failed": c.failed,
                    "client_gone": c.client_gone,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "mean_ttft_ms": (c.ttft_n > 0).then(|| c.ttft_sum / c.ttft_n as f64),
                    "total_ms_sum": c.total_ms_sum,
                })
            })
            .collect(),
    )
}

impl TraceSink for TraceRing {
    fn record(&self, rec: TraceRecord) {
        let mut ring = self.lock();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(rec);
    }
}

impl TraceLog for TraceRing {
    fn recent(&self, limit: u32) -> BoxFuture<'_, Result<Vec<Value>, String>> {
        let out = TraceRing::recent(self, limit as usize)
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn usage(&self, since_unix_ms: i64) -> BoxFuture<'_, Result<(Value, Value), String>> {
        let out = TraceRing::usage(self, since_unix_ms);
        Box::pin(async move { Ok(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(id: u64, model: &str, outcome: &str, tags: &[&str]) -> TraceRecord {
        TraceRecord {
            request_id: id,
            started_unix_ms: 1000 + id as i64,
            requested_model: model.into(),
            outcome: outcome.into(),
            prompt_tokens: 2,
            completion_tokens: 3,
            ttft_ms: (outcome == "completed").then_some(10.0),
            total_ms: 20.0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..TraceRecord::default()
        }
    }

    #[test]
    fn keeps_the_latest_and_counts_usage() {
        let ring = TraceRing::new(3);
        ring.record(trace(1, "a", "completed", &["x"]));
        ring.record(trace(2, "b", "completed", &["x", "y", "x"]));
        ring.record(trace(3, "b", "rejected", &[]));
        ring.record(trace(4, "b", "client_gone", &["y"]));
        assert_eq!(ring.len(), 3);
        let ids: Vec<u64> = ring.recent(10).iter().map(|t| t.request_id).collect();
        assert_eq!(ids, vec![4, 3, 2], "newest first, the oldest fell off");
        let (tags, models) = ring.usage(0);
        assert_eq!(tags[0]["tag"], "y");
        assert_eq!(tags[0]["requests"], 2);
        assert_eq!(tags[1]["tag"], "x");
        assert_eq!(tags[1]["requests"], 1, "a tag repeated in one request counts once");
        assert_eq!(models[0]["model"], "b");
        assert_eq!(models[0]["requests"], 3);
        assert_eq!(models[0]["failed"], 1);
        assert_eq!(models[0]["client_gone"], 1);
        assert_eq!(models[0]["mean_ttft_ms"], 10.0);
        let (_, later) = ring.usage(1004);
        assert_eq!(later[0]["requests"], 1);
    }
}
