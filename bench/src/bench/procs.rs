//! The processes a run starts (the simulated Ollama and the routers in front of it: herd, and
//! herd-lite with `--lite`), the guards that kill them and remove the scratch folder however the
//! run ends, readiness, the routers' memory as /proc reports it, and a description of the machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::load::{HttpClient, MODEL};

/// A setup failure, told to the user as is.
pub type SetupError = Box<dyn std::error::Error>;

/// How long a child may take to print its `listening on` line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the router may take to see the node online with the model loaded.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the router's memory is sampled during its rounds.
const RSS_PERIOD: Duration = Duration::from_millis(100);

/// Which routers a run starts in front of the simulated Ollama.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routers {
    /// None: only the fake is measured.
    FakeOnly,
    /// herd.
    Herd,
    /// herd and herd-lite, both running during the whole run.
    HerdAndLite,
}

/// The programs, next to the bench's own executable unless told otherwise.
#[derive(Debug)]
pub struct Bins {
    pub fake: PathBuf,
    pub router: PathBuf,
    /// `herd-lite`, when the run measures it.
    pub lite: Option<PathBuf>,
}

impl Bins {
    /// Finds `herd-fake-ollama` and `herd` in `dir`, or next to this executable, and `herd-lite`
    /// there too when `routers` has it.
    ///
    /// # Errors
    /// A program is missing.
    pub fn locate(dir: Option<PathBuf>, routers: Routers) -> Result<Bins, SetupError> {
        let dir = match dir {
            Some(d) => d,
            None => std::env::current_exe()?.parent().ok_or("the executable has no folder")?.to_path_buf(),
        };
        let lite = (routers == Routers::HerdAndLite).then(|| dir.join("herd-lite"));
        let bins = Bins { fake: dir.join("herd-fake-ollama"), router: dir.join("herd"), lite };
        for path in [&bins.fake, &bins.router] {
            if !path.is_file() {
                return Err(format!(
                    "{} not found; build the programs first: \
                     cargo build --release -p herd-tokio -p herd-fake-ollama -p herd-bench",
                    path.display()
                )
                .into());
            }
        }
        if let Some(path) = bins.lite.as_ref().filter(|p| !p.is_file()) {
            return Err(format!(
                "{} not found; --lite needs herd-lite next to the others: \
                 cargo build --release -p herd-tokio -p herd-smol -p herd-fake-ollama",
                path.display()
            )
            .into());
        }
        Ok(bins)
    }
}

/// A scratch folder, removed on drop unless kept.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
    pub keep: bool,
}

impl Scratch {
    /// Creates a fresh folder under the system's temporary folder.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn create(keep: bool) -> Result<Scratch, SetupError> {
        let path = std::env::temp_dir().join(format!("herd-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Scratch { path, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process that is killed when this is dropped (panics included).
#[derive(Debug)]
pub struct Proc {
    name: &'static str,
    child: Child,
    /// `http://127.0.0.1:PORT`, from its first line.
    pub url: String,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, its stderr into `stderr`, and waits for its first stdout line
    /// `listening on URL`; the rest of its stdout is read and dropped so it never blocks.
    async fn spawn(name: &'static str, program: &Path, args: &[String], stderr: PathBuf) -> Result<Proc, SetupError> {
        let log = std::fs::File::create(&stderr)?;
        let mut child = Command::new(program)
            .args(args)
            .env("HERD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = tx.send(reader.read_line(&mut first).map(|_| first));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut proc = Proc { name, child, url: String::new(), stderr };
        let line = match tokio::time::timeout(LISTEN_TIMEOUT, rx).await {
            Ok(Ok(Ok(line))) => line,
            Ok(_) => return Err(proc.failure("its stdout closed before a line")),
            Err(_) => return Err(proc.failure(&format!("no line on stdout within {LISTEN_TIMEOUT:?}"))),
        };
        match line.trim().strip_prefix("listening on ") {
            Some(url) if url.starts_with("http://") => proc.url = url.to_string(),
            _ => return Err(proc.failure(&format!("unexpected first line {:?}", line.trim()))),
        }
        Ok(proc)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `reason`, plus how the process ended if it did, plus the end of its stderr.
    fn failure(&mut self, reason: &str) -> SetupError {
        std::thread::sleep(Duration::from_millis(100));
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        };
        let (_, tail) = self.log_tail(10);
        format!("{}: {reason}{exited}; stderr ends:\n{}", self.name, tail.join("\n")).into()
    }

    /// The number of stderr lines and the last `n` of them.
    pub fn log_tail(&self, n: usize) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect();
        (lines.len(), tail)
    }

    /// Tells on stderr how many lines it logged, with the last few.
    fn report_log(&self) {
        let (count, tail) = self.log_tail(5);
        if count > 0 {
            eprintln!("{} wrote {count} lines to stderr ({}); the last ones:", self.name, self.stderr.display());
            for line in tail {
                eprintln!("  {line}");
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated Ollama with the routers in front of it.
#[derive(Debug)]
pub struct Pair {
    /// herd. The routers are declared first so they are killed first, before the node they
    /// route to; `None` when only the fake is measured.
    pub router: Option<Proc>,
    /// herd-lite, with `--lite`.
    pub lite: Option<Proc>,
    pub fake: Proc,
    /// The fake's `--token-ms`.
    pub token_ms: u64,
}

/// How to start a [`Pair`].
#[derive(Debug)]
pub struct PairConfig<'a> {
    pub bins: &'a Bins,
    pub scratch: &'a Path,
    pub token_ms: u64,
    /// The fake's `--num-parallel` and the routers' `--node-parallel`.
    pub parallel: usize,
    /// The fake's port (0 = any free one).
    pub fake_port: u16,
    /// The routers to start too.
    pub routers: Routers,
    /// The fake's `--batch-tokens`: tokens due at once share writes (not what Ollama does).
    pub batch_tokens: bool,
    /// More arguments for herd (not herd-lite).
    pub herd_args: Vec<String>,
}

impl Pair {
    /// Starts the fake, then the routers pointed at it, and waits until each router sees the node
    /// online with the model loaded.
    ///
    /// # Errors
    /// A program failed to start or a router never saw the node ready.
    pub async fn start(config: PairConfig<'_>, client: &HttpClient) -> Result<Pair, SetupError> {
        let dir = config.scratch.join(format!("token-ms-{}", config.token_ms));
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let mut fake_args = strings(&[
            "--host",
            "127.0.0.1",
            "--port",
            &config.fake_port.to_string(),
            "--timing",
            "fixed",
            "--first-token-ms",
            "0",
            "--token-ms",
            &config.token_ms.to_string(),
            "--num-parallel",
            &config.parallel.to_string(),
            "--models",
            MODEL,
            "--preload",
            MODEL,
            "--name",
            "bench",
        ]);
        if config.batch_tokens {
            fake_args.push("--batch-tokens".to_string());
        }
        let fake = Proc::spawn("herd-fake-ollama", &config.bins.fake, &fake_args, dir.join("fake.stderr")).await?;
        if config.routers == Routers::FakeOnly {
            return Ok(Pair { router: None, lite: None, fake, token_ms: config.token_ms });
        }
        // herd-lite takes the same command line (it accepts and ignores --data-dir and
        // --no-mdns), and runs on its default single executor thread.
        let router_args = strings(&[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--node",
            &fake.url,
            "--node-parallel",
            &config.parallel.to_string(),
            "--data-dir",
            &data.to_string_lossy(),
            "--no-mdns",
            "--seed",
            "1",
        ]);
        let herd_args: Vec<String> = router_args.iter().chain(&config.herd_args).cloned().collect();
        let mut router = Proc::spawn("herd", &config.bins.router, &herd_args, dir.join("router.stderr")).await?;
        wait_ready(&mut router, client).await?;
        let lite = match (&config.bins.lite, config.routers) {
            (Some(program), Routers::HerdAndLite) => {
                let mut lite = Proc::spawn("herd-lite", program, &router_args, dir.join("lite.stderr")).await?;
                wait_ready(&mut lite, client).await?;
                Some(lite)
            }
            (None, Routers::HerdAndLite) => return Err("herd-lite was not located".into()),
            _ => None,
        };
        Ok(Pair { router: Some(router), lite, fake, token_ms: config.token_ms })
    }

    /// Reports the children's logs, reads the routers' VmHWM (kB; herd's, then herd-lite's) and
    /// kills them all.
    pub fn finish(self) -> [Option<u64>; 2] {
        let hwm = |p: &Option<Proc>| p.as_ref().and_then(|r| proc_status_kb(r.pid(), "VmHWM:"));
        let hwm = [hwm(&self.router), hwm(&self.lite)];
        for router in [&self.router, &self.lite].into_iter().flatten() {
            router.report_log();
        }
        self.fake.report_log();
        hwm
    }
}

/// Waits until `router` answers `/fleet/status` with the node online and the model loaded.
async fn wait_ready(router: &mut Proc, client: &HttpClient) -> Result<(), SetupError> {
    let uri: hyper::Uri = format!("{}/fleet/status", router.url).parse()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let request = Request::get(uri.clone()).body(Full::new(Bytes::new()))?;
        match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if status.is_success() && node_ready(&value) {
                    return Ok(());
                }
                last = format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
            }
            Err(e) => last = format!("request failed: {e}"),
        }
        if let Ok(Some(status)) = router.child.try_wait() {
            return Err(router.failure(&format!("exited ({status}) before the node was ready")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(router.failure(&format!(
        "GET /fleet/status never showed nodes[0] online with {MODEL} loaded within {READY_TIMEOUT:?}; last: {last}"
    )))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Whether `/fleet/status` shows the first node online with the model loaded.
pub fn node_ready(status: &Value) -> bool {
    let node = &status["nodes"][0];
    let loaded = node["models_loaded"]
        .as_array()
        .is_some_and(|models| models.iter().any(|m| m.as_str() == Some(MODEL) || m["name"].as_str() == Some(MODEL)));
    node["status"] == "online" && loaded
}

/// A `kB` field (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Linux reports CPU time in these ticks per second (USER_HZ, 100 on every mainstream kernel).
const TICKS_PER_S: f64 = 100.0;

/// CPU time (user + system) a process has used so far, seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_S)
}

/// How busy the three processes were over some rounds, in cores (1.0 = one core all the time).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    pub generator_s: f64,
    pub fake_s: f64,
    pub router_s: f64,
    pub wall_s: f64,
}

impl CpuUse {
    /// Generator, fake and router CPU per wall second.
    pub fn cores(&self) -> [f64; 3] {
        let per = |s: f64| if self.wall_s > 0.0 { s / self.wall_s } else { 0.0 };
        [per(self.generator_s), per(self.fake_s), per(self.router_s)]
    }

    pub fn add(&mut self, other: CpuUse) {
        self.generator_s += other.generator_s;
        self.fake_s += other.fake_s;
        self.router_s += other.router_s;
        self.wall_s += other.wall_s;
    }
}

/// Measures [`CpuUse`] from [`CpuMeter::start`] to [`CpuMeter::stop`].
#[derive(Debug)]
pub struct CpuMeter {
    pids: [Option<u32>; 3],
    at_start: [f64; 3],
    started: Instant,
}

impl CpuMeter {
    /// Starts counting for the generator (this process), the fake and the router, if any.
    pub fn start(fake: u32, router: Option<u32>) -> CpuMeter {
        let pids = [Some(std::process::id()), Some(fake), router];
        CpuMeter { pids, at_start: Self::read(&pids), started: Instant::now() }
    }

    fn read(pids: &[Option<u32>; 3]) -> [f64; 3] {
        pids.map(|pid| pid.and_then(cpu_secs).unwrap_or(0.0))
    }

    pub fn stop(self) -> CpuUse {
        let now = Self::read(&self.pids);
        let d = |i: usize| (now[i] - self.at_start[i]).max(0.0);
        CpuUse { generator_s: d(0), fake_s: d(1), router_s: d(2), wall_s: self.started.elapsed().as_secs_f64() }
    }
}

/// Samples a process's VmRSS every [`RSS_PERIOD`] until stopped, keeping the peak.
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    peak_kb: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let peak = peak_kb.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RSS_PERIOD);
            loop {
                tick.tick().await;
                if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
            }
        });
        RssSampler { pid, peak_kb, task }
    }

    /// Stops sampling; the peak VmRSS seen, kB.
    pub fn stop(self) -> u64 {
        self.task.abort();
        let last = proc_status_kb(self.pid, "VmRSS:").unwrap_or(0);
        self.peak_kb.load(Ordering::Relaxed).max(last)
    }
}

/// Where the numbers came from.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub commit: Option<String>,
}

impl Machine {
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                })
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let git = |args: &[&str]| {
            let out = Command::new("git").args(args).stderr(Stdio::null()).output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let commit = git(&["rev-parse", "--short", "HEAD"]).map(|c| {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}+dirty")
            } else {
                c
            }
        });
        Machine { cores, cpu, commit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_needs_online_and_model() {
        let ready = json!({"nodes": [{"status": "online", "models_loaded": [MODEL]}]});
        assert!(node_ready(&ready));
        let objects = json!({"nodes": [{"status": "online", "models_loaded": [{"name": MODEL}]}]});
        assert!(node_ready(&objects));
        assert!(!node_ready(&json!({"nodes": [{"status": "online", "models_loaded": []}]})));
        assert!(!node_ready(&json!({"nodes": [{"status": "unknown", "models_loaded": [MODEL]}]})));
        assert!(!node_ready(&json!({"nodes": []})));
    }

    #[test]
    fn reads_own_rss_and_cpu() {
        let kb = proc_status_kb(std::process::id(), "VmRSS:").unwrap();
        assert!(kb > 0);
        let start = cpu_secs(std::process::id()).unwrap();
        let until = std::time::Instant::now() + Duration::from_millis(50);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
        assert!(cpu_secs(std::process::id()).unwrap() >= start);
    }

    #[test]
    fn cpu_use_in_cores() {
        let used = CpuUse { generator_s: 1.0, fake_s: 0.5, router_s: 2.0, wall_s: 2.0 };
        assert_eq!(used.cores(), [0.5, 0.25, 1.0]);
        assert_eq!(CpuUse::default().cores(), [0.0; 3]);
    }
}
