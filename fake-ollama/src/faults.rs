//! Injected failures: which ones are armed, how many requests each still hits, and the JSON form
//! the `POST /_fake/fault` control endpoint takes. Checking is one atomic load while none is armed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::Value;

/// A failure to inject into a running fake (see [`super::FakeHandle::inject`]).
#[derive(Clone, Debug, PartialEq)]
pub enum FakeFault {
    /// Stop listening (new connections are refused) and close every open connection, until
    /// [`super::FakeHandle::clear_faults`].
    RefuseConnections,
    /// The next `count` inference requests answer `code` with the surface's error body.
    Status {
        /// HTTP status.
        code: u16,
        /// Requests it hits.
        count: u32,
    },
    /// The next `count` inference requests never get a response head (held until the client
    /// gives up).
    HangBeforeFirstByte {
        /// Requests it hits.
        count: u32,
    },
    /// The next `count` streaming requests send `after_chunks` chunks, then the connection is
    /// dropped without the terminating chunk.
    DieMidStream {
        /// Chunks (NDJSON lines / SSE events of one native chunk) sent before the cut.
        after_chunks: u32,
        /// Requests it hits.
        count: u32,
    },
    /// Every delay (load, prefill, first token, token interval) multiplied by `factor`.
    Slow {
        /// Clamped to `0.001..=10000`; non-positive or non-finite factors read as 1.
        factor: f64,
    },
}

/// Why a control body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultParseError {
    /// Not a JSON object with a string `kind`.
    #[error("fault must be a JSON object with a string \"kind\"")]
    NotAFault,
    /// `kind` is not one the fake knows.
    #[error("unknown fault kind {0:?}")]
    UnknownKind(String),
    /// A field is missing or not a number.
    #[error("fault field {0:?} must be a number")]
    BadField(&'static str),
}

/// What the control endpoint was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Arm a fault.
    Inject(FakeFault),
    /// `{"kind":"clear"}`.
    Clear,
}

/// Parses a control body: `{"kind":"status","code":500,"count":1}`, `{"kind":"refuse"}`,
/// `{"kind":"hang","count":1}`, `{"kind":"die_mid_stream","after_chunks":3,"count":1}`,
/// `{"kind":"slow","factor":2}` or `{"kind":"clear"}`. `count` defaults to 1.
///
/// # Errors
/// [`FaultParseError`] for anything else.
pub fn parse_control(body: &[u8]) -> Result<Control, FaultParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| FaultParseError::NotAFault)?;
    let kind = v.get("kind").and_then(Value::as_str).ok_or(FaultParseError::NotAFault)?;
    let int = |field: &'static str, default: Option<u64>| -> Result<u64, FaultParseError> {
        match v.get(field) {
            None | Some(Value::Null) => default.ok_or(FaultParseError::BadField(field)),
            Some(x) => x.as_u64().ok_or(FaultParseError::BadField(field)),
        }
    };
    let count = || int("count", Some(1)).map(|c| u32::try_from(c).unwrap_or(u32::MAX));
    let fault = match kind {
        "clear" => return Ok(Control::Clear),
        "refuse" => FakeFault::RefuseConnections,
        "status" => {
            let code = int("code", None)?;
            let code = u16::try_from(code).ok().filter(|c| (100..=599).contains(c));
            FakeFault::Status { code: code.ok_or(FaultParseError::BadField("code"))?, count: count()? }
        }
        "hang" => FakeFault::HangBeforeFirstByte { count: count()? },
        "die_mid_stream" => FakeFault::DieMidStream {
            after_chunks: u32::try_from(int("after_chunks", None)?).unwrap_or(u32::MAX),
            count: count()?,
        },
        "slow" => FakeFault::Slow {
            factor: v.get("factor").and_then(Value::as_f64).ok_or(FaultParseError::BadField("factor"))?,
        },
        other => return Err(FaultParseError::UnknownKind(other.to_string())),
    };
    Ok(Control::Inject(fault))
}

/// Bounds of the slowness factor, so scaled delays stay representable.
const MIN_SLOW: f64 = 1e-3;
const MAX_SLOW: f64 = 1e4;

/// What an inference request must do before it runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Before {
    /// Run normally.
    Run,
    /// Answer this status.
    Status(u16),
    /// Never answer.
    Hang,
}

#[derive(Clone, Debug, Default)]
struct Armed {
    statuses: Vec<(u16, u32)>,
    hangs: u32,
    die: Option<(u32, u32)>,
}

/// The armed faults of one fake. `refusing` and `slow` live in the server and the engine, which
/// act on them; this keeps the per-request ones.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    any: AtomicBool,
    armed: Mutex<Armed>,
    slow_bits: AtomicU64,
}

impl Faults {
    /// Arms a per-request fault or sets the slowness (refusal is the server's).
    pub fn arm(&self, fault: &FakeFault) {
        let mut a = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match *fault {
            FakeFault::Status { code, count } if count > 0 => a.statuses.push((code, count)),
            FakeFault::HangBeforeFirstByte { count } => a.hangs = a.hangs.saturating_add(count),
            FakeFault::DieMidStream { after_chunks, count } if count > 0 => a.die = Some((after_chunks, count)),
            FakeFault::Slow { factor } => {
                let f = if factor.is_finite() && factor > 0.0 { factor.clamp(MIN_SLOW, MAX_SLOW) } else { 1.0 };
                self.slow_bits.store(f.to_bits(), Ordering::Relaxed);
            }
            _ => {}
        }
        let any = !a.statuses.is_empty() || a.hangs > 0 || a.die.is_some();
        self.any.store(any, Ordering::Release);
    }

    /// Disarms everything, slowness included.
    pub fn clear(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Armed::default();
        self.any.store(false, Ordering::Release);
        self.slow_bits.store(0, Ordering::Relaxed);
    }

    /// The delay multiplier (1 when healthy).
    pub fn slow(&self) -> f64 {
        match self.slow_bits.load(Ordering::Relaxed) {
            0 => 1.0,
            bits => f64::from_bits(bits),
        }
    }

    /// Takes what the next inference request must do (status faults first, then hangs).
    pub fn before(&self) -> Before {
        if !self.any.load(Ordering::Acquire) {
            return Before::Run;
        }
        let mut a = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let out = if let Some((code, left)) = a.statuses.first_mut() {
            let code = *code;
            *left -= 1;
            if *left == 0 {
                a.statuses.remove(0);
            }
            Before::Status(code)
        } else if a.hangs > 0 {
            a.hangs -= 1;
            Before::Hang
        } else {
            Before::Run
        };
        self.any.store(!a.statuses.is_empty() || a.hangs > 0 || a.die.is_some(), Ordering::Release);
        out
    }

    /// For a streaming request that is about to start: the chunks after which to cut it, if a
    /// die-mid-stream fault is armed (taking one of its count).
    pub fn die_after(&self) -> Option<u32> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut a = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let (after, left) = a.die.as_mut()?;
        let after = *after;
        *left -= 1;
        if *left == 0 {
            a.die = None;
        }
        self.any.store(!a.statuses.is_empty() || a.hangs > 0 || a.die.is_some(), Ordering::Release);
        Some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bodies() {
        let p = |s: &str| parse_control(s.as_bytes());
        assert_eq!(p(r#"{"kind":"clear"}"#), Ok(Control::Clear));
        assert_eq!(p(r#"{"kind":"refuse"}"#), Ok(Control::Inject(FakeFault::RefuseConnections)));
        assert_eq!(
            p(r#"{"kind":"status","code":500}"#),
            Ok(Control::Inject(FakeFault::Status { code: 500, count: 1 }))
        );
        assert_eq!(p(r#"{"kind":"hang","count":2}"#), Ok(Control::Inject(FakeFault::HangBeforeFirstByte { count: 2 })));
        assert_eq!(
            p(r#"{"kind":"die_mid_stream","after_chunks":3,"count":1}"#),
            Ok(Control::Inject(FakeFault::DieMidStream { after_chunks: 3, count: 1 }))
        );
        assert_eq!(p(r#"{"kind":"slow","factor":2}"#), Ok(Control::Inject(FakeFault::Slow { factor: 2.0 })));
        assert_eq!(p(r#"{"kind":"nope"}"#), Err(FaultParseError::UnknownKind("nope".into())));
        assert_eq!(p(r#"{"kind":"status"}"#), Err(FaultParseError::BadField("code")));
        assert_eq!(p(r#"{"kind":"status","code":7}"#), Err(FaultParseError::BadField("code")));
        assert_eq!(p("[]"), Err(FaultParseError::NotAFault));
    }

    #[test]
    fn counts_run_out() {
        let f = Faults::default();
        assert_eq!(f.before(), Before::Run);
        f.arm(&FakeFault::Status { code: 503, count: 2 });
        f.arm(&FakeFault::HangBeforeFirstByte { count: 1 });
        f.arm(&FakeFault::DieMidStream { after_chunks: 2, count: 1 });
        assert_eq!(f.before(), Before::Status(503));
        assert_eq!(f.before(), Before::Status(503));
        assert_eq!(f.before(), Before::Hang);
        assert_eq!(f.before(), Before::Run);
        assert_eq!(f.die_after(), Some(2));
        assert_eq!(f.die_after(), None);
        f.arm(&FakeFault::Slow { factor: 3.0 });
        assert_eq!(f.slow(), 3.0);
        f.clear();
        assert_eq!(f.slow(), 1.0);
    }
}
