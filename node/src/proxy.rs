//! The node-side proxy: exposes an Ollama that listens only on loopback to the routers, on
//! `--proxy-port`. ollama-herd's version opens Ollama to the whole LAN unauthenticated
//! (reference herd-node.md §1.10, §8.2 item 10); this one, when a fleet key is set, refuses every
//! caller whose first request does not carry it in `X-Herd-Fleet-Key` (herd sends it on every
//! call to a node) or as `Authorization: Bearer <key>`.
//!
//! The check is per connection: the first request head is parsed with core's HTTP/1 codec and
//! checked, then bytes are spliced both ways untouched, so NDJSON and SSE streams pass through as
//! Ollama writes them. A caller without the key never gets a byte through to Ollama. The head must
//! arrive within [`HEAD_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections are open at once.

use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use herd_core::codec::http1::{self, Limits};
use herd_core::codec::Status;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a caller has to send its first request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// The header herd's router presents the fleet key in.
pub use herd_core::api::names::FLEET_KEY_HEADER as KEY_HEADER;

/// Counters, for logs and tests.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections spliced to Ollama.
    pub accepted: AtomicU64,
    /// Connections refused for a missing or wrong key.
    pub refused: AtomicU64,
}

/// A running proxy's configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Ollama, as `host:port`.
    pub upstream: String,
    /// The key callers must present; `None` = open (logged loudly at start).
    pub fleet_key: Option<String>,
}

/// Binds the proxy's listener.
///
/// # Errors
/// The bind error (port in use, no permission).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, config: ProxyConfig, stats: Arc<ProxyStats>) {
    let config = Arc::new(config);
    let slots = Arc::new(smol::lock::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots.acquire_arc().await;
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "proxy accept failed");
                async_io::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = config.clone();
        let stats = stats.clone();
        smol::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(client, &config, &stats).await {
                tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
            }
        })
        .detach();
    }
}

/// Whether a request head carries `key`.
pub fn authorised(head: &http1::RequestHead, key: &str) -> bool {
    let key = key.as_bytes();
    if head.header(KEY_HEADER).is_some_and(|v| herd_core::secret::same_secret(v, key)) {
        return true;
    }
    head.header("authorization")
        .and_then(|v| v.strip_prefix(b"Bearer ").or_else(|| v.strip_prefix(b"bearer ")))
        .is_some_and(|v| herd_core::secret::same_secret(v, key))
}

async fn reply(client: &mut TcpStream, status: u16, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "error": message }).to_string();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        http1::reason_phrase(status),
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.flush().await
}

async fn read_head(client: &mut TcpStream) -> std::io::Result<Result<(http1::RequestHead, Vec<u8>), String>> {
    let limits = Limits::default();
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match http1::parse_request(&buf, &limits) {
            Ok(Status::Complete(head)) => return Ok(Ok((head, buf))),
            Ok(Status::Partial) => {}
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
}

async fn connection(mut client: TcpStream, config: &ProxyConfig, stats: &ProxyStats) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let head = futures_lite::future::or(read_head(&mut client), async {
        async_io::Timer::after(HEAD_TIMEOUT).await;
        Err(std::io::ErrorKind::TimedOut.into())
    })
    .await?;
    let (head, buffered) = match head {
        Ok(h) => h,
        Err(e) => return reply(&mut client, 400, &format!("malformed request: {e}")).await,
    };
    if let Some(key) = &config.fleet_key {
        if !authorised(&head, key) {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target = %head.target, "proxy refused a caller without the fleet key");
            return reply(&mut client, 401, "this Ollama is shared through herd: present the fleet key").await;
        }
    }
    let mut upstream = match TcpStream::connect(config.upstream.as_str()).await {
        Ok(s) => s,
        Err(e) => return reply(&mut client, 502, &format!("Ollama is not reachable: {e}")).await,
    };
    let _ = upstream.set_nodelay(true);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    upstream.write_all(&buffered).await?;
    let (client_r, client_w) = (client.clone(), client);
    let (up_r, up_w) = (upstream.clone(), upstream);
    let to_upstream = async move {
        let r = futures_lite::io::copy(client_r, &mut up_w.clone()).await;
        let _ = up_w.shutdown(std::net::Shutdown::Write);
        r
    };
    let to_client = async move {
        let r = futures_lite::io::copy(up_r, &mut client_w.clone()).await;
        let _ = client_w.shutdown(std::net::Shutdown::Both);
        r
    };
    let (a, b) = futures_lite::future::zip(to_upstream, to_client).await;
    a.and(b).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> http1::RequestHead {
        match http1::parse_request(raw.as_bytes(), &Limits::default()).unwrap() {
            Status::Complete(h) => h,
            Status::Partial => panic!("partial"),
        }
    }

    #[test]
    fn key_checks() {
        let key = "s3cret";
        assert!(authorised(&head("POST /api/chat HTTP/1.1\r\nX-Herd-Fleet-Key: s3cret\r\n\r\n"), key));
        assert!(authorised(&head("GET / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"), key));
        assert!(!authorised(&head("GET / HTTP/1.1\r\nX-Herd-Fleet-Key: s3cre\r\n\r\n"), key));
        assert!(!authorised(&head("GET / HTTP/1.1\r\nX-Herd-Fleet-Key: s3cretX\r\n\r\n"), key));
        assert!(!authorised(&head("GET / HTTP/1.1\r\nAuthorization: Basic s3cret\r\n\r\n"), key));
        assert!(!authorised(&head("GET / HTTP/1.1\r\n\r\n"), key));
    }
}
