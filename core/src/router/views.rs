//! ollama-herd's polling views over the router's own state: `/fleet/queue` (queue depths,
//! per-queue counters, an estimated wait) and `/fleet/limits` (retry budget, hot-model caps and
//! free slots). Shapes and field names are ollama-herd 0.11.4's (reference §9.5), filled from
//! herd's queues, history and configuration; what has no meaning in herd is `null`, as the doc
//! of each view says. Time is an argument: the caller's wall clock, for `timestamp`.

use super::Router;
use crate::fleet::Node;
use crate::ids::{ModelName, NodeId};
use crate::queue::{self, QueueStats};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One node+model queue as `/fleet/queue` lists it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Row {
    pending: u64,
    in_flight: u64,
    concurrency: u32,
    stats: QueueStats,
    p75_ms: Option<f64>,
}

impl Router {
    /// Every queue that is busy now or has served since start, in node then model order: herd
    /// drops a queue when it empties, so the rows come from the live queues and the history
    /// together (ollama-herd keeps every queue it ever made). Rows of forgotten nodes are gone.
    fn queue_rows(&self) -> BTreeMap<(NodeId, &ModelName), Row> {
        let mut rows: BTreeMap<(NodeId, &ModelName), Row> = BTreeMap::new();
        for (node, model, q) in self.queues.iter() {
            let row = rows.entry((node, model)).or_default();
            row.pending = q.pending.len() as u64;
            row.in_flight = u64::from(q.in_flight);
        }
        for (node, model, s) in self.history.iter() {
            rows.entry((node, model)).or_default().stats = s.clone();
        }
        rows.retain(|(node, model), row| match self.fleet.node(*node) {
            Some(n) => {
                row.concurrency = queue::slots(&self.config.queue, n, model);
                row.p75_ms = self.latency.p75_ms(*node, model);
                true
            }
            None => false,
        });
        rows
    }

    /// `GET /fleet/queue`, ollama-herd's light view for clients deciding whether to send now:
    /// totals (`queue_depth` = pending + in flight, `pending`, `in_flight`, `completed`,
    /// `failed`), `estimated_wait_ms` (total pending × the mean of the queues' p75 latencies ÷
    /// their total concurrency; `null` with nothing pending or no latency yet), `nodes_online`
    /// (nodes that can take work: online or degraded, Ollama reachable), `queues` keyed
    /// `"<node>:<model>"`, and `timestamp` (Unix seconds, from `unix_ms`).
    ///
    /// Per queue, as ollama-herd: `pending`, `in_flight`, `concurrency` (herd's slots for the
    /// model on the node), `model`, `node_id`, `backend` (`"ollama"`), `completed` and `failed`
    /// (attempts since start), `stats_samples` (the completed ones) and the `avg_latency_ms`,
    /// `avg_prompt_tokens` and `avg_completion_tokens` over them (0 without samples), and
    /// `max_queue_depth`: herd's `queue.max_pending_per_queue`, the most that may wait (ollama-herd
    /// set it for MLX queues only). `null`, because herd has no such thing: `rejected` (herd
    /// refuses a request only when every candidate queue is full, so a refusal belongs to no one
    /// queue; `/metrics` counts them) and the MLX prompt-cache figures `cache_hit_rate`,
    /// `warm_hit_rate`, `cold_request_pct` and `cache_sample_count` (herd has no MLX backend).
    pub fn queue_view(&self, unix_ms: i64) -> Value {
        let rows = self.queue_rows();
        let name = |id: NodeId| self.fleet.node(id).map_or("", Node::name);
        let total = |f: fn(&Row) -> u64| rows.values().map(f).sum::<u64>();
        let pending = total(|r| r.pending);
        let in_flight = total(|r| r.in_flight);
        let p75s: Vec<f64> = rows.values().filter_map(|r| r.p75_ms).collect();
        let concurrency: u64 = rows.values().map(|r| u64::from(r.concurrency)).sum();
        let estimated_wait_ms = (pending > 0 && !p75s.is_empty()).then(|| {
            let mean = p75s.iter().sum::<f64>() / p75s.len() as f64;
            (pending as f64 * mean / concurrency.max(1) as f64) as u64
        });
        let max_depth = self.config.queue.max_pending_per_queue;
        let mut queues = Map::new();
        for ((node, model), r) in &rows {
            let s = &r.stats;
            queues.insert(
                format!("{}:{}", name(*node), model.as_str()),
                json!({
                    "pending": r.pending,
                    "in_flight": r.in_flight,
                    "concurrency": r.concurrency,
                    "model": model.as_str(),
                    "node_id": name(*node),
                    "backend": "ollama",
                    "completed": s.completed,
                    "failed": s.failed,
                    "rejected": null,
                    "max_queue_depth": max_depth,
                    "cache_hit_rate": null,
                    "warm_hit_rate": null,
                    "cold_request_pct": null,
                    "cache_sample_count": null,
                    "stats_samples": s.completed,
                    "avg_latency_ms": s.mean(s.latency_ms_sum),
                    "avg_prompt_tokens": s.mean(s.prompt_tokens_sum as f64),
                    "avg_completion_tokens": s.mean(s.completion_tokens_sum as f64),
                }),
            );
        }
        json!({
            "queue_depth": pending + in_flight,
            "pending": pending,
            "in_flight": in_flight,
            "completed": total(|r| r.stats.completed),
            "failed": total(|r| r.stats.failed),
            "estimated_wait_ms": estimated_wait_ms,
            "nodes_online": self.fleet.nodes().filter(|n| n.routable()).count(),
            "queues": queues,
            "timestamp": unix_seconds(unix_ms),
        })
    }

    /// `GET /fleet/limits`, ollama-herd's serving constraints: `max_retries` (herd's
    /// `retry.max_attempts` less the first), `hot_model_cap` (the cap assumed for a node that does
    /// not report its `OLLAMA_MAX_LOADED_MODELS`: `fleet.default_max_loaded_models`), and per node
    /// (every known one, as ollama-herd) `node_id`, `status`, `hot_model_cap` (its reported cap,
    /// else that default), `models_loaded` (distinct models in memory) and `free_slots` (models
    /// it can still load without evicting one). herd adds each node's `num_parallel` and its own
    /// `max_pending_per_queue` and `client_max_in_flight` (0 = off). `mlx_max_inflight_per_model`
    /// and `mlx_max_queue_depth` are `null`: herd has no MLX backend. `timestamp` is Unix seconds.
    pub fn limits_view(&self, unix_ms: i64) -> Value {
        let c = &self.config;
        let nodes: Vec<Value> = self
            .fleet
            .nodes()
            .map(|n| {
                json!({
                    "node_id": n.name(),
                    "status": n.status().as_str(),
                    "hot_model_cap": n.hot_model_cap(),
                    "models_loaded": n.models_loaded_count(),
                    "free_slots": n.free_slots(),
                    "num_parallel": n.num_parallel(),
                })
            })
            .collect();
        json!({
            "max_retries": c.retry.max_attempts.saturating_sub(1),
            "hot_model_cap": c.fleet.default_max_loaded_models,
            "mlx_max_inflight_per_model": null,
            "mlx_max_queue_depth": null,
            "max_pending_per_queue": c.queue.max_pending_per_queue,
            "client_max_in_flight": c.queue.client_max_in_flight,
            "nodes": nodes,
            "timestamp": unix_seconds(unix_ms),
        })
    }
}

/// Unix milliseconds as ollama-herd's `timestamp`: seconds, with a fraction.
fn unix_seconds(unix_ms: i64) -> f64 {
    unix_ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use crate::config::RouterConfig;
    use crate::fleet::heartbeat::{Heartbeat, Report};
    use crate::fleet::tests::hb;
    use crate::policy::retry::UpstreamFailure;
    use crate::request::RequestSpec;
    use crate::router::{Command, Dispatch, Router, Usage};
    use crate::time::Instant;
    use serde_json::json;

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    fn router() -> Router {
        let mut c = RouterConfig::default();
        c.fleet.startup_grace = std::time::Duration::ZERO;
        Router::new(c, 7, Instant::ZERO).unwrap()
    }

    fn report(r: &mut Router, now: Instant, h: Heartbeat) {
        r.handle_report(now, Report::Heartbeat(Box::new(h))).unwrap();
    }

    fn dispatches(r: &mut Router) -> Vec<Dispatch> {
        let mut out = Vec::new();
        while let Some(c) = r.poll_command() {
            if let Command::Dispatch(d) = c {
                out.push(d);
            }
        }
        while r.poll_event().is_some() {}
        out
    }

    #[test]
    fn queue_view_counts_live_queues_and_history() {
        let mut r = router();
        let mut a = hb("a", &[("m", 5.0, 4096)], &["m"]);
        a.ollama.num_parallel = 1;
        report(&mut r, secs(0), a);
        let v = r.queue_view(1_795_861_845_500);
        assert_eq!(v["queue_depth"], 0);
        assert_eq!((v["estimated_wait_ms"].clone(), v["nodes_online"].clone()), (json!(null), json!(1)));
        assert_eq!(v["queues"], json!({}), "no queue has been used yet");
        assert_eq!(v["timestamp"], 1_795_861_845.5);

        // One completes in 2 s, one fails, one runs while a fourth waits for the single slot.
        r.handle_request(secs(1), RequestSpec::chat("m"));
        let d = dispatches(&mut r).remove(0);
        r.handle_finished(secs(3), d.attempt, Usage { prompt_tokens: 10, completion_tokens: 30 });
        r.handle_request(secs(3), RequestSpec::chat("m"));
        let d = dispatches(&mut r).remove(0);
        r.handle_first_byte(secs(3), d.attempt);
        r.handle_failed(secs(4), d.attempt, UpstreamFailure::Reset);
        r.handle_request(secs(5), RequestSpec::chat("m"));
        r.handle_request(secs(5), RequestSpec::chat("m"));
        assert_eq!(dispatches(&mut r).len(), 1);
        let v = r.queue_view(0);
        assert_eq!(
            (v["pending"].clone(), v["in_flight"].clone(), v["queue_depth"].clone()),
            (json!(1), json!(1), json!(2))
        );
        assert_eq!((v["completed"].clone(), v["failed"].clone()), (json!(1), json!(1)));
        // One pending × the 2 s p75 ÷ one slot.
        assert_eq!(v["estimated_wait_ms"], 2000);
        let q = &v["queues"]["a:m:latest"];
        let want = json!({
            "pending": 1, "in_flight": 1, "concurrency": 1, "model": "m:latest", "node_id": "a",
            "backend": "ollama", "completed": 1, "failed": 1, "rejected": null, "max_queue_depth": 64,
            "cache_hit_rate": null, "warm_hit_rate": null, "cold_request_pct": null, "cache_sample_count": null,
            "stats_samples": 1, "avg_latency_ms": 2000.0, "avg_prompt_tokens": 10.0, "avg_completion_tokens": 30.0,
        });
        assert_eq!(q, &want);
        // A forgotten node takes its queues with it.
        r.handle_timeout(secs(5 + 3600 + 60));
        while r.poll_command().is_some() {}
        assert_eq!(r.queue_view(0)["queues"], json!({}));
    }

    #[test]
    fn limits_view_reports_caps_and_free_slots() {
        let mut c = RouterConfig::default();
        c.retry.max_attempts = 4;
        c.fleet.default_max_loaded_models = 2;
        let mut r = Router::new(c, 7, Instant::ZERO).unwrap();
        let mut a = hb("a", &[("m", 5.0, 0), ("n", 1.0, 0)], &["m", "n", "o"]);
        a.ollama.max_loaded_models = 4;
        a.ollama.num_parallel = 2;
        report(&mut r, secs(0), a);
        report(&mut r, secs(0), hb("b", &[("m", 5.0, 0)], &["m"]));
        let v = r.limits_view(1_000);
        assert_eq!((v["max_retries"].clone(), v["hot_model_cap"].clone()), (json!(3), json!(2)));
        assert_eq!(
            (v["mlx_max_inflight_per_model"].clone(), v["mlx_max_queue_depth"].clone()),
            (json!(null), json!(null))
        );
        assert_eq!(v["timestamp"], 1.0);
        let want = json!([
            {"node_id": "a", "status": "online", "hot_model_cap": 4, "models_loaded": 2, "free_slots": 2, "num_parallel": 2},
            {"node_id": "b", "status": "online", "hot_model_cap": 2, "models_loaded": 1, "free_slots": 1, "num_parallel": 1},
        ]);
        assert_eq!(v["nodes"], want);
    }
}
