//! Real clients: the `ollama` 0.6.3 and `openai` 3.57.0 Python packages, installed by this test in
//! a virtual environment under the target folder, run against `herd` in front of simulated
//! Ollama nodes. The checks themselves are in `tests/python/clients.py`.

mod common;

use common::{fast, spec, Fleet};
use std::path::{Path, PathBuf};

/// The venv's python, with the pinned clients installed.
fn python() -> PathBuf {
    common::venv("pyclients-venv", &["ollama==0.6.3", "openai==3.57.0"]).join("python")
}

async fn run_script(args: Vec<String>) {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/clients.py");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args(&args)
        .env("NO_PROXY", "*")
        .output()
        .await
        .expect("running clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "clients.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_and_openai_python_clients_work_unchanged() {
    let mut f = Fleet::router(&[], None).await;
    let models = ["qwen3:8b", "llama3.1:8b", "nomic-embed-text"];
    let a = f.node(spec("alpha", &models, &["qwen3:8b", "nomic-embed-text"], 4), fast()).await;
    let b = f.node(spec("beta", &models, &["qwen3:8b"], 4), fast()).await;
    run_script(vec![f.url.clone(), format!("alpha={}", a.url()), format!("beta={}", b.url())]).await;
    let traces = f.traces().await;
    assert!(traces.iter().any(|t| t.attempts == 2 && t.outcome == "completed"), "a retried request");
    assert!(traces.iter().any(|t| t.outcome == "failed_after_commit"), "the mid-stream death");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_admin_keys_with_real_clients() {
    let mut f = Fleet::router(&["--api-keys", "good-key", "--admin-key", "admin-key"], None).await;
    f.node(spec("alpha", &["qwen3:8b"], &["qwen3:8b"], 4), fast()).await;
    run_script(vec!["--keys".into(), f.url.clone()]).await;
}
