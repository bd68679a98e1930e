//! `herd`: the router. See `herd --help`, and the README for `herd --demo`.

use clap::Parser;

// mimalloc: the router allocates and frees many small buffers per request across worker threads;
// glibc's malloc spent a sixth of the router's CPU on S1 (consolidation, arena locks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use herd_tokio::app::Args;
use std::io::Write;

/// mimalloc commits its arenas eagerly on Linux and asks for transparent huge pages for them; a
/// 2 MiB page per touched region made the router's RSS jump under load (34 MB on the benchmark
/// against 14 MB with glibc). Huge pages are turned off for this process before the first fault
/// that could use one.
#[allow(unsafe_code)]
fn tune_allocator() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integer arguments only and changes a flag of this
    // process; it touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    // ollama-herd's env file and FLEET_* settings, before the command line reads HERD_*.
    let fleet = match herd_service::fleet_env::load() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("herd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut args = Args::parse();
    args.router.fleet_env = fleet.env.clone();
    herd_service::args::init_logging(&args);
    fleet.log();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> std::process::ExitCode {
    let running = match herd_tokio::start(&args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = running.url();
    println!("listening on http://{}", running.addr);
    let _ = std::io::stdout().flush();
    let mut fleet = Vec::new();
    if args.demo {
        match herd_fake_ollama::demo::start_fleet(&url).await {
            Ok(f) => fleet = f,
            Err(e) => {
                eprintln!("herd: cannot start the demo nodes: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        wait_for_nodes(&running, fleet.len()).await;
        print_demo_help(&url, &fleet);
    }
    tracing::info!(addr = %running.addr, data_dir = %args.data_dir().display(), "herd is ready");
    shutdown_signal().await;
    let grace = std::time::Duration::from_secs(args.drain_secs);
    tracing::info!(?grace, "shutting down: no new connections; letting requests in progress finish");
    let mut running = running;
    tokio::select! {
        left = running.drain(grace) => if left > 0 {
            tracing::warn!(connections = left, "requests still in progress after the drain period; cutting them");
        },
        _ = shutdown_signal() => tracing::warn!("second signal: exiting without waiting for requests in progress"),
    }
    for f in &fleet {
        f.shutdown();
    }
    running.shutdown();
    if args.data_dir_is_temporary() {
        let _ = std::fs::remove_dir_all(args.data_dir());
    }
    std::process::ExitCode::SUCCESS
}

async fn wait_for_nodes(running: &herd_tokio::Running, n: usize) {
    for _ in 0..100 {
        let online = running.app.driver.query(|r, _| r.fleet().nodes().filter(|x| x.routable()).count()).await;
        if online.unwrap_or(0) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn print_demo_help(url: &str, fleet: &[herd_fake_ollama::FakeHandle]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\nherd demo: a router at {url} in front of {} simulated Ollama machines:", fleet.len());
    for (spec, f) in herd_fake_ollama::demo::demo_fleet().iter().zip(fleet) {
        let _ = writeln!(
            out,
            "  {:<12} {}  loaded: {}",
            spec.name,
            f.url(),
            spec.preloaded.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(
        out,
        r#"
Try:
  curl {url}/api/tags
  curl {url}/api/chat -d '{{"model":"qwen3:8b","messages":[{{"role":"user","content":"hello"}}]}}'
  curl -i {url}/v1/chat/completions -H 'content-type: application/json' \
       -d '{{"model":"llama3.3:70b","messages":[{{"role":"user","content":"hi"}}]}}'
  curl '{url}/fleet/explain?model=gemma3:27b'
  curl {url}/fleet/status
  python -c 'import ollama; print(ollama.Client("{url}").chat(model="qwen3:8b", messages=[{{"role":"user","content":"hi"}}]))'
Ctrl-C stops it."#
    );
    let _ = out.flush();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
