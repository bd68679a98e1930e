//! CORS: which browser origins may call the router, and the headers that say so.
//!
//! Off unless origins are configured (`HERD_CORS_ORIGINS`, or ollama-herd's
//! `FLEET_CORS_ORIGINS`): then no CORS header is ever sent and a preflight `OPTIONS` is refused
//! like any other method a path does not answer. The list is comma-separated; `*` alone allows
//! every origin, and a `*` inside an origin matches any run of characters
//! (`http://localhost:*`, `https://*.example.com`), as ollama-herd's.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed
//! origin is answered 204 with the methods herd serves and every header the browser asks for; from
//! another origin, 400. An ordinary request from an allowed origin gets `Access-Control-Allow-
//! Origin` and the exposed headers (herd's and ollama-herd's routing headers, `Retry-After`).
//! Preflights carry no credentials, so they need no API key; the request that follows does.

use super::names;

/// The methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";
/// How long a browser may cache a preflight's answer, seconds.
pub const MAX_AGE_SECS: u32 = 600;

/// The response headers a page's script may read.
pub fn expose_headers() -> String {
    [
        names::NODE_HEADER,
        names::MODEL_HEADER,
        names::ATTEMPTS_HEADER,
        names::SCORE_HEADER,
        names::ROUTE_HEADER,
        names::REQUEST_ID_HEADER,
        names::FLEET_NODE_HEADER,
        names::FLEET_SERVED_MODEL_HEADER,
        names::FLEET_REQUESTED_MODEL_HEADER,
        names::FLEET_FALLBACK_HEADER,
        names::FLEET_BACKEND_HEADER,
        names::FLEET_RETRIES_HEADER,
        names::FLEET_SCORE_HEADER,
        names::FLEET_AFFINITY_HEADER,
        names::FLEET_CONTEXT_OVERFLOW_HEADER,
        "x-thinking-tokens",
        "x-output-tokens",
        "x-done-reason",
        "x-budget-used",
        "retry-after",
    ]
    .join(", ")
}

/// A configured origin.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*` alone.
    Any,
    /// The parts between `*`s, matched in order; an origin without `*` is one part.
    Parts(Vec<String>),
}

impl Pattern {
    fn matches(&self, origin: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Parts(parts) => {
                let (first, rest) = parts.split_first().expect("at least one part");
                let Some(mut tail) = origin.strip_prefix(first.as_str()) else { return false };
                if rest.is_empty() {
                    return tail.is_empty();
                }
                let (last, middle) = rest.split_last().expect("not empty");
                for part in middle {
                    match tail.find(part.as_str()) {
                        Some(i) => tail = &tail[i + part.len()..],
                        None => return false,
                    }
                }
                tail.len() >= last.len() && tail.ends_with(last.as_str())
            }
        }
    }
}

/// A bad origin in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsError(pub String);

impl std::fmt::Display for CorsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CORS origin {:?} is not an origin (scheme://host[:port], `*` as a wildcard)", self.0)
    }
}

impl std::error::Error for CorsError {}

/// The origins allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    patterns: Vec<Pattern>,
}

/// What CORS adds to a request's handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// Nothing: CORS off, no `Origin`, or an origin not allowed on an ordinary request.
    None,
    /// A preflight: answer it with this status and these headers, and do nothing else.
    Preflight(u16, Vec<(&'static str, String)>),
    /// Add these headers to the answer.
    Headers(Vec<(&'static str, String)>),
}

impl CorsPolicy {
    /// The policy of a comma-separated list; `None` (CORS off) when it names no origin.
    ///
    /// # Errors
    /// An entry is not `*` and not `scheme://…` (a trailing `/` is dropped, as browsers send none).
    pub fn parse(list: &str) -> Result<Option<CorsPolicy>, CorsError> {
        let mut patterns = Vec::new();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if raw == "*" {
                patterns.push(Pattern::Any);
                continue;
            }
            let origin = raw.trim_end_matches('/');
            let well_formed = origin.split_once("://").is_some_and(|(scheme, host)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.' || b == b'*')
                    && !host.is_empty()
                    && !host.contains('/')
            });
            if !well_formed || origin.len() > 512 {
                return Err(CorsError(raw.to_string()));
            }
            patterns.push(Pattern::Parts(origin.split('*').map(str::to_ascii_lowercase).collect()));
        }
        Ok((!patterns.is_empty()).then_some(CorsPolicy { patterns }))
    }

    /// Whether `origin` may call the router.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        self.patterns.iter().any(|p| p.matches(&origin))
    }

    fn any(&self) -> bool {
        self.patterns.contains(&Pattern::Any)
    }

    /// What to do for a request with this method and these headers (`origin`: `Origin`;
    /// `request_method` and `request_headers`: a preflight's `Access-Control-Request-*`).
    pub fn decide(
        &self,
        method: &str,
        origin: Option<&str>,
        request_method: Option<&str>,
        request_headers: Option<&str>,
    ) -> Cors {
        let Some(origin) = origin.map(str::trim).filter(|o| !o.is_empty()) else { return Cors::None };
        let allowed = self.allows(origin);
        // `*` answers `*`; a listed origin is echoed, and caches must keep answers per origin.
        let allow_origin = || -> Vec<(&'static str, String)> {
            if self.any() {
                vec![("access-control-allow-origin", "*".to_string())]
            } else {
                vec![("access-control-allow-origin", origin.to_string()), ("vary", "Origin".to_string())]
            }
        };
        if method == "OPTIONS" && request_method.is_some() {
            if !allowed {
                return Cors::Preflight(400, vec![("content-type", names::TEXT.to_string())]);
            }
            let mut h = allow_origin();
            h.push(("access-control-allow-methods", ALLOW_METHODS.to_string()));
            if let Some(asked) = request_headers.map(str::trim).filter(|v| !v.is_empty()) {
                // Any header the page wants to send; echoed (bounded, visible ASCII only).
                let echoed: String = asked.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(2048).collect();
                h.push(("access-control-allow-headers", echoed));
            }
            h.push(("access-control-max-age", MAX_AGE_SECS.to_string()));
            return Cors::Preflight(204, h);
        }
        if !allowed {
            return Cors::None;
        }
        let mut h = allow_origin();
        h.push(("access-control-expose-headers", expose_headers()));
        Cors::Headers(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &str) -> CorsPolicy {
        CorsPolicy::parse(list).unwrap().unwrap()
    }

    #[test]
    fn empty_is_off_and_bad_entries_are_refused() {
        assert_eq!(CorsPolicy::parse(""), Ok(None));
        assert_eq!(CorsPolicy::parse(" , "), Ok(None));
        assert!(CorsPolicy::parse("localhost:3000").is_err());
        assert!(CorsPolicy::parse("http://a.com/path").is_err());
        assert!(CorsPolicy::parse("http://").is_err());
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let p = policy("http://localhost:3000, https://*.example.com/,http://127.0.0.1:*");
        assert!(p.allows("http://localhost:3000"));
        assert!(p.allows("HTTP://LOCALHOST:3000"));
        assert!(!p.allows("http://localhost:30000"));
        assert!(!p.allows("http://localhost:3000.evil.com"));
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("https://a.b.example.com"));
        assert!(!p.allows("https://example.com"));
        assert!(!p.allows("https://app.example.com.evil.net"));
        assert!(!p.allows("http://app.example.com"));
        assert!(p.allows("http://127.0.0.1:8080"));
        assert!(!p.allows("http://127.0.0.2:8080"));
        assert!(policy("*").allows("https://anything.at.all"));
    }

    #[test]
    fn preflights_and_ordinary_requests() {
        let p = policy("http://localhost:3000");
        let Cors::Preflight(204, h) =
            p.decide("OPTIONS", Some("http://localhost:3000"), Some("POST"), Some("authorization, content-type"))
        else {
            panic!()
        };
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("access-control-allow-origin"), Some("http://localhost:3000"));
        assert_eq!(get("access-control-allow-headers"), Some("authorization, content-type"));
        assert_eq!(get("vary"), Some("Origin"));
        assert!(get("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
        assert!(matches!(p.decide("OPTIONS", Some("http://evil.com"), Some("POST"), None), Cors::Preflight(400, _)));
        assert_eq!(p.decide("POST", Some("http://evil.com"), None, None), Cors::None);
        assert_eq!(p.decide("POST", None, None, None), Cors::None);
        let Cors::Headers(h) = p.decide("POST", Some("http://localhost:3000"), None, None) else { panic!() };
        assert!(h.iter().any(|(k, v)| *k == "access-control-expose-headers" && v.contains("x-fleet-node")));
        let Cors::Headers(h) = policy("*").decide("GET", Some("http://x.y"), None, None) else { panic!() };
        assert_eq!(h[0], ("access-control-allow-origin", "*".to_string()));
        assert!(!h.iter().any(|(k, _)| *k == "vary"));
    }
}
