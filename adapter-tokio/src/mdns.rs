//! mDNS advertisement of the router, so that agents find it without `--router-url`.
//!
//! `herd` advertises what ollama-herd's router advertises: an instance named
//! `Fleet Manager Router` of service type `_fleet-manager._tcp.local.`, with the router's port in
//! the SRV record. ollama-herd agents (which browse for that exact service type and take the first
//! instance) and `herd-node` (which browses continuously) both find it. Unlike ollama-herd, the TXT
//! record carries real data: the crate version, the API level, an id, whether TLS is used and the
//! heartbeat path.
//!
//! Only a router that listens on a non-loopback address advertises ([`advertise`] returns
//! `Ok(None)` for loopback). On a wildcard address (`0.0.0.0` or `::`) mdns-sd publishes the
//! addresses of every interface itself and follows them as they change (DHCP, Wi-Fi roaming);
//! for `0.0.0.0` only IPv4 addresses are published, since nothing listens on IPv6. On a specific
//! address only that address is published, on its interface.
//!
//! Name conflicts are settled by mdns-sd's probing (RFC 6762 §9): if another responder already
//! holds `Fleet Manager Router` (an ollama-herd router, or a second `herd`), ours becomes
//! `Fleet Manager Router (2)`, and the change is logged.

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The service type ollama-herd's router advertises and its agents browse for.
pub use herd_core::api::names::MDNS_SERVICE_TYPE as SERVICE_TYPE;
/// ollama-herd's instance name, so that its agents take us for their router.
pub const INSTANCE_NAME: &str = "Fleet Manager Router";
/// The API level in the TXT record: what a `herd-node` may expect of this router.
pub const API_LEVEL: &str = "1";
/// Where agents send heartbeats (the TXT record's `path`).
pub const HEARTBEAT_PATH: &str = "/heartbeat";

/// How long [`Advertiser::shutdown`] waits for each answer of the mDNS daemon.
const DAEMON_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// mdns-sd repeats an unregistration's goodbye packets 120 ms after the first; shutting the
/// daemon down sooner would drop the repeat.
const GOODBYE_REPEAT_WAIT: Duration = Duration::from_millis(150);

/// What to advertise besides the listen address. The defaults are ollama-herd's names and this
/// machine's host name.
#[derive(Debug, Clone)]
pub struct AdvertiseOptions {
    /// The instance name (default [`INSTANCE_NAME`]).
    pub instance: String,
    /// The service type (default [`SERVICE_TYPE`]).
    pub service_type: String,
    /// The host label published as `<label>.local.` (default: this machine's host name).
    pub hostname: Option<String>,
    /// The router's id for the TXT record (default: the host label).
    pub router_id: Option<String>,
}

impl Default for AdvertiseOptions {
    fn default() -> Self {
        AdvertiseOptions {
            instance: INSTANCE_NAME.to_string(),
            service_type: SERVICE_TYPE.to_string(),
            hostname: None,
            router_id: None,
        }
    }
}

/// Why the router could not be advertised.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// mdns-sd refused the record or could not start its daemon.
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// A running advertisement. [`Advertiser::shutdown`], or dropping it, unregisters the service
/// (goodbye packets, so browsers forget the router at once instead of after the record's TTL) and
/// stops the mDNS daemon.
pub struct Advertiser {
    daemon: Option<ServiceDaemon>,
    fullname: String,
    port: u16,
}

impl Advertiser {
    /// The advertised instance's full name as registered (before any rename on conflict).
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// The advertised port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Unregisters the service and stops the daemon. Blocks for about 150 ms (the repeated
    /// goodbye), at most a few seconds if the daemon does not answer.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(daemon) = self.daemon.take() else { return };
        match daemon.unregister(&self.fullname) {
            Ok(status) => {
                if status.recv_timeout(DAEMON_REPLY_TIMEOUT).is_ok() {
                    std::thread::sleep(GOODBYE_REPEAT_WAIT);
                }
            }
            Err(e) => tracing::debug!(error = %e, "mDNS unregister"),
        }
        match daemon.shutdown() {
            Ok(status) => {
                let _ = status.recv_timeout(DAEMON_REPLY_TIMEOUT);
            }
            Err(e) => tracing::debug!(error = %e, "mDNS daemon shutdown"),
        }
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser").field("fullname", &self.fullname).field("port", &self.port).finish()
    }
}

/// Advertises a router listening on `listen`. `Ok(None)` for a loopback address: nobody else could
/// reach it, and no mDNS daemon is started.
pub fn advertise(listen: SocketAddr, opts: &AdvertiseOptions) -> Result<Option<Advertiser>, MdnsError> {
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    let hostname = opts.hostname.as_deref().map(host_label).unwrap_or_else(machine_host_label);
    let info = service_info(listen, opts, &hostname)?;
    let fullname = info.get_fullname().to_string();
    let daemon = ServiceDaemon::new()?;
    // Name changes and errors are rare and worth a log line. The thread ends when the daemon shuts
    // down (its channel disconnects).
    if let Ok(events) = daemon.monitor() {
        let _ = std::thread::Builder::new().name("herd-mdns-monitor".into()).spawn(move || {
            // mdns-sd reports a rename once per record and interface; say it once.
            let mut renamed = std::collections::HashSet::new();
            while let Ok(event) = events.recv() {
                match event {
                    DaemonEvent::NameChange(c) if renamed.insert((c.original.clone(), c.new_name.clone())) => {
                        tracing::info!(from = %c.original, to = %c.new_name, "mDNS name taken by another host; renamed")
                    }
                    DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS advertisement"),
                    _ => {}
                }
            }
        });
    }
    if let Err(e) = daemon.register(info) {
        let _ = daemon.shutdown();
        return Err(e.into());
    }
    Ok(Some(Advertiser { daemon: Some(daemon), fullname, port: listen.port() }))
}

/// The service record for a router on `listen` (not loopback-checked; no network involved).
pub fn service_info(listen: SocketAddr, opts: &AdvertiseOptions, host_label: &str) -> Result<ServiceInfo, MdnsError> {
    let txt = txt_properties(opts, host_label);
    let host = format!("{host_label}.local.");
    let ip = listen.ip();
    let info = if ip.is_unspecified() {
        let mut info = ServiceInfo::new(&opts.service_type, &opts.instance, &host, (), listen.port(), &txt[..])?
            .enable_addr_auto();
        if ip.is_ipv4() {
            // 0.0.0.0 accepts IPv4 only: publishing IPv6 addresses would point agents at nothing.
            info.set_interfaces(vec![IfKind::IPv4]);
        }
        info
    } else {
        let mut info = ServiceInfo::new(&opts.service_type, &opts.instance, &host, ip, listen.port(), &txt[..])?;
        info.set_interfaces(vec![IfKind::Addr(ip)]);
        info
    };
    Ok(info)
}

/// The TXT record: `version`, `api`, `id`, `tls` and `path`. ollama-herd agents ignore it;
/// `herd-node` reads it.
pub fn txt_properties(opts: &AdvertiseOptions, host_label: &str) -> Vec<(String, String)> {
    let id = opts.router_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| host_label.to_string());
    vec![
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ("api".into(), API_LEVEL.into()),
        ("id".into(), truncate_utf8(&id, 200).to_string()),
        ("tls".into(), "0".into()),
        ("path".into(), HEARTBEAT_PATH.into()),
    ]
}

/// A DNS label from a host name: its first dot-separated part, with anything but ASCII letters,
/// digits and `-` replaced by `-`, at most 63 bytes; `herd` if nothing is left.
pub fn host_label(raw: &str) -> String {
    let first = raw.trim().split('.').next().unwrap_or("");
    let mut label: String =
        first.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(63).collect();
    label = label.trim_matches('-').to_string();
    if label.is_empty() {
        "herd".to_string()
    } else {
        label
    }
}

/// This machine's host name as a DNS label (see [`host_label`]).
pub fn machine_host_label() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let raw = from_proc.filter(|s| !s.trim().is_empty()).or_else(|| {
        std::process::Command::new("hostname")
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    host_label(raw.as_deref().unwrap_or(""))
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How [`advertise`] describes what it publishes, for the log line.
pub fn describe(listen: SocketAddr) -> String {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "every interface's IPv4 addresses".to_string(),
        ip if ip.is_unspecified() => "every interface's addresses".to_string(),
        ip => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_not_advertised_and_starts_no_daemon() {
        let opts = AdvertiseOptions::default();
        assert!(advertise(addr("127.0.0.1:11435"), &opts).unwrap().is_none());
        assert!(advertise(addr("127.0.0.9:0"), &opts).unwrap().is_none());
        assert!(advertise(addr("[::1]:11435"), &opts).unwrap().is_none());
    }

    #[test]
    fn record_matches_ollama_herd_and_carries_real_data() {
        let opts = AdvertiseOptions { router_id: Some("r1".into()), ..AdvertiseOptions::default() };
        let info = service_info(addr("0.0.0.0:11435"), &opts, "gpu-box").unwrap();
        assert_eq!(info.get_type(), "_fleet-manager._tcp.local.");
        assert_eq!(info.get_fullname(), "Fleet Manager Router._fleet-manager._tcp.local.");
        assert_eq!(info.get_hostname(), "gpu-box.local.");
        assert_eq!(info.get_port(), 11435);
        assert!(info.is_addr_auto());
        assert!(info.get_addresses().is_empty(), "filled in by the daemon from the interfaces");
        let txt: HashMap<String, String> = info.get_properties().clone().into_property_map_str();
        assert_eq!(txt["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(txt["api"], "1");
        assert_eq!(txt["id"], "r1");
        assert_eq!(txt["tls"], "0");
        assert_eq!(txt["path"], "/heartbeat");
    }

    #[test]
    fn specific_address_is_published_as_is() {
        let info = service_info(addr("192.168.1.20:8080"), &AdvertiseOptions::default(), "h").unwrap();
        assert!(!info.is_addr_auto());
        let addrs: Vec<IpAddr> = info.get_addresses().iter().copied().collect();
        assert_eq!(addrs, vec!["192.168.1.20".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.get_port(), 8080);
        let info = service_info(addr("[::]:8080"), &AdvertiseOptions::default(), "h").unwrap();
        assert!(info.is_addr_auto());
    }

    #[test]
    fn id_defaults_to_the_host_label() {
        let txt = txt_properties(&AdvertiseOptions::default(), "box");
        assert!(txt.contains(&("id".to_string(), "box".to_string())));
        let long = "é".repeat(300);
        let txt = txt_properties(&AdvertiseOptions { router_id: Some(long), ..Default::default() }, "box");
        let id = &txt.iter().find(|(k, _)| k == "id").unwrap().1;
        assert!(id.len() <= 200 && id.chars().all(|c| c == 'é'));
    }

    #[test]
    fn host_labels() {
        assert_eq!(host_label("gpu-box"), "gpu-box");
        assert_eq!(host_label("Mac-Studio.local\n"), "Mac-Studio");
        assert_eq!(host_label("my box_1"), "my-box-1");
        assert_eq!(host_label(""), "herd");
        assert_eq!(host_label("..."), "herd");
        assert_eq!(host_label(&"a".repeat(100)).len(), 63);
        let machine = machine_host_label();
        assert!(!machine.is_empty() && machine.len() <= 63);
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe(addr("0.0.0.0:1")), "every interface's IPv4 addresses");
        assert_eq!(describe(addr("[::]:1")), "every interface's addresses");
        assert_eq!(describe(addr("10.0.0.2:1")), "10.0.0.2");
    }
}
