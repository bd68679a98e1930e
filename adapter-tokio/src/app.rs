//! The router's settings (command line and `HERD_*` environment) and the state request tasks
//! share: the driver handle, the pooled upstream client and the keys. No routing state lives
//! here; that is the driver's.

use crate::driver::DriverTx;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The pooled upstream client.
pub type Upstream = Client<HttpConnector, Full<Bytes>>;

/// `herd`: one endpoint for every machine that runs Ollama.
#[derive(Parser, Debug, Clone)]
#[command(name = "herd", version, about = "One endpoint for every machine that runs Ollama")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "HERD_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, env = "HERD_PORT", default_value_t = 11435)]
    pub port: u16,
    /// Where herd keeps its data (the trace database). Default: ~/.herd.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A static node: an Ollama server with no agent (repeat for several). herd polls it itself.
    #[arg(long = "node", env = "HERD_NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Requests herd may have in flight to one static node at once (Ollama does not report its
    /// OLLAMA_NUM_PARALLEL). Ollama's own default is 1 per model unless memory allows more; herd
    /// uses 1 unless told.
    #[arg(long, env = "HERD_NODE_PARALLEL", default_value_t = 1)]
    pub node_parallel: u32,
    /// Memory a static node can load models into, GB (unknown to herd otherwise; 0 = do not
    /// limit cold loads by memory).
    #[arg(long, env = "HERD_NODE_MEMORY_GB", default_value_t = 0.0)]
    pub node_memory_gb: f64,
    /// Router configuration file (JSON, the fields of herd-core's RouterConfig; missing fields keep
    /// their defaults).
    #[arg(long, env = "HERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Start three simulated Ollama nodes in this process and route to them.
    #[arg(long, env = "HERD_DEMO")]
    pub demo: bool,
    /// Do not advertise the router over mDNS (`--demo` never advertises: agents on the LAN must
    /// not register with a playground).
    #[arg(long, env = "HERD_NO_MDNS")]
    pub no_mdns: bool,
    /// Largest request body, MiB (base64 images make vision requests large).
    #[arg(long, env = "HERD_MAX_BODY_MB", default_value_t = 64)]
    pub max_body_mb: u64,
    /// Longest a client may take to send its headers or its body, and longest an idle keep-alive
    /// connection is kept, seconds.
    #[arg(long, env = "HERD_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub read_timeout_secs: u64,

    /// On SIGTERM or Ctrl-C, how long requests in progress may take to finish before the router
    /// exits (a second signal exits at once), seconds.
    #[arg(long, env = "HERD_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,

    /// Worker threads (0 = one per core).
    #[arg(long, env = "HERD_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Bearer keys that may use the inference API (comma-separated; empty = open).
    #[arg(long, env = "HERD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Key for pull, delete, create, copy, push and drain.
    #[arg(long, env = "HERD_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Key every heartbeat must carry (herd-node --fleet-key). ollama-herd agents send none and can
    /// only join a fleet without one.
    #[arg(long, env = "HERD_FLEET_KEY", hide_env_values = true)]
    pub fleet_key: Option<String>,
    /// Seed of the router's tie-breaks (default: from the clock).
    #[arg(long, env = "HERD_SEED")]
    pub seed: Option<u64>,
    /// Keep traces this many days.
    #[arg(long, env = "HERD_TRACE_DAYS", default_value_t = 30)]
    pub trace_days: u64,
    /// Keep at most this many traces.
    #[arg(long, env = "HERD_TRACE_ROWS", default_value_t = 1_000_000)]
    pub trace_rows: u64,
}

impl Args {
    /// The data directory, `~/.herd` unless given.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".herd")
        })
    }
}

/// The header that carries the fleet key to nodes (checked by `herd-node --proxy-port`).
pub const FLEET_KEY_HEADER: &str = "x-herd-fleet-key";

/// What request tasks share.
pub struct App {
    /// The driver.
    pub driver: DriverTx,
    /// Pooled keep-alive connections to the nodes, for everything but inference.
    pub client: Upstream,
    /// The inference requests' own connections to the nodes.
    pub upstream: crate::upstream::Pool,
    /// Inference keys (empty = open).
    pub api_keys: Vec<String>,
    /// Admin key.
    pub admin_key: Option<String>,
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    /// Body read timeout.
    pub read_timeout: Duration,
    /// The fleet key, presented to every node in `X-Herd-Fleet-Key` (a `herd-node` proxy refuses
    /// callers without it).
    pub fleet_key: Option<hyper::header::HeaderValue>,
    /// Trace reader for `/fleet/traces` and `/fleet/usage`.
    pub store: Option<std::sync::Arc<std::sync::Mutex<crate::store::TraceReader>>>,
}

/// The pooled client: keep-alive, TCP_NODELAY, a connect timeout.
pub fn upstream_client() -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Constant-time comparison of a presented key with the configured ones.
pub fn key_matches(presented: &str, keys: &[String]) -> bool {
    // Every key is compared, so the time taken does not say which one matched.
    keys.iter().fold(false, |ok, k| ok | herd_core::secret::same_secret(presented.as_bytes(), k.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let keys = vec!["abc".to_string(), "longer-key".to_string()];
        assert!(key_matches("abc", &keys));
        assert!(key_matches("longer-key", &keys));
        assert!(!key_matches("ab", &keys));
        assert!(!key_matches("abcd", &keys));
        assert!(!key_matches("", &keys));
    }

    #[test]
    fn cli_defaults_and_env_names() {
        let a = Args::try_parse_from(["herd"]).unwrap();
        assert_eq!(a.port, 11435);
        assert_eq!(a.host.to_string(), "0.0.0.0");
        let a =
            Args::try_parse_from(["herd", "--node", "http://a:11434", "--node", "http://b:11434", "--demo"]).unwrap();
        assert_eq!(a.nodes.len(), 2);
        assert!(a.demo);
    }
}
