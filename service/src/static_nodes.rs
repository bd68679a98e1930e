//! Static nodes (`--node URL`): Ollama servers with no agent. herd polls their `/api/ps`,
//! `/api/tags` and `/api/version` on the heartbeat cadence and reports them to the router as if
//! an agent had sent the heartbeat. What Ollama does not tell (its parallelism, the machine's
//! memory) comes from the command line; memory left unknown is reported as absent, and core then
//! leaves cold loads to Ollama and uses the parallelism alone as the node's concurrency.

use crate::driver::{DriverTx, Input};
use crate::upstream::Upstream;
use crate::Runtime;
use herd_core::fleet::heartbeat::{Heartbeat, Memory};
use herd_core::url::BaseUrl;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How often a static node is polled (the agents' heartbeat interval).
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// What the command line says about static nodes.
#[derive(Clone, Debug)]
pub struct StaticNode {
    /// Ollama's base URL.
    pub url: BaseUrl,
    /// Requests herd may send at once.
    pub parallel: u32,
    /// Memory it can load into, GB (0 = unknown).
    pub memory_gb: f64,
}

impl StaticNode {
    /// The node's name: the URL's host and port.
    pub fn name(&self) -> String {
        self.url.authority().to_string()
    }
}

/// Reads a `--node` value: `http://` and Ollama's port added when missing, a trailing slash
/// dropped (core's one URL parser).
///
/// # Errors
/// Why it is not a usable address.
pub fn parse_node_url(raw: &str) -> Result<BaseUrl, String> {
    BaseUrl::parse(raw, herd_core::fleet::address::OLLAMA_PORT).map_err(|e| format!("--node {raw:?}: {e}"))
}

/// `GET base/path` as JSON, within 5 s.
pub async fn get_json(
    client: &dyn Upstream,
    rt: &dyn Runtime,
    base: &BaseUrl,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Option<Value> {
    let call = async {
        let mut resp = client.send("GET", base, path, headers, None).await.ok()?;
        if !(200..300).contains(&resp.head.status) {
            return None;
        }
        crate::fleet::read_json(&mut resp.body).await
    };
    crate::timeout(rt, Duration::from_secs(5), call).await.flatten()
}

/// The heartbeat for what a static node's Ollama answered (`None` = it did not answer).
pub fn heartbeat(node: &StaticNode, version: Option<&Value>, ps: Option<&Value>, tags: Option<&Value>) -> Heartbeat {
    let mut ollama = herd_core::fleet::ollama_state::ollama_state(ps, tags, version);
    // The node's own digests, dates and details, for the router's `/api/tags` (a failed call
    // sends none, and the router keeps what it had).
    ollama.models_available_meta = tags.map(|t| herd_core::fleet::ollama_state::models_meta(Some(t)));
    ollama.num_parallel = node.parallel.max(1);
    let total = node.memory_gb.max(0.0);
    let used: f64 = ollama.models_loaded.iter().map(|m| m.size_gb).sum();
    Heartbeat {
        node_id: node.name(),
        arch: "unknown".into(),
        memory: Memory {
            total_gb: total,
            used_gb: used.min(total),
            available_gb: (total - used).max(0.0),
            ..Memory::default()
        },
        ollama,
        ollama_host: node.url.to_string(),
        agent_version: format!("herd-static/{}", env!("CARGO_PKG_VERSION")),
        ..Heartbeat::default()
    }
}

/// Polls one static node forever, reporting each round to the driver. `headers` go with every
/// request (the fleet key).
pub async fn poll(
    driver: DriverTx,
    client: Arc<dyn Upstream>,
    rt: Arc<dyn Runtime>,
    node: StaticNode,
    headers: Vec<(&'static str, Vec<u8>)>,
) {
    let fields: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    loop {
        let started = rt.now();
        let get = |path| get_json(&*client, &*rt, &node.url, path, &fields);
        let (version, (ps, tags)) = join(get("/api/version"), join(get("/api/ps"), get("/api/tags"))).await;
        let hb = heartbeat(&node, version.as_ref(), ps.as_ref(), tags.as_ref());
        driver.send(Input::Static(Box::new(hb), node.url.clone())).await;
        rt.sleep(POLL_EVERY.saturating_sub(rt.now().saturating_since(started))).await;
    }
}

/// Both outputs, the futures run concurrently.
pub async fn join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().expect("set"), rb.take().expect("set")))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        let url = |raw| parse_node_url(raw).unwrap().to_string();
        assert_eq!(url("gpu-box"), "http://gpu-box:11434");
        assert_eq!(url("http://10.0.0.5:8080/"), "http://10.0.0.5:8080");
        assert_eq!(url("10.0.0.5:11434"), "http://10.0.0.5:11434");
        assert!(parse_node_url("ftp://box").is_err());
        let n = StaticNode { url: parse_node_url("http://10.0.0.5:8080").unwrap(), parallel: 4, memory_gb: 0.0 };
        assert_eq!(n.name(), "10.0.0.5:8080");
    }

    #[test]
    fn heartbeat_from_ollama_answers() {
        let n = StaticNode { url: parse_node_url("http://box:11434").unwrap(), parallel: 4, memory_gb: 32.0 };
        let ps = json!({"models": [{"name": "qwen3:8b", "size": 6_000_000_000u64, "size_vram": 6_000_000_000u64, "context_length": 8192}]});
        let tags = json!({"models": [
            {"name": "qwen3:8b", "size": 5_200_000_000u64, "digest": "500a1f", "modified_at": "2025-05-10T18:32:07Z",
             "details": {"family": "qwen3", "parameter_size": "8.2B", "quantization_level": "Q4_K_M"}},
            {"name": "llama3.1:8b", "size": 4_900_000_000u64}]});
        let hb = heartbeat(&n, Some(&json!({"version": "0.12.6"})), Some(&ps), Some(&tags));
        assert_eq!(hb.node_id, "box:11434");
        assert_eq!(hb.ollama.reachable, Some(true));
        assert_eq!(hb.ollama.num_parallel, 4);
        assert_eq!(hb.ollama.models_loaded[0].context_length, 8192);
        assert_eq!(hb.ollama.models_available.len(), 2);
        let meta = hb.ollama.models_available_meta.as_ref().expect("the node's metadata goes with every poll");
        let q = &meta[&herd_core::ids::ModelName::new("qwen3:8b")];
        let got = (q.digest.as_str(), q.modified_at.as_str(), q.parameter_size.as_str(), q.quantization_level.as_str());
        assert_eq!(got, ("500a1f", "2025-05-10T18:32:07Z", "8.2B", "Q4_K_M"));
        assert!((hb.memory.available_gb - 26.0).abs() < 1e-9);
        let unknown = StaticNode { memory_gb: 0.0, ..n.clone() };
        let hb0 = heartbeat(&unknown, None, Some(&ps), Some(&tags));
        assert_eq!((hb0.memory.total_gb, hb0.memory.available_gb), (0.0, 0.0), "unknown memory is absent");
        let down = heartbeat(&n, None, None, None);
        assert_eq!(down.ollama.reachable, Some(false));
        assert!(down.ollama.models_available_meta.is_none(), "no answer keeps the router's copy");
    }
}
