//! The command line both routers share (`herd` and `herd-lite` add their own few flags), with
//! every option also a `HERD_*` environment variable, and what follows from it.

use crate::driver::{DriverTx, TraceSink};
use crate::static_nodes::{parse_node_url, StaticNode};
use crate::upstream::Upstream;
use crate::{App, Runtime, TraceLog};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Logs to stderr at `HERD_LOG` (default `info`), in colour only on a terminal without `NO_COLOR`.
pub fn init_logging(args: &RouterArgs) {
    let filter = match args.log_level.as_deref().map(tracing_subscriber::EnvFilter::try_new) {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!("--log-level {:?}: {e}; logging at info", args.log_level.as_deref().unwrap_or_default());
            "info".into()
        }
        None => tracing_subscriber::EnvFilter::try_from_env("HERD_LOG").unwrap_or_else(|_| "info".into()),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}

/// How log lines are written.
#[derive(clap::ValueEnum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A key as configured: trimmed (`"k1, k2"` is two keys), empty = none.
fn key(raw: &str) -> Option<String> {
    Some(raw.trim()).filter(|k| !k.is_empty()).map(str::to_string)
}

/// The router's options.
#[derive(Args, Debug, Clone)]
pub struct RouterArgs {
    /// Address to listen on [default: 0.0.0.0; 127.0.0.1 with --demo, a playground nobody else
    /// should reach].
    #[arg(long, env = "HERD_HOST")]
    pub host: Option<IpAddr>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`) or a filter such as
    /// `info,herd_service=debug`; overrides `HERD_LOG`.
    #[arg(long, env = "HERD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: `text`, or `json` (one object per line) for log shippers.
    #[arg(long, env = "HERD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Port to listen on (0 = any free port).
    #[arg(long, env = "HERD_PORT", default_value_t = 11435)]
    pub port: u16,
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
    /// Bytes of request bodies the router holds at once over all requests, MiB; a request that
    /// would go over waits for none: it is answered 503 with Retry-After. At least the body limit.
    #[arg(long, env = "HERD_MAX_INFLIGHT_BODY_MB", default_value_t = 256)]
    pub max_inflight_body_mb: u64,
    /// Most messages in one request (over it: 413).
    #[arg(long, env = "HERD_MAX_MESSAGES")]
    pub max_messages: Option<usize>,
    /// Most content parts (content array entries and images) over all messages of one request.
    #[arg(long, env = "HERD_MAX_PARTS")]
    pub max_parts: Option<usize>,
    /// Most JSON values in one request body.
    #[arg(long, env = "HERD_MAX_JSON_VALUES")]
    pub max_json_values: Option<usize>,
    /// Longest a client may take to send its headers or its body, and longest an idle keep-alive
    /// connection is kept, seconds.
    #[arg(long, env = "HERD_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub read_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C, how long requests in progress may take to finish before the router
    /// exits (a second signal exits at once), seconds.
    #[arg(long, env = "HERD_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,
    /// Worker threads (0 = the default: one per core for `herd`, one for `herd-lite`).
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
    /// Networks agents' nodes must be reached in (comma-separated CIDR, e.g.
    /// `10.0.0.0/8,192.168.1.0/24`): a heartbeat whose Ollama address lies elsewhere, or is a host
    /// name, is refused. Empty = any address but link-local and cloud-metadata ones, which are
    /// always refused.
    #[arg(long, env = "HERD_NODE_NETWORKS", value_delimiter = ',')]
    pub node_networks: Vec<String>,
    /// Seed of the router's tie-breaks (default: from the clock).
    #[arg(long, env = "HERD_SEED")]
    pub seed: Option<u64>,
    /// Also serve `/metrics` (Prometheus) on this address of its own, e.g. `127.0.0.1:9435`; the
    /// main port serves it too.
    #[arg(long, env = "HERD_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Let `/metrics` answer without a key when API keys are set (for a scraper on a trusted
    /// network; or give the scraper a key: Prometheus' `authorization` setting).
    #[arg(long, env = "HERD_METRICS_OPEN")]
    pub metrics_open: bool,
    /// `keep_alive` sent with a request to a node's native API (chat, generate, embeddings) when
    /// the client sent none: seconds (`-1` keeps the model loaded, `0` unloads it after the
    /// request), an Ollama duration (`5m`, `1h`), or `off` to send none (the node's
    /// OLLAMA_KEEP_ALIVE applies). The client's own value always wins [default: -1, or the
    /// config file's policy.keep_alive].
    #[arg(long, env = "HERD_KEEP_ALIVE", allow_hyphen_values = true)]
    pub keep_alive: Option<herd_core::config::KeepAlive>,
    /// ollama-herd's `FLEET_*` settings, read before the command line
    /// ([`crate::fleet_env::load`]); its configuration fields go under the `--config` file's.
    #[arg(skip)]
    pub fleet_env: herd_core::config::fleet_env::FleetEnv,
}

impl RouterArgs {
    /// The router configuration, in layers, each over the one before: core's defaults,
    /// ollama-herd's `FLEET_*` settings, the `--config` file, then the flags (and their `HERD_*`
    /// variables). herd's own settings always win over ollama-herd's.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, or the configuration is invalid.
    pub fn router_config(&self) -> Result<herd_core::config::RouterConfig, String> {
        let mut base = herd_core::config::RouterConfig::default();
        self.fleet_env.apply(&mut base);
        let mut config =
            crate::load_config(base, self.config.as_deref(), self.fleet_key.as_deref()).map_err(|e| self.blame(e))?;
        if let Some(k) = &self.keep_alive {
            config.policy.keep_alive = k.clone();
        }
        let networks: Vec<String> =
            self.node_networks.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        if !networks.is_empty() {
            config.fleet.node_networks = networks;
        }
        let body = &mut config.body;
        for (flag, field) in [
            (self.max_messages, &mut body.max_messages),
            (self.max_parts, &mut body.max_parts),
            (self.max_json_values, &mut body.max_values),
        ] {
            if let Some(v) = flag {
                *field = v;
            }
        }
        config.validate().map_err(|e| self.blame(format!("invalid configuration: {e}")))
    }

    /// `error`, naming the `FLEET_*` settings that went into the configuration, if any.
    fn blame(&self, error: String) -> String {
        if self.fleet_env.config.is_empty() {
            return error;
        }
        let vars: Vec<String> = self.fleet_env.config.iter().map(|s| format!("{}={}", s.var, s.value)).collect();
        format!("{error} (with ollama-herd's {})", vars.join(", "))
    }

    /// The seed for core's randomness: `--seed`, else the runtime's.
    pub fn seed(&self, rt: &dyn Runtime) -> u64 {
        self.seed.unwrap_or_else(|| rt.seed())
    }

    /// The address to listen on: `--host`, else every interface, or loopback for `--demo`.
    pub fn host(&self) -> IpAddr {
        self.host.unwrap_or(if self.demo {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        })
    }

    /// Where to listen.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host(), self.port)
    }

    /// The `--node` static nodes.
    ///
    /// # Errors
    /// A `--node` value is not a usable address.
    pub fn static_nodes(&self) -> Result<Vec<StaticNode>, String> {
        self.nodes
            .iter()
            .map(|raw| {
                Ok(StaticNode {
                    url: parse_node_url(raw)?,
                    parallel: self.node_parallel,
                    memory_gb: self.node_memory_gb,
                })
            })
            .collect()
    }

    /// The state request tasks share.
    pub fn app(
        &self,
        config: &herd_core::config::RouterConfig,
        driver: DriverTx,
        upstream: Arc<dyn Upstream>,
        runtime: Arc<dyn Runtime>,
        traces: Option<Arc<dyn TraceLog>>,
        binary: &'static str,
    ) -> App {
        App {
            driver,
            upstream,
            runtime: runtime.clone(),
            api_keys: self.api_keys.iter().filter_map(|k| key(k)).collect(),
            admin_key: self.admin_key.as_deref().and_then(key),
            max_body_bytes: (self.max_body_mb.max(1) as usize) << 20,
            read_timeout: Duration::from_secs(self.read_timeout_secs.max(1)),
            fleet_key: self.fleet_key.as_deref().and_then(key),
            max_report_bytes: config.fleet.max_report_bytes,
            body_limits: config.body,
            body_budget: crate::BodyBudget::new(
                ((self.max_inflight_body_mb.max(self.max_body_mb).max(1)) as usize) << 20,
            ),
            traces,
            metrics_open: self.metrics_open,
            binary,
            only_metrics: false,
            wall: herd_core::time::WallClock::from_readings(runtime.now(), runtime.unix_ms()),
        }
    }

    /// Starts the driver and the background work (static-node pollers, auto-pull) on `rt`, and
    /// returns the shared state; logs one warning when listening beyond loopback with no keys.
    ///
    /// # Errors
    ///
    /// The configuration is invalid.
    pub fn start_service(
        &self,
        upstream: Arc<dyn Upstream>,
        rt: Arc<dyn Runtime>,
        sink: Option<Box<dyn TraceSink>>,
        log: Option<Arc<dyn TraceLog>>,
        binary: &'static str,
    ) -> Result<Arc<App>, String> {
        let config = self.router_config()?;
        let nodes = self.static_nodes()?;
        let router = herd_core::router::Router::new(config.clone(), self.seed(&*rt), rt.now())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        let (driver, pulls) = crate::driver::spawn(router, sink, rt.clone());
        let app = Arc::new(self.app(&config, driver, upstream, rt, log, binary));
        crate::start_background(&app, pulls, nodes);
        if !self.host().is_loopback() && app.api_keys.is_empty() && app.admin_key.is_none() {
            tracing::warn!(
                "listening on {} with no HERD_API_KEYS and no HERD_ADMIN_KEY: anyone who can reach this port can \
                 use and administer the fleet",
                self.listen_addr()
            );
        }
        Ok(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use herd_core::config::{fleet_env, KeepAlive};
    use std::collections::BTreeSet;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        router: RouterArgs,
    }

    fn args(argv: &[&str], fleet: &[(&str, &str)]) -> RouterArgs {
        let mut a = Cli::try_parse_from(std::iter::once("herd").chain(argv.iter().copied())).unwrap().router;
        a.fleet_env = fleet_env::map(fleet.iter().copied(), &BTreeSet::new(), None);
        a
    }

    /// core's defaults, then ollama-herd's settings, then the `--config` file, then flags.
    #[test]
    fn configuration_layers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"score": {"model_warm": 7}, "policy": {"keep_alive": "10m"}}"#).unwrap();
        let fleet = [("FLEET_SCORE_MODEL_HOT", "60"), ("FLEET_SCORE_MODEL_WARM", "40"), ("FLEET_MAX_RETRIES", "0")];

        let c = args(&[], &fleet).router_config().unwrap();
        assert_eq!((c.score.model_hot, c.score.model_warm, c.retry.max_attempts), (60.0, 40.0, 1));
        assert_eq!(c.policy.keep_alive, KeepAlive::Seconds(-1.0), "ollama-herd's keep_alive by default");

        let with_file = ["--config", file.to_str().unwrap()];
        let c = args(&with_file, &fleet).router_config().unwrap();
        assert_eq!((c.score.model_hot, c.score.model_warm), (60.0, 7.0), "the file over FLEET_*, field by field");
        assert_eq!(c.policy.keep_alive, KeepAlive::Duration("10m".into()));

        let c = args(&[with_file[0], with_file[1], "--keep-alive", "-1"], &fleet).router_config().unwrap();
        assert_eq!(c.policy.keep_alive, KeepAlive::Seconds(-1.0), "the flag over the file");
        let c = args(&["--keep-alive", "off"], &[]).router_config().unwrap();
        assert_eq!(c.policy.keep_alive, KeepAlive::Off);
        assert!(Cli::try_parse_from(["herd", "--keep-alive", "forever"]).is_err(), "a bad value refuses to start");

        // A configuration the FLEET_* settings made invalid says which ones went in.
        let e = args(&[], &[("FLEET_HEARTBEAT_TIMEOUT", "40")]).router_config().unwrap_err();
        assert!(e.contains("fleet.degraded_after") && e.contains("FLEET_HEARTBEAT_TIMEOUT=40"), "{e}");
    }
}
