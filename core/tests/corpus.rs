//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the same harness
//! functions the fuzz targets call, so every CI run re-checks them on stable Rust.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            f(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn heartbeat_corpus() {
    assert!(replay("heartbeat", herd_core::testing::fuzz_heartbeat) > 0);
}

#[test]
fn request_body_corpus() {
    assert!(replay("request_body", herd_core::testing::fuzz_request_body) > 0);
}

#[test]
fn router_ops_corpus() {
    assert!(replay("router_ops", herd_core::testing::fuzz_router_ops) > 0);
}

#[test]
fn http1_corpus() {
    assert!(replay("http1", herd_core::testing::fuzz_http1) > 0);
}

#[test]
fn http1_message_corpus() {
    assert!(replay("http1_message", herd_core::testing::fuzz_http1_message) > 0);
}

#[test]
fn chunked_corpus() {
    assert!(replay("chunked", herd_core::testing::fuzz_chunked) > 0);
}

#[test]
fn ndjson_corpus() {
    assert!(replay("ndjson", herd_core::testing::fuzz_ndjson) > 0);
}

#[test]
fn image_corpus() {
    assert!(replay("image", herd_core::testing::fuzz_image) > 0);
}

#[test]
fn sse_corpus() {
    assert!(replay("sse", herd_core::testing::fuzz_sse) > 0);
}

#[test]
fn translate_corpus() {
    assert!(replay("translate", herd_core::testing::fuzz_translate) > 0);
}
