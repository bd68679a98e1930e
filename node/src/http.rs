//! A small HTTP/1.1 client on smol for the agent's own calls (heartbeats to routers, probes of the
//! local Ollama). It speaks through core's push codec: one request per connection
//! (`Connection: close`), a bounded body, and one deadline over the whole exchange. Plain `http://`
//! only: routers and Ollama are reached on the LAN.

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use herd_core::codec::chunked::ChunkedLimits;
use herd_core::codec::http1::{self, BodyDecoder, BodyError, Framing, Limits, ResponseTo};
use herd_core::codec::Status;
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
    let authority = ep.authority();
    let mut headers: Vec<(&str, &[u8])> =
        vec![("Host", authority.as_bytes()), ("Connection", b"close"), ("User-Agent", USER_AGENT.as_bytes())];
    if body.is_some() {
        headers.push(("Content-Type", b"application/json"));
    }
    headers.extend_from_slice(extra);
    let framing = body.map_or(Framing::Empty, |b| Framing::Length(b.len() as u64));
    let target = format!("{}{}", ep.prefix(), path);
    let mut out = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
    http1::encode_request_head(method, &target, &headers, framing, &mut out)
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    let mut stream = TcpStream::connect((ep.host(), ep.port())).await.map_err(HttpError::Connect)?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&out).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    read_response(&mut stream, method == "HEAD").await
}

const USER_AGENT: &str = concat!("herd-node/", env!("CARGO_PKG_VERSION"));

fn io(e: std::io::Error) -> HttpError {
    HttpError::Protocol(e.to_string())
}

async fn read_response(stream: &mut TcpStream, head_only: bool) -> Result<Response, HttpError> {
    let limits = Limits::default();
    let to = if head_only { ResponseTo::Head } else { ResponseTo::NonHead };
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let head = loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(HttpError::Protocol("connection closed before a response head".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        match http1::parse_response(&buf, &limits, to).map_err(|e| HttpError::Protocol(e.to_string()))? {
            Status::Complete(h) if h.status < 200 => {
                buf.drain(..h.head_len);
            }
            Status::Complete(h) => break h,
            Status::Partial => {}
        }
    };
    let mut decoder = BodyDecoder::with_max(head.framing, ChunkedLimits::default(), MAX_BODY as u64);
    let mut body = Vec::new();
    // What came with the head first, then each read as it is.
    let mut fed = decoder.feed(&buf[head.head_len..], &mut body);
    loop {
        match fed {
            Ok(Status::Complete(_)) => break,
            Ok(Status::Partial) => {}
            Err(BodyError::TooLarge { .. }) => return Err(too_large()),
            Err(e) => return Err(HttpError::Protocol(e.to_string())),
        }
        let got = stream.read(&mut chunk).await.map_err(io)?;
        if got == 0 {
            decoder.finish_eof().map_err(|e| HttpError::Protocol(e.to_string()))?;
            break;
        }
        fed = decoder.feed(&chunk[..got], &mut body);
    }
    Ok(Response { status: head.status, body })
}

fn too_large() -> HttpError {
    HttpError::Protocol(format!("response body over {MAX_BODY} bytes"))
}

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
