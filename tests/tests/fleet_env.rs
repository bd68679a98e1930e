//! An ollama-herd operator's settings reach the `herd` binary: `FLEET_PORT` (with `HERD_PORT`
//! unset) is the port it answers on, ollama-herd's env file is read under the real environment,
//! a `FLEET_*` variable herd does not support is named on stderr, and a value herd cannot read
//! stops it before it listens.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the router may take to answer after it is started.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// `herd` with a clean environment: no `HERD_*` or `FLEET_*` variable but `env`.
fn herd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(herd_sim::bins::binary("herd"));
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str().filter(|k| k.starts_with("HERD_") || k.starts_with("FLEET_")) {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1").env("HOME", dir).args(["--no-mdns", "--data-dir"]).arg(dir.join("data")).args(args);
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    cmd
}

/// The child, killed and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}

/// `GET /` on `port`, when something answers it.
fn liveness(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: herd\r\nconnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < READY_WITHIN, "herd did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fleet_port_is_honoured_and_unsupported_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // ollama-herd's env file, at its default place: the real environment's FLEET_PORT wins over
    // its own, and its FLEET_HOST (not in the environment) is used.
    std::fs::create_dir_all(dir.path().join(".fleet-manager")).unwrap();
    std::fs::write(
        dir.path().join(".fleet-manager/env"),
        "# from ollama-herd\nexport FLEET_HOST=127.0.0.1\nFLEET_PORT=1\nFLEET_REBALANCE_INTERVAL=\"10\"\n",
    )
    .unwrap();
    let mut attempt = 0;
    let (mut child, port) = loop {
        attempt += 1;
        let port = free_port();
        let env = [("FLEET_PORT", port.to_string()), ("FLEET_MLX_ENABLED", "true".into())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let child = Running(herd(dir.path(), &[], &env).spawn().expect("spawning herd"));
        match ready(child, port) {
            Ok(child) => break (child, port),
            Err(e) => {
                let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
                // Another process took the port between the probe and the bind: try another.
                if attempt < 3 && stderr.contains("in use") {
                    continue;
                }
                panic!("herd never answered on FLEET_PORT {port}: {e}\n{stderr}");
            }
        }
    };
    let answer = liveness(port).expect("herd answers on the FLEET_PORT");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("Ollama is running"), "{answer}");
    let _ = child.0.kill();
    let _ = child.0.wait();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    for expected in [
        "FLEET_MLX_ENABLED is not supported by herd and is ignored: MLX proxy is not part of herd",
        "FLEET_REBALANCE_INTERVAL is not supported by herd",
        "FLEET_HOST (HERD_HOST)",
        "FLEET_PORT (HERD_PORT)",
        &format!("127.0.0.1:{port}"), // FLEET_HOST, from the env file
    ] {
        assert!(stderr.contains(expected), "stderr lacks {expected:?}:\n{stderr}");
    }
    assert_eq!(stderr.matches("FLEET_MLX_ENABLED").count(), 1, "named once:\n{stderr}");
}

/// Polls `GET /` until it answers (the child still running), at most [`READY_WITHIN`]; on failure,
/// the child's stderr.
fn ready(mut child: Running, port: u16) -> Result<Running, String> {
    let start = Instant::now();
    while start.elapsed() < READY_WITHIN {
        if liveness(port).is_some() {
            return Ok(child);
        }
        if let Some(status) = child.0.try_wait().ok().flatten() {
            return Err(format!("herd exited ({status})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("no answer in time".into())
}

#[test]
fn a_bad_fleet_value_or_a_missing_env_file_stops_herd() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut child = herd(dir.path(), &["--port", &port], &[("FLEET_SCORE_MODEL_HOT", "hot")]).spawn().unwrap();
    let status = wait_exit(&mut child);
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"FLEET_SCORE_MODEL_HOT="hot": expected a number >= 0"#), "{stderr}");

    let missing = dir.path().join("no-such-env");
    let mut child =
        herd(dir.path(), &["--port", &port], &[("FLEET_ENV_FILE", missing.to_str().unwrap())]).spawn().unwrap();
    let status = wait_exit(&mut child);
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("FLEET_ENV_FILE") && stderr.contains("no-such-env"), "{stderr}");
}
