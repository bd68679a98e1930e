//! The agent loop: core's [`Agent`] decides when each router hears from this node; this module
//! performs what it asks (collect a sample, POST the heartbeat, POST the drain) and reports how
//! each call ended. Routers come from the command line or, without one, from mDNS for as long as
//! the agent runs. SIGTERM / SIGINT (Ctrl-C on Windows) sends a drain to every router, then exits.

use crate::args::Args;
use crate::http::{self, Endpoint};
use crate::mdns;
use crate::ollama::OllamaProbe;
use crate::probe::{MachineProbe, MachineSample};
use crate::proxy;
use herd_core::agent::{Agent, AgentCommand, AgentConfig, Discovered, RouterIdx, RouterUrl, SendFailure, SendOutcome};
use herd_core::api::names::{HEARTBEAT_PATH, OLLAMA_PORT};
use herd_core::fleet::heartbeat::{Heartbeat, Ollama};
use herd_core::time::Instant;
use smol::channel::{Receiver, Sender};
use smol::lock::Mutex;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A metadata map goes to each router at least this often even when unchanged, so a router that
/// restarted (and lost its copy) gets it back (ollama-herd's `META_REFRESH_S`).
pub const META_REFRESH: Duration = Duration::from_secs(60);

/// How long to wait before trying again when mDNS cannot start (no usable interface yet).
pub const MDNS_RETRY: Duration = Duration::from_secs(30);

/// Finds routers over mDNS for as long as the agent runs, and reports each as [`Event::Found`].
/// ollama-herd looked once for 30 s and then died (reference §1.3); this keeps browsing, starts
/// again if mDNS cannot start yet, and queries afresh when asked (`rescan`).
async fn discover(service: String, events: Sender<Event>, rescan: Receiver<()>) {
    tracing::info!(service = %service, "no --router-url: looking for routers over mDNS, for as long as the agent runs");
    loop {
        let browser = match mdns::Browser::start(&service) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?MDNS_RETRY, "mDNS cannot start; give --router-url, or wait");
                async_io::Timer::after(MDNS_RETRY).await;
                continue;
            }
        };
        loop {
            let next = futures_lite::future::or(async { browser.next().await.map(Some) }, async {
                if rescan.recv().await.is_err() {
                    futures_lite::future::pending::<()>().await;
                }
                Some(None)
            })
            .await;
            match next {
                None => break,
                Some(None) => {
                    tracing::info!("a router found over mDNS stopped answering; asking mDNS again");
                    if let Err(e) = browser.rescan() {
                        tracing::warn!(error = %e, "mDNS rescan failed");
                    }
                }
                Some(Some(mdns::Discovery::Found { instance, urls, .. })) => {
                    if let Some(url) = urls.into_iter().next() {
                        if events.send(Event::Found { instance, url }).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Some(mdns::Discovery::Lost { instance })) => {
                    // Kept: a router that restarts says goodbye first, and backoff is cheap.
                    tracing::info!(%instance, "router withdrew its mDNS advertisement");
                }
            }
        }
        tracing::warn!("mDNS browsing stopped; starting it again");
        async_io::Timer::after(Duration::from_secs(1)).await;
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bad `--ollama-host`.
    #[error("--ollama-host: {0}")]
    OllamaHost(String),
    /// A bad `--router-url`.
    #[error("--router-url {0:?}: {1}")]
    RouterUrl(String, String),
    /// A bad timing.
    #[error("--heartbeat-secs must be a positive number of seconds (at least 0.01)")]
    Interval,
    /// The proxy port could not be bound.
    #[error("--proxy-port: cannot listen on {0}: {1}")]
    Proxy(SocketAddr, std::io::Error),
    /// Core refused the configuration.
    #[error("{0}")]
    Agent(String),
}

/// Something that happened outside the loop.
#[derive(Debug)]
pub enum Event {
    /// A heartbeat POST ended.
    Sent {
        /// To which router.
        router: RouterIdx,
        /// Which send.
        seq: u64,
        /// How.
        outcome: SendOutcome,
    },
    /// A drain POST ended.
    Drained {
        /// To which router.
        router: RouterIdx,
        /// How.
        outcome: SendOutcome,
    },
    /// mDNS found a router (or found it at a new address).
    Found {
        /// The mDNS instance.
        instance: String,
        /// Its URL.
        url: String,
    },
    /// SIGTERM, SIGINT or Ctrl-C.
    Shutdown,
}

/// Monotonic time as core counts it: microseconds since the agent started.
#[derive(Clone, Copy, Debug)]
struct Clock(std::time::Instant);

impl Clock {
    fn now(self) -> Instant {
        Instant::from_micros(u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// The most recent sample and what is needed to turn it into a heartbeat.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The machine.
    pub machine: MachineSample,
    /// Its Ollama (metadata left out).
    pub ollama: Ollama,
    /// Version of the metadata map in `meta`.
    pub meta_version: u64,
    /// The metadata map, shared.
    pub meta: Arc<BTreeMap<herd_core::ids::ModelName, herd_core::fleet::heartbeat::ModelMeta>>,
}

/// Takes samples, reusing one younger than `max_age`: routers on the same grid share it.
pub struct Collector {
    /// Shared with the blocking pool: a sample cancelled mid-way (its heartbeat timed out, its
    /// router was replaced) must not lose the probe.
    machine: Arc<std::sync::Mutex<MachineProbe>>,
    ollama: OllamaProbe,
    last: Option<(std::time::Instant, Sample)>,
    meta: (u64, Arc<BTreeMap<herd_core::ids::ModelName, herd_core::fleet::heartbeat::ModelMeta>>),
    ollama_up: Option<bool>,
}

impl Collector {
    /// A collector over these probes.
    pub fn new(machine: MachineProbe, ollama: OllamaProbe) -> Collector {
        Collector {
            machine: Arc::new(std::sync::Mutex::new(machine)),
            ollama,
            last: None,
            meta: (0, Arc::default()),
            ollama_up: None,
        }
    }

    /// A sample no older than `max_age`.
    pub async fn sample(&mut self, max_age: Duration) -> Sample {
        if let Some((at, s)) = &self.last {
            if at.elapsed() < max_age {
                return s.clone();
            }
        }
        let probe = self.machine.clone();
        // sysinfo and NVML calls block; they run on smol's blocking pool, never on the loop
        // (ollama-herd ran them on its only event loop, §8.1 item 1).
        let machine_task =
            smol::unblock(move || probe.lock().unwrap_or_else(std::sync::PoisonError::into_inner).sample());
        let (ollama, machine) = futures_lite::future::zip(self.ollama.sample(), machine_task).await;
        let up = ollama.reachable != Some(false);
        if self.ollama_up != Some(up) {
            if up {
                tracing::info!(ollama = %self.ollama.endpoint().as_str(), version = %ollama.version, "Ollama is up");
            } else {
                tracing::warn!(ollama = %self.ollama.endpoint().as_str(), "Ollama is not answering; reporting it as down");
            }
            self.ollama_up = Some(up);
        }
        if self.ollama.meta.version != self.meta.0 {
            self.meta = (self.ollama.meta.version, Arc::new(self.ollama.meta.map.clone()));
        }
        let sample = Sample { machine, ollama, meta_version: self.meta.0, meta: self.meta.1.clone() };
        self.last = Some((std::time::Instant::now(), sample.clone()));
        sample
    }
}

/// What every heartbeat carries besides the sample.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Node id.
    pub node_id: String,
    /// The Ollama URL routers should use.
    pub ollama_host: String,
    /// This machine's LAN address.
    pub lan_ip: String,
    /// Fleet key.
    pub fleet_key: Option<String>,
    /// This machine's identity, sent with the drain (a router refuses a drain without it for a
    /// node that registered with it).
    pub machine_id: Option<String>,
}

/// The heartbeat for one router: ollama-herd's schema (so its router accepts it) plus herd's
/// fields (per-GPU VRAM, machine id, Ollama reachability, fleet key).
pub fn heartbeat(id: &Identity, s: &Sample, failures: (u32, u64), include_meta: bool, timestamp: f64) -> Heartbeat {
    let mut ollama = s.ollama.clone();
    if include_meta && s.meta_version > 0 {
        ollama.models_available_meta = Some((*s.meta).clone());
    }
    let m = &s.machine;
    Heartbeat {
        node_id: id.node_id.clone(),
        arch: m.arch.clone(),
        timestamp,
        cpu: m.cpu.clone(),
        memory: m.memory.clone(),
        thermal: Some(m.thermal.clone()),
        disk: Some(m.disk.clone()),
        ollama,
        ollama_host: id.ollama_host.clone(),
        lan_ip: id.lan_ip.clone(),
        draining: false,
        capacity: None,
        agent_version: format!("herd-node/{}", env!("CARGO_PKG_VERSION")),
        connection_failures: u64::from(failures.0),
        connection_failures_total: failures.1,
        chip: m.chip.clone(),
        memory_bandwidth_gbps: m.memory_bandwidth_gbps,
        gpus: m.gpus.clone(),
        machine_id: m.machine_id.clone(),
        fleet_key: id.fleet_key.clone(),
        // Image servers are not probed by the agent yet (issue 13): none reported.
        image: None,
        image_port: None,
        image_backends: Vec::new(),
    }
}

/// This machine's LAN address: the source address of a route to a private address. A UDP
/// `connect` sends nothing; it only asks the kernel which interface it would use.
pub fn lan_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:1").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The agent's timings for a heartbeat interval. Backoff is capped at the interval, so a router
/// that restarts hears from the node within one period of coming back.
pub fn agent_config(interval: Duration) -> AgentConfig {
    AgentConfig {
        interval,
        backoff_base: (interval / 5).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        backoff_max: interval,
        send_timeout: (interval * 4 / 5).max(Duration::from_millis(500)),
        drain_timeout: Duration::from_secs(2),
        ..AgentConfig::default()
    }
}

struct Shared {
    identity: Identity,
    collector: Mutex<Collector>,
    max_age: Duration,
    /// Per router: the metadata version it last accepted, and when.
    meta_sent: std::sync::Mutex<BTreeMap<RouterIdx, (u64, std::time::Instant)>>,
    events: Sender<Event>,
}

impl Shared {
    fn wants_meta(&self, router: RouterIdx, version: u64) -> bool {
        let sent = self.meta_sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        version > 0 && sent.get(&router).is_none_or(|(v, at)| *v != version || at.elapsed() >= META_REFRESH)
    }

    fn meta_delivered(&self, router: RouterIdx, version: u64) {
        let mut sent = self.meta_sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.insert(router, (version, std::time::Instant::now()));
    }
}

fn failure(e: &http::HttpError) -> SendFailure {
    match e {
        http::HttpError::Connect(_) => SendFailure::Connect,
        http::HttpError::Timeout => SendFailure::Timeout,
        http::HttpError::Protocol(_) => SendFailure::Protocol,
    }
}

/// Logs the router's reply commands. herd-node does not act on them: the router coordinates, it
/// does not control machines (ollama-herd's one exception, `restart_ollama`, killed only an Ollama
/// it had spawned itself and set a variable Ollama does not read; reference §1.4).
fn log_commands(url: &str, body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    for c in v.get("commands").and_then(|c| c.as_array()).into_iter().flatten() {
        let kind = c.get("type").and_then(|t| t.as_str()).unwrap_or("?");
        tracing::info!(
            router = url,
            command = kind,
            "router sent a command; herd-node does not act on router commands"
        );
    }
}

async fn send_heartbeat(
    shared: Arc<Shared>,
    router: RouterIdx,
    url: RouterUrl,
    seq: u64,
    failures: (u32, u64),
    timeout: Duration,
) {
    let sample = shared.collector.lock().await.sample(shared.max_age).await;
    let include_meta = shared.wants_meta(router, sample.meta_version);
    let hb = heartbeat(&shared.identity, &sample, failures, include_meta, unix_time());
    let body = serde_json::to_vec(&hb).unwrap_or_default();
    let outcome = match http::call(url.base(), "POST", HEARTBEAT_PATH, &[], Some(&body), timeout).await {
        Ok(r) if r.ok() => {
            if include_meta {
                shared.meta_delivered(router, sample.meta_version);
            }
            log_commands(url.as_str(), &r.body);
            SendOutcome::Delivered
        }
        Ok(r) => {
            let text = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned();
            tracing::warn!(router = url.as_str(), status = r.status, body = %text, "router refused the heartbeat");
            SendOutcome::Failed(SendFailure::Status(r.status))
        }
        Err(e) => {
            tracing::debug!(router = url.as_str(), error = %e, "heartbeat failed");
            SendOutcome::Failed(failure(&e))
        }
    };
    let _ = shared.events.send(Event::Sent { router, seq, outcome }).await;
}

async fn send_drain(shared: Arc<Shared>, router: RouterIdx, url: RouterUrl, timeout: Duration) {
    let mut body = serde_json::json!({ "node_id": shared.identity.node_id, "draining": true });
    if let Some(k) = &shared.identity.fleet_key {
        body["fleet_key"] = k.clone().into();
    }
    if let Some(m) = &shared.identity.machine_id {
        body["machine_id"] = m.clone().into();
    }
    let body = body.to_string();
    let outcome = match http::call(url.base(), "POST", HEARTBEAT_PATH, &[], Some(body.as_bytes()), timeout).await {
        Ok(r) if r.ok() => SendOutcome::Delivered,
        Ok(r) => SendOutcome::Failed(SendFailure::Status(r.status)),
        Err(e) => SendOutcome::Failed(failure(&e)),
    };
    match outcome {
        SendOutcome::Delivered => tracing::info!(router = url.as_str(), "drained: the router has taken this node out"),
        SendOutcome::Failed(f) => tracing::warn!(router = url.as_str(), failure = ?f, "drain message not delivered"),
    }
    let _ = shared.events.send(Event::Drained { router, outcome }).await;
}

/// Everything the loop needs, resolved from the command line.
pub struct Setup {
    interval: Duration,
    routers: Vec<RouterUrl>,
    ollama: Endpoint,
    proxy: Option<(async_net::TcpListener, proxy::ProxyConfig)>,
    identity: Identity,
    models_dir: std::path::PathBuf,
    mdns_service: Option<String>,
}

/// Checks the command line and binds the proxy.
///
/// # Errors
/// [`StartError`] for anything that makes the agent useless.
pub async fn setup(args: &Args) -> Result<Setup, StartError> {
    let interval = Duration::try_from_secs_f64(args.heartbeat_secs)
        .ok()
        .filter(|d| *d >= Duration::from_millis(10))
        .ok_or(StartError::Interval)?;
    let ollama = http::endpoint(&args.ollama_host, OLLAMA_PORT).map_err(StartError::OllamaHost)?;
    let mut routers = Vec::new();
    for raw in args.router_url.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let url = RouterUrl::new(raw).map_err(|e| StartError::RouterUrl(raw.to_string(), e.to_string()))?;
        if url.base().is_https() {
            return Err(StartError::RouterUrl(raw.to_string(), "herd-node speaks plain http:// on the LAN".into()));
        }
        routers.push(url);
    }
    let lan = lan_ip();
    let mut ollama_host = ollama.to_string();
    let mut proxy = None;
    if let Some(port) = args.proxy_port {
        let addr = SocketAddr::new(args.proxy_bind, port);
        let listener = proxy::bind(addr).await.map_err(|e| StartError::Proxy(addr, e))?;
        let bound = listener.local_addr().map_err(|e| StartError::Proxy(addr, e))?;
        let host = if args.proxy_bind.is_unspecified() {
            lan.map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string())
        } else {
            args.proxy_bind.to_string()
        };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        ollama_host = format!("http://{host}:{}", bound.port());
        let fleet_key = args.fleet_key.clone().filter(|k| !k.is_empty());
        if fleet_key.is_none() {
            tracing::warn!(%bound, "proxy is open to anyone who can reach it: set --fleet-key to require the fleet key");
        }
        tracing::info!(%bound, advertised = %ollama_host, ollama = %ollama, "proxying Ollama for the routers");
        proxy = Some((listener, proxy::ProxyConfig { upstream: ollama.authority().to_string(), fleet_key }));
    }
    let identity = Identity {
        node_id: args.node_id(),
        ollama_host,
        lan_ip: lan.map(|ip| ip.to_string()).unwrap_or_default(),
        fleet_key: args.fleet_key.clone().filter(|k| !k.is_empty()),
        machine_id: crate::probe::machine_id(),
    };
    let mdns_service = routers.is_empty().then(|| args.mdns_service.clone());
    Ok(Setup { interval, routers, ollama, proxy, identity, models_dir: args.models_dir(), mdns_service })
}

/// `--once`: one sample, printed as the heartbeat JSON, nothing sent.
pub async fn once(setup: Setup) -> String {
    let models_dir = setup.models_dir.clone();
    let machine = smol::unblock(move || MachineProbe::new(&models_dir)).await;
    // CPU utilisation is measured between two refreshes; sysinfo needs them at least
    // `MINIMUM_CPU_UPDATE_INTERVAL` apart for a meaningful figure (a heartbeat loop has 5 s).
    async_io::Timer::after(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(250))).await;
    let mut collector = Collector::new(machine, OllamaProbe::new(setup.ollama.clone()));
    let sample = collector.sample(Duration::ZERO).await;
    let hb = heartbeat(&setup.identity, &sample, (0, 0), true, unix_time());
    serde_json::to_string_pretty(&hb).unwrap_or_default()
}

/// Runs the agent until a shutdown event has drained every router.
///
/// # Errors
/// [`StartError::Agent`] when core refuses the configuration.
pub async fn run(setup: Setup, events: Sender<Event>, inbox: Receiver<Event>, seed: u64) -> Result<(), StartError> {
    let clock = Clock(std::time::Instant::now());
    let config = agent_config(setup.interval);
    let send_timeout = config.send_timeout;
    let mut agent =
        Agent::new(config, setup.routers.clone(), seed, clock.now()).map_err(|e| StartError::Agent(e.to_string()))?;
    let models_dir = setup.models_dir.clone();
    let machine = smol::unblock(move || MachineProbe::new(&models_dir)).await;
    let shared = Arc::new(Shared {
        identity: setup.identity.clone(),
        // Ollama's probes get at most 40 % of the send budget, so a hung Ollama still leaves
        // time to tell the router it is down.
        collector: Mutex::new(Collector::new(
            machine,
            OllamaProbe::new(setup.ollama.clone()).with_timeout(send_timeout * 2 / 5),
        )),
        max_age: setup.interval / 2,
        meta_sent: std::sync::Mutex::new(BTreeMap::new()),
        events: events.clone(),
    });
    let _proxy = setup
        .proxy
        .map(|(listener, config)| smol::spawn(proxy::serve(listener, config, Arc::new(proxy::ProxyStats::default()))));
    let (rescan_tx, rescan_rx) = smol::channel::bounded::<()>(1);
    let _discovery =
        setup.mdns_service.clone().map(|service| smol::spawn(discover(service, events.clone(), rescan_rx)));
    tracing::info!(
        node = %setup.identity.node_id,
        ollama = %setup.ollama,
        routers = ?setup.routers.iter().map(RouterUrl::as_str).collect::<Vec<_>>(),
        every = ?setup.interval,
        "herd-node started"
    );
    let mut in_flight: BTreeMap<RouterIdx, smol::Task<()>> = BTreeMap::new();
    let mut delivered_once: BTreeMap<RouterIdx, bool> = BTreeMap::new();
    loop {
        while let Some(cmd) = agent.poll_command() {
            match cmd {
                AgentCommand::SendHeartbeat {
                    router,
                    url,
                    seq,
                    connection_failures,
                    connection_failures_total,
                    timeout,
                } => {
                    let task = smol::spawn(send_heartbeat(
                        shared.clone(),
                        router,
                        url,
                        seq,
                        (connection_failures, connection_failures_total),
                        timeout.min(send_timeout),
                    ));
                    in_flight.insert(router, task);
                }
                AgentCommand::SendDrain { router, url, settle, timeout } => {
                    // Core's timing: a heartbeat already on the wire gets `settle` to land (its
                    // answer means the router applied it), then is cancelled, so it cannot mark
                    // the node online again after the drain.
                    let pending = in_flight.remove(&router);
                    let shared = shared.clone();
                    smol::spawn(async move {
                        if let (Some(hb), Some(settle)) = (pending, settle) {
                            let landed = futures_lite::future::or(
                                async {
                                    hb.await;
                                    true
                                },
                                async {
                                    async_io::Timer::after(settle).await;
                                    false
                                },
                            );
                            if !landed.await {
                                tracing::debug!(router = url.as_str(), "heartbeat in flight cancelled for the drain");
                            }
                        }
                        send_drain(shared, router, url, timeout).await;
                    })
                    .detach();
                }
                AgentCommand::Rescan => {
                    tracing::info!("a router found over mDNS stopped answering; asking mDNS again");
                    let _ = rescan_tx.try_send(());
                }
                AgentCommand::Exit => {
                    tracing::info!("herd-node stopped");
                    return Ok(());
                }
            }
        }
        let now = clock.now();
        let wait = agent.poll_timeout().map(|t| t.saturating_since(now));
        let event = match wait {
            Some(d) => {
                futures_lite::future::or(async { inbox.recv().await.ok() }, async {
                    async_io::Timer::after(d).await;
                    None
                })
                .await
            }
            None => inbox.recv().await.ok(),
        };
        let now = clock.now();
        match event {
            None => {}
            Some(Event::Sent { router, seq, outcome }) => {
                in_flight.remove(&router);
                let first = !delivered_once.get(&router).copied().unwrap_or(false);
                if let (SendOutcome::Delivered, Some(status)) = (outcome, agent.router(router)) {
                    if first || status.connection_failures > 0 {
                        tracing::info!(
                            router = status.url.as_str(),
                            after_failures = status.connection_failures,
                            "registered with the router"
                        );
                    }
                    delivered_once.insert(router, true);
                } else if let (SendOutcome::Failed(f), Some(status)) = (outcome, agent.router(router)) {
                    if status.connection_failures == 0 {
                        tracing::warn!(router = status.url.as_str(), failure = ?f, "router not reachable; retrying with backoff");
                    }
                }
                agent.handle_send_result(now, router, seq, outcome);
            }
            Some(Event::Drained { router, outcome }) => agent.handle_drain_result(now, router, outcome),
            Some(Event::Found { instance, url }) => {
                let Ok(url) = RouterUrl::new(&url) else { continue };
                match agent.handle_discovered(now, &instance, url.clone()) {
                    Ok(Discovered::Known(_)) => {}
                    Ok(Discovered::New(_)) => {
                        tracing::info!(%instance, router = url.as_str(), "found a router over mDNS");
                    }
                    Ok(Discovered::Moved { from, .. }) => {
                        // The router moved (a DHCP change): core follows it.
                        in_flight.remove(&from);
                        tracing::info!(%instance, router = url.as_str(), moved = true, "found a router over mDNS");
                    }
                    Err(e) => tracing::warn!(router = url.as_str(), error = %e, "cannot track this router"),
                }
            }
            Some(Event::Shutdown) => {
                tracing::info!("shutting down: telling every router this node is draining");
                agent.handle_shutdown(now);
            }
        }
        agent.handle_timeout(clock.now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_never_outlasts_a_heartbeat_period() {
        let c = agent_config(Duration::from_secs(5));
        assert_eq!(
            (c.backoff_base, c.backoff_max, c.send_timeout),
            (Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(4))
        );
        c.validate().unwrap();
        let c = agent_config(Duration::from_millis(200));
        assert_eq!(c.backoff_max, Duration::from_millis(200));
        c.validate().unwrap();
    }
}
