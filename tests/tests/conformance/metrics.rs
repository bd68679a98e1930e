//! `/metrics`: Prometheus' own tools read it. `promtool check metrics` lints the text, and a real
//! Prometheus server (Debian's `prometheus`, installed on first use) scrapes the router while a
//! known load runs; its queries must agree with the router's traces.

use super::harness::{free_port, FakeSpec, Fleet, Router};
use super::http;
use super::Proto;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `promtool` and `prometheus`, installed from Debian's package when missing (once per run).
fn prometheus_tools() -> (PathBuf, PathBuf) {
    static TOOLS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let found = || -> Option<(PathBuf, PathBuf)> {
        let find = |name: &str| {
            ["/usr/bin", "/usr/local/bin", "/bin"].iter().map(|d| PathBuf::from(d).join(name)).find(|p| p.exists())
        };
        Some((find("promtool")?, find("prometheus")?))
    };
    TOOLS
        .get_or_init(|| {
            if let Some(t) = found() {
                return Ok(t);
            }
            let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                           --no-install-recommends prometheus";
            let out = Command::new("sh").args(["-c", install]).output().map_err(|e| format!("apt-get: {e}"))?;
            found().ok_or_else(|| {
                format!(
                    "installing Debian's prometheus package failed (needed for the /metrics tests): {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The samples of a scrape: series (name and labels as written) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            (series.to_string(), v.parse().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

/// The sum of the samples whose series starts with `prefix` and contains every one of `having`.
fn sum(s: &BTreeMap<String, f64>, prefix: &str, having: &[&str]) -> f64 {
    s.iter().filter(|(k, _)| k.starts_with(prefix) && having.iter().all(|h| k.contains(h))).map(|(_, v)| v).sum()
}

fn promtool_check(text: &str) {
    let (promtool, _) = prometheus_tools();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A streamed and a plain chat in each protocol, an embedding and an unknown model: `/metrics`
/// passes promtool and counts exactly what the traces show, by endpoint, model, node and outcome.
pub fn metrics_count_what_the_traces_show(router: Router) {
    let mut f = Fleet::start(router, &[]);
    f.fake(FakeSpec::new("alpha", &["qwen3:8b", "nomic-embed-text"]).token_ms(2));
    f.wait_nodes(&["alpha"]);
    for p in super::PROTOCOLS {
        let body = p.chat_body("qwen3:8b");
        assert_eq!(f.post(p.chat_path(), &body).status, 200);
        let mut streamed = body.clone();
        streamed["stream"] = Value::Bool(true);
        assert_eq!(f.post(p.chat_path(), &streamed).status, 200);
    }
    let embed = serde_json::json!({"model": "nomic-embed-text", "input": ["a", "b"]});
    assert_eq!(f.post("/api/embed", &embed).status, 200);
    assert_eq!(f.post("/api/chat", &Proto::Ollama.chat_body("no-such-model:1b")).status, 404);
    let traces = f.traces_until("8 requests", |t| t.len() >= 8);
    let r = f.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").starts_with("text/plain; version=0.0.4"), "{:?}", r.headers);
    let text = r.text();
    promtool_check(&text);
    let s = samples(&text);
    assert_eq!(sum(&s, "herd_requests_total{", &[]), traces.len() as f64, "{text}");
    for t in &traces {
        let endpoint = format!("endpoint=\"{}\"", t["surface"].as_str().unwrap());
        let outcome = format!("outcome=\"{}\"", t["outcome"].as_str().unwrap());
        assert!(sum(&s, "herd_requests_total{", &[&endpoint, &outcome]) >= 1.0, "{endpoint} {outcome}: {text}");
    }
    let completed = traces.iter().filter(|t| t["outcome"] == "completed").count() as f64;
    assert_eq!(sum(&s, "herd_requests_total{", &["outcome=\"completed\"", "node=\"alpha\""]), completed);
    assert_eq!(sum(&s, "herd_requests_total{", &["model=\"other\"", "outcome=\"rejected\""]), 1.0, "{text}");
    assert!(!text.contains("no-such-model"), "a made-up model name became a label: {text}");
    assert_eq!(sum(&s, "herd_request_duration_seconds_count{", &[]), completed);
    let tokens = |field: &str| traces.iter().map(|t| t[field].as_f64().unwrap_or(0.0)).sum::<f64>();
    assert_eq!(sum(&s, "herd_tokens_total{", &["type=\"completion\""]), tokens("completion_tokens"));
    assert_eq!(sum(&s, "herd_tokens_total{", &["type=\"prompt\""]), tokens("prompt_tokens"));
    let streamed_chats = 3.0;
    assert!(
        sum(&s, "herd_inter_chunk_seconds_count{", &["model=\"qwen3:8b\""]) > streamed_chats,
        "every streamed chat has several chunks: {text}"
    );
    assert_eq!(s["herd_node_up{node=\"alpha\"}"], 1.0);
    assert!(s.keys().any(|k| k.starts_with("herd_model_loaded_bytes{node=\"alpha\"")), "{text}");
    let build = format!("herd_build_info{{binary=\"{}\"", router.binary_name());
    assert!(s.keys().any(|k| k.starts_with(&build)), "{text}");
}

/// `--metrics-addr` serves `/metrics` on a listener of its own and nothing else; with API keys
/// both need a key, unless `--metrics-open`.
pub fn metrics_listener_and_keys(r: Router) {
    for open in [false, true] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--api-keys", "k1", "--metrics-addr", listen.as_str()];
        if open {
            args.push("--metrics-open");
        }
        let f = Fleet::start(r, &args);
        let metrics_addr: SocketAddr = listen.parse().unwrap();
        let get = |addr: SocketAddr, path: &str, key: Option<&str>| {
            let auth = key.map(|k| format!("Bearer {k}"));
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            http::call(addr, "GET", path, &headers, b"").unwrap_or_else(|e| panic!("{e}"))
        };
        let without = if open { 200 } else { 401 };
        for addr in [f.addr(), metrics_addr] {
            assert_eq!(get(addr, "/metrics", None).status, without, "open={open} {addr}");
            let ok = get(addr, "/metrics", Some("k1"));
            assert_eq!(ok.status, 200, "{}", ok.text());
            assert!(ok.text().contains("# TYPE herd_requests_total counter"));
        }
        assert_eq!(get(metrics_addr, "/api/tags", Some("k1")).status, 404, "the metrics listener serves only /metrics");
        assert_eq!(get(f.addr(), "/api/tags", None).status, 401, "--metrics-open opens /metrics only");
    }
}

/// A Prometheus server, its data in a temp dir, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second.
    fn start(target: SocketAddr) -> Prometheus {
        let (_, prometheus) = prometheus_tools();
        let dir = tempfile::Builder::new().prefix("herd-prometheus-").tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: herd\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        Prometheus { child, addr, _dir: dir }
    }

    /// An instant query's single value, `None` while it has none.
    fn value(&self, query: &str) -> Option<f64> {
        let q: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        let r = http::call(self.addr, "GET", &format!("/api/v1/query?query={q}"), &[], b"").ok()?;
        if r.status != 200 {
            return None;
        }
        let v = r.json();
        let result = v["data"]["result"].as_array()?;
        let [one] = result.as_slice() else { return None };
        one["value"][1].as_str()?.parse().ok().filter(|x: &f64| x.is_finite())
    }

    /// Polls `query` until `done` holds for its value, at most 60 s.
    fn until(&self, query: &str, done: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            if let Some(v) = self.value(query).filter(|&v| done(v)) {
                return v;
            }
            let log = std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
            assert!(start.elapsed() < Duration::from_secs(60), "prometheus never answered {query}: {log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A real Prometheus scrapes the router during a known load: its request count, its rate split by
/// outcome and its p99 from the duration histogram agree with the traces.
pub fn prometheus_scrapes_and_agrees_with_the_traces(r: Router) {
    let mut f = Fleet::start(r, &[]);
    // Not a thinking model: its answers are as long as `num_predict` says.
    f.fake(FakeSpec::new("alpha", &["llama3.1:8b"]).token_ms(2).parallel(4));
    f.wait_nodes(&["alpha"]);
    let prom = Prometheus::start(f.addr());
    prom.until("up{job=\"herd\"}", |v| v == 1.0);
    // Warm-up, one request per series the load touches, so each series is scraped at the same
    // times from the same start; with as many completed as refused requests after it, their
    // rates are extrapolated alike and their ratio is exact.
    let chat = |tokens: u64| {
        let mut body = Proto::Ollama.chat_body("llama3.1:8b");
        body["options"] = serde_json::json!({"num_predict": tokens});
        assert_eq!(f.post("/api/chat", &body).status, 200);
    };
    let unknown = || assert_eq!(f.post("/api/chat", &Proto::Ollama.chat_body("missing:1b")).status, 404);
    chat(4);
    unknown();
    prom.until("sum(herd_requests_total)", |v| v == 2.0);
    // The load: 40 chats of different lengths from 4 clients, and 40 unknown models.
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || (0..10).for_each(|i| chat(4 + (t * 10 + i) * 3)));
        }
        (0..40).for_each(|_| unknown());
    });
    let traces = f.traces_until("82 requests", |t| t.len() >= 82);
    assert_eq!(traces.len(), 82);
    prom.until("sum(herd_requests_total)", |v| v == 82.0);
    let window = started.elapsed().as_secs() + 30;
    let completed = traces.iter().filter(|t| t["outcome"] == "completed").count() as f64;
    assert_eq!(completed, 41.0);
    let ratio = prom.until(
        &format!(
            "sum(rate(herd_requests_total{{outcome=\"completed\"}}[{window}s])) / sum(rate(herd_requests_total[{window}s]))"
        ),
        |v| v > 0.0,
    );
    assert!((ratio - 0.5).abs() < 1e-9, "rate ratio {ratio}; the traces say 40 of the 80 since warm-up completed");
    let rate = prom.until(&format!("sum(rate(herd_requests_total[{window}s]))"), |v| v > 0.0);
    assert!(rate * window as f64 >= 80.0 * 0.5 && rate * window as f64 <= 80.0 * 2.0, "rate {rate}/s over {window}s");
    // p99 of durations: Prometheus interpolates inside the bucket that holds the traces' p99.
    let mut totals: Vec<f64> =
        traces.iter().filter(|t| t["outcome"] == "completed").map(|t| t["total_ms"].as_f64().unwrap() / 1e3).collect();
    totals.sort_by(f64::total_cmp);
    let rank = (0.99 * totals.len() as f64).ceil() as usize;
    let p99 = totals[rank - 1];
    let bounds = herd_core::metrics::LATENCY_BUCKETS;
    let upper = bounds.iter().copied().find(|&b| p99 <= b).unwrap_or(f64::INFINITY);
    let lower = bounds.iter().copied().filter(|&b| b < p99).fold(0.0, f64::max);
    let q = prom.until("histogram_quantile(0.99, sum by (le) (herd_request_duration_seconds_bucket))", |v| v > 0.0);
    assert!(lower <= q && q <= upper, "Prometheus p99 {q} s, traces' p99 {p99} s in ({lower}, {upper}]");
    // The rate-based form dashboards use answers over the same data.
    let q_rate = prom.until(
        &format!("histogram_quantile(0.99, sum by (le) (rate(herd_request_duration_seconds_bucket[{window}s])))"),
        |v| v > 0.0,
    );
    assert!(q_rate <= upper * 1.5, "rate-based p99 {q_rate} s vs bucket ({lower}, {upper}]");
}

/// The Grafana dashboard in `contrib/grafana/herd.json`: every query parses (`promtool check
/// rules`, each query a recording rule) and names only metrics herd exposes.
#[test]
fn grafana_dashboard_queries_parse_and_name_real_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/grafana/herd.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    // Every family core renders, from its TYPE lines (present with or without samples).
    let router = herd_core::router::Router::new(Default::default(), 1, herd_core::time::Instant::ZERO).unwrap();
    let mut text = String::new();
    let build = herd_core::metrics::BuildInfo { binary: "herd", version: "0" };
    herd_core::metrics::Metrics::default().render(&router, herd_core::time::Instant::ZERO, build, &mut text);
    let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$model", ".*");
        for name in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("herd_")) {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            assert!(families.contains(&family) || families.contains(&name), "{name} in {e} is not a herd metric");
        }
        rules.push_str(&format!(
            "      - record: herd_dashboard:query_{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let (promtool, _) = prometheus_tools();
    let out = Command::new(promtool).args(["check", "rules"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
