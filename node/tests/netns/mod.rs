//! Running a test inside a fresh network namespace, for the tests that multicast (mDNS) and must
//! never do so on the machine's real network. The test re-executes its own binary under
//! `unshare --net`, with `env` set to the caller's namespace so the child can prove it is in
//! another one. Without permission to create a namespace the test fails loudly, unless
//! `HERD_SKIP_NETNS=1` says to skip it.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// This process's network namespace, e.g. `net:[4026531840]`.
pub fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string()).unwrap_or_default()
}

/// Panics unless this process is in a namespace other than `parent`.
pub fn assert_fresh_netns(parent: &str, what: &str) {
    let mine = netns_id();
    assert!(
        !mine.is_empty() && !parent.is_empty() && mine != parent,
        "refusing to run {what} in the parent's network namespace ({mine} vs {parent})"
    );
}

/// Runs `ip ARGS`, panicking on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `true`: this is the test's own namespace (checked fresh, loopback up); go on. `false`: this is
/// the caller's namespace, and the test `test` ran in a child and passed (or was skipped as
/// allowed). `env` names the variable that marks the child; `what` says what must not run
/// outside a namespace, for the messages.
pub fn inside_netns(env: &str, test: &str, what: &str) -> bool {
    if let Ok(parent) = std::env::var(env) {
        assert_fresh_netns(&parent, what);
        ip(&["link", "set", "lo", "up"]);
        return true;
    }
    let probe = Command::new("unshare").args(["--net", "--", "true"]).output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        let why = match &probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        let msg = format!(
            "\n\n!!!!!!!! {test}: cannot create a network namespace (`unshare --net`: {why}).\n\
             !!!!!!!! It needs root (or CAP_SYS_ADMIN): {what} must never run outside one.\n\
             !!!!!!!! Set HERD_SKIP_NETNS=1 to skip it.\n"
        );
        if std::env::var("HERD_SKIP_NETNS").as_deref() == Ok("1") {
            // Straight to stderr: libtest would swallow an `eprintln!` of a passing test.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{msg}!!!!!!!! SKIPPED (HERD_SKIP_NETNS=1)");
            return false;
        }
        panic!("{msg}");
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, netns_id())
        .stdin(Stdio::null())
        .output()
        .expect("running the test in a network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its network namespace ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // Shown with --nocapture.
    println!("---- {test} in its network namespace ----\n{stdout}{stderr}");
    false
}
