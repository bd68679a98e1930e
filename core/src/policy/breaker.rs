//! A per-node circuit breaker, so a broken node stops getting traffic between heartbeats.
//!
//! ```text
//!            failures >= threshold within window
//!   Closed ─────────────────────────────────────▶ Open { until }
//!     ▲                                             │ now >= until
//!     │ probe succeeds                              ▼
//!     └──────────────────────────────────────── HalfOpen ── probe fails ──▶ Open { until: now + open_for }
//! ```
//! In HalfOpen exactly one attempt (the probe) may be in flight.

use crate::config::RetryConfig;
use crate::time::Instant;
use std::collections::VecDeque;

/// Breaker state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// No traffic until the instant.
    Open {
        /// When one probe is allowed.
        until: Instant,
    },
    /// One probe allowed; `probing` when it is in flight.
    HalfOpen {
        /// A probe attempt is in flight.
        probing: bool,
    },
}

/// One node's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    state: BreakerState,
    failures: VecDeque<Instant>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: BreakerState::Closed, failures: VecDeque::new() }
    }
}

impl Breaker {
    /// Current state, after letting time pass (Open becomes HalfOpen at `until`).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => BreakerState::HalfOpen { probing: false },
            s => s,
        }
    }

    /// Whether a new attempt may start now.
    pub fn allows(&self, now: Instant) -> bool {
        !matches!(self.state(now), BreakerState::Open { .. } | BreakerState::HalfOpen { probing: true })
    }

    /// Records that an attempt starts; in HalfOpen it becomes the probe.
    pub fn on_dispatch(&mut self, now: Instant) {
        if let BreakerState::HalfOpen { .. } = self.state(now) {
            self.state = BreakerState::HalfOpen { probing: true };
        }
    }

    /// Records a success; returns true when this closed the breaker. A success while Open (an
    /// attempt that started before the breaker opened) changes nothing: only the probe closes it.
    pub fn on_success(&mut self, now: Instant) -> bool {
        let was = self.state(now);
        if let BreakerState::Open { .. } = was {
            return false;
        }
        self.failures.clear();
        self.state = BreakerState::Closed;
        was != BreakerState::Closed
    }

    /// Records a node failure; returns true when this opened the breaker.
    pub fn on_failure(&mut self, now: Instant, c: &RetryConfig) -> bool {
        match self.state(now) {
            BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::Open { until: now + c.breaker_open_for };
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::Closed => {
                while self.failures.front().is_some_and(|&t| now.saturating_since(t) >= c.breaker_window) {
                    self.failures.pop_front();
                }
                self.failures.push_back(now);
                if self.failures.len() >= c.breaker_failures as usize {
                    self.failures.clear();
                    self.state = BreakerState::Open { until: now + c.breaker_open_for };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A probe ended without a verdict (cancelled, or a client error): allow another probe.
    /// Returns true when this freed the probe slot.
    pub fn on_abandoned(&mut self, now: Instant) -> bool {
        if let BreakerState::HalfOpen { probing: true } = self.state(now) {
            self.state = BreakerState::HalfOpen { probing: false };
            return true;
        }
        false
    }

    /// When this breaker changes by itself (Open → HalfOpen).
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn opens_on_windowed_failures_then_probes() {
        let c = RetryConfig::default(); // 3 in 30 s, open 10 s
        let mut b = Breaker::default();
        let t = Instant::from_secs(100);
        assert!(!b.on_failure(t, &c));
        assert!(!b.on_failure(t + Duration::from_secs(40), &c), "first failure left the window");
        assert!(!b.on_failure(t + Duration::from_secs(41), &c));
        assert!(b.on_failure(t + Duration::from_secs(42), &c));
        let open = t + Duration::from_secs(42);
        assert!(!b.allows(open + Duration::from_secs(9)));
        assert_eq!(b.deadline(), Some(open + Duration::from_secs(10)));
        let probe = open + Duration::from_secs(10);
        assert!(b.allows(probe));
        b.on_dispatch(probe);
        assert!(!b.allows(probe), "only one probe at a time");
        assert!(b.on_failure(probe, &c), "a failed probe reopens");
        assert!(!b.allows(probe + Duration::from_secs(1)));
        let probe2 = probe + Duration::from_secs(10);
        b.on_dispatch(probe2);
        assert!(b.on_success(probe2));
        assert_eq!(b.state(probe2), BreakerState::Closed);
        assert!(!b.on_success(probe2));
    }

    #[test]
    fn an_old_success_does_not_skip_the_probe() {
        let c = RetryConfig { breaker_failures: 1, ..RetryConfig::default() };
        let mut b = Breaker::default();
        b.on_failure(Instant::ZERO, &c);
        assert!(!b.on_success(Instant::from_secs(1)), "an attempt from before the opening");
        assert!(!b.allows(Instant::from_secs(1)));
    }

    #[test]
    fn abandoned_probe_frees_the_half_open_slot() {
        let c = RetryConfig { breaker_failures: 1, ..RetryConfig::default() };
        let mut b = Breaker::default();
        b.on_failure(Instant::ZERO, &c);
        let t = Instant::from_secs(10);
        b.on_dispatch(t);
        assert!(!b.allows(t));
        assert!(b.on_abandoned(t));
        assert!(b.allows(t));
        assert!(!b.on_abandoned(t));
    }
}
