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
