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
    /// Where herd keeps its data (the trace database). Default: ~/.herd; with --demo, a
    /// temporary folder removed at exit.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep traces this many days.
    #[arg(long, env = "HERD_TRACE_DAYS", default_value_t = 30)]
    pub trace_days: u64,
    /// Keep at most this many traces.
    #[arg(long, env = "HERD_TRACE_ROWS", default_value_t = 1_000_000)]
    pub trace_rows: u64,
    /// The mDNS service type to advertise (ollama-herd's FLEET_MDNS_SERVICE_TYPE; agents browse
    /// for the same one: herd-node --mdns-service).
    #[arg(long, env = "HERD_MDNS_SERVICE", default_value = crate::mdns::SERVICE_TYPE)]
    pub mdns_service: String,
    /// The mDNS instance name to advertise (ollama-herd's FLEET_MDNS_SERVICE_NAME).
    #[arg(long, env = "HERD_MDNS_NAME", default_value = crate::mdns::INSTANCE_NAME)]
    pub mdns_name: String,
}

impl std::ops::Deref for Args {
    type Target = RouterArgs;
    fn deref(&self) -> &RouterArgs {
        &self.router
    }
}

impl Args {
    /// The data directory: `--data-dir`, else `~/.herd`, else (a `--demo`, whose traces are a
    /// playground's) a temporary folder of this process.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if self.demo {
            return self.demo_data_dir();
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".herd")
    }

    /// The temporary folder a `--demo` without `--data-dir` keeps its traces in.
    pub fn demo_data_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("herd-demo-{}", std::process::id()))
    }

    /// What to advertise over mDNS.
    pub fn mdns_options(&self) -> crate::mdns::AdvertiseOptions {
        crate::mdns::AdvertiseOptions {
            instance: self.mdns_name.clone(),
            service_type: self.mdns_service.clone(),
            ..crate::mdns::AdvertiseOptions::default()
        }
    }

    /// Whether the data directory is the demo's temporary one (removed at exit).
    pub fn data_dir_is_temporary(&self) -> bool {
        self.demo && self.data_dir.is_none()
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
        assert_eq!(a.host().to_string(), "0.0.0.0");
        assert!(!a.data_dir_is_temporary());
        let a =
            Args::try_parse_from(["herd", "--node", "http://a:11434", "--node", "http://b:11434", "--demo"]).unwrap();
        assert_eq!(a.nodes.len(), 2);
        assert!(a.demo);
        assert_eq!(a.host().to_string(), "127.0.0.1", "a demo listens on loopback");
        assert!(a.data_dir_is_temporary() && a.data_dir() == a.demo_data_dir());
        let logs = Args::try_parse_from(["herd", "--log-level", "debug", "--log-format", "json"]).unwrap();
        assert_eq!(logs.log_level.as_deref(), Some("debug"));
        assert_eq!(logs.log_format, herd_service::args::LogFormat::Json);
        assert!(Args::try_parse_from(["herd", "--log-format", "xml"]).is_err());
        let shared = Args::try_parse_from(["herd", "--demo", "--host", "0.0.0.0", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(shared.host().to_string(), "0.0.0.0", "unless told otherwise");
        assert!(!shared.data_dir_is_temporary());
        let mdns = a.mdns_options();
        assert_eq!(
            (mdns.service_type.as_str(), mdns.instance.as_str()),
            (crate::mdns::SERVICE_TYPE, "Fleet Manager Router")
        );
        let own = Args::try_parse_from(["herd", "--mdns-service", "_lab._tcp.local.", "--mdns-name", "Lab"]).unwrap();
        assert_eq!(
            (own.mdns_options().service_type.as_str(), own.mdns_options().instance.as_str()),
            ("_lab._tcp.local.", "Lab")
        );
    }
}
