//! A node's Ollama version, as its heartbeat reports it (`ollama.version`, from Ollama's
//! `/api/version`), read for what the node's server can do: which endpoints it serves.
//!
//! ```
//! use herd_core::fleet::version::OllamaVersion;
//!
//! assert!(OllamaVersion::parse("0.14.0").serves_anthropic_messages());
//! assert!(!OllamaVersion::parse("0.13.5").serves_anthropic_messages());
//! assert!(!OllamaVersion::parse("0.14.0-rc2").serves_anthropic_messages());
//! assert!(!OllamaVersion::parse("").serves_anthropic_messages(), "unknown: assume the oldest");
//! ```

use std::cmp::Ordering;
use std::fmt;

/// The first Ollama release with `POST /v1/messages`, the Anthropic-compatible endpoint
/// (wire-api.md §0: the first release tag that contains the route).
pub const ANTHROPIC_MESSAGES_SINCE: OllamaVersion = OllamaVersion::release(0, 14, 0);

/// An Ollama version: `major.minor.patch`, whether it is a pre-release (`-rc1`), or unknown
/// (empty, `0.0.0` as a build from source reports, or anything that does not parse). Unknown
/// compares below every known version: a node is assumed to be able to do only what every
/// Ollama can.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OllamaVersion(Option<Known>);

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Known {
    major: u32,
    minor: u32,
    patch: u32,
    /// A release sorts after its own pre-releases.
    release: bool,
}

impl OllamaVersion {
    /// A release version.
    pub const fn release(major: u32, minor: u32, patch: u32) -> Self {
        OllamaVersion(Some(Known { major, minor, patch, release: true }))
    }

    /// The version no report gave (or gave as something unreadable).
    pub const UNKNOWN: OllamaVersion = OllamaVersion(None);

    /// Reads a reported version: an optional `v`, `major.minor[.patch]`, then optionally a
    /// `-pre-release` and `+build` (ignored). Anything else, and `0.0.0`, is unknown.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        let raw = raw.strip_prefix(['v', 'V']).unwrap_or(raw);
        let (core, release) = match raw.split_once(['-', '+']) {
            Some((core, _)) => (core, raw.as_bytes()[core.len()] == b'+'),
            None => (raw, true),
        };
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
            return OllamaVersion::UNKNOWN;
        };
        let patch = match parts.next() {
            None => 0,
            Some(Some(p)) => p,
            Some(None) => return OllamaVersion::UNKNOWN,
        };
        if parts.next().is_some() || (major, minor, patch) == (0, 0, 0) {
            return OllamaVersion::UNKNOWN;
        }
        OllamaVersion(Some(Known { major, minor, patch, release }))
    }

    /// Whether the version is known.
    pub fn is_known(self) -> bool {
        self.0.is_some()
    }

    /// Whether this Ollama serves the Anthropic-compatible `POST /v1/messages` (0.14.0 and
    /// later). An older one answers it `404 page not found`, which the Anthropic SDK reports as
    /// an unknown model; so does an unknown version, for all herd knows.
    pub fn serves_anthropic_messages(self) -> bool {
        self >= ANTHROPIC_MESSAGES_SINCE
    }
}

impl PartialOrd for OllamaVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OllamaVersion {
    /// Unknown first, then by number; a pre-release before its release.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl fmt::Display for OllamaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unknown"),
            Some(k) => {
                write!(f, "{}.{}.{}", k.major, k.minor, k.patch)?;
                if !k.release {
                    f.write_str("-pre")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ollama_reports() {
        assert_eq!(OllamaVersion::parse("0.12.6"), OllamaVersion::release(0, 12, 6));
        assert_eq!(OllamaVersion::parse(" v0.14.1 "), OllamaVersion::release(0, 14, 1));
        assert_eq!(OllamaVersion::parse("0.14"), OllamaVersion::release(0, 14, 0));
        assert_eq!(OllamaVersion::parse("0.32.15+linux"), OllamaVersion::release(0, 32, 15));
        assert!(OllamaVersion::parse("0.14.0-rc2") < OllamaVersion::release(0, 14, 0));
        assert!(OllamaVersion::parse("0.14.1-rc0") > OllamaVersion::release(0, 14, 0));
        for unknown in ["", "0.0.0", "unknown", "1", "0.x.1", "0.14.0.1", "-1.2.3"] {
            assert_eq!(OllamaVersion::parse(unknown), OllamaVersion::UNKNOWN, "{unknown:?}");
        }
        assert!(OllamaVersion::UNKNOWN < OllamaVersion::release(0, 1, 0));
        assert_eq!(OllamaVersion::parse("0.14.0-rc1").to_string(), "0.14.0-pre");
    }

    #[test]
    fn anthropic_messages_from_0_14_0() {
        for (v, serves) in [
            ("0.13.5", false),
            ("0.14.0-rc1", false),
            ("0.14.0", true),
            ("0.20.3", true),
            ("1.0.0", true),
            ("0.0.0", false),
            ("", false),
        ] {
            assert_eq!(OllamaVersion::parse(v).serves_anthropic_messages(), serves, "{v}");
        }
    }
}
