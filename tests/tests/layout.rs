//! The workspace's shape holds: production crates never depend on test crates, herd-lite never
//! links herd (`herd-tokio`), with or without its `demo` feature, and the service learns the time
//! only from its `Runtime`.

use std::path::Path;
use std::process::Command;

/// The crates in `package`'s normal dependency tree (with `features`), by name.
fn normal_tree(package: &str, features: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "-p", package, "-e", "normal", "--prefix", "none", "--offline"];
    for f in features {
        args.extend(["-F", f]);
    }
    let out = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = tree.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    assert!(names.iter().any(|n| n == package), "unexpected output for {package}: {tree}");
    names
}

#[test]
fn production_crates_do_not_depend_on_test_crates() {
    for package in ["herd-tokio", "herd-smol", "herd-node", "herd-service", "herd-core"] {
        let tree = normal_tree(package, &[]);
        assert!(!tree.iter().any(|n| n == "herd-sim"), "{package} depends on herd-sim");
    }
}

#[test]
fn herd_lite_never_links_herd() {
    for features in [&[][..], &["herd-smol/demo"][..]] {
        let tree = normal_tree("herd-smol", features);
        assert!(!tree.iter().any(|n| n == "herd-tokio"), "herd-lite {features:?} links herd-tokio");
    }
    // Without `demo`, no simulated nodes and no HTTP stack but core's own codec.
    let small = normal_tree("herd-smol", &[]);
    for banned in ["herd-fake-ollama", "hyper", "herd-sim"] {
        assert!(!small.iter().any(|n| n == banned), "herd-lite without demo links {banned}");
    }
}

#[test]
fn service_reads_no_clock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../service/src");
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
                for banned in ["Instant::now", "SystemTime::now"] {
                    assert!(
                        !line.contains(banned),
                        "{}:{}: `{banned}` in the service; time comes from its Runtime: {line}",
                        p.display(),
                        i + 1
                    );
                }
            }
        }
    }
    assert!(files > 5);
}
