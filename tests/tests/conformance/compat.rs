//! What ollama-herd's users rely on beyond the APIs themselves: CORS for browser clients.

use super::harness::{Fleet, Router};
use super::http;

/// CORS is off by default (an `OPTIONS` preflight is a method the path does not answer, and no
/// CORS header is sent); with `--cors-origins` a preflight from an allowed origin is answered
/// without a key, another origin's is refused, and answers to an allowed origin say so and
/// expose the routing headers.
pub fn cors_off_by_default_and_preflights_when_configured(r: Router) {
    let preflight = |f: &Fleet, origin: &str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ];
        http::call(f.addr(), "OPTIONS", "/v1/chat/completions", &headers, b"").unwrap_or_else(|e| panic!("{e}"))
    };
    let off = Fleet::start(r, &[]);
    let refused = preflight(&off, "http://localhost:3000");
    assert_eq!(refused.status, 405, "{}", refused.text());
    assert_eq!(refused.header("access-control-allow-origin"), "");
    let tags = off.send("GET", "/api/tags", &[("origin", "http://localhost:3000")], b"");
    assert_eq!((tags.status, tags.header("access-control-allow-origin")), (200, ""));
    drop(off);

    let mut on =
        Fleet::start(r, &["--cors-origins", "http://localhost:3000,https://*.example.com", "--api-keys", "k1"]);
    let ok = preflight(&on, "http://localhost:3000");
    assert_eq!(ok.status, 204, "a preflight needs no key: {}", ok.text());
    assert_eq!(ok.header("access-control-allow-origin"), "http://localhost:3000");
    assert_eq!(ok.header("access-control-allow-headers"), "authorization, content-type");
    assert!(ok.header("access-control-allow-methods").contains("POST"));
    assert_eq!(preflight(&on, "https://app.example.com").status, 204);
    let evil = preflight(&on, "https://example.com.evil.net");
    assert_eq!((evil.status, evil.header("access-control-allow-origin")), (400, ""));
    on.use_key("k1");
    let tags = on.send("GET", "/api/tags", &[("origin", "http://localhost:3000")], b"");
    assert_eq!(tags.status, 200);
    assert_eq!(tags.header("access-control-allow-origin"), "http://localhost:3000");
    assert!(tags.header("access-control-expose-headers").contains("x-fleet-node"));
    assert!(tags.header("vary").contains("Origin"));
    let denied = on.send("GET", "/api/tags", &[("origin", "http://other:1")], b"");
    assert_eq!((denied.status, denied.header("access-control-allow-origin")), (200, ""));
    // A refusal carries the CORS headers too, so the page can read the error.
    let unauthorized = http::call(on.addr(), "GET", "/api/tags", &[("origin", "http://localhost:3000")], b"").unwrap();
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.header("access-control-allow-origin"), "http://localhost:3000");
}

/// A tiny image server on `ip`: `/cat.png` (a PNG), `/big.png` (2 MiB), `/page` (HTML) and
/// `/redirect` (to `redirect_to`); counts the requests it serves. Stops with the test process.
fn image_server(ip: &str, redirect_to: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind((ip, 0)).expect("binding the image server");
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = line.split(' ').nth(1).unwrap_or("");
            let png: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 64]].concat();
            let (head, body): (String, Vec<u8>) = match path {
                "/cat.png" => ("200 OK\r\ncontent-type: image/png".into(), png),
                "/big.png" => ("200 OK\r\ncontent-type: image/png".into(), vec![1u8; 2 << 20]),
                "/page" => ("200 OK\r\ncontent-type: text/html".into(), b"<html></html>".to_vec()),
                "/redirect" => (format!("302 Found\r\nlocation: {redirect_to}"), Vec::new()),
                _ => ("404 Not Found\r\ncontent-type: text/plain".into(), b"no".to_vec()),
            };
            let _ = write!(stream, "HTTP/1.1 {head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(&body);
        }
    });
    (port, hits)
}

/// OpenAI `image_url` parts with an http(s) URL: refused with Ollama's 400 unless the operator
/// lists where images may come from; then fetched once by the router (within its size limit,
/// images only), and never from an address outside the list, through a redirect either, nor
/// from loopback because a name resolves there.
pub fn image_urls_are_fetched_only_where_allowed(r: Router) {
    let (other_port, other_hits) = image_server("127.0.0.3", String::new());
    let (port, hits) = image_server("127.0.0.2", format!("http://127.0.0.3:{other_port}/cat.png"));
    let chat = |f: &Fleet, url: &str| {
        let body = serde_json::json!({"model": "llava:7b", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": url}}]}]});
        f.post("/v1/chat/completions", &body)
    };
    let cat = format!("http://127.0.0.2:{port}/cat.png");
    let mut off = Fleet::start(r, &[]);
    off.fake(super::FakeSpec::new("alpha", &["llava:7b"]));
    off.wait_nodes(&["alpha"]);
    let refused = chat(&off, &cat);
    let message = super::Proto::OpenAi.assert_error(&refused, 400, "invalid_request_error");
    assert!(message.contains("image URLs are not currently supported"), "{message}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(off);

    let mut f = Fleet::start(r, &["--image-url-hosts", "127.0.0.2/32", "--image-url-max-mb", "1"]);
    f.fake(super::FakeSpec::new("alpha", &["llava:7b"]));
    f.wait_nodes(&["alpha"]);
    let ok = chat(&f, &cat);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["choices"][0]["message"]["role"], "assistant");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "fetched once");
    for (url, why) in [
        (format!("http://127.0.0.2:{port}/redirect"), "127.0.0.3"),
        (format!("http://127.0.0.2:{port}/big.png"), "larger than"),
        (format!("http://127.0.0.2:{port}/page"), "not an image"),
        (format!("http://localhost:{port}/cat.png"), "localhost"),
        (format!("http://127.0.0.3:{other_port}/cat.png"), "127.0.0.3"),
        ("ftp://127.0.0.2/cat.png".to_string(), "invalid image"),
    ] {
        let reply = chat(&f, &url);
        let message = super::Proto::OpenAi.assert_error(&reply, 400, "invalid_request_error");
        assert!(message.contains(why), "{url}: {message}");
    }
    assert_eq!(other_hits.load(std::sync::atomic::Ordering::SeqCst), 0, "never reached outside the list");
}
