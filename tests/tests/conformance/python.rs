//! The real Python clients: `ollama` 0.6.3, `openai` 3.57.0 and `anthropic` 2.17.0 in a virtual
//! environment under the target folder (created once, one test at a time), running the scripts
//! in `tests/python/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pinned clients.
const PACKAGES: [&str; 3] = ["ollama==0.6.3", "openai==3.57.0", "anthropic==2.17.0"];
/// Longest one run of the script may take.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

/// The venv's `python`, with [`PACKAGES`] installed; created on first use. A marker file names
/// what was installed, so a half-made venv (an interrupted run) is made again.
fn python() -> PathBuf {
    static CREATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyclients-venv");
    let bin = dir.join("bin");
    let marker = dir.join(format!("installed-{}", PACKAGES.join("-")));
    if !marker.exists() {
        let ok = Command::new("python3").args(["-m", "venv", "--clear"]).arg(&dir).status().expect("python3 -m venv");
        assert!(ok.success(), "creating the venv {} failed", dir.display());
        let ok = Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES)
            .status()
            .expect("pip");
        assert!(ok.success(), "pip install {PACKAGES:?} failed");
        std::fs::write(&marker, b"").expect("writing the venv marker");
    }
    bin.join("python")
}

/// Runs `clients.py` with `args`, its output kept in `dir`; panics with that output unless it
/// exits 0 and says `all checks passed`. Returns its stdout.
pub fn run_clients(dir: &Path, args: &[String]) -> String {
    run_script("clients.py", dir, args)
}

/// Runs `tests/python/<name>` with `args`, as [`run_clients`].
pub fn run_script(name: &str, dir: &Path, args: &[String]) -> String {
    let py = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join(name);
    let (out_path, err_path) = (dir.join(format!("{name}.stdout")), dir.join(format!("{name}.stderr")));
    let mut child = Command::new(py)
        .arg(&script)
        .args(args)
        .env("NO_PROXY", "*")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if start.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    println!("{stdout}");
    match status {
        Some(s) if s.success() && stdout.contains("all checks passed") => stdout,
        Some(s) => panic!("{name} {args:?} failed ({s}):\n{stdout}\n{stderr}"),
        None => panic!("{name} {args:?} ran past {SCRIPT_LIMIT:?}:\n{stdout}\n{stderr}"),
    }
}
