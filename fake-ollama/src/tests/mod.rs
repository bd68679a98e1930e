//! End-to-end tests of the fake over real sockets, with a raw HTTP/1.1 client so framing (chunked
//! bodies, a missing terminating chunk, connection refusal) is visible exactly as sent.

mod compat;
mod faults;
mod image;
mod native;

use std::net::SocketAddr;
use std::time::Duration;

use crate::machine::MachineSpec;
use herd_core::ids::ModelName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{FakeConfig, FakeHandle, FakeOllama, Timing};

/// Longest any test request may take before the test fails.
const LIMIT: Duration = Duration::from_secs(10);

pub(super) fn spec(disk: &[(&str, f64)], preloaded: &[&str], num_parallel: u32) -> MachineSpec {
    MachineSpec {
        name: "fake-box".into(),
        ram_gb: 64.0,
        gpu_vram_gb: vec![24.0],
        bandwidth_gbps: 400.0,
        num_parallel,
        max_loaded_models: 2,
        disk: disk.iter().map(|&(m, gb)| (ModelName::new(m), gb)).collect(),
        preloaded: preloaded.iter().map(|m| ModelName::new(m)).collect(),
        context_length: 8192,
        load_gbps: 2.0,
        ollama_version: crate::machine::OLLAMA_VERSION.into(),
    }
}

/// The usual disk: a chat model and an embedding model.
pub(super) const DISK: &[(&str, f64)] = &[("qwen3:8b", 5.2), ("nomic-embed-text", 0.3)];

pub(super) async fn start(spec: MachineSpec, timing: Timing) -> FakeHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    FakeOllama::start(addr, FakeConfig { spec, timing, heartbeat: None }).await.unwrap()
}

/// A fixed-timing fake answering as fast as it can.
pub(super) async fn fast() -> FakeHandle {
    start(spec(DISK, &[], 4), Timing::Fixed { first_token: Duration::ZERO, token_interval: Duration::ZERO }).await
}

/// One HTTP response as read off the socket.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body ended properly (the terminating chunk, or all of `Content-Length`).
    pub complete: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// NDJSON lines; every line must parse (as the Python client requires).
    pub fn lines(&self) -> Vec<Value> {
        let text = self.text();
        assert!(text.is_empty() || text.ends_with('\n'), "NDJSON must end with a newline: {text:?}");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))).collect()
    }

    /// SSE events as `(event name, data)`.
    pub fn events(&self) -> Vec<(Option<String>, String)> {
        let text = self.text();
        assert!(text.ends_with("\n\n"), "SSE must end with a blank line: {text:?}");
        text.split_terminator("\n\n")
            .map(|frame| {
                let mut name = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                (name, data)
            })
            .collect()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body; `true` when the terminating chunk was there.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(i) = find(raw, b"\r\n") else { return (out, false) };
        let size_text = std::str::from_utf8(&raw[..i]).unwrap_or("").split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else { return (out, false) };
        raw = &raw[i + 2..];
        if size == 0 {
            return (out, true);
        }
        if raw.len() < size + 2 {
            out.extend_from_slice(&raw[..raw.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn request_bytes(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn parse_reply(raw: &[u8], method: &str) -> Reply {
    let end =
        find(raw, b"\r\n\r\n").unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let rest = &raw[end + 4..];
    let mut reply = Reply { status, head, body: Vec::new(), complete: true };
    if method == "HEAD" {
        return reply;
    }
    if reply.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        (reply.body, reply.complete) = dechunk(rest);
    } else {
        let len: usize = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(rest.len());
        reply.complete = rest.len() >= len;
        reply.body = rest[..rest.len().min(len)].to_vec();
    }
    reply
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
pub(super) async fn call(h: &FakeHandle, method: &str, path: &str, body: &str) -> Reply {
    call_at(h.addr(), method, path, body).await
}

/// [`call`] to any address.
pub(super) async fn call_at(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&request_bytes(method, path, body)).await.unwrap();
    let mut raw = Vec::new();
    timeout(LIMIT, s.read_to_end(&mut raw)).await.expect("answer in time").expect("read");
    parse_reply(&raw, method)
}

pub(super) async fn post(h: &FakeHandle, path: &str, body: &str) -> Reply {
    call(h, "POST", path, body).await
}

pub(super) async fn get(h: &FakeHandle, path: &str) -> Reply {
    call(h, "GET", path, "").await
}
