//! `herd-node`: run it on every machine with Ollama. See `herd-node --help`.

use herd_node::args::Args;
use herd_node::run::{self, Event};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args = Args::from_env_and_args();
    let filter = std::env::var("HERD_LOG").unwrap_or_else(|_| args.log_level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    if args.learn_capacity {
        tracing::info!("--learn-capacity is accepted for ollama-herd compatibility; herd has no capacity learner");
    }
    smol::block_on(async {
        let setup = match run::setup(&args).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("herd-node: {e}");
                return ExitCode::from(2);
            }
        };
        if args.once {
            println!("{}", run::once(setup).await);
            return ExitCode::SUCCESS;
        }
        let (tx, rx) = smol::channel::bounded(256);
        let first_signal: Mutex<Option<Instant>> = Mutex::new(None);
        let sig_tx = tx.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            let mut first = first_signal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match *first {
                None => {
                    *first = Some(Instant::now());
                    let _ = sig_tx.send_blocking(Event::Shutdown);
                }
                // `timeout`, and service managers that signal the whole group, deliver the same
                // SIGTERM twice at once; only a later second signal means "stop now".
                Some(at) if at.elapsed() >= Duration::from_millis(500) => {
                    eprintln!("herd-node: second signal, exiting without waiting for the drain");
                    std::process::exit(130);
                }
                Some(_) => {}
            }
        }) {
            tracing::warn!(error = %e, "cannot install the signal handler; stopping will not drain");
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64 ^ u64::from(std::process::id()));
        match run::run(setup, tx, rx, seed).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herd-node: {e}");
                ExitCode::from(2)
            }
        }
    })
}
