//! `herd-lite`: the herd router for small devices. See `herd-lite --help`.

use herd_smol::Args;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// glibc serves a freed large block's size from the heap from then on (its mmap threshold follows
/// the largest block freed, up to 32 MiB), and a heap with one live block near its top is never
/// trimmed: after one 32 MB request herd-lite kept 40 MB, after eight 270 MB. A fixed threshold
/// keeps every block of 256 KiB or more in its own mapping, returned to the system when freed;
/// the router's per-request buffers are far smaller, so nothing on the hot path changes.
#[allow(unsafe_code)]
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and changes a setting of glibc's allocator, before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // ollama-herd's env file and FLEET_* settings, before the command line reads HERD_*.
    let fleet = match herd_service::fleet_env::load() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("herd-lite: {e}");
            return ExitCode::from(2);
        }
    };
    let mut args = Args::parse_command_line();
    args.router.fleet_env = fleet.env.clone();
    herd_service::args::init_logging(&args);
    fleet.log();
    if args.threads > 0 && std::env::var_os("SMOL_THREADS").is_none() {
        // Read by smol's global executor when it starts, which is below: nothing runs yet.
        std::env::set_var("SMOL_THREADS", args.threads.to_string());
    }
    if args.demo && !cfg!(feature = "demo") {
        eprintln!(
            "herd-lite: this build has no simulated nodes; build it with `--features demo` \
             (cargo run --release -p herd-smol --features demo -- --demo), or use `herd --demo`"
        );
        return ExitCode::from(2);
    }
    smol::block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let running = match herd_smol::start(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herd-lite: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", running.addr);
    let _ = std::io::stdout().flush();
    #[cfg(feature = "demo")]
    let _demo = if args.demo {
        match demo::start(&running.url()) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("herd-lite: cannot start the demo nodes: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    tracing::info!(addr = %running.addr, "herd-lite is ready");
    let (tx, rx) = smol::channel::bounded::<()>(4);
    let first: Mutex<Option<Instant>> = Mutex::new(None);
    if let Err(e) = ctrlc::set_handler(move || {
        let mut first = first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *first {
            None => {
                *first = Some(Instant::now());
                let _ = tx.send_blocking(());
            }
            // `timeout` and group signals deliver the same SIGTERM twice at once; only a later
            // second signal means "stop now".
            Some(at) if at.elapsed() >= Duration::from_millis(500) => {
                eprintln!("herd-lite: second signal, exiting without waiting for requests in progress");
                std::process::exit(130);
            }
            Some(_) => {}
        }
    }) {
        eprintln!("herd-lite: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    let _ = rx.recv().await;
    let grace = Duration::from_secs(args.drain_secs);
    tracing::info!(?grace, "shutting down: no new connections; letting requests in progress finish");
    let left = running.drain(grace).await;
    if left > 0 {
        tracing::warn!(connections = left, "requests still in progress after the drain period; cutting them");
    }
    ExitCode::SUCCESS
}

#[cfg(feature = "demo")]
mod demo {
    //! The simulated nodes of `--demo`: herd-fake-ollama's servers servers on a tokio runtime of
    //! their own, beside the router.

    /// The running demo fleet; dropping it stops the nodes.
    pub struct Demo {
        _runtime: tokio::runtime::Runtime,
        _fleet: Vec<herd_fake_ollama::FakeHandle>,
    }

    pub fn start(router_url: &str) -> std::io::Result<Demo> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let fleet = runtime.block_on(herd_fake_ollama::demo::start_fleet(router_url))?;
        for (spec, f) in herd_fake_ollama::demo::demo_fleet().iter().zip(&fleet) {
            println!("simulated node {:<12} {}", spec.name, f.url());
        }
        println!("try: curl {router_url}/api/tags, or any Ollama or OpenAI client at {router_url}");
        Ok(Demo { _runtime: runtime, _fleet: fleet })
    }
}
