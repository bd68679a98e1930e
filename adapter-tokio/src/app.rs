//! The router's settings (command line and `HERD_*` environment). The state request tasks share
//! ([`App`]) is herd-service's.

use clap::Parser;
use herd_service::args::RouterArgs;
use std::path::PathBuf;

/// `herd`: one endpoint for every machine that runs Ollama.
#[derive(Parser, Debug, Clone)]
#[command(name = "herd", version, about = "One endpoint for every machine that runs Ollama")]
pub struct Args {
    /// The options both routers share.
    #[command(flatten)]
    pub router: RouterArgs,
    /// Where herd keeps its data (the trace database). Default: ~/.herd.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep traces this many days.
    #[arg(long, env = "HERD_TRACE_DAYS", default_value_t = 30)]
    pub trace_days: u64,
    /// Keep at most this many traces.
    #[arg(long, env = "HERD_TRACE_ROWS", default_value_t = 1_000_000)]
    pub trace_rows: u64,
}

impl std::ops::Deref for Args {
    type Target = RouterArgs;
    fn deref(&self) -> &RouterArgs {
        &self.router
    }
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
