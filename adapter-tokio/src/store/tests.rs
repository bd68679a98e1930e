//! Worked examples of the trace store: round trips, no loss under concurrency, usage numbers,
//! retention, WAL and schema versioning, SQL errors counted rather than fatal.

use super::*;
use std::collections::BTreeSet;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn rec(request_id: u64, started_unix_ms: i64) -> TraceRecord {
    TraceRecord {
        request_id,
        started_unix_ms,
        surface: "ollama_chat".into(),
        requested_model: "llama3:8b".into(),
        served_model: Some("llama3:8b".into()),
        node: Some("studio".into()),
        attempts: 1,
        outcome: "completed".into(),
        status: 200,
        route: Some("primary".into()),
        queued_ms: 1.5,
        ttft_ms: Some(120.25),
        total_ms: 900.5,
        prompt_tokens: 10,
        completion_tokens: 20,
        tags: vec!["team-a".into()],
        stream: true,
        ..TraceRecord::default()
    }
}

fn open(dir: &Path) -> TraceStore {
    TraceStore::open(dir, Retention::default()).unwrap()
}

#[test]
fn round_trip_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = unix_ms_now();
    let first = rec(1, now - 2000);
    let second = TraceRecord {
        surface: "openai_chat".into(),
        served_model: Some("qwen2.5:7b".into()),
        node: None,
        attempts: 3,
        outcome: "failed_after_commit".into(),
        status: 502,
        error: Some("reset".into()),
        route: Some("substitute".into()),
        ttft_ms: None,
        tags: vec!["b".into(), "a".into(), "c".into()],
        client: Some("10.0.0.7".into()),
        stream: false,
        ..rec(2, now - 1000)
    };
    // Recorded out of start order: `recent` sorts by start time, not by arrival.
    let w = store.writer();
    w.record(second.clone());
    w.record(first.clone());
    w.flush();
    let got = store.reader().unwrap().recent(10).unwrap();
    assert_eq!(got, vec![second, first.clone()]);
    assert_eq!(store.reader().unwrap().recent(1).unwrap(), vec![got[0].clone()]);
    let s = w.stats();
    assert_eq!((s.received, s.written, s.failed, s.backlog()), (2, 2, 0, 0));
}

#[test]
fn nothing_lost_under_concurrency() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = unix_ms_now();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let w = store.writer();
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let id = t * PER_THREAD + i;
                    w.record(TraceRecord { tags: vec![format!("t{t}"), "all".into()], ..rec(id, now + id as i64) });
                }
            });
        }
    });
    store.writer().flush();
    let elapsed = t0.elapsed();
    let total = THREADS * PER_THREAD;
    let stats = store.writer().stats();
    println!(
        "trace store: {total} records in {elapsed:?} = {:.0} records/s over {} batches",
        total as f64 / elapsed.as_secs_f64(),
        stats.batches
    );
    let reader = store.reader().unwrap();
    assert_eq!(reader.count().unwrap(), total);
    let ids: Vec<u64> = reader.recent(u32::MAX).unwrap().iter().map(|r| r.request_id).collect();
    assert_eq!(ids.len() as u64, total);
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), (0..total).collect::<BTreeSet<_>>());
    assert_eq!((stats.received, stats.written, stats.failed), (total, total, 0));
    assert!(stats.batches >= 1 && stats.batches <= total);
    let by_tag = reader.usage_by_tag(0).unwrap();
    assert_eq!(by_tag[0].tag, "all");
    assert_eq!(by_tag[0].usage.requests, total);
    assert_eq!(by_tag.len() as u64, THREADS + 1);
}

#[test]
fn usage_by_tag_and_model_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let w = store.writer();
    let t = unix_ms_now() - 1000;
    let tags = |ts: &[&str]| ts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Too old for the `since` below: must not count anywhere.
    w.record(TraceRecord { tags: tags(&["a", "b"]), ..rec(0, t - 1) });
    w.record(TraceRecord { tags: tags(&["a", "b"]), prompt_tokens: 5, completion_tokens: 7, ..rec(1, t) });
    w.record(TraceRecord {
        tags: tags(&["a", "a"]), // repeated: still one request for "a"
        ttft_ms: Some(200.0),
        total_ms: 100.0,
        ..rec(2, t + 1)
    });
    w.record(TraceRecord {
        tags: tags(&["b"]),
        outcome: "rejected".into(),
        status: 404,
        error: Some("unknown_model".into()),
        requested_model: "nope:1b".into(),
        served_model: None,
        ttft_ms: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_ms: 0.5,
        ..rec(3, t + 2)
    });
    w.record(TraceRecord { tags: vec![], outcome: "client_gone".into(), ttft_ms: None, ..rec(4, t + 3) });
    w.record(TraceRecord {
        tags: tags(&["b"]),
        requested_model: "llama3:8b".into(),
        served_model: Some("qwen2.5:7b".into()),
        route: Some("substitute".into()),
        outcome: "failed_after_commit".into(),
        ttft_ms: Some(50.0),
        ..rec(5, t + 4)
    });
    w.flush();
    let r = store.reader().unwrap();
    let usage = |requests,
                 completed,
                 failed,
                 client_gone,
                 prompt_tokens,
                 completion_tokens,
                 mean_ttft_ms,
                 total_ms_sum| {
        Usage { requests, completed, failed, client_gone, prompt_tokens, completion_tokens, mean_ttft_ms, total_ms_sum }
    };
    assert_eq!(
        r.usage_by_tag(t).unwrap(),
        vec![
            TagUsage { tag: "b".into(), usage: usage(3, 1, 2, 0, 15, 27, Some(85.125), 1801.5) },
            TagUsage { tag: "a".into(), usage: usage(2, 2, 0, 0, 15, 27, Some(160.125), 1000.5) },
        ]
    );
    assert_eq!(
        r.usage_by_model(t).unwrap(),
        vec![
            ModelUsage { model: "llama3:8b".into(), usage: usage(3, 2, 0, 1, 25, 47, Some(160.125), 1901.0) },
            ModelUsage { model: "nope:1b".into(), usage: usage(1, 0, 1, 0, 0, 0, None, 0.5) },
            ModelUsage { model: "qwen2.5:7b".into(), usage: usage(1, 0, 1, 0, 10, 20, Some(50.0), 900.5) },
        ]
    );
    assert_eq!(r.usage_by_tag(t + 100).unwrap(), vec![]);
    assert_eq!(r.usage_by_tag(0).unwrap()[0].usage.requests, 4);
}

#[test]
fn usage_by_tag_uses_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r = store.reader().unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", reader::usage_by_tag_sql());
    let mut stmt = r.conn.prepare(&sql).unwrap();
    let plan: Vec<String> = stmt.query_map([0], |row| row.get(3)).unwrap().map(Result::unwrap).collect();
    println!("usage_by_tag plan: {plan:?}");
    // Every table access goes through an index or the primary key: no full scan of a table.
    for step in &plan {
        assert!(!step.starts_with("SCAN") || step.contains("INDEX"), "{plan:?}");
    }
}

#[test]
fn retention_by_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path(), Retention { max_rows: 100, ..Retention::default() }).unwrap();
    let w = store.writer();
    let now = unix_ms_now();
    for id in 0..250u64 {
        w.record(TraceRecord { tags: vec![format!("x{id}")], ..rec(id, now - 250 + id as i64) });
    }
    w.flush();
    let r = store.reader().unwrap();
    assert_eq!(r.count().unwrap(), 100);
    let ids: Vec<u64> = r.recent(1000).unwrap().iter().map(|r| r.request_id).collect();
    assert_eq!(ids, (150..250).rev().collect::<Vec<_>>());
    // The deleted rows' tags went with them.
    let tags: i64 = r.conn.query_row("SELECT count(*) FROM trace_tags", [], |r| r.get(0)).unwrap();
    assert_eq!(tags, 100);
    assert_eq!(w.stats().pruned, 150);
}

#[test]
fn retention_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention { max_age: Duration::from_secs(30 * 24 * 3600), ..Retention::default() };
    let store = TraceStore::open(dir.path(), retention).unwrap();
    let w = store.writer();
    let now = unix_ms_now();
    w.record(TraceRecord { tags: vec!["old".into()], ..rec(1, now - 40 * DAY_MS) });
    w.record(TraceRecord { tags: vec!["new".into()], ..rec(2, now - 29 * DAY_MS) });
    w.record(rec(3, now));
    w.flush();
    let r = store.reader().unwrap();
    let ids: Vec<u64> = r.recent(10).unwrap().iter().map(|r| r.request_id).collect();
    assert_eq!(ids, vec![3, 2]);
    let tags: Vec<String> = r.usage_by_tag(0).unwrap().into_iter().map(|u| u.tag).collect();
    assert_eq!(tags, vec!["new", "team-a"]);
}

#[test]
fn retention_applies_to_an_existing_file_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let w = store.writer();
    for id in 0..10 {
        w.record(rec(id, unix_ms_now() + id as i64));
    }
    store.close().unwrap();
    let store = TraceStore::open(dir.path(), Retention { max_rows: 4, ..Retention::default() }).unwrap();
    assert_eq!(store.reader().unwrap().count().unwrap(), 4);
}

#[test]
fn wal_mode_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mode: String = store.reader().unwrap().conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let kept = rec(7, unix_ms_now());
    store.writer().record(kept.clone());
    store.close().unwrap();

    let store = open(dir.path());
    let r = store.reader().unwrap();
    let version: i64 = r.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = r.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(r.recent(10).unwrap(), vec![kept.clone()]);
    // Appending after a reopen keeps both.
    store.writer().record(rec(8, kept.started_unix_ms + 1));
    store.writer().flush();
    assert_eq!(r.count().unwrap(), 2);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close().unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    match TraceStore::open(dir.path(), Retention::default()) {
        Err(StoreError::SchemaVersion { found: 99, supported: SCHEMA_VERSION }) => {}
        other => panic!("expected SchemaVersion, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn awkward_strings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let awkward = TraceRecord {
        request_id: u64::MAX,
        started_unix_ms: unix_ms_now(),
        surface: "/api/chat?x='1'; DROP TABLE traces; --".into(),
        requested_model: "\"quoted\" 'model' \\ back".into(),
        served_model: Some(String::new()),
        node: Some("nœud-🦙-節点".into()),
        error: Some("line\nbreak\ttab\0nul".into()),
        tags: vec![String::new(), "ünï©ødé 🏷".into(), "it's \"quoted\"".into(), ",;|".into()],
        client: Some(String::new()),
        queued_ms: f64::MIN_POSITIVE,
        ..TraceRecord::default()
    };
    let w = store.writer();
    w.record(awkward.clone());
    w.record(TraceRecord { tags: vec![], ..rec(1, awkward.started_unix_ms - 1) });
    w.flush();
    let got = store.reader().unwrap().recent(10).unwrap();
    assert_eq!(got[0], awkward);
    assert!(got[1].tags.is_empty());
}

#[test]
fn close_flushes_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let w = store.writer();
    let now = unix_ms_now();
    for id in 0..1000 {
        w.record(rec(id, now));
    }
    store.close().unwrap();
    // After close the WAL was checkpointed into the main file, and late records are counted.
    w.record(rec(5000, now));
    w.flush();
    assert_eq!(w.stats().failed, 1);
    let r = TraceReader::open(&dir.path().join(DB_FILE)).unwrap();
    assert_eq!(r.count().unwrap(), 1000);
}

#[test]
fn sql_errors_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let w = store.writer();
    w.record(rec(1, unix_ms_now()));
    w.flush();
    // Pull the tag table away behind the writer's back: every tagged insert now fails.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("DROP TABLE trace_tags").unwrap();
    for id in 2..5 {
        w.record(rec(id, unix_ms_now()));
    }
    w.record(TraceRecord { tags: vec![], ..rec(5, unix_ms_now()) });
    w.flush();
    let s = w.stats();
    assert_eq!((s.received, s.written, s.failed), (5, 2, 3));
    assert_eq!(store.reader().unwrap().count().unwrap(), 2);
    store.close().unwrap();
}
