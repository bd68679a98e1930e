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
    /// An image server with no agent, `KIND=URL` (repeat for several): KIND is sdcpp, a1111,
    /// comfyui, openai or ollama-herd. herd polls its model list.
    #[arg(long = "image-node", env = "HERD_IMAGE_NODES", value_delimiter = ',')]
    pub image_nodes: Vec<String>,
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
    /// Claude clients' key: when set, the Anthropic paths (`/v1/messages` and its
    /// `count_tokens` and probe) need it as `x-api-key` (or Bearer), or an inference or admin
    /// key. When unset, ollama-herd's FLEET_ANTHROPIC_API_KEY applies if
    /// FLEET_ANTHROPIC_REQUIRE_KEY is true.
    #[arg(long, env = "HERD_ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
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
    /// Browser origins allowed to call the router (CORS), comma-separated: `*` for any, or
    /// origins like `http://localhost:3000`, `https://*.example.com` [default: none, CORS off].
    #[arg(long, env = "HERD_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Fetch OpenAI `image_url` parts with an http(s) URL from these hosts (`images.example.com`,
    /// `*.example.com`) or networks (`10.0.0.0/8`), comma-separated. Loopback, link-local and
    /// metadata addresses are never fetched unless a listed network contains them [default: none:
    /// such parts are refused with 400, as Ollama does].
    #[arg(long, env = "HERD_IMAGE_URL_HOSTS")]
    pub image_url_hosts: Option<String>,
    /// Largest remote image fetched, MiB.
    #[arg(long, env = "HERD_IMAGE_URL_MAX_MB", default_value_t = 20)]
    pub image_url_max_mb: u64,
    /// Longest fetch of one remote image, seconds.
    #[arg(long, env = "HERD_IMAGE_URL_TIMEOUT_SECS", default_value_t = 10)]
    pub image_url_timeout_secs: u64,
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
    /// Anthropic clients' model ids → local models, as a JSON object, looked up first:
    /// `{"claude-sonnet-4-5": "qwen3:32b", "default": "qwen3:8b"}` (`default`: when nothing else
    /// resolves). When unset, ollama-herd's FLEET_ANTHROPIC_MODEL_MAP is read.
    #[arg(long, env = "HERD_ANTHROPIC_MODEL_MAP")]
    pub anthropic_model_map: Option<String>,
    /// For a model id the map does not name and no node has, pick the best local model for its
    /// Claude tier (haiku: fast, sonnet: balanced, opus: premium), loaded first [default: true;
    /// when unset, ollama-herd's FLEET_ANTHROPIC_AUTO_ROUTE is read].
    #[arg(long, env = "HERD_ANTHROPIC_AUTO_ROUTE", num_args = 0..=1, default_missing_value = "true",
          value_parser = parse_switch)]
    pub anthropic_auto_route: Option<bool>,
}

/// A yes/no setting as pydantic reads ollama-herd's: `true|1|yes|on|y|t` or
/// `false|0|no|off|n|f`, any case.
fn parse_switch(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "y" | "t" => Ok(true),
        "false" | "0" | "no" | "off" | "n" | "f" => Ok(false),
        _ => Err(format!("{raw:?} is not true or false")),
    }
}

impl RouterArgs {
    /// The CORS policy (`None`: off).
    ///
    /// # Errors
    /// An origin in the list is not one.
    pub fn cors(&self) -> Result<Option<herd_core::api::cors::CorsPolicy>, String> {
        herd_core::api::cors::CorsPolicy::parse(self.cors_origins.as_deref().unwrap_or(""))
            .map_err(|e| format!("--cors-origins: {e}"))
    }

    /// Where remote images may be fetched from (`None`: nowhere).
    ///
    /// # Errors
    /// An entry is neither a host name nor a network.
    pub fn image_urls(&self) -> Result<Option<herd_core::api::image_url::ImageUrlPolicy>, String> {
        herd_core::api::image_url::ImageUrlPolicy::parse(self.image_url_hosts.as_deref().unwrap_or(""))
    }

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
        self.anthropic_settings(&mut config.anthropic, |k| std::env::var(k).ok())?;
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

    /// The Anthropic model map and auto-route: the flags (or their `HERD_*` variables), else
    /// ollama-herd's `FLEET_*` variables as `env` gives them, over the configuration file's.
    ///
    /// # Errors
    ///
    /// A map that is not a JSON object of model names, or a `FLEET_ANTHROPIC_AUTO_ROUTE` that is
    /// not a yes or no.
    pub fn anthropic_settings(
        &self,
        anthropic: &mut herd_core::config::AnthropicConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        let (map, map_source) = match &self.anthropic_model_map {
            Some(m) => (Some(m.clone()), "--anthropic-model-map"),
            None => (env("FLEET_ANTHROPIC_MODEL_MAP"), "FLEET_ANTHROPIC_MODEL_MAP"),
        };
        if let Some(text) = map {
            anthropic.model_map =
                herd_core::config::AnthropicConfig::parse_model_map(&text).map_err(|e| format!("{map_source}: {e}"))?;
        }
        let auto = match self.anthropic_auto_route {
            Some(on) => Some(on),
            None => env("FLEET_ANTHROPIC_AUTO_ROUTE")
                .map(|v| parse_switch(&v).map_err(|e| format!("FLEET_ANTHROPIC_AUTO_ROUTE: {e}")))
                .transpose()?,
        };
        if let Some(on) = auto {
            anthropic.auto_route = on;
        }
        Ok(())
    }

    /// The key the Anthropic paths need: `--anthropic-api-key`, else ollama-herd's
    /// `FLEET_ANTHROPIC_API_KEY` when `FLEET_ANTHROPIC_REQUIRE_KEY` is true (as `env` gives them).
    ///
    /// # Errors
    /// A `FLEET_ANTHROPIC_REQUIRE_KEY` that is not a yes or no, or one that is true with no key.
    pub fn anthropic_key(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
        if let Some(k) = self.anthropic_api_key.as_deref() {
            return Ok(key(k));
        }
        let require = match env("FLEET_ANTHROPIC_REQUIRE_KEY").filter(|v| !v.trim().is_empty()) {
            Some(v) => parse_switch(&v).map_err(|e| format!("FLEET_ANTHROPIC_REQUIRE_KEY: {e}"))?,
            None => false,
        };
        match (require, env("FLEET_ANTHROPIC_API_KEY").as_deref().and_then(key)) {
            (true, Some(k)) => Ok(Some(k)),
            // ollama-herd then checks nothing; herd refuses to start open by mistake.
            (true, None) => Err("FLEET_ANTHROPIC_REQUIRE_KEY is true but FLEET_ANTHROPIC_API_KEY is empty".into()),
            (false, _) => Ok(None),
        }
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

    /// The `--image-node` servers.
    ///
    /// # Errors
    /// A value is not `KIND=URL` with a known kind and a usable address.
    pub fn image_nodes(&self) -> Result<Vec<crate::image_nodes::ImageNode>, String> {
        self.image_nodes.iter().map(|raw| crate::image_nodes::parse_image_node(raw)).collect()
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
            anthropic_key: self.anthropic_key(|k| std::env::var(k).ok()).unwrap_or_default(),
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
            cors: self.cors().ok().flatten(),
            image_urls: self.image_urls().ok().flatten().map(Arc::new),
            image_fetch: crate::image_fetch::FetchLimits {
                max_bytes: (self.image_url_max_mb.max(1) as usize) << 20,
                timeout: Duration::from_secs(self.image_url_timeout_secs.max(1)),
            },
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
        let image_nodes = self.image_nodes()?;
        self.cors()?;
        self.image_urls()?;
        self.anthropic_key(|k| std::env::var(k).ok())?;
        let router = herd_core::router::Router::new(config.clone(), self.seed(&*rt), rt.now())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        let (driver, pulls) = crate::driver::spawn(router, sink, rt.clone());
        let app = Arc::new(self.app(&config, driver, upstream, rt, log, binary));
        crate::start_background(&app, pulls, nodes, image_nodes);
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

    fn settings(argv: &[&str], env: &[(&str, &str)]) -> Result<herd_core::config::AnthropicConfig, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("herd").chain(argv.iter().copied())).map_err(|e| e.to_string())?;
        let mut config = herd_core::config::AnthropicConfig::default();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        cli.router.anthropic_settings(&mut config, |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?;
        Ok(config)
    }

    #[test]
    fn anthropic_key_from_the_flag_or_ollama_herds_pair() {
        let key_of = |flags: &[&str], env: &[(&str, &str)]| {
            let cli = Cli::try_parse_from(std::iter::once("herd").chain(flags.iter().copied())).unwrap();
            cli.router.anthropic_key(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
        };
        let pair = [("FLEET_ANTHROPIC_REQUIRE_KEY", "true"), ("FLEET_ANTHROPIC_API_KEY", " sk-claude ")];
        assert_eq!(key_of(&[], &pair), Ok(Some("sk-claude".into())));
        assert_eq!(key_of(&["--anthropic-api-key", "mine"], &pair), Ok(Some("mine".into())));
        // ollama-herd checks the key only when told to.
        assert_eq!(key_of(&[], &pair[1..]), Ok(None));
        assert_eq!(key_of(&[], &[("FLEET_ANTHROPIC_REQUIRE_KEY", "no"), pair[1]]), Ok(None));
        assert!(key_of(&[], &pair[..1]).unwrap_err().contains("FLEET_ANTHROPIC_API_KEY is empty"));
        assert!(key_of(&[], &[("FLEET_ANTHROPIC_REQUIRE_KEY", "maybe")]).is_err());
    }

    #[test]
    fn anthropic_flags_then_ollama_herds_variables() {
        let c = settings(&["--anthropic-model-map", r#"{"claude-sonnet-4-5":"qwen3:32b"}"#], &[]).unwrap();
        assert_eq!(c.model_map.get("claude-sonnet-4-5").map(String::as_str), Some("qwen3:32b"));
        assert!(c.auto_route, "on by default");
        // ollama-herd's variables when herd's are unset; herd's win when both are.
        let fleet =
            [("FLEET_ANTHROPIC_MODEL_MAP", r#"{"default":"llama3.1:8b"}"#), ("FLEET_ANTHROPIC_AUTO_ROUTE", "False")];
        let c = settings(&[], &fleet).unwrap();
        assert_eq!((c.model_map.get("default").map(String::as_str), c.auto_route), (Some("llama3.1:8b"), false));
        let c = settings(&["--anthropic-model-map", "{}", "--anthropic-auto-route"], &fleet).unwrap();
        assert!(c.model_map.is_empty() && c.auto_route);
        let c = settings(&["--anthropic-auto-route", "off"], &[]).unwrap();
        assert!(!c.auto_route);
        // A bad map or switch stops the router with the source named.
        let e = settings(&["--anthropic-model-map", "[1]"], &[]).unwrap_err();
        assert!(e.starts_with("--anthropic-model-map: must be a JSON object"), "{e}");
        let e = settings(&[], &[("FLEET_ANTHROPIC_MODEL_MAP", "{oops")]).unwrap_err();
        assert!(e.starts_with("FLEET_ANTHROPIC_MODEL_MAP: not JSON"), "{e}");
        assert!(settings(&[], &[("FLEET_ANTHROPIC_AUTO_ROUTE", "maybe")]).is_err());
        assert!(settings(&["--anthropic-auto-route", "maybe"], &[]).is_err());
    }
}
