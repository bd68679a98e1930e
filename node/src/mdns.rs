//! Finding routers over mDNS.
//!
//! Routers (`herd`, and ollama-herd's router) advertise the service type [`SERVICE_TYPE`]. A
//! [`Browser`] browses for it for the life of the process: mdns-sd keeps querying (at growing
//! intervals, up to once an hour) and listens to every announcement, so a router that starts
//! later, or comes back with a new address after a DHCP change, shows up as a new
//! [`Discovery::Found`], and one that says goodbye (or whose records expire) as
//! [`Discovery::Lost`]. ollama-herd's agent, by contrast, looks once for 30 s at startup and dies
//! if nothing answers. [`Browser::rescan`] asks again at once and repeats every router still
//! known, for an agent whose heartbeats keep failing.
//!
//! Turning a resolved service into URLs is pure ([`urls`], [`discovery_from_event`],
//! [`Dedup`]) and tested without a network.

use mdns_sd::{Receiver, ResolvedService, ServiceDaemon, ServiceEvent};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The service type routers advertise (ollama-herd's, kept for compatibility).
pub use herd_core::api::names::MDNS_SERVICE_TYPE as SERVICE_TYPE;

/// How long [`Browser::stop`] waits for the mDNS daemon to confirm it stopped.
const DAEMON_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// What the browser saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// A router was resolved, or its addresses, port or TXT record changed.
    Found {
        /// The instance's full name, e.g. `Fleet Manager Router._fleet-manager._tcp.local.`
        /// (the key to match a later [`Discovery::Lost`]).
        instance: String,
        /// Base URLs to try in order, `http://IP:PORT`: IPv4 first, then IPv6 in brackets (without
        /// a scope), then link-local and loopback addresses. Never empty.
        urls: Vec<String>,
        /// The TXT record (keys lower-cased). `herd` sends `version`, `api`, `id`, `tls` and
        /// `path`; ollama-herd only `version=0.1.0`.
        txt: BTreeMap<String, String>,
    },
    /// A router said goodbye or its records expired.
    Lost {
        /// The instance's full name.
        instance: String,
    },
}

/// Why browsing could not start.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// mdns-sd refused the service type or could not start its daemon.
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// A running browse for routers. [`Browser::stop`], or dropping it, stops the mDNS daemon.
pub struct Browser {
    daemon: ServiceDaemon,
    service_type: String,
    events: Mutex<Receiver<ServiceEvent>>,
    dedup: Mutex<Dedup>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("service_type", &self.service_type).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Browser {
    /// Starts the mDNS daemon and browses for `service_type` (normally [`SERVICE_TYPE`]).
    pub fn start(service_type: &str) -> Result<Browser, MdnsError> {
        let daemon = ServiceDaemon::new()?;
        let events = match daemon.browse(service_type) {
            Ok(r) => r,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e.into());
            }
        };
        Ok(Browser {
            daemon,
            service_type: service_type.to_string(),
            events: Mutex::new(events),
            dedup: Mutex::new(Dedup::default()),
        })
    }

    /// The service type browsed for.
    pub fn service_type(&self) -> &str {
        &self.service_type
    }

    /// The next router found or lost. A router's unchanged records, announced again, are not
    /// repeated. `None` only once the daemon has stopped. Works on any async runtime.
    ///
    /// Call it continuously: mdns-sd drops a browse whose 1000-event queue fills up (the browse is
    /// then started again here, so nothing is lost for good).
    pub async fn next(&self) -> Option<Discovery> {
        loop {
            let events = lock(&self.events).clone();
            match events.recv_async().await {
                Ok(event) => {
                    if let Some(d) = discovery_from_event(event) {
                        if let Some(d) = lock(&self.dedup).admit(d) {
                            return Some(d);
                        }
                    }
                }
                Err(_) => {
                    // The browse ended: replaced by `rescan` (take the new one), or dropped by the
                    // daemon (browse again), or the daemon stopped (done).
                    let mut current = lock(&self.events);
                    if !current.same_channel(&events) {
                        continue;
                    }
                    match self.daemon.browse(&self.service_type) {
                        Ok(r) => *current = r,
                        Err(_) => return None,
                    }
                }
            }
        }
    }

    /// Queries for routers again now (instead of at the next, ever longer, interval) and reports
    /// every router still known once more as [`Discovery::Found`].
    pub fn rescan(&self) -> Result<(), MdnsError> {
        let mut current = lock(&self.events);
        let fresh = self.daemon.browse(&self.service_type)?;
        *current = fresh;
        lock(&self.dedup).clear();
        Ok(())
    }

    /// Stops browsing and shuts the daemon down (as dropping does).
    pub fn stop(self) {}
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(status) = self.daemon.shutdown() {
            let _ = status.recv_timeout(DAEMON_REPLY_TIMEOUT);
        }
    }
}

/// The [`Discovery`] an mdns-sd event stands for, if any: a resolved service with at least one
/// usable address is `Found`, a removed one `Lost`; the rest (search started, PTR seen before
/// resolution) is `None`.
pub fn discovery_from_event(event: ServiceEvent) -> Option<Discovery> {
    match event {
        ServiceEvent::ServiceResolved(service) => found(&service),
        ServiceEvent::ServiceRemoved(_, instance) => Some(Discovery::Lost { instance }),
        _ => None,
    }
}

fn found(service: &ResolvedService) -> Option<Discovery> {
    let addrs = service.get_addresses().iter().map(|a| a.to_ip_addr());
    let urls = urls(addrs, service.get_port());
    if urls.is_empty() || service.get_port() == 0 {
        return None;
    }
    let txt = service
        .get_properties()
        .iter()
        .map(|p| (p.key().to_ascii_lowercase(), String::from_utf8_lossy(p.val().unwrap_or_default()).into_owned()))
        .collect();
    Some(Discovery::Found { instance: service.get_fullname().to_string(), urls, txt })
}

/// Base URLs (`http://IP:PORT`) for a router's addresses, best first, without duplicates:
/// routable IPv4, routable IPv6 (bracketed, no scope), IPv4 link-local (169.254/16), IPv4
/// loopback, IPv6 loopback. Unspecified and multicast addresses are dropped, and so are IPv6
/// link-local ones (fe80::/10: useless without a scope) unless nothing else is left. Within a
/// rank, addresses are in ascending order.
pub fn urls(addrs: impl IntoIterator<Item = IpAddr>, port: u16) -> Vec<String> {
    let mut ranked: Vec<(u8, IpAddr)> =
        addrs.into_iter().filter_map(|ip| rank(ip).map(|r| (r, ip))).collect::<Vec<_>>();
    ranked.sort();
    ranked.dedup();
    let usable = ranked.iter().any(|(r, _)| *r < LINK_LOCAL_V6);
    ranked
        .into_iter()
        .filter(|(r, _)| !usable || *r < LINK_LOCAL_V6)
        .map(|(_, ip)| match ip {
            IpAddr::V4(v4) => format!("http://{v4}:{port}"),
            IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        })
        .collect()
}

const LINK_LOCAL_V6: u8 = 5;

fn rank(ip: IpAddr) -> Option<u8> {
    if ip.is_unspecified() || ip.is_multicast() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) if v4.is_loopback() => 3,
        IpAddr::V4(v4) if v4.is_link_local() => 2,
        IpAddr::V4(v4) if v4.is_broadcast() => return None,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_loopback() => 4,
        IpAddr::V6(v6) if is_link_local_v6(&v6) => LINK_LOCAL_V6,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return rank(IpAddr::V4(v4)),
            None => 1,
        },
    })
}

fn is_link_local_v6(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// Suppresses repeats: a `Found` identical to the last one for its instance, and a `Lost` for an
/// instance not currently found.
#[derive(Debug, Default)]
pub struct Dedup {
    found: HashMap<String, (Vec<String>, BTreeMap<String, String>)>,
}

impl Dedup {
    /// `Some(d)` when `d` is news.
    pub fn admit(&mut self, d: Discovery) -> Option<Discovery> {
        match &d {
            Discovery::Found { instance, urls, txt } => {
                let entry = (urls.clone(), txt.clone());
                if self.found.get(instance) == Some(&entry) {
                    return None;
                }
                self.found.insert(instance.clone(), entry);
            }
            Discovery::Lost { instance } => {
                self.found.remove(instance)?;
            }
        }
        Some(d)
    }

    /// Forgets everything, so that every router is reported again.
    pub fn clear(&mut self) {
        self.found.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdns_sd::ServiceInfo;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn ipv4_first_then_ipv6_in_brackets() {
        let got = urls(ips(&["fd00::5", "192.168.1.20", "10.0.0.2", "2001:db8::1"]), 11435);
        assert_eq!(
            got,
            vec![
                "http://10.0.0.2:11435",
                "http://192.168.1.20:11435",
                "http://[2001:db8::1]:11435",
                "http://[fd00::5]:11435",
            ]
        );
    }

    #[test]
    fn link_local_v6_only_when_nothing_else() {
        assert_eq!(urls(ips(&["fe80::1", "192.168.1.20"]), 1), vec!["http://192.168.1.20:1"]);
        assert_eq!(urls(ips(&["fe80::1", "::1"]), 1), vec!["http://[::1]:1"]);
        assert_eq!(urls(ips(&["fe80::1"]), 1), vec!["http://[fe80::1]:1"]);
        assert_eq!(urls(ips(&["febf::1", "fec0::1"]), 1), vec!["http://[fec0::1]:1"], "fe80::/10 ends at febf");
    }

    #[test]
    fn loopback_and_link_local_v4_last_junk_dropped() {
        let got = urls(
            ips(&["127.0.0.1", "::1", "169.254.3.4", "0.0.0.0", "::", "224.0.0.251", "255.255.255.255", "10.1.1.1"]),
            80,
        );
        assert_eq!(got, vec!["http://10.1.1.1:80", "http://169.254.3.4:80", "http://127.0.0.1:80", "http://[::1]:80"]);
        assert!(urls(ips(&["0.0.0.0", "ff02::fb"]), 80).is_empty());
    }

    #[test]
    fn duplicates_and_mapped_addresses() {
        assert_eq!(urls(ips(&["10.0.0.1", "10.0.0.1"]), 5), vec!["http://10.0.0.1:5"]);
        // An IPv4-mapped IPv6 address ranks as IPv4 and is written as it came.
        assert_eq!(
            urls(ips(&["::ffff:10.0.0.9", "fd00::1"]), 5),
            vec!["http://[::ffff:10.0.0.9]:5", "http://[fd00::1]:5"]
        );
    }

    fn resolved(addrs: &str, port: u16, txt: &[(&str, &str)]) -> ServiceEvent {
        let info = ServiceInfo::new(SERVICE_TYPE, "Fleet Manager Router", "box.local.", addrs, port, txt).unwrap();
        ServiceEvent::ServiceResolved(Box::new(info.as_resolved_service()))
    }

    #[test]
    fn resolved_service_becomes_found() {
        let event = resolved("192.168.1.20,fd00::7", 11435, &[("version", "0.1.0"), ("API", "1"), ("flag", "")]);
        let Some(Discovery::Found { instance, urls, txt }) = discovery_from_event(event) else { panic!() };
        assert_eq!(instance, "Fleet Manager Router._fleet-manager._tcp.local.");
        assert_eq!(urls, vec!["http://192.168.1.20:11435", "http://[fd00::7]:11435"]);
        assert_eq!(txt.get("version").map(String::as_str), Some("0.1.0"));
        assert_eq!(txt.get("api").map(String::as_str), Some("1"), "keys are lower-cased");
        assert_eq!(txt.get("flag").map(String::as_str), Some(""));
    }

    #[test]
    fn unusable_services_and_other_events_are_skipped() {
        assert_eq!(discovery_from_event(resolved("224.0.0.1", 11435, &[])), None);
        assert_eq!(discovery_from_event(resolved("10.0.0.1", 0, &[])), None);
        assert_eq!(discovery_from_event(ServiceEvent::SearchStarted(SERVICE_TYPE.into())), None);
        assert_eq!(discovery_from_event(ServiceEvent::ServiceFound(SERVICE_TYPE.into(), "x".into())), None);
        assert_eq!(
            discovery_from_event(ServiceEvent::ServiceRemoved(SERVICE_TYPE.into(), "x.y".into())),
            Some(Discovery::Lost { instance: "x.y".into() })
        );
    }

    #[test]
    fn dedup_reports_changes_only() {
        let found = |url: &str| Discovery::Found { instance: "r".into(), urls: vec![url.into()], txt: BTreeMap::new() };
        let lost = Discovery::Lost { instance: "r".into() };
        let mut d = Dedup::default();
        assert_eq!(d.admit(lost.clone()), None, "lost before found");
        assert!(d.admit(found("http://10.0.0.1:1")).is_some());
        assert_eq!(d.admit(found("http://10.0.0.1:1")), None, "unchanged");
        assert!(d.admit(found("http://10.0.0.2:1")).is_some(), "new address");
        assert!(d.admit(lost.clone()).is_some());
        assert_eq!(d.admit(lost), None);
        assert!(d.admit(found("http://10.0.0.2:1")).is_some(), "back again");
        d.clear();
        assert!(d.admit(found("http://10.0.0.2:1")).is_some(), "reported again after clear");
    }
}
