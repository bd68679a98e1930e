//! herd-tokio: the `herd` router on tokio + hyper. Policy lives in `herd-core`; what a client
//! sees is decided once, in `herd-service`, which `herd-lite` shares; this crate moves bytes.
//!
//! The shape: [`server`] accepts connections with hyper and reads bodies, and hands each request
//! to herd-service; [`net`] gives herd-service tokio's timers, tasks and sockets; [`store`]
//! writes one trace per request to SQLite; [`mdns`] advertises the router. `--demo` starts
//! herd-fake-ollama's simulated machines beside it.

pub mod app;
pub mod mdns;
pub mod net;
pub mod server;
pub mod store;

pub use herd_service::{driver, errors, fleet as fleet_api, proxy, relay, static_nodes, upstream};

use app::{App, Args};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A router that is running: its address and what must outlive it.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its own `/metrics` listener listens (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
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
    /// The configuration file could not be read or parsed, or is invalid.
    #[error("{0}")]
    Config(String),
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

/// Starts the router: trace store, driver, static-node pollers, auto-pull worker and listener.
pub async fn start(args: &Args) -> Result<Running, StartError> {
    let data_dir = args.data_dir();
    let retention = store::Retention {
        max_rows: args.trace_rows,
        max_age: Duration::from_secs(args.trace_days.saturating_mul(86_400)),
    };
    let store = store::TraceStore::open(&data_dir, retention).map_err(|e| StartError::Store(e.to_string()))?;
    let reader = store.reader().map_err(|e| StartError::Store(e.to_string()))?;
    let app = args
        .start_service(
            Arc::new(net::pool()),
            Arc::new(net::TokioRuntime::new()),
            Some(Box::new(store.writer())),
            Some(Arc::new(store::SharedReader::new(reader))),
            "herd",
        )
        .map_err(StartError::Config)?;
    let addr = args.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let draining = server::Draining::default();
    let mut tasks = vec![tokio::spawn(server::serve(listener, app.clone(), draining.clone()))];
    let metrics_addr = match args.metrics_addr {
        Some(want) => {
            let l =
                tokio::net::TcpListener::bind(want).await.map_err(|source| StartError::Bind { addr: want, source })?;
            let bound = l.local_addr().map_err(|source| StartError::Bind { addr: want, source })?;
            tracing::info!(addr = %bound, "serving /metrics on its own listener");
            tasks.push(tokio::spawn(server::serve(l, app.for_metrics(), draining.clone())));
            Some(bound)
        }
        None => None,
    };
    // A demo router is a playground: real agents on the LAN must not find it and register.
    let mdns = if args.no_mdns || args.demo { None } else { advertise(addr, args.mdns_options()) };
    Ok(Running { addr, metrics_addr, app, store: Some(store), mdns, draining, tasks })
}

/// Advertises the router over mDNS unless it listens on loopback. A failure is one warning: the
/// router works without it, and agents can be given `--router-url`.
fn advertise(addr: SocketAddr, options: mdns::AdvertiseOptions) -> Option<mdns::Advertiser> {
    match mdns::advertise(addr, &options) {
        Ok(Some(a)) => {
            tracing::info!(
                instance = %options.instance,
                service = %options.service_type,
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
