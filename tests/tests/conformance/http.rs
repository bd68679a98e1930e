//! A small blocking HTTP/1.1 client over `std::net::TcpStream`: one request per connection
//! (`Connection: close`), the answer read to the end. Raw bytes go through the same path, so a
//! case can send a malformed head or stall half way and see exactly what the router does.

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest any one exchange may take before the case fails.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// How the server ended a raw exchange.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// An orderly close (EOF).
    Closed,
    /// A reset (or another read error) after zero or more bytes.
    Reset,
    /// Still open when the deadline came.
    StillOpen,
}

/// What came back on one connection, unparsed.
#[derive(Debug)]
pub struct Raw {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// How the connection ended.
    pub ending: Ending,
    /// From the first byte written to the end of the connection (or the deadline).
    pub elapsed: Duration,
}

impl Raw {
    /// The bytes as text (lossy), for messages and prefix checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Connects to `addr`, sends `bytes` from a helper thread (so a server that answers before it has
/// read everything is still heard) and reads until the server ends the connection or `within`
/// passes. The connection is never half-closed: a stalled client looks stalled, not finished.
///
/// # Errors
/// When the connection cannot be opened.
pub fn exchange(addr: SocketAddr, bytes: Vec<u8>, within: Duration) -> Result<Raw, String> {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().expect("cloning the socket");
    let start = Instant::now();
    // A failed write (the server closed early, e.g. on a 413) is fine: the answer is what counts.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
        let _ = writer.flush();
    });
    let (bytes, ending) = read_to_end(stream, start + within);
    let elapsed = start.elapsed();
    let _ = sender.join();
    Ok(Raw { bytes, ending, elapsed })
}

fn read_to_end(mut stream: TcpStream, deadline: Instant) -> (Vec<u8>, Ending) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = stream.shutdown(Shutdown::Both);
            return (out, Ending::StillOpen);
        }
        stream.set_read_timeout(Some(left)).expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (out, Ending::Closed),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (out, Ending::Reset),
        }
    }
}

/// One parsed answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header `name` (any case), or `""`.
    pub fn header(&self, name: &str) -> &str {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }
}

/// Builds a request: `Host`, `Connection: close` and `Content-Length` (when there is a body or the
/// method is POST) are added.
pub fn request_bytes(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// One whole request and its answer; `Err` says what went wrong on the wire.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let raw = exchange(addr, request_bytes(addr, method, path, headers, body), EXCHANGE_LIMIT)?;
    if raw.ending == Ending::StillOpen {
        return Err(format!("{method} {path}: no complete answer within {EXCHANGE_LIMIT:?}: {}", raw.text()));
    }
    parse(&raw.bytes, method == "HEAD").map_err(|e| format!("{method} {path}: {e} ({:?}): {}", raw.ending, raw.text()))
}

/// Parses a whole answer read to EOF.
pub fn parse(bytes: &[u8], head_only: bool) -> Result<Reply, String> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no complete response head")?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "the head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut reply = Reply { status, headers, body: Vec::new() };
    let rest = &bytes[end + 4..];
    if head_only {
        if !rest.is_empty() {
            return Err(format!("{} bytes after the head of a HEAD answer", rest.len()));
        }
        return Ok(reply);
    }
    reply.body = if reply.header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        dechunk(rest)?
    } else if let Ok(n) = reply.header("content-length").parse::<usize>() {
        if rest.len() < n {
            return Err(format!("body cut short: {} of {n} bytes", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(reply)
}

/// Decodes a whole chunked body; a body without its last chunk is an error.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunked body ends inside a size line")?;
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| "chunk size is not text")?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunked body ends inside a chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_sized_answers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str(), r.header("x-a")), (200, "abcde", "b"));
        let r = parse(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno", false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "no"));
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n", true).is_ok());
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\nbody", true).is_err());
    }
}
