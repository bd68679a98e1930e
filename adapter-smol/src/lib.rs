//! herd-smol: `herd-lite`, the herd router for small devices (a Raspberry Pi, a NAS), on smol and
//! async-io with core's own HTTP/1.1 codec instead of hyper. What a client sees is herd-service's,
//! shared with `herd`, so the two answer alike; the conformance suite in `tests/` checks that.
//! Left out next to `herd`: the SQLite trace store (traces stay in memory, in a bounded ring) and
//! mDNS advertisement (give agents `--router-url`).

pub mod net;
pub mod server;

use async_io::Async;
use clap::Parser;
use herd_core::router::Router;
use herd_service::ring::TraceRing;
use herd_service::static_nodes::{normalise_url, StaticNode};
use herd_service::{driver, App, Runtime};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `herd-lite`: the herd router for small devices.
#[derive(Parser, Debug, Clone)]
#[command(name = "herd-lite", version, about = "The herd router for small devices (smol, no database)")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "HERD_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "HERD_PORT", default_value_t = 11435)]
    pub port: u16,
    /// Accepted for the same command line as `herd`; herd-lite writes nothing to disk.
    #[arg(long, env = "HERD_DATA_DIR", hide = true)]
    pub data_dir: Option<PathBuf>,
    /// A static node: an Ollama server with no agent (repeat, or comma-separate).
    #[arg(long = "node", env = "HERD_NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Requests herd may have in flight to each static node (Ollama's OLLAMA_NUM_PARALLEL).
    #[arg(long, env = "HERD_NODE_PARALLEL", default_value_t = 1)]
    pub node_parallel: u32,
    /// Memory each static node can load models into, GB (0 = unknown).
    #[arg(long, env = "HERD_NODE_MEMORY_GB", default_value_t = 0.0)]
    pub node_memory_gb: f64,
    /// Router configuration file (JSON; core's `RouterConfig` fields over the defaults).
    #[arg(long, env = "HERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Start three simulated Ollama nodes in the same process (needs the `demo` feature).
    #[arg(long, env = "HERD_DEMO")]
    pub demo: bool,
    /// Accepted for the same command line as `herd`; herd-lite does not advertise over mDNS.
    #[arg(long, env = "HERD_NO_MDNS")]
    pub no_mdns: bool,
    /// Largest request body, MiB.
    #[arg(long, env = "HERD_MAX_BODY_MB", default_value_t = 64)]
    pub max_body_mb: u64,
    /// Longest a client may take to send its headers or its body, seconds.
    #[arg(long, env = "HERD_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub read_timeout_secs: u64,
    /// On SIGTERM, how long requests in progress may take to finish, seconds.
    #[arg(long, env = "HERD_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,
    /// Executor threads (0 = 1; a small device rarely wants more).
    #[arg(long, env = "HERD_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Bearer keys for the inference and listing paths (comma-separated).
    #[arg(long, env = "HERD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Key for pull, delete, copy, create, push and drain.
    #[arg(long, env = "HERD_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Key every heartbeat must carry, and sent to every node.
    #[arg(long, env = "HERD_FLEET_KEY", hide_env_values = true)]
    pub fleet_key: Option<String>,
    /// Seed for core's randomness (default: from the clock).
    #[arg(long, env = "HERD_SEED")]
    pub seed: Option<u64>,
    /// Traces kept in memory for `/fleet/traces` and `/fleet/usage`.
    #[arg(long, env = "HERD_TRACE_RING", default_value_t = 10_000)]
    pub trace_ring: usize,
}

/// A router that is running.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Shared state.
    pub app: Arc<App>,
    /// The traces kept.
    pub traces: TraceRing,
    draining: server::Draining,
}

impl Running {
    /// Stops taking connections and waits, at most `grace`, for requests in progress to be
    /// answered; returns how many connections were still open.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.begin();
        let until = Instant::now() + grace;
        while self.draining.open_connections() > 0 && Instant::now() < until {
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
        self.draining.open_connections()
    }

    /// The router's base URL, `http://127.0.0.1:PORT` for a wildcard address.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { self.addr.ip().to_string() };
        format!("http://{ip}:{}", self.addr.port())
    }
}

/// Starts the router (on smol's global executor): driver, static-node pollers, auto-pull worker
/// and listener.
///
/// # Errors
///
/// The configuration is invalid, or the port cannot be bound.
pub fn start(args: &Args) -> Result<Running, String> {
    let config = herd_service::load_config(args.config.as_deref(), args.fleet_key.as_deref())?;
    let epoch = Instant::now();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let router =
        Router::new(config, seed, driver::core_now(epoch)).map_err(|e| format!("invalid configuration: {e}"))?;
    let traces = TraceRing::new(args.trace_ring);
    let rt: Arc<dyn Runtime> = Arc::new(net::SmolRuntime);
    let (driver, pulls) = driver::spawn(router, epoch, Some(Box::new(traces.clone())), rt.clone());
    let app = Arc::new(App {
        driver,
        upstream: Arc::new(net::pool()),
        runtime: rt,
        api_keys: args.api_keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
        admin_key: args.admin_key.clone().filter(|k| !k.is_empty()),
        max_body_bytes: (args.max_body_mb.max(1) as usize) << 20,
        read_timeout: Duration::from_secs(args.read_timeout_secs.max(1)),
        fleet_key: args.fleet_key.clone().filter(|k| !k.is_empty()),
        traces: Some(Arc::new(traces.clone())),
    });
    let addr = SocketAddr::new(args.host, args.port);
    let listener = Async::<TcpListener>::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.get_ref().local_addr().map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let draining = server::Draining::default();
    smol::spawn(server::serve(listener, app.clone(), draining.clone())).detach();
    let nodes = args
        .nodes
        .iter()
        .map(|raw| StaticNode { url: normalise_url(raw), parallel: args.node_parallel, memory_gb: args.node_memory_gb })
        .collect();
    herd_service::start_background(&app, pulls, nodes);
    if !args.host.is_loopback() && app.api_keys.is_empty() && app.admin_key.is_none() {
        tracing::warn!(
            "listening on {addr} with no HERD_API_KEYS and no HERD_ADMIN_KEY: anyone who can reach this port can use \
             and administer the fleet"
        );
    }
    Ok(Running { addr, app, traces, draining })
}
