//! The SQLite trace store: one row per request in `traces.db` under the data dir, written by a
//! dedicated thread that batches everything queued into one transaction, so request tasks never
//! block on SQLite and no record is dropped under load. Retention keeps the file bounded.
//!
//! Schema (version 1, in `PRAGMA user_version`):
//! - `traces(id INTEGER PRIMARY KEY, request_id, started_unix_ms, ..., stream)`, indexed on
//!   `started_unix_ms` (range filters, newest first, retention by age and by row count);
//! - `trace_tags(trace_rowid, pos, tag)` keyed by `(trace_rowid, pos)` and indexed on `tag`, so usage
//!   per tag is one indexed join + GROUP BY and a trace's tags come back in their order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use serde::Serialize;

mod reader;
#[cfg(test)]
mod tests;

pub use reader::{ModelUsage, TagUsage, TraceReader, Usage};

/// The schema this build writes and reads; stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;
/// The database file inside the data dir.
pub const DB_FILE: &str = "traces.db";

/// Most records one transaction takes; a deeper queue is drained by the next batches at once.
const MAX_BATCH: usize = 8192;
/// How long the writer waits for more records after the first of a batch.
const LINGER: Duration = Duration::from_millis(25);
/// The writer looks for a flush or close this often while it lingers.
const LINGER_SLICE: Duration = Duration::from_millis(5);
/// Retention runs when this much time has passed since the last run...
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// ...or this many rows were written since, so a burst overshoots `max_rows` by at most this much.
const PRUNE_EVERY_ROWS: u64 = 10_000;
/// How long a connection waits on a lock held by the other one before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A WAL file larger than this is truncated back after a checkpoint.
const JOURNAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

const SCHEMA: &str = "
CREATE TABLE traces (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL,
    started_unix_ms INTEGER NOT NULL,
    surface TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    served_model TEXT,
    node TEXT,
    attempts INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    error TEXT,
    route TEXT,
    queued_ms REAL NOT NULL,
    ttft_ms REAL,
    total_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    client TEXT,
    stream INTEGER NOT NULL
);
CREATE INDEX traces_by_started ON traces(started_unix_ms);
CREATE TABLE trace_tags (
    trace_rowid INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (trace_rowid, pos)
) WITHOUT ROWID;
CREATE INDEX trace_tags_by_tag ON trace_tags(tag);
";

const INSERT_TRACE: &str = "INSERT INTO traces (request_id, started_unix_ms, surface, requested_model, served_model,
    node, attempts, outcome, status, error, route, queued_ms, ttft_ms, total_ms, prompt_tokens, completion_tokens,
    client, stream) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";
const INSERT_TAG: &str = "INSERT INTO trace_tags (trace_rowid, pos, tag) VALUES (?1, ?2, ?3)";
/// One request as the router saw it, from arrival to its last byte or refusal (herd-service's).
pub use herd_service::driver::TraceRecord;

/// How much history the store keeps; enforced by the writer thread after batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest rows (by `started_unix_ms`) beyond this count are deleted.
    pub max_rows: u64,
    /// Rows that started longer ago than this are deleted.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_rows: 1_000_000, max_age: Duration::from_secs(30 * 24 * 3600) }
    }
}

/// Counters of the writer, readable at any time through [`TraceWriter::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Records handed to [`TraceWriter::record`].
    pub received: u64,
    /// Records committed.
    pub written: u64,
    /// Records an SQL error kept out (logged), or sent after the writer thread ended.
    pub failed: u64,
    /// Transactions committed or attempted.
    pub batches: u64,
    /// Rows deleted by retention.
    pub pruned: u64,
}

impl StoreStats {
    /// Records received but not yet written or failed: the writer's queue depth.
    pub fn backlog(&self) -> u64 {
        self.received.saturating_sub(self.written + self.failed)
    }
}

/// What can go wrong opening or reading the store. Writes never return errors: they are logged
/// and counted in [`StoreStats::failed`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("trace store schema version {found} is not one this herd reads (it reads {supported})")]
    SchemaVersion { found: i64, supported: i64 },
    #[error("journal mode is {0:?}, not wal")]
    NotWal(String),
    #[error("the trace writer thread panicked")]
    WriterPanicked,
}

// Nearly every message is a record, so the size gap costs nothing; boxing would cost an
// allocation per request.
#[expect(clippy::large_enum_variant, reason = "records are the common message")]
enum Msg {
    Record(TraceRecord),
    /// Answered once every message before it is committed and retention has run.
    Flush(mpsc::SyncSender<()>),
    Shutdown,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    pruned: AtomicU64,
}

/// Owns `traces.db` and the thread that writes it. Dropping it without [`close`](Self::close)
/// still flushes and joins, but swallows errors.
pub struct TraceStore {
    path: PathBuf,
    writer: TraceWriter,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

/// The cheap, cloneable handle request tasks record through.
#[derive(Clone)]
pub struct TraceWriter {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

impl TraceStore {
    /// Opens (creating if needed) `data_dir/traces.db` in WAL mode with `synchronous=NORMAL`,
    /// creates or checks the schema, applies retention once, and starts the writer thread.
    ///
    /// # Errors
    /// The directory or file cannot be created or opened, WAL cannot be enabled, or the file
    /// carries a schema version this build does not know.
    pub fn open(data_dir: &Path, retention: Retention) -> Result<TraceStore, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal(mode));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES};"
        ))?;
        migrate(&mut conn)?;
        let counters = Arc::new(Counters::default());
        let mut pruner = Pruner::new(retention);
        pruner.run(&mut conn, &counters);
        let (tx, rx) = mpsc::channel();
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("herd-trace-store".into())
            .spawn(move || writer_loop(conn, &rx, &thread_counters, pruner))?;
        Ok(TraceStore { path, writer: TraceWriter { tx, counters }, thread: Some(thread) })
    }

    /// A handle for recording; clone it freely.
    pub fn writer(&self) -> TraceWriter {
        self.writer.clone()
    }

    /// A new read-only connection to the same file.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn reader(&self) -> Result<TraceReader, StoreError> {
        TraceReader::open(&self.path)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits everything recorded before this call, applies retention, checkpoints the WAL into
    /// the main file and joins the writer thread. Records sent afterwards through surviving
    /// [`TraceWriter`] clones are counted as failed. Blocks: from async code call it inside
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// The final checkpoint failed, or the writer thread panicked.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        // A send error means the thread is already gone; join reports why.
        let _ = self.writer.tx.send(Msg::Shutdown);
        thread.join().map_err(|_| StoreError::WriterPanicked)?
    }
}

impl Drop for TraceStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "trace store did not close cleanly");
        }
    }
}

impl herd_service::driver::TraceSink for TraceWriter {
    fn record(&self, rec: TraceRecord) {
        TraceWriter::record(self, rec);
    }
}

/// The reader behind `/fleet/traces` and `/fleet/usage`: SQLite reads on tokio's blocking pool.
pub struct SharedReader(Arc<std::sync::Mutex<TraceReader>>);

impl SharedReader {
    /// Shares `reader`.
    pub fn new(reader: TraceReader) -> Self {
        SharedReader(Arc::new(std::sync::Mutex::new(reader)))
    }
}

impl herd_service::TraceLog for SharedReader {
    fn recent(&self, limit: u32) -> herd_service::BoxFuture<'_, Result<Vec<serde_json::Value>, String>> {
        let reader = self.0.clone();
        Box::pin(async move {
            let rows = tokio::task::spawn_blocking(move || {
                let r = reader.lock().map_err(|_| "trace reader poisoned".to_string())?;
                r.recent(limit).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            Ok(rows.iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect())
        })
    }

    fn usage(
        &self,
        since_unix_ms: i64,
    ) -> herd_service::BoxFuture<'_, Result<(serde_json::Value, serde_json::Value), String>> {
        let reader = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let r = reader.lock().map_err(|_| "trace reader poisoned".to_string())?;
                let tags = r.usage_by_tag(since_unix_ms).map_err(|e| e.to_string())?;
                let models = r.usage_by_model(since_unix_ms).map_err(|e| e.to_string())?;
                Ok((serde_json::to_value(tags).unwrap_or_default(), serde_json::to_value(models).unwrap_or_default()))
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }
}

impl TraceWriter {
    /// Queues one record. Never blocks and never drops: the queue is unbounded, and the writer
    /// thread commits whatever is queued in one transaction.
    pub fn record(&self, rec: TraceRecord) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Record(rec)).is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("trace recorded after the trace store closed; dropped");
        }
    }

    /// Blocks until every record sent before this call (from any clone) is committed and
    /// retention has been applied. For tests and shutdown; from async code use `spawn_blocking`.
    /// Returns at once if the writer thread has ended.
    pub fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            // An error means the thread ended without answering: nothing left to wait for.
            let _ = done.recv();
        }
    }

    /// The writer's counters now.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            received: c.received.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            pruned: c.pruned.load(Ordering::Relaxed),
        }
    }
}

/// Creates the schema in a fresh file, or checks the version of an existing one.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match found {
        0 => {
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        SCHEMA_VERSION => {}
        found => return Err(StoreError::SchemaVersion { found, supported: SCHEMA_VERSION }),
    }
    tx.commit()?;
    Ok(())
}

fn writer_loop(
    mut conn: Connection,
    rx: &mpsc::Receiver<Msg>,
    counters: &Counters,
    mut pruner: Pruner,
) -> Result<(), StoreError> {
    let mut batch = Vec::new();
    let mut acks = Vec::new();
    let mut shutdown = false;
    while !shutdown {
        // Every sender gone (cannot happen while the store lives, but be safe): stop.
        let Ok(first) = rx.recv() else { break };
        // Linger a little after the first record so a busy router commits one transaction per
        // few dozen requests, not one per request (a commit costs far more than a row). A flush
        // or close ends the wait at once.
        let linger_until = Instant::now() + LINGER;
        let mut next = Some(first);
        loop {
            while let Some(msg) = next {
                match msg {
                    Msg::Record(rec) => batch.push(rec),
                    Msg::Flush(ack) => acks.push(ack),
                    // Keep draining: whatever was sent before close() must still be written.
                    Msg::Shutdown => shutdown = true,
                }
                if batch.len() >= MAX_BATCH {
                    break;
                }
                next = rx.try_recv().ok();
            }
            if shutdown || !acks.is_empty() || batch.len() >= MAX_BATCH {
                break;
            }
            // Sleep rather than wait on the channel: a thread blocked in `recv` is woken by
            // every record sent (a futex call on the request's path); a sleeping one is not.
            let left = linger_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(LINGER_SLICE));
            match rx.try_recv() {
                Ok(msg) => next = Some(msg),
                Err(mpsc::TryRecvError::Empty) => next = None,
                Err(mpsc::TryRecvError::Disconnected) => {
                    shutdown = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            write_batch(&mut conn, &batch, counters);
            pruner.rows_since += batch.len() as u64;
            batch.clear();
        }
        if shutdown || !acks.is_empty() || pruner.due() {
            pruner.run(&mut conn, counters);
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| StoreError::Sqlite(e))
}

/// Commits the batch in one transaction; if that fails, retries each record alone so one bad
/// record (or a transient error) costs only itself.
fn write_batch(conn: &mut Connection, batch: &[TraceRecord], counters: &Counters) {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    let Err(e) = insert_all(conn, batch) else {
        counters.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        return;
    };
    if batch.len() == 1 {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "trace write failed");
        return;
    }
    tracing::warn!(error = %e, records = batch.len(), "trace batch failed; retrying one by one");
    let mut failed = 0u64;
    for rec in batch {
        counters.batches.fetch_add(1, Ordering::Relaxed);
        if insert_all(conn, std::slice::from_ref(rec)).is_ok() {
            counters.written.fetch_add(1, Ordering::Relaxed);
        } else {
            failed += 1;
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if failed > 0 {
        tracing::warn!(error = %e, failed, "trace records lost to SQL errors");
    }
}

fn insert_all(conn: &mut Connection, batch: &[TraceRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut trace = tx.prepare_cached(INSERT_TRACE)?;
        for r in batch {
            let rowid = trace.insert(params![
                r.request_id as i64,
                r.started_unix_ms,
                r.surface,
                r.requested_model,
                r.served_model,
                r.node,
                r.attempts,
                r.outcome,
                r.status,
                r.error,
                r.route,
                r.queued_ms,
                r.ttft_ms,
                r.total_ms,
                r.prompt_tokens,
                r.completion_tokens,
                r.client,
                r.stream,
            ])?;
            let mut pos = 0i64;
            for (i, t) in r.tags.iter().enumerate() {
                if r.tags[..i].contains(t) {
                    continue;
                }
                // Prepared here, not above, so untagged records do not depend on the tag table.
                tx.prepare_cached(INSERT_TAG)?.execute(params![rowid, pos, t])?;
                pos += 1;
            }
        }
    }
    tx.commit()
}

/// Decides when retention runs and runs it.
struct Pruner {
    retention: Retention,
    last: Instant,
    rows_since: u64,
}

impl Pruner {
    fn new(retention: Retention) -> Pruner {
        Pruner { retention, last: Instant::now(), rows_since: 0 }
    }

    fn due(&self) -> bool {
        self.rows_since >= PRUNE_EVERY_ROWS || (self.rows_since > 0 && self.last.elapsed() >= PRUNE_INTERVAL)
    }

    fn run(&mut self, conn: &mut Connection, counters: &Counters) {
        self.last = Instant::now();
        self.rows_since = 0;
        match prune(conn, self.retention, unix_ms_now()) {
            Ok(n) => {
                counters.pruned.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "trace retention failed"),
        }
    }
}

/// Deletes rows (and their tags) older than `max_age` before `now_unix_ms`, then the oldest rows
/// beyond `max_rows`. Returns how many traces went.
fn prune(conn: &mut Connection, retention: Retention, now_unix_ms: i64) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    let age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_unix_ms.saturating_sub(age_ms);
    tx.execute(
        "DELETE FROM trace_tags WHERE trace_rowid IN (SELECT id FROM traces WHERE started_unix_ms < ?1)",
        [cutoff],
    )?;
    let mut deleted = tx.execute("DELETE FROM traces WHERE started_unix_ms < ?1", [cutoff])? as u64;
    let rows: i64 = tx.query_row("SELECT count(*) FROM traces", [], |r| r.get(0))?;
    let excess = (rows as u64).saturating_sub(retention.max_rows);
    if excess > 0 {
        let oldest = "SELECT id FROM traces ORDER BY started_unix_ms, id LIMIT ?1";
        let excess = i64::try_from(excess).unwrap_or(i64::MAX);
        tx.execute(&format!("DELETE FROM trace_tags WHERE trace_rowid IN ({oldest})"), [excess])?;
        deleted += tx.execute(&format!("DELETE FROM traces WHERE id IN ({oldest})"), [excess])? as u64;
    }
    tx.commit()?;
    Ok(deleted)
}

fn unix_ms_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
