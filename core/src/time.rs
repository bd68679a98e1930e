//! Core's notion of time: an `Instant` is microseconds from an epoch the adapter picks.
//! Core never reads a clock; every input carries `now`.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an adapter-chosen epoch.
///
/// Arithmetic saturates: core never panics on time, whatever the adapter feeds it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// An instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Instant(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(micros(rhs)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_sub(micros(rhs)))
    }
}

/// Where core's instants sit on the wall clock: the Unix time, in milliseconds, of
/// [`Instant::ZERO`], as the adapter measured it once. Core reads no clock; a time it shows
/// (a model's `modified_at` when its node gave none) is converted with this one fixed offset, so
/// it stays the same for as long as the process runs, whatever the wall clock does meanwhile.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    epoch_unix_ms: i64,
}

impl WallClock {
    /// The offset from one pair of readings taken together: core's `now` and the wall clock's
    /// Unix milliseconds at that moment.
    pub fn from_readings(now: Instant, unix_ms: i64) -> WallClock {
        let since_epoch_ms = i64::try_from(now.as_micros() / 1000).unwrap_or(i64::MAX);
        WallClock { epoch_unix_ms: unix_ms.saturating_sub(since_epoch_ms) }
    }

    /// Unix milliseconds of `at`.
    pub fn unix_ms(self, at: Instant) -> i64 {
        self.epoch_unix_ms.saturating_add(i64::try_from(at.as_micros() / 1000).unwrap_or(i64::MAX))
    }

    /// `at` as an RFC 3339 UTC time to the second (`2026-11-28T09:30:00Z`), as Ollama's clients
    /// read `modified_at`.
    pub fn rfc3339(self, at: Instant) -> String {
        rfc3339_utc(self.unix_ms(at))
    }
}

/// Unix milliseconds as an RFC 3339 UTC time to the second; times before 1970 read as the epoch.
pub fn rfc3339_utc(unix_ms: i64) -> String {
    let secs = unix_ms.max(0) / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        let t = Instant::from_secs(10);
        assert_eq!(t.saturating_since(Instant::from_secs(4)), Duration::from_secs(6));
        assert_eq!(Instant::from_secs(4).saturating_since(t), Duration::ZERO);
        assert_eq!(Instant::from_millis(1500).as_micros(), 1_500_000);
    }

    #[test]
    fn wall_clock_times() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400_999), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_861_845_000), "2026-11-28T10:30:45Z");
        assert_eq!(rfc3339_utc(4_107_542_399_000), "2100-02-28T23:59:59Z");
        // Readings 90 s after the epoch at 10:30:45 put the epoch at 10:29:15.
        let w = WallClock::from_readings(Instant::from_secs(90), 1_795_861_845_000);
        assert_eq!(w.rfc3339(Instant::ZERO), "2026-11-28T10:29:15Z");
        assert_eq!(w.unix_ms(Instant::from_millis(500)), 1_795_861_755_500);
    }
}
