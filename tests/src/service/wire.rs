//! The HTTP/1.1 the simulated machines and clients speak, written here with `httparse` and by
//! hand: not with core's codec, so a bug there cannot hide on both ends of a connection.

use bytes::{Buf, BytesMut};
use herd_service::upstream::Transport;
use std::io;

/// Most bytes a head may take.
const MAX_HEAD: usize = 64 * 1024;

/// Reads more bytes into `buf`; `Ok(0)` at the end of the stream.
pub async fn fill<T: Transport>(conn: &T, buf: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|cx| conn.poll_read(cx, buf)).await
}

/// Writes all of `data`.
pub async fn write_all<T: Transport>(conn: &T, data: &[u8]) -> io::Result<()> {
    herd_service::upstream::write_all(conn, data).await
}

/// A request as a machine reads it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The target.
    pub path: String,
    /// Header fields, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// Whether the client asked to close after this one.
    pub fn close(&self) -> bool {
        self.headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"))
    }
}

/// Reads one request (`Content-Length` bodies only: the router sends no other). `Ok(None)` when
/// the connection ended before a request began.
pub async fn read_request<T: Transport>(conn: &T, buf: &mut BytesMut) -> io::Result<Option<Request>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let method = req.method.unwrap_or_default().to_string();
                let path = req.path.unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if headers.iter().any(|(k, _)| k == "transfer-encoding") {
                    return Err(io::Error::other("chunked request bodies are not expected"));
                }
                buf.advance(n);
                while buf.len() < len {
                    if fill(conn, buf).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                let body = buf.split_to(len).to_vec();
                return Ok(Some(Request { method, path, headers, body }));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(io::Error::other("head too large"));
                }
            }
            Err(e) => return Err(io::Error::other(format!("bad request head: {e}"))),
        }
        if fill(conn, buf).await? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
    }
}

/// A response head as a client reads it.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercase.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses a response head at the start of `buf`, removing it; `Ok(None)` when incomplete.
pub fn parse_response_head(buf: &mut BytesMut) -> io::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let head = ResponseHead {
                status: resp.code.unwrap_or(0),
                headers: resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect(),
            };
            buf.advance(n);
            Ok(Some(head))
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) => Err(io::Error::other("response head too large")),
        Err(e) => Err(io::Error::other(format!("bad response head: {e}"))),
    }
}

/// A chunked body decoder: `feed` takes what arrived and returns the data decoded so far.
#[derive(Debug, Default)]
pub struct Dechunk {
    /// Bytes left in the current chunk's data (and its CRLF).
    left: usize,
    in_data: bool,
    /// The last chunk and its blank line were read.
    pub done: bool,
}

impl Dechunk {
    /// Decodes what it can of `buf` (consuming it) into `out`.
    ///
    /// # Errors
    ///
    /// The framing is malformed.
    pub fn feed(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            if self.done {
                return Ok(());
            }
            if self.in_data {
                if self.left > 2 {
                    let take = (self.left - 2).min(buf.len());
                    out.extend_from_slice(&buf[..take]);
                    buf.advance(take);
                    self.left -= take;
                    if take == 0 {
                        return Ok(());
                    }
                    continue;
                }
                if buf.len() < self.left {
                    return Ok(());
                }
                if buf[..self.left] != b"\r\n"[2 - self.left..] {
                    return Err(io::Error::other("chunk data not followed by CRLF"));
                }
                buf.advance(self.left);
                self.in_data = false;
                continue;
            }
            let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                if buf.len() > 1024 {
                    return Err(io::Error::other("chunk size line too long"));
                }
                return Ok(());
            };
            let line = std::str::from_utf8(&buf[..eol]).map_err(|_| io::Error::other("chunk size not text"))?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // The last chunk: no trailers are sent, so a blank line follows.
                if buf.len() < eol + 4 {
                    return Ok(());
                }
                if &buf[eol + 2..eol + 4] != b"\r\n" {
                    return Err(io::Error::other("trailers after the last chunk"));
                }
                buf.advance(eol + 4);
                self.done = true;
                return Ok(());
            }
            buf.advance(eol + 2);
            self.left = size + 2;
            self.in_data = true;
        }
    }
}

/// Encodes `data` as one chunk.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_in_pieces() {
        let wire = b"5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            let mut buf = BytesMut::from(&wire[..cut]);
            d.feed(&mut buf, &mut out).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            d.feed(&mut buf, &mut out).unwrap();
            assert!(d.done, "cut at {cut}");
            assert_eq!(out, b"hello!");
        }
    }
}
