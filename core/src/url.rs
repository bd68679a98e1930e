//! The one base-URL type: where a router or a node's Ollama is reached. Every address herd takes
//! (`--node`, `--router-url`, `--ollama-host`, a heartbeat's `ollama_host`, an mDNS answer) is
//! parsed here, with `http::Uri`, into the same normal form: lowercase scheme and host, an
//! explicit port, no trailing slash. The scheme is kept: a client that speaks only plain HTTP
//! refuses an `https` URL where it would connect, with a clear error, instead of each parser
//! deciding differently.
//!
//! ```
//! use herd_core::url::BaseUrl;
//!
//! let u = BaseUrl::parse(" Studio.LAN ", 11434).unwrap();
//! assert_eq!(u.as_str(), "http://studio.lan:11434");
//! assert_eq!(u.authority(), "studio.lan:11434");
//! let v6 = BaseUrl::parse("http://[fe80::1]:8080/ollama/", 11434).unwrap();
//! assert_eq!((v6.host(), v6.port(), v6.prefix()), ("fe80::1", 8080, "/ollama"));
//! assert_eq!(v6.as_str(), "http://[fe80::1]:8080/ollama");
//! assert!(BaseUrl::parse("ftp://x", 21).is_err());
//! ```

use std::fmt;

/// The longest URL accepted, bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// A base URL: scheme, host, port and an optional path prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseUrl {
    text: String,
    https: bool,
    /// Where the host starts and ends in `text` (without IPv6 brackets).
    host: (usize, usize),
    /// Where `host:port` ends in `text`.
    authority_end: usize,
    port: u16,
}

/// Why a string is not a usable base URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing but spaces, or a scheme with no host.
    #[error("empty URL")]
    Empty,
    /// Longer than [`MAX_URL_BYTES`].
    #[error("URL of {0} bytes; at most {MAX_URL_BYTES}")]
    TooLong(usize),
    /// A space or control character inside.
    #[error("URL contains {0:?}")]
    InvalidChar(char),
    /// Not `http` or `https`.
    #[error("unsupported scheme {0:?}: use http:// or https://")]
    UnsupportedScheme(String),
    /// User information, a query or a fragment (a base URL has none), or not a URL at all.
    #[error("invalid URL {0:?}: {1}")]
    Invalid(String, &'static str),
}

impl BaseUrl {
    /// Parses `scheme://host[:port][/prefix]`, `host:port` or `host` (scheme `http`, port
    /// `default_port` when not given).
    ///
    /// # Errors
    /// [`UrlError`] says what is wrong.
    pub fn parse(raw: &str, default_port: u16) -> Result<BaseUrl, UrlError> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_BYTES {
            return Err(UrlError::TooLong(raw.len()));
        }
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some(c) = raw.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::InvalidChar(c));
        }
        let with_scheme;
        let full = if raw.contains("://") {
            raw
        } else {
            with_scheme = format!("http://{raw}");
            &with_scheme
        };
        let invalid = |why| UrlError::Invalid(raw.to_string(), why);
        let uri: http::Uri = full.parse().map_err(|_| match full.split_once("://") {
            Some((_, "" | "/")) => UrlError::Empty,
            _ => invalid("not a URL"),
        })?;
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let https = match scheme.as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(UrlError::UnsupportedScheme(scheme)),
        };
        let authority = uri.authority().ok_or(UrlError::Empty)?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        if uri.query().is_some() || full.contains('#') {
            return Err(invalid("a base URL has no query or fragment"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host.is_empty() {
            return Err(UrlError::Empty);
        }
        let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, r)| r);
        let port = match authority.port_u16() {
            Some(p) => p,
            None if after_host.contains(':') => return Err(invalid("the port is not a number from 0 to 65535")),
            None => default_port,
        };
        let prefix = uri.path().trim_end_matches('/');
        let bracketed = host.contains(':');
        let mut text = format!("{scheme}://");
        let host_start = text.len() + usize::from(bracketed);
        if bracketed {
            text.push_str(&format!("[{host}]:{port}"));
        } else {
            text.push_str(&format!("{host}:{port}"));
        }
        let authority_end = text.len();
        text.push_str(prefix);
        Ok(BaseUrl { text, https, host: (host_start, host_start + host.len()), authority_end, port })
    }

    /// The normal form, `scheme://host:port[/prefix]`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.text[self.host.0..self.host.1]
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` as it goes in a `Host` header and to `connect` (IPv6 bracketed).
    pub fn authority(&self) -> &str {
        let start = if self.https { "https://".len() } else { "http://".len() };
        &self.text[start..self.authority_end]
    }

    /// The path prefix, without a trailing slash (usually empty).
    pub fn prefix(&self) -> &str {
        &self.text[self.authority_end..]
    }

    /// The same scheme and port on another host (a node reached at its heartbeat's source
    /// address).
    pub fn with_host(&self, host: &str) -> Result<BaseUrl, UrlError> {
        let scheme = if self.https { "https" } else { "http" };
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        BaseUrl::parse(&format!("{scheme}://{host}:{}{}", self.port, self.prefix()), self.port)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str, port: u16) -> String {
        BaseUrl::parse(raw, port).unwrap_or_else(|e| panic!("{raw}: {e}")).as_str().to_string()
    }

    #[test]
    fn normal_forms() {
        assert_eq!(ok("10.0.0.5:11435/", 1), "http://10.0.0.5:11435");
        assert_eq!(ok("HTTPS://R.lan//", 443), "https://r.lan:443");
        assert_eq!(ok("http://box", 11434), "http://box:11434");
        assert_eq!(ok("http://box:80", 11434), "http://box:80", "an explicit default port is kept");
        assert_eq!(ok("router.local/herd/", 11435), "http://router.local:11435/herd");
        assert_eq!(ok("[::1]", 11434), "http://[::1]:11434");
        let u = BaseUrl::parse("https://[FD00::5]:9/x", 1).unwrap();
        assert_eq!(
            (u.host(), u.port(), u.authority(), u.prefix(), u.is_https()),
            ("fd00::5", 9, "[fd00::5]:9", "/x", true)
        );
        assert_eq!(u.with_host("10.0.0.1").unwrap().as_str(), "https://10.0.0.1:9/x");
        assert_eq!(u.with_host("fe80::2").unwrap().as_str(), "https://[fe80::2]:9/x");
    }

    #[test]
    fn refusals() {
        assert_eq!(BaseUrl::parse("  ", 1), Err(UrlError::Empty));
        assert_eq!(BaseUrl::parse("http://", 1), Err(UrlError::Empty));
        assert_eq!(BaseUrl::parse("a b", 1), Err(UrlError::InvalidChar(' ')));
        assert_eq!(BaseUrl::parse("ftp://x", 1), Err(UrlError::UnsupportedScheme("ftp".into())));
        assert_eq!(BaseUrl::parse(&"x".repeat(3000), 1), Err(UrlError::TooLong(3000)));
        for bad in ["http://u:p@host", "http://host?x=1", "http://host/#f", "http://host:99999", "http://[::1"] {
            assert!(BaseUrl::parse(bad, 1).is_err(), "{bad}");
        }
    }
}
