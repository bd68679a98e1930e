//! The `keep_alive` herd asks a node for when the client asked for none (herd-router.md §6.1,
//! wire-api.md §5): ollama-herd sends `-1` so models stay loaded, and so does herd by default.
//! Reading and writing the setting lives here; which bodies get it is `api::plan`'s decision.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// What herd puts in `keep_alive` on a body for a native Ollama endpoint that carries none.
/// The client's own `keep_alive` always wins.
#[derive(Clone, Debug, PartialEq)]
pub enum KeepAlive {
    /// Send none: the node's own `OLLAMA_KEEP_ALIVE` applies (Ollama's default is 5 minutes).
    Off,
    /// Seconds, sent as a JSON number: negative keeps the model loaded until the node needs the
    /// room, `0` unloads it after the request.
    Seconds(f64),
    /// A Go duration as Ollama reads it (`5m`, `1h30m`, `-1m`), sent as a JSON string.
    Duration(String),
}

impl Default for KeepAlive {
    /// ollama-herd's `-1`: keep the model loaded.
    fn default() -> Self {
        KeepAlive::Seconds(-1.0)
    }
}

impl KeepAlive {
    /// The JSON value to send, or `None` for [`KeepAlive::Off`]. Whole seconds go out as an
    /// integer (`-1`, as ollama-herd sends it), others as a float.
    pub fn value(&self) -> Option<Value> {
        match self {
            KeepAlive::Off => None,
            KeepAlive::Seconds(s) if s.fract() == 0.0 && s.abs() < 9.0e15 => Some(Value::from(*s as i64)),
            KeepAlive::Seconds(s) => serde_json::Number::from_f64(*s).map(Value::Number),
            KeepAlive::Duration(d) => Some(Value::String(d.clone())),
        }
    }
}

/// A `keep_alive` setting that Ollama would refuse (or that is not one at all).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "keep-alive {0:?}: expected seconds (-1 keeps models loaded, 0 unloads), an Ollama duration such as 5m or \
     1h30m, or off"
)]
pub struct KeepAliveError(pub String);

impl FromStr for KeepAlive {
    type Err = KeepAliveError;

    /// `off`; a number of seconds (`-1`, `0`, `300`, `2.5`); or a Go duration (`5m`, `-1h`). A
    /// bare number without a unit is seconds here, where Ollama would refuse it as a string, so
    /// it is sent as a number.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(KeepAlive::Off);
        }
        if let Ok(n) = t.parse::<f64>() {
            return if n.is_finite() && is_plain_number(t) {
                Ok(KeepAlive::Seconds(n))
            } else {
                Err(KeepAliveError(s.to_string()))
            };
        }
        if is_go_duration(t) {
            Ok(KeepAlive::Duration(t.to_string()))
        } else {
            Err(KeepAliveError(s.to_string()))
        }
    }
}

/// Digits with an optional sign and fraction: not `inf`, `NaN` or `1e3`, which Rust reads as
/// numbers and an operator did not mean.
fn is_plain_number(t: &str) -> bool {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == '.') && body.chars().any(|c| c.is_ascii_digit())
}

/// Go's `time.ParseDuration` grammar: an optional sign, then one or more of a decimal number and
/// a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`).
fn is_go_duration(t: &str) -> bool {
    let mut rest = t.strip_prefix(['-', '+']).unwrap_or(t);
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..digits];
        if !number.chars().any(|c| c.is_ascii_digit()) || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"].iter().find(|u| rest.starts_with(**u)) else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::Off => f.write_str("off"),
            KeepAlive::Seconds(s) => write!(f, "{s}"),
            KeepAlive::Duration(d) => f.write_str(d),
        }
    }
}

/// In a config file: a number (seconds), or a string as [`KeepAlive::from_str`] reads it.
impl Serialize for KeepAlive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeepAlive::Seconds(n) => s.serialize_f64(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_f64()
                .filter(|n| n.is_finite())
                .map(KeepAlive::Seconds)
                .ok_or_else(|| serde::de::Error::custom(KeepAliveError(n.to_string()))),
            Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(KeepAliveError(other.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_an_operator_writes() {
        assert_eq!("-1".parse(), Ok(KeepAlive::Seconds(-1.0)));
        assert_eq!(" 0 ".parse(), Ok(KeepAlive::Seconds(0.0)));
        assert_eq!("2.5".parse(), Ok(KeepAlive::Seconds(2.5)));
        assert_eq!("OFF".parse(), Ok(KeepAlive::Off));
        for d in ["5m", "1h30m", "-1m", "300ms", "1.5h", "2µs", "0s"] {
            assert_eq!(d.parse(), Ok(KeepAlive::Duration(d.into())), "{d}");
        }
        for bad in ["", "forever", "5 m", "5x", "m", "1..5s", "inf", "NaN", "1e3", "-", "5m3"] {
            assert!(bad.parse::<KeepAlive>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn sent_as_ollama_reads_it() {
        assert_eq!(KeepAlive::default().value(), Some(json!(-1)), "ollama-herd's -1, an integer");
        assert_eq!(KeepAlive::Seconds(2.5).value(), Some(json!(2.5)));
        assert_eq!(KeepAlive::Duration("5m".into()).value(), Some(json!("5m")));
        assert_eq!(KeepAlive::Off.value(), None);
    }

    #[test]
    fn config_files_take_numbers_and_strings() {
        for (v, want) in [
            (json!(-1), KeepAlive::Seconds(-1.0)),
            (json!("10m"), KeepAlive::Duration("10m".into())),
            (json!("off"), KeepAlive::Off),
            (json!("-1"), KeepAlive::Seconds(-1.0)),
        ] {
            let got: KeepAlive = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(got, want, "{v}");
            assert_eq!(serde_json::from_value::<KeepAlive>(serde_json::to_value(&got).unwrap()).unwrap(), got);
        }
        assert!(serde_json::from_value::<KeepAlive>(json!(true)).is_err());
        assert!(serde_json::from_value::<KeepAlive>(json!("soon")).is_err());
    }
}
