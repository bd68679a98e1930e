//! core stays sans-IO: no async runtime, HTTP stack or socket crate may enter its normal
//! dependency tree (`cargo tree -p herd-core -e normal`).

use std::process::Command;

#[test]
fn core_has_no_runtime_or_socket_dependencies() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "herd-core", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(tree.contains("herd-core"), "unexpected output: {tree}");
    for banned in ["tokio", "hyper", "async-io", "async-std", "smol", "mio", "socket2", "futures", "reqwest"] {
        let hit = tree.lines().find(|l| l.split_whitespace().next() == Some(banned));
        assert!(hit.is_none(), "herd-core depends on {banned}: {hit:?}");
    }
}

#[test]
fn core_source_reads_no_clock_and_spawns_no_thread() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![dir];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for banned in
                    ["Instant::now", "SystemTime", "thread::spawn", "async fn", "tokio::", "HashMap", "HashSet"]
                {
                    assert!(!code.contains(banned), "{}:{}: `{banned}` in core: {line}", p.display(), i + 1);
                }
            }
        }
    }
    assert!(files > 10);
}
