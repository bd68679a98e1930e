//! The workspace's binaries for the tests that run them as child processes (the conformance
//! suite, the fault tests): found next to the test executable, built on demand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>`: the test executable is `target/<profile>/deps/conformance-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| panic!("no target dir above {exe:?}"))
}

/// The path of binary `name` of this workspace, built first (with the test's profile) when it is
/// missing. `cargo test --workspace` builds every binary before it runs tests; `cargo test -p
/// herd-sim` does not, hence the build here.
pub fn binary(name: &str) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let dir = profile_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        return path;
    }
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "herd-tokio",
            "-p",
            "herd-smol",
            "-p",
            "herd-node",
            "-p",
            "herd-fake-ollama",
        ]);
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        let ok = cmd.status().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        assert!(ok.success(), "{cmd:?} failed");
    }
    assert!(path.exists(), "{} is missing after building the workspace binaries", path.display());
    path
}
