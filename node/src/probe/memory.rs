//! Memory pressure: Linux PSI (`/proc/pressure/memory`) combined with ollama-herd's used-memory
//! thresholds, and macOS's kernel pressure level. Pure decisions over recorded text; the probe
//! only reads the files.

use herd_core::fleet::heartbeat::Pressure;

/// Used memory (`(total − available) / total`) at or above this is critical (ollama-herd).
pub const USED_CRITICAL_PCT: f64 = 95.0;
/// Used memory at or above this is a warning (ollama-herd).
pub const USED_WARN_PCT: f64 = 85.0;
/// PSI `some avg10` at or above this is a warning: some task waited on memory for a tenth of
/// the last 10 s, i.e. reclaim is already costing latency.
pub const PSI_SOME_WARN_PCT: f64 = 10.0;
/// PSI `some avg10` at or above this is critical: tasks stall on memory 40 % of the time.
pub const PSI_SOME_CRITICAL_PCT: f64 = 40.0;
/// PSI `full avg10` at or above this is critical: every runnable task was stalled on memory 5 %
/// of the time, which is thrashing; loading another model would make it worse.
pub const PSI_FULL_CRITICAL_PCT: f64 = 5.0;

/// One line of a PSI file: stall percentages over 10, 60 and 300 s, and total stall time.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct PsiLine {
    /// Percent of the last 10 s.
    pub avg10: f64,
    /// Percent of the last 60 s.
    pub avg60: f64,
    /// Percent of the last 300 s.
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// `/proc/pressure/memory`: `some` (at least one task stalled) and `full` (all stalled).
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled; absent on kernels before 5.13 for the CPU file, always
    /// present for memory.
    pub full: Option<PsiLine>,
}

/// Parses a PSI file. `None` when there is no `some` line or a figure does not parse.
///
/// ```text
/// some avg10=0.00 avg60=0.00 avg300=0.00 total=0
/// full avg10=0.00 avg60=0.00 avg300=0.00 total=0
/// ```
pub fn parse_psi(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let mut parsed = PsiLine::default();
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "avg10" => parsed.avg10 = value.parse().ok()?,
                "avg60" => parsed.avg60 = value.parse().ok()?,
                "avg300" => parsed.avg300 = value.parse().ok()?,
                "total" => parsed.total_us = value.parse().ok()?,
                _ => {}
            }
        }
        *slot = Some(parsed);
    }
    Some(Psi { some: some?, full })
}

/// Pressure from PSI alone (thresholds above, on the 10 s averages so a burst shows within two
/// heartbeats).
pub fn psi_pressure(psi: &Psi) -> Pressure {
    let full = psi.full.map_or(0.0, |f| f.avg10);
    if full >= PSI_FULL_CRITICAL_PCT || psi.some.avg10 >= PSI_SOME_CRITICAL_PCT {
        Pressure::Critical
    } else if psi.some.avg10 >= PSI_SOME_WARN_PCT {
        Pressure::Warn
    } else {
        Pressure::Normal
    }
}

/// Pressure from used memory alone, as ollama-herd computes it on Linux: ≥ 95 % critical,
/// ≥ 85 % warn. An unknown total (0) is normal, as ollama-herd fails open.
pub fn used_pressure(total_bytes: u64, available_bytes: u64) -> Pressure {
    if total_bytes == 0 {
        return Pressure::Normal;
    }
    let used_pct = total_bytes.saturating_sub(available_bytes) as f64 * 100.0 / total_bytes as f64;
    if used_pct >= USED_CRITICAL_PCT {
        Pressure::Critical
    } else if used_pct >= USED_WARN_PCT {
        Pressure::Warn
    } else {
        Pressure::Normal
    }
}

/// The reported pressure on Linux and Windows: the worse of PSI (where the kernel has it) and the
/// used-memory thresholds. PSI sees what the thresholds miss (thrashing while `MemAvailable` still
/// counts the page cache of memory-mapped weights as free, or a cgroup limit); the thresholds see
/// what PSI cannot yet (a nearly full machine that has not started to stall, where a cold load
/// would push it over).
pub fn decide_pressure(psi: Option<&Psi>, total_bytes: u64, available_bytes: u64) -> Pressure {
    let used = used_pressure(total_bytes, available_bytes);
    psi.map_or(used, |p| worse(psi_pressure(p), used))
}

/// macOS: `sysctl -n kern.memorystatus_vm_pressure_level` prints 1 (normal), 2 (warn) or
/// 4 (critical). Anything else is normal, failing open as ollama-herd does.
pub fn macos_pressure_level(text: &str) -> Pressure {
    match text.trim() {
        "2" => Pressure::Warn,
        "4" => Pressure::Critical,
        _ => Pressure::Normal,
    }
}

fn rank(p: Pressure) -> u8 {
    match p {
        Pressure::Normal | Pressure::Unknown => 0,
        Pressure::Warn => 1,
        Pressure::Critical => 2,
    }
}

fn worse(a: Pressure, b: Pressure) -> Pressure {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                        full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    /// Recorded on a 64 GB box loading a 70B model with 48 GB free.
    const RECLAIMING: &str = "some avg10=12.41 avg60=3.05 avg300=0.71 total=9127361\n\
                              full avg10=1.20 avg60=0.31 avg300=0.07 total=1830115\n";
    const THRASHING: &str = "some avg10=63.80 avg60=41.22 avg300=12.90 total=912736100\n\
                             full avg10=22.15 avg60=15.40 avg300=4.83 total=301830115\n";

    /// `/proc/meminfo` of a 64 GiB machine (kB).
    fn meminfo(total_kb: u64, available_kb: u64) -> (u64, u64) {
        (total_kb * 1024, available_kb * 1024)
    }

    #[test]
    fn parses_recorded_psi() {
        let psi = parse_psi(RECLAIMING).unwrap();
        assert_eq!(psi.some, PsiLine { avg10: 12.41, avg60: 3.05, avg300: 0.71, total_us: 9_127_361 });
        assert_eq!(psi.full.unwrap().avg10, 1.20);
        // Older kernels had only the `some` line.
        let some_only = parse_psi("some avg10=1.00 avg60=0.50 avg300=0.10 total=5\n").unwrap();
        assert_eq!(some_only.full, None);
    }

    #[test]
    fn rejects_what_is_not_psi() {
        assert_eq!(parse_psi(""), None);
        assert_eq!(parse_psi("full avg10=0.00 avg60=0.00 avg300=0.00 total=0"), None);
        assert_eq!(parse_psi("some avg10=abc avg60=0.00 avg300=0.00 total=0"), None);
        assert_eq!(parse_psi("some avg10"), None);
    }

    #[test]
    fn psi_thresholds() {
        assert_eq!(psi_pressure(&parse_psi(IDLE).unwrap()), Pressure::Normal);
        assert_eq!(psi_pressure(&parse_psi(RECLAIMING).unwrap()), Pressure::Warn);
        assert_eq!(psi_pressure(&parse_psi(THRASHING).unwrap()), Pressure::Critical);
        let line = |avg10| PsiLine { avg10, ..PsiLine::default() };
        let psi = |some, full| Psi { some: line(some), full: Some(line(full)) };
        assert_eq!(psi_pressure(&psi(9.99, 0.0)), Pressure::Normal);
        assert_eq!(psi_pressure(&psi(10.0, 0.0)), Pressure::Warn);
        assert_eq!(psi_pressure(&psi(39.9, 4.99)), Pressure::Warn);
        assert_eq!(psi_pressure(&psi(40.0, 0.0)), Pressure::Critical);
        assert_eq!(psi_pressure(&psi(10.0, 5.0)), Pressure::Critical);
    }

    #[test]
    fn used_thresholds_from_meminfo() {
        // MemTotal 65859940 kB; MemAvailable as recorded at three moments.
        let (total, avail) = meminfo(65_859_940, 48_123_456);
        assert_eq!(used_pressure(total, avail), Pressure::Normal);
        let (total, avail) = meminfo(65_859_940, 9_878_991); // exactly 85.0 % used
        assert_eq!(used_pressure(total, avail), Pressure::Warn);
        let (total, avail) = meminfo(65_859_940, 3_292_997); // exactly 95.0 % used
        assert_eq!(used_pressure(total, avail), Pressure::Critical);
        let (total, avail) = meminfo(65_859_940, 3_300_000);
        assert_eq!(used_pressure(total, avail), Pressure::Warn);
        assert_eq!(used_pressure(0, 0), Pressure::Normal);
        // Available above total (a racy read) is just no pressure.
        assert_eq!(used_pressure(100, 200), Pressure::Normal);
    }

    #[test]
    fn decision_takes_the_worse_of_psi_and_used_memory() {
        let idle = parse_psi(IDLE).unwrap();
        let thrash = parse_psi(THRASHING).unwrap();
        let (total, half) = meminfo(65_859_940, 32_929_970);
        let (_, nearly_full) = meminfo(65_859_940, 1_000_000);
        assert_eq!(decide_pressure(None, total, half), Pressure::Normal);
        assert_eq!(decide_pressure(None, total, nearly_full), Pressure::Critical);
        assert_eq!(decide_pressure(Some(&idle), total, half), Pressure::Normal);
        assert_eq!(decide_pressure(Some(&idle), total, nearly_full), Pressure::Critical);
        assert_eq!(decide_pressure(Some(&thrash), total, half), Pressure::Critical);
        let reclaim = parse_psi(RECLAIMING).unwrap();
        assert_eq!(decide_pressure(Some(&reclaim), total, half), Pressure::Warn);
    }

    #[test]
    fn macos_levels() {
        assert_eq!(macos_pressure_level("1\n"), Pressure::Normal);
        assert_eq!(macos_pressure_level("2\n"), Pressure::Warn);
        assert_eq!(macos_pressure_level("4\n"), Pressure::Critical);
        assert_eq!(macos_pressure_level(""), Pressure::Normal);
        assert_eq!(macos_pressure_level("sysctl: unknown oid"), Pressure::Normal);
    }
}
