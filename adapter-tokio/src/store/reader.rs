//! The read side of the trace store: a read-only connection answering the queries the dashboard
//! and the API need (recent traces, usage per tag and per model).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, Row};
use serde::Serialize;

use super::{StoreError, TraceRecord, BUSY_TIMEOUT};

const SELECT_RECENT: &str = "SELECT id, request_id, started_unix_ms, surface, requested_model, served_model, node,
    attempts, outcome, status, error, route, queued_ms, ttft_ms, total_ms, prompt_tokens, completion_tokens, client,
    stream FROM traces ORDER BY started_unix_ms DESC, id DESC LIMIT ?1";
const SELECT_TAGS: &str = "SELECT tag FROM trace_tags WHERE trace_rowid = ?1 ORDER BY pos";
/// The columns of [`Usage`], over traces `t`.
const USAGE_COLUMNS: &str = "count(*), sum(t.outcome = 'completed'),
    sum(t.outcome NOT IN ('completed', 'client_gone')), sum(t.outcome = 'client_gone'), sum(t.prompt_tokens),
    sum(t.completion_tokens), avg(t.ttft_ms), sum(t.total_ms)";

/// Counts over a set of traces (one tag's, one model's).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub requests: u64,
    pub completed: u64,
    /// Outcomes other than `completed` and `client_gone` (the client leaving is not the fleet
    /// failing).
    pub failed: u64,
    pub client_gone: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Mean over the requests that produced a first token; `None` when none did.
    pub mean_ttft_ms: Option<f64>,
    pub total_ms_sum: f64,
}

/// Usage of one tag since a point in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagUsage {
    pub tag: String,
    #[serde(flatten)]
    pub usage: Usage,
}

/// Usage of one model since a point in time; the model is the served one, or the requested one
/// when nothing was served (a refusal).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelUsage {
    pub model: String,
    #[serde(flatten)]
    pub usage: Usage,
}

/// A read-only connection for queries. Blocking: call it from `spawn_blocking` or a thread.
pub struct TraceReader {
    pub(super) conn: Connection,
}

impl TraceReader {
    /// Opens a read-only connection to an existing trace database.
    ///
    /// # Errors
    /// The file does not exist or cannot be opened.
    pub fn open(path: &Path) -> Result<TraceReader, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(TraceReader { conn })
    }

    /// How many traces are stored.
    ///
    /// # Errors
    /// An SQL error.
    pub fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM traces", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The `limit` latest traces by start time, newest first, with their tags.
    ///
    /// # Errors
    /// An SQL error.
    pub fn recent(&self, limit: u32) -> Result<Vec<TraceRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(SELECT_RECENT)?;
        let mut tags = self.conn.prepare_cached(SELECT_TAGS)?;
        let rows = stmt.query_map([limit], |row| Ok((row.get::<_, i64>(0)?, record_from_row(row)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (rowid, mut rec) = row?;
            rec.tags = tags.query_map([rowid], |r| r.get(0))?.collect::<Result<_, _>>()?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Usage per tag of the traces started at or after `since_unix_ms`, busiest tag first.
    /// Untagged traces do not appear.
    ///
    /// # Errors
    /// An SQL error.
    pub fn usage_by_tag(&self, since_unix_ms: i64) -> Result<Vec<TagUsage>, StoreError> {
        let sql = usage_by_tag_sql();
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map([since_unix_ms], |row| Ok(TagUsage { tag: row.get(0)?, usage: usage_from_row(row)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Usage per model (served, else requested) of the traces started at or after
    /// `since_unix_ms`, busiest model first.
    ///
    /// # Errors
    /// An SQL error.
    pub fn usage_by_model(&self, since_unix_ms: i64) -> Result<Vec<ModelUsage>, StoreError> {
        let sql = format!(
            "SELECT coalesce(t.served_model, t.requested_model) AS m, {USAGE_COLUMNS} FROM traces t
             WHERE t.started_unix_ms >= ?1 GROUP BY m ORDER BY count(*) DESC, m"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map([since_unix_ms], |row| Ok(ModelUsage { model: row.get(0)?, usage: usage_from_row(row)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Columns 1..=18 of `SELECT_RECENT`; tags are filled in separately.
fn record_from_row(row: &Row<'_>) -> rusqlite::Result<TraceRecord> {
    Ok(TraceRecord {
        request_id: row.get::<_, i64>(1)? as u64,
        started_unix_ms: row.get(2)?,
        surface: row.get(3)?,
        requested_model: row.get(4)?,
        served_model: row.get(5)?,
        node: row.get(6)?,
        attempts: row.get(7)?,
        outcome: row.get(8)?,
        status: row.get(9)?,
        error: row.get(10)?,
        route: row.get(11)?,
        queued_ms: row.get(12)?,
        ttft_ms: row.get(13)?,
        total_ms: row.get(14)?,
        prompt_tokens: row.get(15)?,
        completion_tokens: row.get(16)?,
        tags: Vec::new(),
        client: row.get(17)?,
        stream: row.get(18)?,
    })
}

/// Columns 1..=8 of a `USAGE_COLUMNS` select; SQL sums are NULL over no rows.
fn usage_from_row(row: &Row<'_>) -> rusqlite::Result<Usage> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, Option<i64>>(i)?.unwrap_or(0) as u64) };
    Ok(Usage {
        requests: n(1)?,
        completed: n(2)?,
        failed: n(3)?,
        client_gone: n(4)?,
        prompt_tokens: n(5)?,
        completion_tokens: n(6)?,
        mean_ttft_ms: row.get(7)?,
        total_ms_sum: row.get::<_, Option<f64>>(8)?.unwrap_or(0.0),
    })
}

/// The usage-per-tag query: the tag index drives the GROUP BY, each row joins its trace by
/// primary key.
pub(super) fn usage_by_tag_sql() -> String {
    format!(
        "SELECT g.tag, {USAGE_COLUMNS} FROM trace_tags g JOIN traces t ON t.id = g.trace_rowid
         WHERE t.started_unix_ms >= ?1 GROUP BY g.tag ORDER BY count(*) DESC, g.tag"
    )
}
