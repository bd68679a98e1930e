//! The router's settings (command line and `HERD_*` environment). The state request tasks share
//! ([`App`]) is herd-service's.

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

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

pub use herd_service::{key_matches, App, FLEET_KEY_HEADER};

#[cfg(test)]
mod tests {
    use super::*;

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
