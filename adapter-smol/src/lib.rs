//! herd-smol: `herd-lite`, the herd router for small devices (a Raspberry Pi, a NAS), on smol and
//! async-io with core's own HTTP/1.1 codec instead of hyper. What a client sees is herd-service's,
//! shared with `herd`, so the two answer alike; the conformance suite in `tests/` checks that.
//! Left out next to `herd`: the SQLite trace store (traces stay in memory, in a bounded ring) and
//! mDNS advertisement (give agents `--router-url`).

pub mod net;
pub mod server;

use async_io::Async;
use clap::Parser;
use herd_service::args::RouterArgs;
use herd_service::ring::TraceRing;
use herd_service::App;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `herd-lite`: the herd router for small devices.
#[derive(Parser, Debug, Clone)]
#[command(name = "herd-lite", version, about = "The herd router for small devices (smol, no database)")]
pub struct Args {
    /// The options both routers share.
    #[command(flatten)]
    pub router: RouterArgs,
    /// Accepted for the same command line as `herd`; herd-lite writes nothing to disk.
    #[arg(long, env = "HERD_DATA_DIR", hide = true)]
    pub data_dir: Option<PathBuf>,
    /// Traces kept in memory for `/fleet/traces` and `/fleet/usage`.
    #[arg(long, env = "HERD_TRACE_RING", default_value_t = 10_000)]
    pub trace_ring: usize,
}

impl Args {
    /// The command line as herd-lite shows it: `--no-mdns` hidden (herd-lite does not advertise
    /// over mDNS), and `--demo` too in a build without simulated nodes.
    pub fn command_line() -> clap::Command {
        let cmd = <Args as clap::CommandFactory>::command().mut_arg("no_mdns", |a| a.hide(true));
        if cfg!(feature = "demo") {
            cmd
        } else {
            cmd.mut_arg("demo", |a| a.hide(true))
        }
    }

    /// Parses the process's arguments with [`Args::command_line`]; exits with clap's message on
    /// an error, as `Parser::parse` does.
    pub fn parse_command_line() -> Args {
        let matches = Args::command_line().get_matches();
        <Args as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

impl std::ops::Deref for Args {
    type Target = RouterArgs;
    fn deref(&self) -> &RouterArgs {
        &self.router
    }
}

/// A router that is running.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its own `/metrics` listener listens (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
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
    let traces = TraceRing::new(args.trace_ring);
    let app = args.start_service(
        Arc::new(net::pool()),
        Arc::new(net::SmolRuntime::new()),
        Some(Box::new(traces.clone())),
        Some(Arc::new(traces.clone())),
        "herd-lite",
    )?;
    let addr = args.listen_addr();
    let listener = Async::<TcpListener>::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.get_ref().local_addr().map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let draining = server::Draining::default();
    smol::spawn(server::serve(listener, app.clone(), draining.clone())).detach();
    let metrics_addr = match args.metrics_addr {
        Some(want) => {
            let l = Async::<TcpListener>::bind(want).map_err(|e| format!("cannot listen on {want}: {e}"))?;
            let bound = l.get_ref().local_addr().map_err(|e| format!("cannot listen on {want}: {e}"))?;
            tracing::info!(addr = %bound, "serving /metrics on its own listener");
            smol::spawn(server::serve(l, app.for_metrics(), draining.clone())).detach();
            Some(bound)
        }
        None => None,
    };
    Ok(Running { addr, metrics_addr, app, traces, draining })
}

/// Gives memory freed inside glibc's heaps back to the system (`malloc_trim`), after a request
/// with a large body: its typed copy was many small blocks, which glibc keeps otherwise, and a
/// small device should not hold a large request's memory until the next one.
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer and only returns free memory of the allocator's own
    // heaps to the system; no live allocation is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod cli_tests {
    use super::Args;

    #[test]
    fn help_shows_only_what_this_build_does() {
        let help = Args::command_line().render_long_help().to_string();
        let flag = |name: &str| help.lines().any(|l| l.trim_start().starts_with(name));
        assert!(!flag("--no-mdns"), "herd-lite does not advertise over mDNS");
        assert_eq!(flag("--demo"), cfg!(feature = "demo"), "{help}");
        assert!(flag("--port") && flag("--trace-ring"));
    }
}
