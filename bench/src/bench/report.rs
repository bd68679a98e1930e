//! Results: what one target measured in one scenario ([`Tally`]), percentiles, and the table of
//! ratios against the goals, as text and as JSON. Pure functions over numbers; no IO here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

/// At most this many distinct error messages are kept per tally; the rest are only counted.
const MAX_ERROR_KINDS: usize = 8;

/// What one target did in one scenario, summed over its rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Requests that completed correctly inside a measured window.
    pub requests: u64,
    /// Stream chunks (NDJSON lines, SSE `data:` events) of those requests.
    pub chunks: u64,
    /// Time to the first body byte of those requests, microseconds.
    pub ttft_us: Vec<u64>,
    /// Requests that failed, warm-up included.
    pub errors: u64,
    /// Failure messages and how often each was seen (at most [`MAX_ERROR_KINDS`] kinds).
    pub error_kinds: BTreeMap<String, u64>,
    /// Failures whose message did not fit in `error_kinds`.
    pub errors_unlisted: u64,
    /// Total length of the measured windows.
    pub measured: Duration,
}

impl Tally {
    /// Counts one failed request.
    pub fn error(&mut self, message: String) {
        self.errors += 1;
        self.note_kind(message, 1);
    }

    fn note_kind(&mut self, message: String, n: u64) {
        if let Some(seen) = self.error_kinds.get_mut(&message) {
            *seen += n;
        } else if self.error_kinds.len() < MAX_ERROR_KINDS {
            self.error_kinds.insert(message, n);
        } else {
            self.errors_unlisted += n;
        }
    }

    /// Adds `other` (another worker or another round) to this one.
    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.chunks += other.chunks;
        self.ttft_us.extend(other.ttft_us);
        self.measured += other.measured;
        self.errors_unlisted += other.errors_unlisted;
        for (message, n) in other.error_kinds {
            self.note_kind(message, n);
        }
        self.errors += other.errors;
    }

    /// Completed requests per second of measured time.
    pub fn requests_per_s(&self) -> f64 {
        per_second(self.requests, self.measured)
    }

    /// Chunks per second of measured time.
    pub fn chunks_per_s(&self) -> f64 {
        per_second(self.chunks, self.measured)
    }

    /// The `p`th percentile of time to first byte, milliseconds.
    pub fn ttft_ms(&mut self, p: f64) -> Option<f64> {
        self.ttft_us.sort_unstable();
        percentile(&self.ttft_us, p).map(|us| us as f64 / 1000.0)
    }
}

fn per_second(n: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n as f64 / over.as_secs_f64()
    }
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of an ascending slice; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What a row is held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// One target's rate over another's (herd / direct) must be at least this.
    RatioAtLeast(f64),
    /// One target's p99 minus another's (herd's minus direct's) must be at most this many
    /// milliseconds.
    DeltaMsAtMost(f64),
    /// The value must be at most this many megabytes.
    MbAtMost(f64),
}

/// One measured number of one target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// Nothing measured (a target a row does not apply to).
    Empty,
    /// Requests or chunks per second.
    Rate(f64),
    /// Time to first token, p50 and p99, milliseconds.
    Ttft { p50_ms: f64, p99_ms: f64 },
    /// Memory, megabytes.
    Mb(f64),
}

/// Whether a row met its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    /// Some requests failed, so the numbers mean little.
    Errors,
    /// Nothing to compare (no direct number, no samples).
    Unknown,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::No => "NO",
            Verdict::Errors => "ERRORS",
            Verdict::Unknown => "?",
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub metric: &'static str,
    /// One per target, in target order (direct, herd, then any others).
    pub cells: Vec<Cell>,
    /// The ratio (herd / direct unless the row says otherwise) or the p99 delta in milliseconds,
    /// by `goal`.
    pub compare: Option<f64>,
    pub goal: Goal,
    pub verdict: Verdict,
}

impl Row {
    /// A throughput row: `rates` per target, herd (index 1) against direct (index 0).
    /// A target that was not measured has `None`.
    pub fn rate(scenario: &str, metric: &'static str, rates: &[Option<f64>], min_ratio: f64, errors: bool) -> Row {
        let ratio = ratio_of(rates, 1, 0);
        let verdict = judge(errors, ratio.map(|r| r >= min_ratio));
        let cells = rates.iter().map(|r| r.map_or(Cell::Empty, Cell::Rate)).collect();
        Row { scenario: scenario.into(), metric, cells, compare: ratio, goal: Goal::RatioAtLeast(min_ratio), verdict }
    }

    /// A ratio-only row: target `of`'s rate over target `over`'s, held to `min_ratio`. Its cells
    /// are empty, since the rates are on the scenario's [`Row::rate`] row; `metric` names the two
    /// (`herd-lite/herd`).
    pub fn ratio(
        scenario: &str,
        metric: &'static str,
        rates: &[Option<f64>],
        [of, over]: [usize; 2],
        min_ratio: f64,
        errors: bool,
    ) -> Row {
        let ratio = ratio_of(rates, of, over);
        let verdict = judge(errors, ratio.map(|r| r >= min_ratio));
        let cells = vec![Cell::Empty; rates.len()];
        Row { scenario: scenario.into(), metric, cells, compare: ratio, goal: Goal::RatioAtLeast(min_ratio), verdict }
    }

    /// A time-to-first-token row: `(p50, p99)` in milliseconds per target.
    pub fn ttft(scenario: &str, ms: &[Option<(f64, f64)>], max_delta_ms: f64, errors: bool) -> Row {
        let delta = p99_delta(ms, 1, 0);
        let verdict = judge(errors, delta.map(|d| d <= max_delta_ms));
        let cells =
            ms.iter().map(|m| m.map_or(Cell::Empty, |(p50_ms, p99_ms)| Cell::Ttft { p50_ms, p99_ms })).collect();
        let goal = Goal::DeltaMsAtMost(max_delta_ms);
        Row { scenario: scenario.into(), metric: "ttft p50/p99 ms", cells, compare: delta, goal, verdict }
    }

    /// A delta-only row: target `of`'s p99 time to first token minus target `over`'s, held to
    /// `max_delta_ms`; its cells are empty, since the times are on the scenario's [`Row::ttft`] row.
    pub fn ttft_delta(
        scenario: &str,
        metric: &'static str,
        ms: &[Option<(f64, f64)>],
        [of, over]: [usize; 2],
        max_delta_ms: f64,
        errors: bool,
    ) -> Row {
        let delta = p99_delta(ms, of, over);
        let verdict = judge(errors, delta.map(|d| d <= max_delta_ms));
        let cells = vec![Cell::Empty; ms.len()];
        Row {
            scenario: scenario.into(),
            metric,
            cells,
            compare: delta,
            goal: Goal::DeltaMsAtMost(max_delta_ms),
            verdict,
        }
    }

    /// A router's peak memory, in column `column` of `targets` columns; `metric` names it
    /// (`router peak MB` for herd).
    pub fn rss(metric: &'static str, peak_mb: Option<f64>, max_mb: f64, column: usize, targets: usize) -> Row {
        let mut cells = vec![Cell::Empty; targets];
        if let (Some(mb), Some(cell)) = (peak_mb, cells.get_mut(column)) {
            *cell = Cell::Mb(mb);
        }
        let verdict = judge(false, peak_mb.map(|mb| mb <= max_mb));
        Row { scenario: "RSS".into(), metric, cells, compare: None, goal: Goal::MbAtMost(max_mb), verdict }
    }

    fn compare_text(&self) -> String {
        match (self.compare, self.goal) {
            (None, _) => String::new(),
            (Some(r), Goal::RatioAtLeast(_)) => format!("{r:.2}"),
            (Some(d), _) => format!("{d:+.2}"),
        }
    }

    /// The row as JSON, numbers unformatted.
    pub fn to_json(&self, targets: &[&str]) -> Value {
        let cells: serde_json::Map<String, Value> =
            targets.iter().zip(&self.cells).map(|(t, c)| (t.to_string(), cell_json(*c))).collect();
        json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "values": cells,
            "compare": self.compare,
            "goal": goal_text(self.goal),
            "ok": self.verdict == Verdict::Yes,
            "verdict": self.verdict.label(),
        })
    }
}

/// Target `of`'s rate over target `over`'s, when both were measured and `over`'s is not zero.
fn ratio_of(rates: &[Option<f64>], of: usize, over: usize) -> Option<f64> {
    match (rates.get(of).copied().flatten(), rates.get(over).copied().flatten()) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Target `of`'s p99 minus target `over`'s, milliseconds, when both were measured.
fn p99_delta(ms: &[Option<(f64, f64)>], of: usize, over: usize) -> Option<f64> {
    match (ms.get(of).copied().flatten(), ms.get(over).copied().flatten()) {
        (Some((_, a)), Some((_, b))) => Some(a - b),
        _ => None,
    }
}

fn judge(errors: bool, met: Option<bool>) -> Verdict {
    match (errors, met) {
        (true, _) => Verdict::Errors,
        (false, Some(true)) => Verdict::Yes,
        (false, Some(false)) => Verdict::No,
        (false, None) => Verdict::Unknown,
    }
}

fn goal_text(goal: Goal) -> String {
    match goal {
        Goal::RatioAtLeast(r) => format!(">={r}"),
        Goal::DeltaMsAtMost(d) => format!("<=+{d}ms"),
        Goal::MbAtMost(mb) => format!("<={mb}"),
    }
}

fn cell_text(cell: Cell) -> String {
    match cell {
        Cell::Empty => String::new(),
        Cell::Rate(r) => format!("{r:.0}"),
        Cell::Ttft { p50_ms, p99_ms } => format!("{p50_ms:.2}/{p99_ms:.2}"),
        Cell::Mb(mb) => format!("{mb:.1}"),
    }
}

fn cell_json(cell: Cell) -> Value {
    match cell {
        Cell::Empty => Value::Null,
        Cell::Rate(r) => json!(r),
        Cell::Ttft { p50_ms, p99_ms } => json!({"p50_ms": p50_ms, "p99_ms": p99_ms}),
        Cell::Mb(mb) => json!(mb),
    }
}

/// The rows as an aligned text table with a header line.
pub fn table(targets: &[&str], rows: &[Row]) -> String {
    let mut lines: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    let mut header = vec!["scenario".to_string(), "metric".to_string()];
    header.extend(targets.iter().map(|t| t.to_string()));
    header.extend(["ratio".to_string(), "goal".to_string(), "ok".to_string()]);
    lines.push(header);
    for row in rows {
        let mut line = vec![row.scenario.clone(), row.metric.to_string()];
        line.extend(row.cells.iter().map(|c| cell_text(*c)));
        line.resize(2 + targets.len(), String::new());
        line.extend([row.compare_text(), goal_text(row.goal), row.verdict.label().to_string()]);
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0) + 2).collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            let _ = write!(text, "{cell:<width$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.1), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn tally_merge_sums_and_caps_error_kinds() {
        let mut a = Tally { requests: 3, chunks: 30, measured: Duration::from_secs(1), ..Tally::default() };
        a.error("HTTP 503".into());
        let mut b = Tally { requests: 5, chunks: 50, measured: Duration::from_secs(1), ..Tally::default() };
        b.error("HTTP 503".into());
        for i in 0..MAX_ERROR_KINDS {
            b.error(format!("kind {i}"));
        }
        a.merge(b);
        assert_eq!((a.requests, a.chunks, a.errors), (8, 80, 2 + MAX_ERROR_KINDS as u64));
        assert_eq!(a.error_kinds["HTTP 503"], 2);
        assert_eq!(a.error_kinds.len(), MAX_ERROR_KINDS);
        assert_eq!(a.errors_unlisted, 1);
        assert_eq!(a.requests_per_s(), 4.0);
        assert_eq!(a.chunks_per_s(), 40.0);
    }

    #[test]
    fn rows_judge_against_goals() {
        let r = Row::rate("S1", "req/s", &[Some(5000.0), Some(2000.0)], 0.35, false);
        assert_eq!(r.compare, Some(0.4));
        assert_eq!(r.verdict, Verdict::Yes);
        assert_eq!(Row::rate("S1", "req/s", &[Some(5000.0), Some(1000.0)], 0.35, false).verdict, Verdict::No);
        assert_eq!(Row::rate("S1", "req/s", &[Some(5000.0), Some(2000.0)], 0.35, true).verdict, Verdict::Errors);
        assert_eq!(Row::rate("S1", "req/s", &[Some(0.0), Some(2000.0)], 0.35, false).verdict, Verdict::Unknown);
        assert_eq!(Row::rate("S1", "req/s", &[Some(10.0), None], 0.35, false).verdict, Verdict::Unknown);
        let t = Row::ttft("S4", &[Some((0.3, 0.9)), Some((0.45, 1.2))], 1.0, false);
        assert!((t.compare.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(t.verdict, Verdict::Yes);
        assert_eq!(Row::rss("router peak MB", Some(31.0), 30.0, 1, 2).verdict, Verdict::No);
    }

    #[test]
    fn extra_columns_compare_with_any_other() {
        let rates = [Some(5000.0), Some(2000.0), Some(1700.0)];
        let r = Row::ratio("S1", "herd-lite/herd", &rates, [2, 1], 0.8, false);
        assert_eq!((r.compare, r.verdict), (Some(0.85), Verdict::Yes));
        assert_eq!(r.cells, vec![Cell::Empty; 3]);
        assert_eq!(Row::ratio("S1", "herd-lite/herd", &rates, [2, 0], 0.8, false).verdict, Verdict::No);
        assert_eq!(Row::ratio("S1", "herd-lite/herd", &rates, [2, 1], 0.8, true).verdict, Verdict::Errors);
        assert_eq!(Row::ratio("S1", "x/y", &rates, [3, 1], 0.8, false).verdict, Verdict::Unknown);
        // The herd row is the same with or without the extra column.
        assert_eq!(Row::rate("S1", "req/s", &rates, 0.35, false).compare, Some(0.4));
        let ms = [Some((0.3, 0.9)), Some((0.45, 1.2)), Some((0.5, 2.4))];
        let t = Row::ttft_delta("S4", "herd-lite p99 vs direct", &ms, [2, 0], 1.0, false);
        assert!((t.compare.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(t.verdict, Verdict::No);
        let rss = Row::rss("herd-lite peak MB", Some(5.0), 30.0, 2, 3);
        assert_eq!((rss.cells[1], rss.cells[2], rss.verdict), (Cell::Empty, Cell::Mb(5.0), Verdict::Yes));
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [
            Row::rate("S1", "req/s", &[Some(5234.0), Some(2100.0)], 0.35, false),
            Row::ttft("S4", &[Some((0.31, 0.9)), Some((0.45, 1.2))], 1.0, false),
            Row::rss("router peak MB", Some(12.34), 30.0, 1, 2),
        ];
        let text = table(&["direct", "herd"], &rows);
        let expected = "\
scenario  metric           direct     herd       ratio  goal    ok
S1        req/s            5234       2100       0.40   >=0.35  yes
S4        ttft p50/p99 ms  0.31/0.90  0.45/1.20  +0.30  <=+1ms  yes
RSS       router peak MB              12.3              <=30    yes
";
        assert_eq!(text, expected);
        let json = rows[0].to_json(&["direct", "herd"]);
        assert_eq!(json["values"]["herd"], 2100.0);
        assert_eq!(json["ok"], true);
    }
}
