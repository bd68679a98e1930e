//! The command line. Flag names match ollama-herd's agent (`--router-url`, `--ollama-host`,
//! `--node-id`), so it can be swapped in unchanged; every option is also a `HERD_*` variable, and
//! ollama-herd's `FLEET_NODE_*` variables are honoured when the `HERD_*` one is not set. Unlike
//! ollama-herd, a flag default never overrides a variable (its §8.1 item 4).

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

/// `herd-node`: reports this machine and its Ollama to herd routers.
#[derive(Parser, Debug, Clone)]
#[command(name = "herd-node", version, about)]
pub struct Args {
    /// Router to report to; repeat for several (comma-separated in the variable). None: find
    /// routers over mDNS, in the background, for as long as the agent runs.
    #[arg(long = "router-url", env = "HERD_ROUTER_URL", value_delimiter = ',')]
    pub router_url: Vec<String>,

    /// Where this machine's Ollama listens.
    #[arg(long, env = "HERD_OLLAMA_HOST", default_value = "http://127.0.0.1:11434")]
    pub ollama_host: String,

    /// This node's name in the fleet (default: the host name's first label).
    #[arg(long, env = "HERD_NODE_ID")]
    pub node_id: Option<String>,

    /// Shared fleet secret: sent with every heartbeat, and required by the proxy.
    #[arg(long, env = "HERD_FLEET_KEY", hide_env_values = true)]
    pub fleet_key: Option<String>,

    /// Expose a loopback-only Ollama to the routers on this port, and advertise it.
    #[arg(long, env = "HERD_PROXY_PORT")]
    pub proxy_port: Option<u16>,

    /// Address the proxy listens on.
    #[arg(long, env = "HERD_PROXY_BIND", default_value = "0.0.0.0")]
    pub proxy_bind: IpAddr,

    /// Print the heartbeat JSON this node would send, then exit.
    #[arg(long)]
    pub once: bool,

    /// Seconds between heartbeats.
    #[arg(long, env = "HERD_HEARTBEAT_SECS", default_value_t = 5.0)]
    pub heartbeat_secs: f64,

    /// Ollama's models folder, for the disk figures (default: $OLLAMA_MODELS, else ~/.ollama/models).
    #[arg(long, env = "HERD_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// The mDNS service routers advertise.
    #[arg(long, env = "HERD_MDNS_SERVICE", default_value = crate::mdns::SERVICE_TYPE)]
    pub mdns_service: String,

    /// Log level (`error`..`trace`, or a filter); `HERD_LOG` takes a full filter.
    #[arg(long, env = "HERD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Accepted for ollama-herd compatibility; herd has no capacity learner (logged and ignored).
    #[arg(long, hide = true)]
    pub learn_capacity: bool,
}

/// ollama-herd's variables and the `HERD_*` ones they stand for.
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("FLEET_NODE_ROUTER_URL", "HERD_ROUTER_URL"),
    ("FLEET_NODE_OLLAMA_HOST", "HERD_OLLAMA_HOST"),
    ("FLEET_NODE_NODE_ID", "HERD_NODE_ID"),
    ("FLEET_NODE_HEARTBEAT_INTERVAL", "HERD_HEARTBEAT_SECS"),
    ("FLEET_NODE_MDNS_SERVICE_TYPE", "HERD_MDNS_SERVICE"),
];

/// Which `HERD_*` variables to fill from ollama-herd's, given a variable lookup: pure, so it is
/// tested without touching the process environment.
pub fn legacy_env(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    LEGACY_ENV
        .iter()
        .filter(|(_, herd)| get(herd).is_none())
        .filter_map(|(legacy, herd)| get(legacy).filter(|v| !v.is_empty()).map(|v| (*herd, v)))
        .collect()
}

impl Args {
    /// Parses the command line after filling `HERD_*` from `FLEET_NODE_*` where unset.
    pub fn from_env_and_args() -> Args {
        for (k, v) in legacy_env(|k| std::env::var(k).ok()) {
            // Single-threaded at this point: nothing else reads the environment yet.
            std::env::set_var(k, v);
        }
        Args::parse()
    }

    /// The node id: the flag, else the host name's first label.
    pub fn node_id(&self) -> String {
        match self.node_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => hostname().split('.').next().unwrap_or("node").to_string(),
        }
    }

    /// Where Ollama keeps models.
    pub fn models_dir(&self) -> PathBuf {
        if let Some(d) = &self.models_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
        home.map_or_else(|| PathBuf::from("/"), |h| PathBuf::from(h).join(".ollama").join("models"))
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    sysinfo::System::host_name().filter(|h| !h.is_empty()).unwrap_or_else(|| "node".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn legacy_variables_fill_only_unset_herd_ones() {
        let env = BTreeMap::from([
            ("FLEET_NODE_ROUTER_URL", "http://r:11435"),
            ("FLEET_NODE_NODE_ID", "old"),
            ("HERD_NODE_ID", "new"),
            ("FLEET_NODE_OLLAMA_HOST", ""),
        ]);
        let got = legacy_env(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(got, [("HERD_ROUTER_URL", "http://r:11435".to_string())]);
    }

    #[test]
    fn flags() {
        let a = Args::try_parse_from([
            "herd-node",
            "--router-url",
            "http://a:11435,http://b:11435",
            "--router-url",
            "http://c:1",
            "--node-id",
            "  ",
            "--once",
            "--learn-capacity",
        ])
        .unwrap();
        assert_eq!(a.router_url.len(), 3);
        assert!(a.once && a.learn_capacity);
        assert_eq!(a.ollama_host, "http://127.0.0.1:11434");
        assert!(!a.node_id().is_empty(), "a blank --node-id falls back to the host name");
        assert_eq!(Args::try_parse_from(["herd-node", "--node-id", "gpu-box"]).unwrap().node_id(), "gpu-box");
    }
}
