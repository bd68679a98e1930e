//! The long-run check (`herd-bench --soak MINUTES`): every scenario's requests at once against
//! herd for a long time, then: no request failed, the router's memory stayed flat after the
//! first minute (its mean over the last three minutes at most 10 % above its mean over minutes
//! one to three: RSS swings by about ±5 % from sample to sample under this load, so one sample
//! is no baseline, and a leak shows as a rising mean), and every request is in herd's trace
//! store.
//!
//! One simulated Ollama serves the four request shapes, so S4's requests (32 streamed tokens)
//! come without its 2 ms between tokens; concurrency is each scenario's times
//! `--concurrency-scale`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use serde_json::Value;
use tokio::time::Instant;

use super::load::{exchange, HttpClient, Job, Scenario, ScenarioId};
use super::procs::{proc_status_kb, Pair};
use super::report::Tally;

/// How often the router's RSS is read.
const RSS_EVERY: Duration = Duration::from_secs(10);
/// The most the RSS may grow over its value at one minute.
const MAX_GROWTH: f64 = 0.10;

/// What a soak saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Per scenario: its name and what its requests got.
    pub tallies: Vec<(&'static str, Tally)>,
    /// (seconds since the start, router VmRSS kB), every [`RSS_EVERY`].
    pub rss: Vec<(f64, u64)>,
    /// Requests sent (answered or not).
    pub sent: u64,
    /// Requests in herd's trace store (`/fleet/usage`) once the writes settled.
    pub stored: u64,
}

impl SoakReport {
    /// Mean RSS of the samples taken from `from` to `to` seconds, kB.
    fn mean_kb(&self, from: f64, to: f64) -> Option<u64> {
        let picked: Vec<u64> = self.rss.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(_, kb)| *kb).collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<u64>() / picked.len() as u64)
    }

    /// Mean RSS over minutes one to three, kB.
    pub fn baseline_kb(&self) -> Option<u64> {
        self.mean_kb(60.0, 180.0)
    }

    /// Mean RSS over the last three minutes, kB.
    pub fn late_kb(&self) -> Option<u64> {
        let end = self.rss.last().map_or(0.0, |(t, _)| *t);
        self.mean_kb((end - 180.0).max(60.0), end)
    }

    /// The largest RSS after the first minute, kB (reported, not checked).
    pub fn peak_after_kb(&self) -> Option<u64> {
        self.rss.iter().filter(|(t, _)| *t >= 60.0).map(|(_, kb)| *kb).max()
    }

    /// Growth of the late mean over the baseline mean, as a fraction.
    pub fn growth(&self) -> f64 {
        match (self.baseline_kb(), self.late_kb()) {
            (Some(base), Some(late)) if base > 0 => late as f64 / base as f64 - 1.0,
            _ => 0.0,
        }
    }

    /// Failed requests, all scenarios.
    pub fn errors(&self) -> u64 {
        self.tallies.iter().map(|(_, t)| t.errors).sum()
    }

    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.errors() == 0 && self.growth() <= MAX_GROWTH && self.stored == self.sent && self.sent > 0
    }

    /// The report, for a person.
    pub fn render(&self, minutes: f64) -> String {
        let mut out = format!("soak: {minutes} min, every scenario at once against herd\n");
        for (name, t) in &self.tallies {
            out.push_str(&format!("  {name}: {} answered, {} failed\n", t.requests, t.errors));
            for (kind, n) in &t.error_kinds {
                out.push_str(&format!("      {n} x {kind}\n"));
            }
        }
        let mb = |kb: Option<u64>| kb.map_or("?".to_string(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        out.push_str(&format!(
            "  router RSS: mean {} MB over minutes 1-3, {} MB over the last 3 ({:+.1} %, limit +{:.0} %), \
             {} MB at most after minute 1; samples (s, MB): {}\n",
            mb(self.baseline_kb()),
            mb(self.late_kb()),
            self.growth() * 100.0,
            MAX_GROWTH * 100.0,
            mb(self.peak_after_kb()),
            self.rss.iter().map(|(t, kb)| format!("{t:.0}:{:.1}", *kb as f64 / 1024.0)).collect::<Vec<_>>().join(" ")
        ));
        out.push_str(&format!("  traces: {} requests sent, {} in the store\n", self.sent, self.stored));
        out.push_str(if self.passed() { "soak: passed\n" } else { "soak: FAILED\n" });
        out
    }
}

/// Runs the soak against `pair`'s herd for `minutes`.
///
/// # Errors
/// The router is missing or a worker panicked.
pub async fn soak(pair: &Pair, client: &HttpClient, minutes: f64, scale: f64) -> Result<SoakReport, String> {
    let router = pair.router.as_ref().ok_or("the soak needs herd")?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let mut workers = Vec::new();
    for id in ScenarioId::ALL {
        let s = Scenario::new(id, scale);
        let uri: Uri = format!("{}{}", router.url, s.path).parse().map_err(|e| format!("{e}"))?;
        for _ in 0..s.concurrency {
            let job = Job { client: client.clone(), uri: uri.clone(), body: s.body.clone(), framing: s.framing };
            workers.push((id.name(), tokio::spawn(worker(job, end))));
        }
    }
    // The RSS, every RSS_EVERY until the workers end.
    let pid = router.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rss = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                    rss.push((start.elapsed().as_secs_f64(), kb));
                }
                tokio::time::sleep(RSS_EVERY).await;
            }
            rss
        })
    };
    let mut report = SoakReport::default();
    for id in ScenarioId::ALL {
        report.tallies.push((id.name(), Tally::default()));
    }
    for (name, w) in workers {
        let (tally, sent) = w.await.map_err(|e| format!("worker: {e}"))?;
        report.sent += sent;
        if let Some((_, t)) = report.tallies.iter_mut().find(|(n, _)| *n == name) {
            t.merge(tally);
        }
    }
    stop.store(true, Ordering::Relaxed);
    report.rss = sampler.await.map_err(|e| format!("sampler: {e}"))?;
    // Traces are written in batches after the answers: wait for the count to reach what was sent.
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        report.stored = stored(client, &router.url).await.unwrap_or(0);
        if report.stored >= report.sent || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(report)
}

/// One closed-loop worker: its tally (every answer counts) and how many requests it sent.
async fn worker(job: Job, end: Instant) -> (Tally, u64) {
    let mut tally = Tally::default();
    let mut sent = 0;
    while Instant::now() < end {
        sent += 1;
        match tokio::time::timeout(Duration::from_secs(60), exchange(&job)).await {
            Ok(Ok(answer)) => {
                tally.requests += 1;
                tally.chunks += answer.chunks;
            }
            Ok(Err(message)) => {
                tally.error(message);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => tally.error("no complete answer within 60 s".to_string()),
        }
    }
    (tally, sent)
}

/// The requests in herd's trace store: the sum of `/fleet/usage`'s per-model counts.
async fn stored(client: &HttpClient, base: &str) -> Result<u64, String> {
    let uri: Uri = format!("{base}/fleet/usage").parse().map_err(|e| format!("{e}"))?;
    let request = Request::get(uri).body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v["by_model"].as_array().into_iter().flatten().filter_map(|m| m["requests"].as_u64()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_compares_the_late_mean_with_the_early_one() {
        let mut r = SoakReport { sent: 10, stored: 10, ..SoakReport::default() };
        // Warm-up, then a working set swinging 20-22 MB: flat, however high one sample is.
        r.rss = vec![(0.0, 10_000), (30.0, 18_000)];
        r.rss.extend((6..=60).map(|i| (f64::from(i) * 10.0, if i % 2 == 0 { 20_000 } else { 22_000 })));
        assert_eq!(r.baseline_kb(), Some(20_923), "minutes 1-3: 7 samples of 20 MB, 6 of 22");
        assert!(r.growth().abs() < 0.01, "{}", r.growth());
        assert_eq!(r.peak_after_kb(), Some(22_000));
        assert!(r.passed());
        // A leak: the last three minutes 3 MB higher.
        for s in r.rss.iter_mut().filter(|(t, _)| *t > 420.0) {
            s.1 += 3_000;
        }
        assert!(r.growth() > 0.10 && !r.passed(), "{}", r.growth());
        for s in r.rss.iter_mut().filter(|(t, _)| *t > 420.0) {
            s.1 -= 3_000;
        }
        r.stored = 9;
        assert!(!r.passed(), "a trace missing");
        r.stored = 10;
        r.tallies.push(("S1", Tally { errors: 1, ..Tally::default() }));
        assert!(!r.passed(), "an error");
    }
}
