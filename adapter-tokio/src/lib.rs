//! herd-tokio: the `herd` router on tokio + hyper, the simulated Ollama server it demos and is
//! tested against, and the benchmark. Policy lives in `herd-core`; what a client sees is decided
//! once, in `herd-service`, which `herd-lite` shares; this crate moves bytes.
//!
//! The shape: [`server`] accepts connections with hyper and reads bodies, and hands each request
//! to herd-service; [`net`] gives herd-service tokio's timers, tasks and sockets; [`store`]
//! writes one trace per request to SQLite; [`mdns`] advertises the router; [`fake`] is the
//! simulated Ollama.

pub mod app;
pub mod demo;
pub mod fake;
pub mod mdns;
pub mod net;
pub mod server;
pub mod store;

pub use herd_service::{driver, errors, fleet as fleet_api, proxy, relay, resolve, static_nodes, upstream};

use app::{App, Args};
use herd_core::config::RouterConfig;
use herd_core::router::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A router that is running: its address and what must outlive it.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Shared state (driver handle, client).
    pub app: Arc<App>,
    /// The trace store, flushed on [`Running::shutdown`].
    pub store: Option<store::TraceStore>,
    /// The mDNS advertisement, withdrawn on [`Running::shutdown`] or drop (`None` when listening
    /// on loopback, with `--no-mdns`, or when it failed).
    pub mdns: Option<mdns::Advertiser>,
    draining: server::Draining,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops taking connections and waits, at most `grace`, for the requests in progress to be
    /// answered (streams to their end); idle keep-alive connections close at once. Returns how
    /// many connections were still open when it stopped waiting. Follow with [`Running::shutdown`].
    pub async fn drain(&mut self, grace: Duration) -> usize {
        if let Some(a) = self.mdns.take() {
            a.shutdown();
        }
        self.draining.begin();
        let until = tokio::time::Instant::now() + grace;
        while self.draining.open_connections() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.draining.open_connections()
    }

    /// Withdraws the mDNS advertisement, stops accepting, and flushes the traces.
    pub fn shutdown(mut self) {
        if let Some(a) = self.mdns.take() {
            a.shutdown();
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(s) = self.store.take() {
            if let Err(e) = s.close() {
                tracing::warn!(error = %e, "closing the trace store");
            }
        }
    }

    /// The router's base URL, `http://127.0.0.1:PORT` for a wildcard address.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { self.addr.ip().to_string() };
        format!("http://{ip}:{}", self.addr.port())
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration file could not be read or parsed.
    #[error("config file {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] herd_core::config::ConfigError),
    /// The trace store could not be opened.
    #[error("trace store: {0}")]
    Store(String),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the router configuration: the file's fields over core's defaults, then the fleet key.
pub fn router_config(args: &Args) -> Result<RouterConfig, StartError> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartError::Config { path: path.display().to_string(), message: e.to_string() })?;
            serde_json::from_str(&text)
                .map_err(|e| StartError::Config { path: path.display().to_string(), message: e.to_string() })?
        }
        None => RouterConfig::default(),
    };
    if let Some(k) = args.fleet_key.clone().filter(|k| !k.is_empty()) {
        config.fleet.fleet_key = Some(k);
    }
    Ok(config.validate()?)
}

/// Starts the router: driver, trace store, static-node pollers, auto-pull worker and listener.
pub async fn start(args: &Args) -> Result<Running, StartError> {
    let config = router_config(args)?;
    let epoch = std::time::Instant::now();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let router = Router::new(config, seed, driver::core_now(epoch))?;
    let data_dir = args.data_dir();
    let retention = store::Retention {
        max_rows: args.trace_rows,
        max_age: Duration::from_secs(args.trace_days.saturating_mul(86_400)),
    };
    let store = store::TraceStore::open(&data_dir, retention).map_err(|e| StartError::Store(e.to_string()))?;
    let reader = store.reader().map_err(|e| StartError::Store(e.to_string()))?;
    let rt: Arc<dyn herd_service::Runtime> = Arc::new(net::TokioRuntime);
    let (driver, pulls) = driver::spawn(router, epoch, Some(Box::new(store.writer())), rt.clone());
    let app = Arc::new(App {
        driver,
        upstream: Arc::new(net::pool()),
        runtime: rt,
        api_keys: args.api_keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
        admin_key: args.admin_key.clone().filter(|k| !k.is_empty()),
        max_body_bytes: (args.max_body_mb.max(1) as usize) << 20,
        read_timeout: Duration::from_secs(args.read_timeout_secs.max(1)),
        fleet_key: args.fleet_key.clone().filter(|k| !k.is_empty()),
        traces: Some(Arc::new(store::SharedReader::new(reader))),
    });
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let draining = server::Draining::default();
    let tasks = vec![tokio::spawn(server::serve(listener, app.clone(), draining.clone()))];
    let nodes = args
        .nodes
        .iter()
        .map(|raw| static_nodes::StaticNode {
            url: static_nodes::normalise_url(raw),
            parallel: args.node_parallel,
            memory_gb: args.node_memory_gb,
        })
        .collect();
    herd_service::start_background(&app, pulls, nodes);
    if !args.host.is_loopback() && app.api_keys.is_empty() && app.admin_key.is_none() {
        tracing::warn!(
            "listening on {addr} with no HERD_API_KEYS and no HERD_ADMIN_KEY: anyone who can reach this port can use \
             and administer the fleet"
        );
    }
    // A demo router is a playground: real agents on the LAN must not find it and register.
    let mdns = if args.no_mdns || args.demo { None } else { advertise(addr) };
    Ok(Running { addr, app, store: Some(store), mdns, draining, tasks })
}

/// Advertises the router over mDNS unless it listens on loopback. A failure is one warning: the
/// router works without it, and agents can be given `--router-url`.
fn advertise(addr: SocketAddr) -> Option<mdns::Advertiser> {
    match mdns::advertise(addr, &mdns::AdvertiseOptions::default()) {
        Ok(Some(a)) => {
            tracing::info!(
                instance = mdns::INSTANCE_NAME,
                service = mdns::SERVICE_TYPE,
                port = addr.port(),
                addresses = %mdns::describe(addr),
                "advertising the router over mDNS"
            );
            Some(a)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot advertise the router over mDNS; give agents --router-url");
            None
        }
    }
}
