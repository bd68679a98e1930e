//! Reading a production request trace (`TIMESTAMP,ContextTokens,GeneratedTokens`, as in the Azure LLM
//! inference trace) into rows with millisecond offsets. Pure: the caller reads the file, this parses
//! the text, and any CSV with the same three columns works.

use std::fmt;

/// One request of the trace.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceRow {
    /// Milliseconds after the trace's earliest request (truncated).
    pub offset_ms: u64,
    /// Prompt tokens the request carried.
    pub context_tokens: u32,
    /// Tokens the model generated in answer.
    pub generated_tokens: u32,
}

/// Why one data row could not be read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RowError {
    /// The row has fewer fields than the named column needs.
    MissingField(&'static str),
    /// The `TIMESTAMP` field is neither `YYYY-MM-DD HH:MM:SS[.fraction]` nor plain seconds.
    BadTimestamp,
    /// The named token column is not an unsigned 32-bit number.
    BadNumber(&'static str),
}

/// Why a trace could not be read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// The header line lacks this column.
    MissingColumn(&'static str),
    /// Data row at 1-based `line` of the input (blank lines counted) is malformed.
    BadRow {
        /// The 1-based line number in the input text.
        line: usize,
        /// What is wrong with it.
        reason: RowError,
    },
    /// The input has no header line or no data rows.
    Empty,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::MissingField(col) => write!(f, "missing field {col}"),
            RowError::BadTimestamp => f.write_str("bad timestamp"),
            RowError::BadNumber(col) => write!(f, "bad number in {col}"),
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::MissingColumn(col) => write!(f, "trace header lacks column {col}"),
            TraceError::BadRow { line, reason } => write!(f, "trace line {line}: {reason}"),
            TraceError::Empty => f.write_str("trace has no rows"),
        }
    }
}

impl std::error::Error for RowError {}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::BadRow { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

const TIMESTAMP: &str = "TIMESTAMP";
const CONTEXT: &str = "ContextTokens";
const GENERATED: &str = "GeneratedTokens";

/// Field positions of the three columns we read.
#[derive(Copy, Clone)]
struct Columns {
    timestamp: usize,
    context: usize,
    generated: usize,
}

/// Parses a trace CSV into rows sorted by time, offsets relative to the earliest row.
///
/// The first non-blank line is the header: it must name `TIMESTAMP`, `ContextTokens` and
/// `GeneratedTokens` in any order and case; other columns are ignored. CRLF line ends, a UTF-8 BOM,
/// blank lines, spaces around fields and plain double quotes around fields are tolerated.
/// Timestamps are `YYYY-MM-DD HH:MM:SS` (or with `T`), with an optional fraction of any length and
/// an optional `Z`, or plain (fractional) seconds. Rows with equal times keep their input order.
///
/// # Errors
///
/// [`TraceError::Empty`] when there is no header or no data row, [`TraceError::MissingColumn`] when
/// the header lacks a column, [`TraceError::BadRow`] for the first malformed data row.
pub fn parse_trace(csv: &str) -> Result<Vec<TraceRow>, TraceError> {
    let csv = csv.strip_prefix('\u{feff}').unwrap_or(csv);
    let mut lines = csv.split('\n').enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    let (_, header) = lines.next().ok_or(TraceError::Empty)?;
    let cols = columns(header)?;
    // (time in nanoseconds, context, generated); sorted stably afterwards.
    let mut timed = Vec::new();
    for (line, text) in lines {
        let row = parse_row(text, cols).map_err(|reason| TraceError::BadRow { line, reason })?;
        timed.push(row);
    }
    timed.sort_by_key(|&(t, _, _)| t);
    let first = timed.first().ok_or(TraceError::Empty)?.0;
    Ok(timed
        .into_iter()
        .map(|(t, context_tokens, generated_tokens)| {
            let ms = (t - first) / 1_000_000;
            TraceRow { offset_ms: u64::try_from(ms).unwrap_or(u64::MAX), context_tokens, generated_tokens }
        })
        .collect())
}

fn field(raw: &str) -> &str {
    let f = raw.trim();
    f.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(f).trim()
}

fn columns(header: &str) -> Result<Columns, TraceError> {
    let names: Vec<&str> = header.split(',').map(field).collect();
    let find = |want: &'static str| {
        names.iter().position(|n| n.eq_ignore_ascii_case(want)).ok_or(TraceError::MissingColumn(want))
    };
    Ok(Columns { timestamp: find(TIMESTAMP)?, context: find(CONTEXT)?, generated: find(GENERATED)? })
}

fn parse_row(text: &str, cols: Columns) -> Result<(i128, u32, u32), RowError> {
    let fields: Vec<&str> = text.split(',').map(field).collect();
    let get = |i: usize, name: &'static str| fields.get(i).copied().ok_or(RowError::MissingField(name));
    let time = timestamp_nanos(get(cols.timestamp, TIMESTAMP)?).ok_or(RowError::BadTimestamp)?;
    let number = |i, name| get(i, name)?.parse::<u32>().map_err(|_| RowError::BadNumber(name));
    Ok((time, number(cols.context, CONTEXT)?, number(cols.generated, GENERATED)?))
}

/// Nanoseconds since 1970-01-01 00:00:00 of a civil timestamp, or plain seconds as nanoseconds.
fn timestamp_nanos(s: &str) -> Option<i128> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    if s.contains('-') || s.contains(':') {
        civil_nanos(s)
    } else {
        seconds_nanos(s)
    }
}

/// `SSS[.fff]` → nanoseconds; at most 15 integer digits so nothing overflows.
fn seconds_nanos(s: &str) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let secs = if int.is_empty() { 0 } else { digits(int, 1, 15)? };
    Some(i128::from(secs) * 1_000_000_000 + i128::from(fraction_nanos(frac)?))
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.fff]` → nanoseconds since the Unix epoch.
fn civil_nanos(s: &str) -> Option<i128> {
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (digits(d.next()?, 4, 4)?, digits(d.next()?, 1, 2)?, digits(d.next()?, 1, 2)?);
    let (hms, frac) = time.trim_start().split_once('.').unwrap_or((time.trim_start(), ""));
    let mut t = hms.splitn(3, ':');
    let (hour, minute, second) = (digits(t.next()?, 1, 2)?, digits(t.next()?, 1, 2)?, digits(t.next()?, 1, 2)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1_000_000_000 + i128::from(fraction_nanos(frac)?))
}

/// An ASCII decimal of `min..=max` digits.
fn digits(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// The digits after a decimal point, any length, truncated to nanoseconds; `""` is zero.
fn fraction_nanos(frac: &str) -> Option<u64> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos = 0u64;
    for i in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
    }
    Some(nanos)
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let (month, day) = (month as i64, day as i64);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(offset_ms: u64, context_tokens: u32, generated_tokens: u32) -> TraceRow {
        TraceRow { offset_ms, context_tokens, generated_tokens }
    }

    #[test]
    fn real_header_and_first_rows() {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                   2023-11-16 18:15:46.6805900,374,44\n\
                   2023-11-16 18:15:50.9951690,396,109\n\
                   2023-11-16 18:15:51.2224670,879,55\n\
                   2023-11-16 18:15:51.3910170,91,16\n";
        let rows = parse_trace(csv).unwrap();
        assert_eq!(rows, [row(0, 374, 44), row(4314, 396, 109), row(4541, 879, 55), row(4710, 91, 16)]);
    }

    #[test]
    fn columns_in_any_order_and_case_with_extras() {
        let csv = "generatedtokens,Extra,contexttokens,timestamp\n7,x,100,2023-11-16 10:00:00\n9,y,200,2023-11-16 10:00:01.5\n";
        assert_eq!(parse_trace(csv).unwrap(), [row(0, 100, 7), row(1500, 200, 9)]);
    }

    #[test]
    fn crlf_bom_quotes_and_blank_lines_are_tolerated() {
        let csv = "\u{feff}TIMESTAMP,ContextTokens,GeneratedTokens\r\n\r\n\"2023-11-16 10:00:00\", 5 ,6\r\n\r\n2023-11-16T10:00:00.25Z,7,8\r\n";
        assert_eq!(parse_trace(csv).unwrap(), [row(0, 5, 6), row(250, 7, 8)]);
    }

    #[test]
    fn plain_seconds_are_accepted() {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n1700000000.5,1,2\n1700000002,3,4\n.25,5,6\n";
        let rows = parse_trace(csv).unwrap();
        assert_eq!(rows[0], row(0, 5, 6));
        assert_eq!(rows[1].offset_ms, 1_700_000_000_250);
        assert_eq!(rows[2].offset_ms - rows[1].offset_ms, 1500);
    }

    #[test]
    fn missing_column_names_it() {
        let csv = "TIMESTAMP,ContextTokens\n2023-11-16 10:00:00,1\n";
        assert_eq!(parse_trace(csv), Err(TraceError::MissingColumn("GeneratedTokens")));
        assert_eq!(parse_trace(csv).unwrap_err().to_string(), "trace header lacks column GeneratedTokens");
    }

    #[test]
    fn bad_rows_report_their_line() {
        let head = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
        let bad_number = format!("{head}2023-11-16 10:00:00,1,2\n\n2023-11-16 10:00:01,x,2\n");
        assert_eq!(
            parse_trace(&bad_number),
            Err(TraceError::BadRow { line: 4, reason: RowError::BadNumber("ContextTokens") })
        );
        let negative = format!("{head}2023-11-16 10:00:00,1,-2\n");
        assert_eq!(
            parse_trace(&negative),
            Err(TraceError::BadRow { line: 2, reason: RowError::BadNumber("GeneratedTokens") })
        );
        let short = format!("{head}2023-11-16 10:00:00,1\n");
        assert_eq!(
            parse_trace(&short),
            Err(TraceError::BadRow { line: 2, reason: RowError::MissingField("GeneratedTokens") })
        );
        for ts in ["2023-02-29 10:00:00", "2023-11-16 24:00:00", "2023-13-01 00:00:00", "2023-11-16", "1.2.3", "1e9"] {
            let csv = format!("{head}{ts},1,2\n");
            assert_eq!(parse_trace(&csv), Err(TraceError::BadRow { line: 2, reason: RowError::BadTimestamp }), "{ts}");
        }
        assert_eq!(
            TraceError::BadRow { line: 4, reason: RowError::BadNumber("ContextTokens") }.to_string(),
            "trace line 4: bad number in ContextTokens"
        );
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(parse_trace(""), Err(TraceError::Empty));
        assert_eq!(parse_trace("\r\n\n"), Err(TraceError::Empty));
        assert_eq!(parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n"), Err(TraceError::Empty));
    }

    #[test]
    fn midnight_month_year_and_leap_day_rollovers() {
        let head = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
        let pairs = [
            ("2023-11-16 23:59:59.9", "2023-11-17 00:00:00.1", 200),
            ("2023-11-30 23:59:59", "2023-12-01 00:00:01", 2000),
            ("2023-12-31 23:59:59", "2024-01-01 00:00:00", 1000),
            ("2024-02-28 23:00:00", "2024-03-01 00:00:00", 25 * 3_600_000),
            ("2023-02-28 23:00:00", "2023-03-01 00:00:00", 3_600_000),
            ("2000-02-28 00:00:00", "2000-03-01 00:00:00", 2 * 86_400_000),
            ("1969-12-31 23:59:59", "1970-01-01 00:00:00", 1000),
        ];
        for (a, b, want) in pairs {
            let rows = parse_trace(&format!("{head}{a},1,1\n{b},2,2\n")).unwrap();
            assert_eq!(rows[1].offset_ms, want, "{a} → {b}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2023, 11, 16), 19_677);
    }

    #[test]
    fn unsorted_input_is_sorted_stably() {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                   2023-11-16 10:00:02,1,1\n\
                   2023-11-16 10:00:00.0009,2,2\n\
                   2023-11-16 10:00:01,3,3\n\
                   2023-11-16 10:00:00.0001,4,4\n\
                   2023-11-16 10:00:01,5,5\n";
        let rows = parse_trace(csv).unwrap();
        assert_eq!(rows, [row(0, 4, 4), row(0, 2, 2), row(999, 3, 3), row(999, 5, 5), row(1999, 1, 1)]);
    }

    #[test]
    fn long_fractions_truncate_to_nanoseconds() {
        assert_eq!(fraction_nanos("123456789999"), Some(123_456_789));
        assert_eq!(fraction_nanos("5"), Some(500_000_000));
        assert_eq!(fraction_nanos(""), Some(0));
        assert_eq!(fraction_nanos("1x"), None);
    }

    #[test]
    fn the_shared_azure_trace_parses_whole() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/azure-llm-2023-conv.csv");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipping: {} is absent", path.display());
            return;
        };
        let rows = parse_trace(&text).unwrap();
        // data/README.md says 19,365, but the file holds 19,366 data rows (the last has no newline).
        assert_eq!(rows.len(), 19_366);
        assert_eq!(rows[0], row(0, 374, 44));
        let span_ms = rows.last().map_or(0, |r| r.offset_ms);
        assert!((55 * 60_000..=65 * 60_000).contains(&span_ms), "span {span_ms} ms");
        assert!(rows.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics(s in any::<String>()) {
                let _ = parse_trace(&s);
            }

            #[test]
            fn parse_never_panics_on_near_csv(
                body in proptest::collection::vec("[0-9 :.,TZ\"\r-]{0,40}", 0..8)
            ) {
                let csv = format!("TIMESTAMP,ContextTokens,GeneratedTokens\n{}", body.join("\n"));
                if let Ok(rows) = parse_trace(&csv) {
                    prop_assert!(rows.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
                    prop_assert_eq!(rows[0].offset_ms, 0);
                }
            }
        }
    }
}
