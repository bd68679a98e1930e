//! Where a node's Ollama is reached (reference herd-router.md §1.4): the heartbeat says where
//! Ollama listens from the node's point of view; the router turns that into a URL it can reach,
//! and refuses addresses no node may claim: link-local and cloud-metadata addresses always (a
//! heartbeat must not make the router send prompts to `169.254.169.254`), and anything outside
//! the operator's `--node-networks` when those are set.

use crate::url::BaseUrl;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The backend base URL for a heartbeat's `ollama_host` and `lan_ip`, received from `peer`.
///
/// 1. From loopback (or an unknown peer): `http://localhost:<port>`... unless `ollama_host`
///    names a non-loopback host, which wins (a node on this machine behind Docker or a proxy).
/// 2. `ollama_host` names a non-loopback host: used as given (the Docker/NAT case, and the node
///    proxy advertising its own URL).
/// 3. Otherwise the heartbeat's source address with the port of `ollama_host` (default 11434).
/// 4. No usable peer: `lan_ip`, else `ollama_host`.
///
/// `ollama_host` is read with the one URL parser ([`BaseUrl`]); one it cannot read counts as
/// unset (the peer's address and Ollama's port are used).
///
/// # Errors
/// [`AddressError::Invalid`] when no usable URL comes out (a `lan_ip` that is not a host).
pub fn backend_url(ollama_host: &str, lan_ip: &str, peer: Option<IpAddr>) -> Result<BaseUrl, AddressError> {
    let base = BaseUrl::parse(ollama_host, OLLAMA_PORT)
        .unwrap_or_else(|_| BaseUrl::parse("localhost", OLLAMA_PORT).expect("a literal host parses"));
    let host = base.host();
    if !is_loopback_name(host) && host != "0.0.0.0" && host != "::" {
        return Ok(base);
    }
    let at = |host: &str| base.with_host(host).map_err(|e| AddressError::Invalid(e.to_string()));
    let localhost = std::net::Ipv4Addr::LOCALHOST.to_string();
    match peer.map(canonical) {
        None if !lan_ip.trim().is_empty() => at(lan_ip.trim()),
        None => at(&localhost),
        Some(ip) if ip.is_loopback() => at(&localhost),
        Some(ip) => at(&ip.to_string()),
    }
}

/// Ollama's port, when an address gives none.
pub use crate::api::names::OLLAMA_PORT;

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`; a bare address is a /32 or /128).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` lies inside (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a `--node-networks` entry could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?}: expected an address or address/prefix, such as 10.0.0.0/8 or fd00::/8")]
pub struct NetworkParseError(pub String);

impl FromStr for Network {
    type Err = NetworkParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetworkParseError(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }
}

/// Parses a comma-separated list of networks (`HERD_NODE_NETWORKS`).
///
/// # Errors
/// The first entry that is not a network.
pub fn parse_networks(list: &str) -> Result<Vec<Network>, NetworkParseError> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Network::from_str).collect()
}

/// Why a node address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Link-local or a cloud metadata service: never a node.
    #[error("{0} is a link-local or cloud-metadata address, which no node may use")]
    Forbidden(String),
    /// Outside the networks the operator allows (`--node-networks`).
    #[error("{0} is outside the allowed node networks ({1})")]
    OutsideNetworks(String, String),
    /// A host name, while the operator allows only given networks.
    #[error("{0} is a host name; with --node-networks set, a node must report an IP address")]
    NotAnAddress(String),
    /// No usable URL could be made of what the node reported.
    #[error("no usable node address: {0}")]
    Invalid(String),
}

/// Hosts that answer cloud instance metadata by name.
const METADATA_HOSTS: [&str; 4] = ["metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal"];

/// Checks that a node may be reached at `url` (as built by [`backend_url`]). Link-local
/// (169.254.0.0/16, fe80::/10) and metadata addresses (fd00:ec2::254, the metadata host names) are
/// always refused; with `networks` non-empty, the host must be an IP address inside one of them.
///
/// # Errors
/// [`AddressError`] saying why.
pub fn check_node_url(url: &BaseUrl, networks: &[Network]) -> Result<(), AddressError> {
    let bare = url.host();
    let ip = bare.parse::<IpAddr>().ok().map(canonical);
    let lower = bare.trim_end_matches('.').to_ascii_lowercase();
    let forbidden = match ip {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6,
        None => METADATA_HOSTS.contains(&lower.as_str()),
    };
    if forbidden {
        return Err(AddressError::Forbidden(bare.to_string()));
    }
    if networks.is_empty() {
        return Ok(());
    }
    let Some(ip) = ip else { return Err(AddressError::NotAnAddress(bare.to_string())) };
    if networks.iter().any(|n| n.contains(ip)) {
        Ok(())
    } else {
        let list = networks.iter().map(Network::to_string).collect::<Vec<_>>().join(",");
        Err(AddressError::OutsideNetworks(bare.to_string(), list))
    }
}

/// AWS's IPv6 instance metadata address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// An IPv4-mapped IPv6 address as its IPv4 address; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, |v4: Ipv4Addr| IpAddr::V4(v4)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_are_always_refused() {
        for url in [
            "http://169.254.169.254:80",
            "http://169.254.0.1:11434",
            "http://[fe80::1]:11434",
            "http://[fd00:ec2::254]:80",
            "http://[::ffff:169.254.169.254]:80",
            "http://metadata.google.internal:80",
            "http://METADATA.google.internal.:80",
        ] {
            assert!(matches!(check_node_url(&u(url), &[]), Err(AddressError::Forbidden(_))), "{url}");
        }
        for url in ["http://10.0.0.5:11434", "http://gpu-box:11434", "http://[fd00::5]:11434", "http://127.0.0.1:1"] {
            assert_eq!(check_node_url(&u(url), &[]), Ok(()), "{url}");
        }
    }

    #[test]
    fn networks_restrict_node_addresses() {
        let nets = parse_networks("10.0.0.0/8, 192.168.1.0/24,fd00::/8").unwrap();
        assert_eq!(check_node_url(&u("http://10.2.3.4:11434"), &nets), Ok(()));
        assert_eq!(check_node_url(&u("http://[::ffff:192.168.1.9]:11434"), &nets), Ok(()));
        assert_eq!(check_node_url(&u("http://[fd12::1]:11434"), &nets), Ok(()));
        assert!(matches!(
            check_node_url(&u("http://192.168.2.1:11434"), &nets),
            Err(AddressError::OutsideNetworks(..))
        ));
        assert!(matches!(check_node_url(&u("http://gpu-box:11434"), &nets), Err(AddressError::NotAnAddress(_))));
        assert!(matches!(check_node_url(&u("http://169.254.1.1:1"), &nets), Err(AddressError::Forbidden(_))));
    }

    #[test]
    fn network_parsing() {
        assert_eq!("10.0.0.1".parse::<Network>().unwrap().to_string(), "10.0.0.1/32");
        assert_eq!("0.0.0.0/0".parse::<Network>().map(|n| n.contains("8.8.8.8".parse().unwrap())), Ok(true));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nonsense".parse::<Network>().is_err());
        assert!(parse_networks("10.0.0.0/8,,").is_ok_and(|n| n.len() == 1));
    }

    fn u(s: &str) -> BaseUrl {
        BaseUrl::parse(s, 11434).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_heartbeat_uses_localhost_port() {
        assert_eq!(
            backend_url("http://localhost:11434", "", ip("127.0.0.1")).unwrap().as_str(),
            "http://127.0.0.1:11434"
        );
        assert_eq!(backend_url("http://127.0.0.1:5555", "", ip("::1")).unwrap().as_str(), "http://127.0.0.1:5555");
    }

    #[test]
    fn remote_heartbeat_uses_source_ip_and_port() {
        assert_eq!(
            backend_url("http://localhost:11434", "10.0.0.9", ip("192.168.1.20")).unwrap().as_str(),
            "http://192.168.1.20:11434"
        );
        assert_eq!(
            backend_url("http://0.0.0.0:8080", "", ip("192.168.1.20")).unwrap().as_str(),
            "http://192.168.1.20:8080"
        );
        assert_eq!(backend_url("", "", ip("::ffff:192.168.1.20")).unwrap().as_str(), "http://192.168.1.20:11434");
    }

    #[test]
    fn named_host_wins_for_docker_and_nat() {
        assert_eq!(
            backend_url("http://ollama.internal:11434", "", ip("172.17.0.1")).unwrap().as_str(),
            "http://ollama.internal:11434"
        );
        assert_eq!(
            backend_url("http://203.0.113.5:40000", "", ip("127.0.0.1")).unwrap().as_str(),
            "http://203.0.113.5:40000"
        );
        assert_eq!(backend_url("gpu-box:11434", "", ip("10.0.0.2")).unwrap().as_str(), "http://gpu-box:11434");
    }

    #[test]
    fn no_peer_falls_back_to_lan_ip() {
        assert_eq!(backend_url("http://localhost:11434", "10.0.0.9", None).unwrap().as_str(), "http://10.0.0.9:11434");
        assert_eq!(backend_url("http://localhost:11434", "", None).unwrap().as_str(), "http://127.0.0.1:11434");
    }

    #[test]
    fn ipv6_peer_is_bracketed() {
        assert_eq!(backend_url("http://[::1]:11434", "", ip("fe80::1")).unwrap().as_str(), "http://[fe80::1]:11434");
    }
}
