use super::*;
use crate::config::RouterConfig;
use crate::fleet::heartbeat::Report;
use crate::fleet::tests::hb;
use crate::policy::retry::UpstreamFailure;
use crate::request::RequestSpec;
use crate::router::{Command, Usage};

const BUILD: BuildInfo<'static> = BuildInfo { binary: "herd", version: "9.9.9" };

/// A router with a fleet, and the metrics fed the way an adapter feeds them.
struct T {
    r: Router,
    m: Metrics,
    surfaces: BTreeMap<crate::ids::RequestId, Surface>,
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

impl T {
    fn new(config: MetricsConfig) -> T {
        let mut c = RouterConfig::default();
        c.fleet.startup_grace = Duration::ZERO;
        T { r: Router::new(c, 1, Instant::ZERO).unwrap(), m: Metrics::new(config), surfaces: BTreeMap::new() }
    }
    fn node(&mut self, now: Instant, h: crate::fleet::heartbeat::Heartbeat) {
        self.r.handle_report(now, Report::Heartbeat(Box::new(h))).unwrap();
        self.pump();
    }
    /// Drains commands and events into the metrics; returns the dispatches.
    fn pump(&mut self) -> Vec<crate::router::Dispatch> {
        let mut out = vec![];
        while let Some(c) = self.r.poll_command() {
            match c {
                Command::Dispatch(d) => out.push(d),
                Command::Commit(c) => self.m.observe_commit(c.route),
                _ => {}
            }
        }
        while let Some(e) = self.r.poll_event() {
            match &e {
                Event::Ended(t) => {
                    let s = self.surfaces[&t.request];
                    self.m.observe_end(&self.r, s, t);
                }
                e => self.m.observe_event(&self.r, e),
            }
        }
        out
    }
    fn request(&mut self, now: Instant, surface: Surface, model: &str) -> Vec<crate::router::Dispatch> {
        let id = self.r.handle_request(now, RequestSpec::chat(model));
        self.surfaces.insert(id, surface);
        self.pump()
    }
    /// One request served from dispatch at `start`: first byte after `ttft_ms`, end after `total_ms`.
    fn serve(&mut self, start: u64, surface: Surface, model: &str, ttft_ms: u64, total_ms: u64) {
        let d = self.request(at(start), surface, model);
        let d = &d[0];
        self.r.handle_first_byte(at(start + ttft_ms), d.attempt);
        self.pump();
        let mut gaps = ChunkGaps::default();
        gaps.observe(Duration::from_millis(20));
        gaps.observe(Duration::from_millis(30));
        self.m.observe_gaps(self.r.attempt_model(d.attempt).unwrap(), &gaps);
        self.r.handle_finished(at(start + total_ms), d.attempt, Usage { prompt_tokens: 7, completion_tokens: 11 });
        self.pump();
    }
    fn text(&mut self, now: Instant) -> String {
        let mut out = String::new();
        self.m.render(&self.r, now, BUILD, &mut out);
        check_format(&out);
        out
    }
}

/// The value of the one sample line starting with `series` (name and labels exactly).
fn value(text: &str, series: &str) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{series} in\n{text}");
    found[0]
}

/// Checks the text format's grammar: HELP then TYPE before a family's samples, every sample of a
/// declared family, label values quoted, histograms' buckets cumulative and ending at `+Inf` with
/// the count.
fn check_format(text: &str) {
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    let mut last_bucket: BTreeMap<String, f64> = BTreeMap::new();
    let mut inf: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(declared.insert(name.to_string(), kind.to_string()).is_none(), "{name} declared twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, v) = line.rsplit_once(' ').unwrap();
        let v: f64 = v.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("herd_"), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| declared.get(*f).is_some_and(|k| k == "histogram")))
            .unwrap_or(name);
        assert!(declared.contains_key(family), "{line}: family not declared before");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        if name.ends_with("_bucket") {
            let key = series.split(",le=").next().unwrap().split("{le=").next().unwrap().to_string();
            let prev = last_bucket.insert(key.clone(), v).unwrap_or(0.0);
            assert!(v >= prev, "buckets not cumulative: {line}");
            if series.contains("le=\"+Inf\"") {
                inf.insert(key.replace("_bucket", "_count"), v);
                last_bucket.remove(&key);
            }
        }
        if name.ends_with("_count") && declared.get(family).is_some_and(|k| k == "histogram") {
            let key = series.replace("}", "").replace(" ", "");
            let expected = inf.iter().find(|(k, _)| k.replace("}", "") == key).map(|(_, v)| *v);
            assert_eq!(expected, Some(v), "{line}: count differs from the +Inf bucket");
        }
    }
}

#[test]
fn a_served_request_is_counted_timed_and_its_tokens_added() {
    let mut t = T::new(MetricsConfig::default());
    t.node(at(0), hb("a", &[("m:7b", 5.0, 8192)], &["m:7b"]));
    t.serve(1000, Surface::OpenAiChat, "m:7b", 300, 2000);
    t.serve(5000, Surface::OllamaChat, "m:7b", 40, 70);
    let text = t.text(at(9000));
    let ok = |s: &str| {
        format!("herd_requests_total{{endpoint=\"{s}\",kind=\"chat\",model=\"m:7b\",node=\"a\",outcome=\"completed\"}}")
    };
    assert_eq!(value(&text, &ok("openai_chat")), 1.0);
    assert_eq!(value(&text, &ok("ollama_chat")), 1.0);
    let d = "herd_request_duration_seconds_bucket{endpoint=\"openai_chat\",model=\"m:7b\"";
    assert_eq!(value(&text, &format!("{d},le=\"1\"}}")), 0.0);
    assert_eq!(value(&text, &format!("{d},le=\"2.5\"}}")), 1.0);
    assert_eq!(value(&text, "herd_request_duration_seconds_sum{endpoint=\"openai_chat\",model=\"m:7b\"}"), 2.0);
    assert_eq!(value(&text, "herd_time_to_first_token_seconds_count{model=\"m:7b\"}"), 2.0);
    assert_eq!(value(&text, "herd_time_to_first_token_seconds_bucket{model=\"m:7b\",le=\"0.05\"}"), 1.0);
    assert_eq!(value(&text, "herd_time_to_first_token_seconds_bucket{model=\"m:7b\",le=\"0.5\"}"), 2.0);
    assert_eq!(value(&text, "herd_inter_chunk_seconds_count{model=\"m:7b\"}"), 4.0);
    assert_eq!(value(&text, "herd_inter_chunk_seconds_bucket{model=\"m:7b\",le=\"0.025\"}"), 2.0);
    assert_eq!(value(&text, "herd_tokens_total{model=\"m:7b\",type=\"prompt\"}"), 14.0);
    assert_eq!(value(&text, "herd_tokens_total{model=\"m:7b\",type=\"completion\"}"), 22.0);
    assert_eq!(value(&text, "herd_routing_decisions_total{route=\"primary\"}"), 2.0);
    // The model was loaded: no cold load.
    assert!(!text.contains("herd_cold_load_seconds_count"), "{text}");
    assert_eq!(value(&text, "herd_model_loaded_bytes{node=\"a\",model=\"m:7b\"}"), 5e9);
    assert_eq!(value(&text, "herd_node_up{node=\"a\"}"), 1.0);
    assert_eq!(value(&text, "herd_node_heartbeat_age_seconds{node=\"a\"}"), 9.0);
    assert_eq!(value(&text, "herd_nodes{status=\"online\"}"), 1.0);
    assert_eq!(value(&text, "herd_build_info{binary=\"herd\",version=\"9.9.9\"}"), 1.0);
    assert_eq!(value(&text, "herd_requests_in_flight"), 0.0);
}

#[test]
fn a_model_loaded_for_the_request_counts_a_cold_load() {
    let mut t = T::new(MetricsConfig::default());
    t.node(at(0), hb("a", &[], &["mid:8b"]));
    t.serve(1000, Surface::OllamaGenerate, "mid:8b", 12_000, 15_000);
    let text = t.text(at(20_000));
    assert_eq!(value(&text, "herd_cold_load_seconds_count{model=\"mid:8b\"}"), 1.0);
    assert_eq!(value(&text, "herd_cold_load_seconds_sum{model=\"mid:8b\"}"), 12.0);
    assert_eq!(value(&text, "herd_cold_load_seconds_bucket{model=\"mid:8b\",le=\"10\"}"), 0.0);
    assert_eq!(value(&text, "herd_cold_load_seconds_bucket{model=\"mid:8b\",le=\"20\"}"), 1.0);
}

#[test]
fn made_up_model_names_never_become_labels_and_labels_are_capped() {
    let mut t = T::new(MetricsConfig { max_models: 2, max_nodes: 8 });
    t.node(at(0), hb("a", &[("m1:1b", 1.0, 4096), ("m2:1b", 1.0, 4096), ("m3:1b", 1.0, 4096)], &[]));
    for i in 0..50 {
        t.request(at(10 + i), Surface::OllamaChat, &format!("nonsense-{i}"));
    }
    t.serve(100, Surface::OllamaChat, "m1:1b", 10, 20);
    t.serve(200, Surface::OllamaChat, "m2:1b", 10, 20);
    t.serve(300, Surface::OllamaChat, "m3:1b", 10, 20);
    let text = t.text(at(1000));
    assert!(!text.contains("nonsense"), "{text}");
    let unknown =
        "herd_requests_total{endpoint=\"ollama_chat\",kind=\"chat\",model=\"other\",node=\"\",outcome=\"rejected\"}";
    assert_eq!(value(&text, unknown), 50.0);
    assert_eq!(value(&text, "herd_rejections_total{reason=\"unknown_model\"}"), 50.0);
    // m1 and m2 took the two labels; m3 is counted as other, in counters and gauges alike.
    let other =
        "herd_requests_total{endpoint=\"ollama_chat\",kind=\"chat\",model=\"other\",node=\"a\",outcome=\"completed\"}";
    assert_eq!(value(&text, other), 1.0);
    assert_eq!(value(&text, "herd_model_loaded_bytes{node=\"a\",model=\"other\"}"), 1e9);
    assert_eq!(value(&text, "herd_model_loaded_bytes{node=\"a\",model=\"m2:1b\"}"), 1e9);
}

#[test]
fn retries_exhaustion_and_breakers_are_counted_by_node_and_reason() {
    let mut t = T::new(MetricsConfig::default());
    t.node(at(0), hb("a", &[("m:1b", 1.0, 4096)], &[]));
    t.node(at(0), hb("b", &[("m:1b", 1.0, 4096)], &[]));
    t.node(at(0), hb("c", &[("m:1b", 1.0, 4096)], &[]));
    let mut d = t.request(at(10), Surface::OllamaChat, "m:1b");
    let mut now = 10;
    while let Some(first) = d.first().cloned() {
        now += 5;
        t.r.handle_failed(at(now), first.attempt, UpstreamFailure::Connect);
        d = t.pump();
    }
    let text = t.text(at(1000));
    let retries: f64 = text
        .lines()
        .filter(|l| l.starts_with("herd_retries_total{"))
        .map(|l| value(&text, l.rsplit_once(' ').unwrap().0))
        .sum();
    assert_eq!(retries, f64::from(t.r.config().retry.max_attempts - 1));
    assert!(text.contains("reason=\"connect\""), "{text}");
    assert_eq!(value(&text, "herd_retries_exhausted_total{model=\"m:1b\"}"), 1.0);
    assert_eq!(value(&text, "herd_rejections_total{reason=\"attempts_exhausted\"}"), 1.0);
}

#[test]
fn gauges_cover_a_large_fleet_once_per_node_and_model() {
    let mut t = T::new(MetricsConfig::default());
    let models: Vec<String> = (0..20).map(|i| format!("model-{i}:7b")).collect();
    for n in 0..100 {
        let loaded: Vec<(&str, f64, u32)> = models.iter().map(|m| (m.as_str(), 4.0, 8192)).collect();
        let mut h = hb(&format!("node-{n}"), &loaded, &[]);
        h.gpus = vec![crate::fleet::heartbeat::Gpu { index: 0, vram_total_bytes: 80 << 30, ..Default::default() }];
        t.node(at(0), h);
    }
    let text = t.text(at(1000));
    assert_eq!(text.lines().filter(|l| l.starts_with("herd_model_loaded_bytes{")).count(), 2000);
    assert_eq!(text.lines().filter(|l| l.starts_with("herd_node_up{")).count(), 100);
    assert_eq!(value(&text, "herd_node_gpu_memory_total_bytes{node=\"node-7\",gpu=\"0\"}"), (80u64 << 30) as f64);
}

#[test]
fn label_values_are_escaped() {
    let mut out = String::new();
    let mut w = Writer { out: &mut out };
    w.sample("herd_x", &[("node", "a\"b\\c\nd")], 1u8);
    assert_eq!(out, "herd_x{node=\"a\\\"b\\\\c\\nd\"} 1\n");
}

#[test]
fn chunk_gaps_count_into_their_buckets() {
    let mut g = ChunkGaps::default();
    assert!(g.is_empty());
    g.observe(Duration::from_micros(500));
    g.observe(Duration::from_millis(1));
    g.observe(Duration::from_secs(60));
    assert_eq!(g.count(), 3);
    // le is inclusive: 1 ms falls in the 1 ms bucket; a minute only in +Inf.
    assert_eq!(g.counts[0], 2);
    assert_eq!(g.counts[CHUNK_GAP_BUCKETS.len()], 1);
}
