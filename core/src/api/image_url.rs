//! Which remote images the router may fetch for an OpenAI `image_url` part with an http(s) URL.
//!
//! Off unless the operator lists hosts or networks (`--image-url-hosts`): then such a part is
//! Ollama's own 400 ("image URLs are not currently supported"), as before. The list holds host
//! names (`images.example.com`, or `*.example.com` for any subdomain) and networks (`10.0.0.0/8`,
//! `192.168.1.20`). A URL is fetched when its host is listed, or when every address it resolves to
//! is inside a listed network; each redirect is checked the same way. Whatever the host, an
//! address that reaches the router's own machine or the cloud's metadata service (loopback,
//! link-local, unspecified, multicast, AWS' `fd00:ec2::254`) is refused unless a listed network
//! contains it: a listed host name that resolves there is not enough.

use crate::fleet::address::Network;
use std::net::{IpAddr, Ipv6Addr};

/// Most remote images fetched for one request.
pub const MAX_IMAGES: usize = 8;
/// Most redirects followed for one image.
pub const MAX_REDIRECTS: usize = 3;

/// Why a URL or address is not fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageUrlError {
    /// Not `http://` or `https://`, or no host.
    #[error("{0:?} is not an http(s) URL")]
    NotHttp(String),
    /// The host is not listed and its address is in no listed network.
    #[error("{0} is not in the router's --image-url-hosts")]
    NotListed(String),
    /// The address is loopback, link-local, metadata and the like, and no listed network has it.
    #[error("{host} resolves to {ip}, an address the router never fetches from unless its network is listed")]
    Forbidden {
        /// The host.
        host: String,
        /// The address.
        ip: IpAddr,
    },
}

/// A listed host name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
}

/// The hosts and networks the router may fetch images from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUrlPolicy {
    hosts: Vec<Host>,
    networks: Vec<Network>,
}

/// AWS' IPv6 instance metadata address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Addresses never fetched from unless a listed network contains them.
fn special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => special(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6 == AWS_METADATA_V6
            }
        },
    }
}

/// The host of an http(s) URL, lower case, without brackets; and whether it is https.
pub fn url_host(url: &str) -> Result<(String, bool), ImageUrlError> {
    let lower = url.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(ImageUrlError::NotHttp(url.chars().take(64).collect()));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(ImageUrlError::NotHttp(url.chars().take(64).collect()));
    }
    Ok((host.trim_end_matches('.').to_ascii_lowercase(), https))
}

impl ImageUrlPolicy {
    /// The policy of a comma-separated list; `None` (no fetching) when it is empty.
    ///
    /// # Errors
    /// An entry is neither a host name nor a network.
    pub fn parse(list: &str) -> Result<Option<ImageUrlPolicy>, String> {
        let mut p = ImageUrlPolicy { hosts: Vec::new(), networks: Vec::new() };
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(n) = raw.parse::<Network>() {
                p.networks.push(n);
                continue;
            }
            let name = raw.trim_end_matches('.').to_ascii_lowercase();
            let (wild, base) = match name.strip_prefix("*.") {
                Some(b) => (true, b.to_string()),
                None => (false, name.clone()),
            };
            let valid = !base.is_empty()
                && base.len() <= 253
                && base.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(format!("--image-url-hosts: {raw:?} is neither a host name nor a network"));
            }
            p.hosts.push(if wild { Host::Subdomains(base) } else { Host::Exact(base) });
        }
        Ok((!p.hosts.is_empty() || !p.networks.is_empty()).then_some(p))
    }

    fn host_listed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| match h {
            Host::Exact(n) => n == host,
            Host::Subdomains(base) => {
                host.len() > base.len() + 1 && host.ends_with(base.as_str()) && {
                    host.as_bytes()[host.len() - base.len() - 1] == b'.'
                }
            }
        })
    }

    /// Whether the router may connect to `ip` for an image on `host`.
    ///
    /// # Errors
    /// The address is special and not in a listed network, or neither the host nor the address
    /// is listed.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), ImageUrlError> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let in_network = self.networks.iter().any(|n| n.contains(ip));
        if special(ip) && !in_network {
            return Err(ImageUrlError::Forbidden { host: host.to_string(), ip });
        }
        if in_network || self.host_listed(host) {
            Ok(())
        } else {
            Err(ImageUrlError::NotListed(host.to_string()))
        }
    }

    /// Whether a URL's host may be asked at all (before resolving it): listed, or an address
    /// literal (checked with [`Self::check`] once parsed), or a name that may resolve into a
    /// listed network.
    ///
    /// # Errors
    /// Not http(s), or a name that is not listed while no network is.
    pub fn check_url(&self, url: &str) -> Result<(String, bool), ImageUrlError> {
        let (host, https) = url_host(url)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check(&host, ip)?;
        } else if !self.host_listed(&host) && self.networks.is_empty() {
            return Err(ImageUrlError::NotListed(host));
        }
        Ok((host, https))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &str) -> ImageUrlPolicy {
        ImageUrlPolicy::parse(list).unwrap().unwrap()
    }

    #[test]
    fn parse_hosts_and_networks() {
        assert_eq!(ImageUrlPolicy::parse(""), Ok(None));
        assert!(ImageUrlPolicy::parse("http://x.com").is_err());
        assert!(ImageUrlPolicy::parse("a..b").is_err());
        let p = policy("images.example.com, *.cdn.net, 10.0.0.0/8, 192.168.1.20");
        assert_eq!(p.hosts.len(), 2);
        assert_eq!(p.networks.len(), 2);
    }

    #[test]
    fn listed_hosts_and_networks_and_never_special_addresses() {
        let p = policy("images.example.com,*.cdn.net,10.0.0.0/8");
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        assert_eq!(p.check("images.example.com", public), Ok(()));
        assert_eq!(p.check("a.b.cdn.net", public), Ok(()));
        assert!(matches!(p.check("cdn.net", public), Err(ImageUrlError::NotListed(_))));
        assert!(matches!(p.check("evilcdn.net", public), Err(ImageUrlError::NotListed(_))));
        assert_eq!(p.check("anything.lan", "10.1.2.3".parse().unwrap()), Ok(()));
        for ip in ["127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fd00:ec2::254", "0.0.0.0", "fe80::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(
                matches!(p.check("images.example.com", ip), Err(ImageUrlError::Forbidden { .. })),
                "{ip} must be refused even for a listed host"
            );
        }
        let local = policy("127.0.0.0/8");
        assert_eq!(local.check("localhost", "127.0.0.1".parse().unwrap()), Ok(()));
    }

    #[test]
    fn urls() {
        assert_eq!(url_host("HTTPS://Images.Example.com:8443/a.png?x"), Ok(("images.example.com".into(), true)));
        assert_eq!(url_host("http://user@[::1]:80/x"), Ok(("::1".into(), false)));
        assert!(url_host("ftp://x/y").is_err());
        assert!(url_host("http:///y").is_err());
        let p = policy("images.example.com");
        assert!(p.check_url("http://images.example.com/a.png").is_ok());
        assert!(matches!(p.check_url("http://other.com/a.png"), Err(ImageUrlError::NotListed(_))));
        assert!(matches!(p.check_url("http://127.0.0.1/a.png"), Err(ImageUrlError::Forbidden { .. })));
        // With a network listed, a name may resolve into it: checked after resolving.
        assert!(policy("10.0.0.0/8").check_url("http://nas.lan/a.png").is_ok());
    }
}
