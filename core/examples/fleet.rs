//! herd's routing engine on a simulated three-machine fleet, in virtual time: what it decides
//! and why. Run: `cargo run -p herd-core --example fleet`.
//!
//! The fleet: a Mac Studio (M2 Ultra, 192 GB, 800 GB/s) with llama3.3:70b loaded, a Linux box
//! with an RTX 4090 (24 GB VRAM) with qwen3:8b loaded, and a MacBook Pro (M3 Pro, 36 GB,
//! 150 GB/s) with both models only on disk.

use herd_core::config::RouterConfig;
use herd_core::ids::{ModelName, NodeId};
use herd_core::policy::retry::UpstreamFailure;
use herd_core::request::RequestSpec;
use herd_core::router::{Command, Event, Router, Usage};
use herd_core::time::Instant;
use std::time::Duration;

const STUDIO: &str = r#"{"node_id": "mac-studio", "arch": "apple_silicon", "chip": "Apple M2 Ultra",
  "cpu": {"cores_physical": 24}, "memory": {"total_gb": 192, "available_gb": 110},
  "memory_bandwidth_gbps": 800,
  "ollama": {"models_loaded": [{"name": "llama3.3:70b", "size_gb": 48.1, "context_length": 8192}],
             "models_available": ["llama3.3:70b", "qwen3:8b"],
             "models_available_sizes": {"llama3.3:70b": 42.5, "qwen3:8b": 5.2}, "num_parallel": 2}}"#;
const RTX: &str = r#"{"node_id": "linux-4090", "arch": "x86_64", "chip": "NVIDIA GeForce RTX 4090",
  "cpu": {"cores_physical": 16}, "memory": {"total_gb": 64, "available_gb": 48},
  "memory_bandwidth_gbps": 1008,
  "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "vram_total_bytes": 25757220864,
            "vram_used_bytes": 7000000000, "vram_free_bytes": 18757220864}],
  "ollama": {"models_loaded": [{"name": "qwen3:8b", "size_gb": 6.4, "context_length": 16384}],
             "models_available": ["qwen3:8b", "llama3.3:70b"],
             "models_available_sizes": {"llama3.3:70b": 42.5, "qwen3:8b": 5.2}, "num_parallel": 4}}"#;
const MACBOOK: &str = r#"{"node_id": "macbook-pro", "arch": "apple_silicon", "chip": "Apple M3 Pro",
  "cpu": {"cores_physical": 12}, "memory": {"total_gb": 36, "available_gb": 20},
  "memory_bandwidth_gbps": 150,
  "ollama": {"models_loaded": [], "models_available": ["qwen3:8b", "llama3.3:70b"],
             "models_available_sizes": {"llama3.3:70b": 42.5, "qwen3:8b": 5.2}, "num_parallel": 1}}"#;

fn name(r: &Router, n: NodeId) -> String {
    r.fleet().node(n).map_or("?".into(), |n| n.name().to_string())
}

fn explain(r: &Router, model: &str) {
    let d = r.explain(&ModelName::new(model));
    println!("\n/fleet/explain?model={model}");
    for c in &d.ranked {
        let parts: Vec<String> =
            c.breakdown.iter().filter(|(_, v)| *v != 0.0).map(|(s, v)| format!("{} {v:+.1}", s.as_str())).collect();
        println!("  {:<12} {:>6.1}  = {}", name(r, c.node), c.total, parts.join(", "));
    }
    for (n, why) in &d.eliminated {
        println!("  {:<12} eliminated: {why:?}", name(r, *n));
    }
}

/// Plays the adapter: performs commands, with `fail_first` making the first attempt's node
/// refuse the connection, and reports results back.
fn serve(r: &mut Router, now: &mut Instant, fail_first: bool) {
    let mut failed = !fail_first;
    while let Some(cmd) = r.poll_command() {
        match cmd {
            Command::Dispatch(d) => {
                println!(
                    "  dispatch attempt {} -> {} model {} num_ctx {:?} num_predict {:?}",
                    d.attempt_no,
                    name(r, d.node),
                    d.model,
                    d.num_ctx,
                    d.num_predict
                );
                *now = *now + Duration::from_millis(30);
                if !failed {
                    failed = true;
                    println!("  {} refuses the connection", name(r, d.node));
                    r.handle_failed(*now, d.attempt, UpstreamFailure::Connect);
                    continue;
                }
                r.handle_connected(*now, d.attempt);
                *now = *now + Duration::from_millis(200);
                r.handle_first_byte(*now, d.attempt);
            }
            Command::Commit(c) => {
                println!(
                    "  commit: X-Herd-Node: {}  X-Herd-Model: {}  X-Herd-Attempts: {}  X-Herd-Score: {:.1}",
                    name(r, c.node),
                    c.model,
                    c.attempts,
                    c.score
                );
                *now = *now + Duration::from_secs(2);
                r.handle_finished(*now, c.attempt, Usage { prompt_tokens: 20, completion_tokens: 120 });
            }
            Command::Reject { rejection, .. } => {
                println!(
                    "  answer {} ({}), Retry-After {:?}",
                    rejection.http_status(),
                    rejection.as_str(),
                    rejection.retry_after()
                );
            }
            Command::Cancel { attempt, reason, .. } => println!("  cancel {attempt}: {reason:?}"),
            Command::Pull { node, model } => println!("  pull {model} onto {}", name(r, node)),
        }
    }
    while let Some(e) = r.poll_event() {
        match e {
            Event::Ended(t) => println!(
                "  ended: {} after {} attempt(s), ttft {:?}, total {:?}",
                t.outcome.as_str(),
                t.attempts,
                t.ttft,
                t.total
            ),
            Event::Retried { failure, .. } => println!("  retried after {}", failure.as_str()),
            Event::Fallback { from, to, route, .. } => println!("  fallback {from} -> {to} ({route:?})"),
            Event::Context { action, .. } => println!("  context: {action:?}"),
            _ => {}
        }
    }
}

fn main() {
    let mut now = Instant::ZERO;
    let mut r = Router::new(RouterConfig::default(), 2026, now).expect("default config is valid");
    for hb in [STUDIO, RTX, MACBOOK] {
        let reg = r.handle_heartbeat(now, hb.as_bytes()).expect("valid heartbeat");
        println!("registered {} as node {}", name(&r, reg.node), reg.node);
    }
    while r.poll_event().is_some() {}
    explain(&r, "llama3.3:70b");
    explain(&r, "qwen3:8b");

    println!("\n1. chat with llama3.3:70b (hot on the Studio)");
    r.handle_request(now, RequestSpec::chat("llama3.3:70b"));
    serve(&mut r, &mut now, false);

    println!("\n2. chat with qwen3:8b, num_ctx 32768 and max_tokens 500; the first node refuses");
    let mut spec = RequestSpec::chat("qwen3:8b");
    spec.num_ctx = Some(32768);
    spec.max_output_tokens = Some(500);
    spec.estimated_prompt_tokens = 900;
    r.handle_request(now, spec);
    serve(&mut r, &mut now, true);

    println!("\n3. a model no node has");
    r.handle_request(now, RequestSpec::chat("mistral-large:123b"));
    serve(&mut r, &mut now, false);

    println!("\n4. gemma3:27b with client fallback qwen3:8b (hot beats cold)");
    let mut spec = RequestSpec::chat("llama3.1:8b");
    spec.model = ModelName::new("gemma3:27b");
    spec.fallback_models = vec![ModelName::new("qwen3:8b")];
    r.handle_request(now, spec);
    serve(&mut r, &mut now, false);

    let s = r.stats();
    println!("\nstats: {} nodes, {} live requests, counters {:?}", s.nodes, s.live, s.counters);
}
