//! The agent's calls (heartbeats to routers, probes of the local Ollama) through the router's
//! own HTTP/1.1 client (`herd_service::upstream::Pool`: core's codecs, keep-alive connections
//! per address, a stale idle connection retried once), on async-io sockets, with a bounded body
//! and one deadline over the whole exchange. Plain `http://` only: routers and Ollama are
//! reached on the LAN.

use herd_service::upstream::{SendError, Upstream};
use std::time::Duration;

/// The largest response body the agent reads (Ollama's `/api/tags` with hundreds of models is
/// well under this).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Where to connect: core's one base-URL type (`http://host:port` plus an optional prefix).
pub use herd_core::url::BaseUrl as Endpoint;
/// Why a URL cannot be used.
pub use herd_core::url::UrlError;

/// `raw` as an endpoint herd-node can reach: plain `http://` only (routers and Ollama are on the
/// LAN), `default_port` when none is given.
///
/// # Errors
/// Not a URL, or `https://`.
pub fn endpoint(raw: &str, default_port: u16) -> Result<Endpoint, String> {
    let ep = Endpoint::parse(raw, default_port).map_err(|e| e.to_string())?;
    if ep.is_https() {
        return Err(format!("{raw:?}: herd-node speaks plain http:// on the LAN"));
    }
    Ok(ep)
}

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// The connection broke or the answer was not HTTP.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A complete answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One request; the whole exchange (connect, send, read) must end within `timeout`.
///
/// # Errors
/// [`HttpError`] when there is no complete answer in time.
pub async fn call(
    ep: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let exchange = exchange(ep, method, path, headers, body);
    futures_lite::future::or(exchange, async {
        async_io::Timer::after(timeout).await;
        Err(HttpError::Timeout)
    })
    .await
}

/// The one HTTP/1.1 client to routers and Ollama: the router's own node client
/// (`herd_service::upstream::Pool`, keep-alive connections per address, core's codecs), on
/// async-io sockets. One per process.
fn pool() -> &'static herd_smol::net::Pool {
    static POOL: std::sync::OnceLock<herd_smol::net::Pool> = std::sync::OnceLock::new();
    POOL.get_or_init(herd_smol::net::pool)
}

async fn exchange(
    ep: &Endpoint,
    method: &str,
    path: &str,
    extra: &[(&str, &[u8])],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    if ep.is_https() {
        return Err(HttpError::Protocol(format!("{ep}: herd-node speaks plain http:// on the LAN")));
    }
    let mut headers: Vec<(&str, &[u8])> = vec![("user-agent", USER_AGENT.as_bytes())];
    headers.extend_from_slice(extra);
    let body = body.map(bytes::Bytes::copy_from_slice);
    let mut resp = pool().send(method, ep, path, &headers, body).await.map_err(|e| match e {
        SendError::Connect(m) => HttpError::Connect(std::io::Error::other(m)),
        SendError::Reset(m) => HttpError::Protocol(m),
    })?;
    let body =
        herd_service::read_to_end(&mut resp.body, MAX_BODY).await.map_err(|e| HttpError::Protocol(e.to_string()))?;
    Ok(Response { status: resp.head.status, body })
}

const USER_AGENT: &str = concat!("herd-node/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = endpoint("http://10.0.0.5:11435", 80).unwrap();
        assert_eq!((e.host(), e.port(), e.prefix()), ("10.0.0.5", 11435, ""));
        let e = endpoint("router.local/herd/", 11435).unwrap();
        assert_eq!((e.host(), e.port(), e.prefix()), ("router.local", 11435, "/herd"));
        let e = endpoint("http://[fe80::1]:8080", 80).unwrap();
        assert_eq!((e.host(), e.authority()), ("fe80::1", "[fe80::1]:8080"));
        assert_eq!(endpoint("[::1]", 11434).unwrap().as_str(), "http://[::1]:11434");
        assert!(endpoint("https://x", 1).unwrap_err().contains("plain http://"));
        for bad in ["http://:80", "http://host:notaport", "", "http://[::1", "http://a b:1"] {
            assert!(endpoint(bad, 1).is_err(), "{bad}");
        }
    }

    /// A one-shot server that answers `reply` and returns what it received.
    fn serve_once(reply: &'static [u8]) -> (Endpoint, std::thread::JoinHandle<Vec<u8>>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).unwrap();
            got.truncate(n);
            s.write_all(reply).unwrap();
            got
        });
        (Endpoint::parse(&format!("127.0.0.1:{port}"), 0).unwrap(), h)
    }

    #[test]
    fn chunked_and_length_answers() {
        let (ep, h) =
            serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        let r = smol::block_on(call(&ep, "POST", "/heartbeat", &[], Some(b"{}"), Duration::from_secs(5))).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
        let sent = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(sent.starts_with("POST /heartbeat HTTP/1.1\r\n"), "{sent}");
        assert!(sent.to_ascii_lowercase().contains("content-length: 2\r\n") && sent.ends_with("\r\n\r\n{}"), "{sent}");

        let (ep, _h) = serve_once(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy");
        let r = smol::block_on(call(&ep, "GET", "/", &[], None, Duration::from_secs(5))).unwrap();
        assert_eq!((r.status, r.ok(), r.body.as_slice()), (503, false, &b"busy"[..]));
    }

    #[test]
    fn failures_are_typed() {
        let (ep, _h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let r = smol::block_on(call(&ep, "GET", "/", &[], None, Duration::from_secs(5)));
        assert!(matches!(r, Err(HttpError::Protocol(_))), "{r:?}");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = Endpoint::parse(&l.local_addr().unwrap().to_string(), 0).unwrap();
        drop(l);
        let r = smol::block_on(call(&ep, "GET", "/", &[], None, Duration::from_secs(5)));
        assert!(matches!(r, Err(HttpError::Connect(_))), "{r:?}");
        // Accepts but never answers.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = Endpoint::parse(&l.local_addr().unwrap().to_string(), 0).unwrap();
        let r = smol::block_on(call(&ep, "GET", "/", &[], None, Duration::from_millis(200)));
        assert!(matches!(r, Err(HttpError::Timeout)), "{r:?}");
        drop(l);
    }
}
