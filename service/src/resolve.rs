//! Where a node's Ollama is reached (reference herd-router.md §1.4): the heartbeat says where
//! Ollama listens from the node's point of view; the router turns that into a URL it can reach.

use std::net::IpAddr;

/// The backend base URL for a heartbeat's `ollama_host` and `lan_ip`, received from `peer`.
///
/// 1. From loopback (or an unknown peer): `http://localhost:<port>`... unless `ollama_host`
///    names a non-loopback host, which wins (a node on this machine behind Docker or a proxy).
/// 2. `ollama_host` names a non-loopback host: used as given (the Docker/NAT case, and the node
///    proxy advertising its own URL).
/// 3. Otherwise the heartbeat's source address with the port of `ollama_host` (default 11434).
/// 4. No usable peer: `lan_ip`, else `ollama_host`.
pub fn backend_url(ollama_host: &str, lan_ip: &str, peer: Option<IpAddr>) -> String {
    let (scheme, host, port) = split(ollama_host);
    let port = port.unwrap_or(11434);
    let host_is_loopback = host.is_empty() || is_loopback_name(host);
    if !host_is_loopback && host != "0.0.0.0" && host != "::" && host != "[::]" {
        return format!("{scheme}://{host}:{port}");
    }
    match peer {
        None => fallback(scheme, lan_ip, ollama_host, port),
        Some(ip) if ip.is_loopback() => format!("{scheme}://127.0.0.1:{port}"),
        Some(IpAddr::V4(v4)) => format!("{scheme}://{v4}:{port}"),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => format!("{scheme}://127.0.0.1:{port}"),
            Some(v4) => format!("{scheme}://{v4}:{port}"),
            None => format!("{scheme}://[{v6}]:{port}"),
        },
    }
}

fn fallback(scheme: &str, lan_ip: &str, ollama_host: &str, port: u16) -> String {
    if !lan_ip.is_empty() {
        format!("{scheme}://{lan_ip}:{port}")
    } else if ollama_host.is_empty() {
        format!("{scheme}://127.0.0.1:{port}")
    } else {
        let (_, host, _) = split(ollama_host);
        let host = if is_loopback_name(host) || host.is_empty() { "127.0.0.1" } else { host };
        format!("{scheme}://{host}:{port}")
    }
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `(scheme, host, port)` of `http://host:port/...`, `host:port` or `host`.
fn split(raw: &str) -> (&str, &str, Option<u16>) {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("https") => ("https", r),
        Some((_, r)) => ("http", r),
        None => ("http", raw),
    };
    let authority = rest.split('/').next().unwrap_or("");
    if let Some(stripped) = authority.strip_prefix('[') {
        // [v6]:port
        if let Some((h, p)) = stripped.split_once(']') {
            let port = p.strip_prefix(':').and_then(|p| p.parse().ok());
            return (scheme, &authority[..h.len() + 2], port);
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (scheme, h, p.parse().ok()),
        _ => (scheme, authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_heartbeat_uses_localhost_port() {
        assert_eq!(backend_url("http://localhost:11434", "", ip("127.0.0.1")), "http://127.0.0.1:11434");
        assert_eq!(backend_url("http://127.0.0.1:5555", "", ip("::1")), "http://127.0.0.1:5555");
    }

    #[test]
    fn remote_heartbeat_uses_source_ip_and_port() {
        assert_eq!(backend_url("http://localhost:11434", "10.0.0.9", ip("192.168.1.20")), "http://192.168.1.20:11434");
        assert_eq!(backend_url("http://0.0.0.0:8080", "", ip("192.168.1.20")), "http://192.168.1.20:8080");
        assert_eq!(backend_url("", "", ip("::ffff:192.168.1.20")), "http://192.168.1.20:11434");
    }

    #[test]
    fn named_host_wins_for_docker_and_nat() {
        assert_eq!(backend_url("http://ollama.internal:11434", "", ip("172.17.0.1")), "http://ollama.internal:11434");
        assert_eq!(backend_url("http://203.0.113.5:40000", "", ip("127.0.0.1")), "http://203.0.113.5:40000");
        assert_eq!(backend_url("gpu-box:11434", "", ip("10.0.0.2")), "http://gpu-box:11434");
    }

    #[test]
    fn no_peer_falls_back_to_lan_ip() {
        assert_eq!(backend_url("http://localhost:11434", "10.0.0.9", None), "http://10.0.0.9:11434");
        assert_eq!(backend_url("http://localhost:11434", "", None), "http://127.0.0.1:11434");
    }

    #[test]
    fn ipv6_peer_is_bracketed() {
        assert_eq!(backend_url("http://[::1]:11434", "", ip("fe80::1")), "http://[fe80::1]:11434");
    }
}
