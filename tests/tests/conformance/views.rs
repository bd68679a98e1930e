//! The fleet views against the nodes' own answers: `/api/tags` and `/api/ps` carry what each
//! node's Ollama said (a `--node` static node and a node behind a `herd-node` agent alike), and
//! ollama-herd's `/fleet/queue` and `/fleet/limits` report herd's real queues and caps.

use crate::harness::{FakeSpec, Fleet, Router};
use crate::http;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `GET path` on a node directly, as JSON.
fn node_get(url: &str, path: &str) -> Value {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("a node address");
    let r = http::call(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("{url}{path}: {e}"));
    assert_eq!(r.status, 200, "{url}{path}: {}", r.text());
    r.json()
}

/// The entry named `name` in an Ollama model list.
fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["models"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// `v` without herd's and ollama-herd's node fields, to compare with what a node answered.
fn without_fleet_fields(v: &Value) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().expect("an object");
    for k in ["herd_nodes", "herd_node", "fleet_node"] {
        o.remove(k);
    }
    if let Some(d) = o.get_mut("details").and_then(Value::as_object_mut) {
        d.remove("fleet_nodes");
    }
    v
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-28T10:30:45.123Z`), to the second.
fn epoch_secs(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t.get(r).and_then(|s| s.parse::<i64>().ok()).unwrap_or_else(|| panic!("{t}"));
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    assert!(t.ends_with('Z'), "UTC: {t}");
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Polls `check` until it returns `Ok`, at most 10 s; panics with its last complaint.
fn eventually(what: &str, check: impl Fn() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if start.elapsed() > Duration::from_secs(10) => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A static node (`--node`, polled by the router) and a node behind a `herd-node` agent both
/// list qwen3:8b, and each has a model of its own. Through the router, every `/api/tags` entry is
/// the node's own (name, date, size, digest, details, capabilities: what the node answers on its
/// own `/api/tags`), plus the nodes that have it; every `/api/ps` row is the node's own row
/// (digest, size, `size_vram`, details, `context_length`, and an `expires_at` from its latest
/// report), plus the node's name. `/fleet/limits` and `/fleet/status` report each node's
/// hot-model cap: the agent's `OLLAMA_MAX_LOADED_MODELS`, the configured default (3) for the
/// static node, which cannot tell it.
pub fn tags_and_ps_carry_each_nodes_own_answers(r: Router) {
    let mut f = Fleet::new(r);
    let plain = f.fake(FakeSpec::new("plain", &["qwen3:8b", "llama3.1:8b"]).without_heartbeats());
    let behind = f.fake(FakeSpec::new("behind", &["qwen3:8b", "nomic-embed-text"]).without_heartbeats());
    f.launch(&["--node", &plain]);
    f.agent_env("box", &behind, &[("OLLAMA_MAX_LOADED_MODELS", "5"), ("OLLAMA_NUM_PARALLEL", "2")]);
    let plain_name = plain.trim_start_matches("http://").to_string();
    f.wait_nodes(&[&plain_name, "box"]);
    let own = [(plain_name.as_str(), plain.as_str()), ("box", behind.as_str())];

    eventually("/api/tags shows each node's own entries", || {
        let tags = f.get("/api/tags").json();
        let models = tags["models"].as_array().ok_or(format!("no models: {tags}"))?;
        if models.len() != 3 {
            return Err(format!("three models: {tags}"));
        }
        for m in models {
            let name = m["name"].as_str().unwrap_or_default();
            let nodes = m["details"]["fleet_nodes"].as_array().ok_or(format!("no fleet_nodes: {m}"))?;
            if m["herd_nodes"] != m["details"]["fleet_nodes"] {
                return Err(format!("herd_nodes and fleet_nodes differ: {m}"));
            }
            let want_nodes = if name == "qwen3:8b" { 2 } else { 1 };
            if nodes.len() != want_nodes {
                return Err(format!("{want_nodes} nodes: {m}"));
            }
            let matches = own
                .iter()
                .filter(|(node, _)| nodes.iter().any(|n| n == node))
                .any(|(_, url)| without_fleet_fields(m) == *entry(&node_get(url, "/api/tags"), name));
            if !matches {
                return Err(format!("{m} is not what its node answers: {own:?}"));
            }
        }
        Ok(())
    });

    eventually("/api/ps shows each node's own rows", || {
        let ps = f.get("/api/ps").json();
        let rows = ps["models"].as_array().ok_or(format!("no models: {ps}"))?;
        if rows.len() != 4 {
            return Err(format!("two loaded models per node: {ps}"));
        }
        for row in rows {
            let node = row["fleet_node"].as_str().unwrap_or_default();
            if row["herd_node"] != row["fleet_node"] {
                return Err(format!("herd_node and fleet_node differ: {row}"));
            }
            let url = own.iter().find(|(n, _)| *n == node).map(|(_, u)| *u).ok_or(format!("node: {row}"))?;
            let name = row["name"].as_str().unwrap_or_default();
            let mine = entry(&node_get(url, "/api/ps"), name).clone();
            let (got, want) = (without_fleet_fields(row), mine.clone());
            for k in ["name", "model", "size", "digest", "details", "size_vram", "context_length"] {
                if got[k] != want[k] {
                    return Err(format!("{k}: router {got} node {want}"));
                }
            }
            // The node moves `expires_at` on every call; the router shows its latest report.
            let (seen, now) = (
                epoch_secs(got["expires_at"].as_str().unwrap_or("")),
                epoch_secs(want["expires_at"].as_str().unwrap_or("")),
            );
            if !(0..60).contains(&(now - seen)) {
                return Err(format!("expires_at {} against the node's {}", got["expires_at"], want["expires_at"]));
            }
        }
        Ok(())
    });

    let limits = f.get("/fleet/limits");
    assert_eq!(limits.status, 200, "{}", limits.text());
    let v = limits.json();
    assert_eq!((v["hot_model_cap"].clone(), v["max_retries"].clone()), (json!(3), json!(2)), "{v}");
    let node = |v: &Value, name: &str| {
        v["nodes"].as_array().and_then(|ns| ns.iter().find(|n| n["node_id"] == name).cloned()).unwrap_or_default()
    };
    let pick = |n: &Value| (n["hot_model_cap"].clone(), n["models_loaded"].clone(), n["free_slots"].clone());
    assert_eq!(pick(&node(&v, "box")), (json!(5), json!(2), json!(3)), "{v}");
    assert_eq!(pick(&node(&v, &plain_name)), (json!(3), json!(2), json!(1)), "{v}");
    let status = f.get("/fleet/status").json();
    let pick = |n: &Value| (n["hot_model_cap"].clone(), n["models_loaded_count"].clone(), n["free_slots"].clone());
    assert_eq!(pick(&node(&status, "box")), (json!(5), json!(2), json!(3)), "{status}");
    assert_eq!(pick(&node(&status, &plain_name)), (json!(3), json!(2), json!(1)), "{status}");
}

/// `/fleet/queue` as ollama-herd answers it, from herd's real queues: a request running and one
/// waiting on a one-slot node show as in flight and pending with an estimated wait (from the
/// p75 of the request served before), and afterwards the queue's counters and averages count
/// what was served. `/fleet/limits` has ollama-herd's shape; MLX fields are null.
pub fn fleet_queue_and_limits_report_the_queues(r: Router) {
    let mut f = Fleet::start(r, &[]);
    f.fake(FakeSpec::new("alpha", &["llama3.1:8b"]).preload(&["llama3.1:8b"]).parallel(1).token_ms(20));
    f.wait_nodes(&["alpha"]);
    let q = f.get("/fleet/queue");
    assert_eq!(q.status, 200, "{}", q.text());
    let v = q.json();
    let want = json!({"queue_depth": 0, "pending": 0, "in_flight": 0, "completed": 0, "failed": 0,
        "estimated_wait_ms": null, "nodes_online": 1, "queues": {}});
    let mut got = v.clone();
    let stamp = got.as_object_mut().unwrap().remove("timestamp").and_then(|t| t.as_f64()).unwrap_or(0.0);
    assert_eq!(got, want);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - stamp).abs() < 60.0, "timestamp {stamp} is Unix seconds, now {now}");

    let chat = json!({"model": "llama3.1:8b", "stream": false, "options": {"num_predict": 40},
        "messages": [{"role": "user", "content": "count"}]});
    let first = f.post("/api/chat", &chat);
    assert_eq!(first.status, 200, "{}", first.text());
    let addr = f.addr();
    let send = |body: Value| {
        std::thread::spawn(move || {
            let body = body.to_string();
            http::call(addr, "POST", "/api/chat", &[("content-type", "application/json")], body.as_bytes())
        })
    };
    let running = send(chat.clone());
    let waiting = send(chat.clone());
    eventually("one request runs and one waits", || {
        let v = f.get("/fleet/queue").json();
        let q = &v["queues"]["alpha:llama3.1:8b"];
        let shape = (v["in_flight"].clone(), v["pending"].clone(), v["queue_depth"].clone(), q["concurrency"].clone());
        if shape != (json!(1), json!(1), json!(2), json!(1)) {
            return Err(format!("{v}"));
        }
        match v["estimated_wait_ms"].as_u64() {
            Some(ms) if ms > 0 => Ok(()),
            _ => Err(format!("an estimated wait from the first request's latency: {v}")),
        }
    });
    for t in [running, waiting] {
        let reply = t.join().unwrap().expect("an answer");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    eventually("the queue's counters", || {
        let v = f.get("/fleet/queue").json();
        let q = &v["queues"]["alpha:llama3.1:8b"];
        let totals =
            (v["completed"].clone(), v["failed"].clone(), v["queue_depth"].clone(), v["estimated_wait_ms"].clone());
        if totals != (json!(3), json!(0), json!(0), json!(null)) {
            return Err(format!("{v}"));
        }
        let fixed = json!({"pending": 0, "in_flight": 0, "concurrency": 1, "model": "llama3.1:8b", "node_id": "alpha",
            "backend": "ollama", "completed": 3, "failed": 0, "rejected": null, "max_queue_depth": 64,
            "cache_hit_rate": null, "warm_hit_rate": null, "cold_request_pct": null, "cache_sample_count": null,
            "stats_samples": 3});
        for (k, want) in fixed.as_object().unwrap() {
            if &q[k] != want {
                return Err(format!("{k}: {q}"));
            }
        }
        let avg = |k: &str| q[k].as_f64().unwrap_or(0.0);
        if avg("avg_completion_tokens") != 40.0
            || avg("avg_prompt_tokens") <= 0.0
            || avg("avg_latency_ms") < 40.0 * 20.0
        {
            return Err(format!("averages over the three: {q}"));
        }
        Ok(())
    });

    let v = f.get("/fleet/limits").json();
    for k in ["mlx_max_inflight_per_model", "mlx_max_queue_depth"] {
        assert!(v[k].is_null(), "{k}: {v}");
    }
    let alpha = &v["nodes"][0];
    assert_eq!(alpha["node_id"], "alpha", "{v}");
    assert_eq!((alpha["status"].clone(), alpha["hot_model_cap"].clone()), (json!("online"), json!(3)), "{v}");
    assert_eq!((alpha["models_loaded"].clone(), alpha["free_slots"].clone()), (json!(1), json!(2)), "{v}");
    assert!(v["timestamp"].as_f64().is_some(), "{v}");
}

/// Image servers reported in heartbeats are listed: ollama-herd's agent's mflux server
/// (`image` / `image_port`) and herd-node's `image_backends`, in `/api/image-models` (ollama-herd's
/// shape), `/api/tags` (`details.type: "image"`) and `/v1/models` (`type: "image"`); a server that
/// is down is not.
pub fn image_models_are_listed_from_heartbeats(r: Router) {
    let mut f = Fleet::new(r);
    f.launch(&[]);
    let studio = json!({"node_id": "studio", "cpu": {"cores_physical": 24}, "memory": {"total_gb": 192, "available_gb": 100},
        "ollama": {"models_available": ["qwen3:8b"]}, "agent_version": "0.11.4",
        "image": {"models_available": [{"name": "z-image-turbo", "binary": "mflux-generate-z-image-turbo"}], "generating": false},
        "image_port": 11436});
    let rig = json!({"node_id": "rig", "cpu": {"cores_physical": 16}, "memory": {"total_gb": 64, "available_gb": 40},
        "ollama": {"models_available": []}, "agent_version": "herd-node/0.1.0",
        "image_backends": [
            {"kind": "sdcpp", "port": 7860, "models": ["z-image-turbo", "flux1-schnell.gguf"], "loaded": "flux1-schnell.gguf", "up": true},
            {"kind": "comfyui", "port": 8188, "models": ["sd15.safetensors"], "up": false}]});
    for hb in [&studio, &rig] {
        let r = f.post("/heartbeat", hb);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let images = f.get("/api/image-models").json();
    let list = images["models"].as_array().unwrap_or_else(|| panic!("{images}"));
    let names: Vec<&str> = list.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["flux1-schnell.gguf", "z-image-turbo"], "{images}");
    let z = &list[1];
    assert_eq!(z["type"], "image");
    assert_eq!(z["backend"], "mflux", "ollama-herd's name for its own server: {z}");
    assert_eq!(z["fleet_nodes"], json!(["studio", "rig"]), "{z}");
    assert_eq!(z["backends"], json!(["ollama-herd", "sdcpp"]), "{z}");
    assert_eq!(list[0]["backend"], "sdcpp");

    let tags = f.get("/api/tags").json();
    let flux = entry(&tags, "flux1-schnell.gguf");
    assert_eq!(flux["details"]["type"], "image", "{flux}");
    assert_eq!(flux["details"]["fleet_nodes"], json!(["rig"]));
    assert!(flux["digest"].as_str().is_some_and(|d| d.len() == 64), "{flux}");
    assert!(entry(&tags, "qwen3:8b")["details"].get("type").is_none(), "text models are not marked");
    assert!(!tags.to_string().contains("sd15.safetensors"), "a server that is down is not listed: {tags}");

    let models = f.get("/v1/models").json();
    let data = models["data"].as_array().unwrap_or_else(|| panic!("{models}"));
    let z = data.iter().find(|m| m["id"] == "z-image-turbo").unwrap_or_else(|| panic!("{models}"));
    assert_eq!((z["object"].as_str(), z["type"].as_str()), (Some("model"), Some("image")));
    let one = f.get("/v1/models/flux1-schnell.gguf");
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["type"], "image");

    // Explained: the server with the model loaded first; one that must swap models pays the
    // load; a server that is down is eliminated with the reason.
    let e = f.get("/fleet/explain?model=flux1-schnell.gguf").json();
    assert_eq!((e["kind"].as_str(), e["best"].as_str()), (Some("image"), Some("rig")), "{e}");
    assert_eq!(
        (e["ranked"][0]["backend"].as_str(), e["ranked"][0]["loaded"].as_bool()),
        (Some("sdcpp"), Some(true)),
        "{e}"
    );
    let e = f.get("/fleet/explain?model=z-image-turbo").json();
    let ranked: Vec<(&str, f64)> = e["ranked"]
        .as_array()
        .unwrap_or_else(|| panic!("{e}"))
        .iter()
        .map(|c| (c["node_id"].as_str().unwrap_or(""), c["load_seconds"].as_f64().unwrap_or(-1.0)))
        .collect();
    assert_eq!(ranked.len(), 2, "{e}");
    assert_eq!(ranked[0].0, "studio", "rig must swap flux out first: {e}");
    assert!(ranked[1].1 > 0.0, "{e}");
    let e = f.get("/fleet/explain?model=sd15.safetensors").json();
    assert_eq!(e["best"], Value::Null, "{e}");
    let comfy = e["eliminated"].as_array().and_then(|l| l.iter().find(|x| x["backend"] == "comfyui")).cloned();
    let comfy = comfy.unwrap_or_else(|| panic!("{e}"));
    assert_eq!((comfy["node_id"].as_str(), comfy["reason"].as_str()), (Some("rig"), Some("down")), "{e}");
}

/// `--image-node KIND=URL`: herd polls the server's model list itself; its models are listed and
/// explained under the URL's host and port, and a server that stops answering is down.
pub fn image_node_is_polled(r: Router) {
    let mut f = Fleet::new(r);
    let url = f.image_fake("a1111", &["sdxl.safetensors", "sd15.safetensors"]);
    f.launch(&["--image-node", &format!("a1111={url}")]);
    let machine = url.trim_start_matches("http://").to_string();
    eventually("the image node's models are listed", || {
        let v = f.get("/api/image-models").json();
        let names: Vec<&str> =
            v["models"].as_array().into_iter().flatten().filter_map(|m| m["name"].as_str()).collect();
        if names != ["sd15.safetensors", "sdxl.safetensors"] {
            return Err(format!("{v}"));
        }
        let m = &v["models"][0];
        if m["backend"] != "a1111" || m["fleet_nodes"] != json!([machine]) {
            return Err(format!("{m}"));
        }
        Ok(())
    });
    let e = f.get("/fleet/explain?model=sdxl.safetensors").json();
    assert_eq!((e["kind"].as_str(), e["best"].as_str()), (Some("image"), Some(machine.as_str())), "{e}");
    f.stop_fake(&url);
    eventually("a server that stops answering is down", || {
        let e = f.get("/fleet/explain?model=sdxl.safetensors").json();
        match e["eliminated"][0]["reason"].as_str() {
            Some("down") if e["best"].is_null() => Ok(()),
            _ => Err(format!("{e}")),
        }
    });
    assert_eq!(f.get("/api/image-models").json()["models"], json!([]));
}
