//! The load generator: the four scenarios' request shapes, closed-loop workers sharing one
//! keep-alive hyper client, and a check of every answer (status 200, framing, a proper end).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::report::Tally;

/// The client every worker shares.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The model every request asks for (the fake serves it, preloaded). Not a thinking model: herd
/// raises a thinking model's output budget (ollama-herd §6.3: `num_predict` × 4, at least 1024)
/// once the node reports its `thinking` capability, so the same request would be more work
/// through herd than direct, and the ratio would measure the budget, not the router.
pub const MODEL: &str = "llama3.1:8b";

/// Largest body kept for checking (a non-streamed answer, an error body), bytes.
const MAX_KEPT_BYTES: usize = 1 << 20;

/// How much of a bad line or body goes into an error message, bytes.
const SNIPPET_BYTES: usize = 160;

/// A keep-alive client with `TCP_NODELAY`, keeping up to `max_idle` idle connections per host.
pub fn client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// The four scenarios of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ScenarioId {
    /// `/api/chat`, not streamed, 16 tokens, 32 concurrent.
    S1,
    /// `/api/chat` NDJSON, 256 chunks, 8 concurrent.
    S2,
    /// `/v1/chat/completions` SSE, 64 chunks, 16 concurrent.
    S3,
    /// `/api/chat` NDJSON, 32 tokens 2 ms apart, 64 concurrent, time to first token.
    S4,
}

impl ScenarioId {
    pub const ALL: [ScenarioId; 4] = [ScenarioId::S1, ScenarioId::S2, ScenarioId::S3, ScenarioId::S4];

    pub fn name(self) -> &'static str {
        match self {
            ScenarioId::S1 => "S1",
            ScenarioId::S2 => "S2",
            ScenarioId::S3 => "S3",
            ScenarioId::S4 => "S4",
        }
    }
}

/// How an answer is framed, and so how it is checked and its chunks counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON object with `"done": true`.
    Object,
    /// Ollama's NDJSON stream; the last line has `"done": true`.
    Ndjson,
    /// OpenAI's server-sent events, ending with `data: [DONE]`.
    Sse,
}

/// What a scenario's throughput counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Chunks,
}

/// One scenario: what is sent, how often at once, and what the fake is told.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub id: ScenarioId,
    pub path: &'static str,
    pub body: Bytes,
    pub concurrency: usize,
    /// The fake's `--token-ms`.
    pub token_ms: u64,
    pub framing: Framing,
    pub unit: Unit,
    /// Whether time to first token is the point (reported as its own row).
    pub ttft: bool,
}

impl Scenario {
    /// The scenario `id`, its concurrency multiplied by `scale` (at least 1).
    pub fn new(id: ScenarioId, scale: f64) -> Scenario {
        let messages = json!([{"role": "user", "content": "hello"}]);
        let native = |stream: bool, tokens: u32| json!({"model": MODEL, "stream": stream, "options": {"num_predict": tokens}, "messages": messages});
        let (path, body, concurrency, token_ms, framing, unit) = match id {
            ScenarioId::S1 => ("/api/chat", native(false, 16), 32, 0, Framing::Object, Unit::Requests),
            ScenarioId::S2 => ("/api/chat", native(true, 256), 8, 0, Framing::Ndjson, Unit::Chunks),
            ScenarioId::S3 => {
                let body = json!({"model": MODEL, "stream": true, "max_tokens": 64, "messages": messages});
                ("/v1/chat/completions", body, 16, 0, Framing::Sse, Unit::Chunks)
            }
            ScenarioId::S4 => ("/api/chat", native(true, 32), 64, 2, Framing::Ndjson, Unit::Requests),
        };
        let concurrency = ((concurrency as f64 * scale).round() as usize).max(1);
        let body = Bytes::from(body.to_string());
        Scenario { id, path, body, concurrency, token_ms, framing, unit, ttft: id == ScenarioId::S4 }
    }
}

/// How long a round runs: answers that finish before `measure_from` are warm-up.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
    /// A request taking longer than this is abandoned and counted as an error.
    pub request_timeout: Duration,
}

/// Runs one closed-loop round of `scenario` against `base_url` (`http://host:port`): every
/// worker sends its next request as soon as the last one ended, until `window.end`.
///
/// # Errors
/// A URL that does not parse, or a worker task that panicked.
pub async fn round(client: &HttpClient, scenario: &Scenario, base_url: &str, window: Window) -> Result<Tally, String> {
    let uri: Uri = format!("{}{}", base_url.trim_end_matches('/'), scenario.path)
        .parse()
        .map_err(|e| format!("bad URL {base_url}: {e}"))?;
    let workers: Vec<_> = (0..scenario.concurrency)
        .map(|_| {
            let job = Job {
                client: client.clone(),
                uri: uri.clone(),
                body: scenario.body.clone(),
                framing: scenario.framing,
            };
            tokio::spawn(worker(job, window))
        })
        .collect();
    let mut tally = Tally { measured: window.end - window.measure_from, ..Tally::default() };
    for w in workers {
        tally.merge(w.await.map_err(|e| format!("worker: {e}"))?);
    }
    Ok(tally)
}

/// Everything one worker needs to send its requests.
pub struct Job {
    pub client: HttpClient,
    pub uri: Uri,
    pub body: Bytes,
    pub framing: Framing,
}

/// What one good answer had.
pub struct Answer {
    pub chunks: u64,
    pub ttft: Option<Duration>,
}

async fn worker(job: Job, window: Window) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < window.end {
        let result = tokio::time::timeout(window.request_timeout, exchange(&job)).await;
        let ended = Instant::now();
        match result {
            Ok(Ok(answer)) if ended >= window.measure_from && ended <= window.end => {
                tally.requests += 1;
                tally.chunks += answer.chunks;
                tally.ttft_us.extend(answer.ttft.map(|t| t.as_micros() as u64));
            }
            Ok(Ok(_)) => {}
            Ok(Err(message)) => {
                tally.error(message);
                // A target that refuses at once must not turn the loop into a spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => tally.error(format!("no complete answer within {:?}", window.request_timeout)),
        }
    }
    tally
}

/// Sends one request and reads and checks the whole answer.
///
/// # Errors
/// The request failed, the status was not 200, or the answer broke its framing.
pub async fn exchange(job: &Job) -> Result<Answer, String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(job.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(job.body.clone()))
        .map_err(|e| format!("building the request: {e}"))?;
    let sent = Instant::now();
    let response = job.client.request(request).await.map_err(|e| format!("request: {}", error_chain(&e)))?;
    let status = response.status();
    let mut body = response.into_body();
    let framing = if status == StatusCode::OK { job.framing } else { Framing::Object };
    let mut scanner = Scanner::new(framing);
    let mut ttft = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {}", error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if ttft.is_none() && !data.is_empty() {
                ttft = Some(sent.elapsed());
            }
            scanner.push(&data);
        }
    }
    if status != StatusCode::OK {
        return Err(format!("HTTP {}: {}", status.as_u16(), snippet(&scanner.kept)));
    }
    Ok(Answer { chunks: scanner.finish()?, ttft })
}

/// An error and its sources, joined with `: ` (hyper's own message alone is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn snippet(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SNIPPET_BYTES)];
    let text = String::from_utf8_lossy(cut).trim().to_string();
    if bytes.len() > SNIPPET_BYTES {
        format!("{text}...")
    } else {
        text
    }
}

/// Counts and checks an answer's chunks as its bytes arrive, in pieces split anywhere.
#[derive(Debug)]
pub struct Scanner {
    framing: Framing,
    /// The unfinished line (streams), or the whole body (objects), up to [`MAX_KEPT_BYTES`].
    kept: Vec<u8>,
    /// The last complete non-empty line (NDJSON).
    last: Vec<u8>,
    chunks: u64,
    /// SSE: `data: [DONE]` seen.
    done: bool,
    /// The first problem seen inside the stream.
    problem: Option<String>,
}

impl Scanner {
    pub fn new(framing: Framing) -> Scanner {
        Scanner { framing, kept: Vec::new(), last: Vec::new(), chunks: 0, done: false, problem: None }
    }

    /// Takes the next piece of the body.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.framing == Framing::Object {
            let room = MAX_KEPT_BYTES.saturating_sub(self.kept.len());
            self.kept.extend_from_slice(&data[..data.len().min(room)]);
            return;
        }
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            if self.kept.is_empty() {
                self.line(&data[..i]);
            } else {
                let mut line = std::mem::take(&mut self.kept);
                line.extend_from_slice(&data[..i]);
                self.line(&line);
                line.clear();
                self.kept = line;
            }
            data = &data[i + 1..];
        }
        if self.kept.len() + data.len() > MAX_KEPT_BYTES {
            self.problem.get_or_insert_with(|| format!("a line longer than {MAX_KEPT_BYTES} bytes"));
            self.kept.clear();
            return;
        }
        self.kept.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return;
        }
        match self.framing {
            Framing::Object => {}
            Framing::Ndjson => {
                self.chunks += 1;
                if line.starts_with(b"{\"error\"") {
                    self.problem.get_or_insert_with(|| format!("error line: {}", snippet(line)));
                }
                self.last.clear();
                self.last.extend_from_slice(line);
            }
            Framing::Sse => {
                let Some(data) = line.strip_prefix(b"data:") else { return };
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if self.done {
                    self.problem.get_or_insert_with(|| format!("data after [DONE]: {}", snippet(data)));
                } else if data == b"[DONE]" {
                    self.done = true;
                } else {
                    self.chunks += 1;
                    if data.starts_with(b"{\"error\"") {
                        self.problem.get_or_insert_with(|| format!("error event: {}", snippet(data)));
                    }
                }
            }
        }
    }

    /// The number of chunks (1 for an object), once the body has ended.
    ///
    /// # Errors
    /// What was wrong with the answer: an error line or event, a stream that did not end with
    /// its proper last line, a body that is not the expected JSON.
    pub fn finish(mut self) -> Result<u64, String> {
        if self.framing == Framing::Object {
            let value: Value = serde_json::from_slice(&self.kept)
                .map_err(|e| format!("body is not JSON ({e}): {}", snippet(&self.kept)))?;
            return match value.get("done") {
                Some(Value::Bool(true)) => Ok(1),
                _ => Err(format!("answer without \"done\":true: {}", snippet(&self.kept))),
            };
        }
        let rest = std::mem::take(&mut self.kept);
        self.line(&rest);
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        match self.framing {
            Framing::Sse if self.done => Ok(self.chunks),
            Framing::Sse => Err(format!("stream ended after {} events without data: [DONE]", self.chunks)),
            _ => {
                let last: Option<Value> = serde_json::from_slice(&self.last).ok();
                match last.as_ref().and_then(|v| v.get("done")) {
                    Some(Value::Bool(true)) => Ok(self.chunks),
                    _ => {
                        Err(format!("stream ended after {} lines, last not done: {}", self.chunks, snippet(&self.last)))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(framing: Framing, body: &[u8], cut: usize) -> Result<u64, String> {
        let mut s = Scanner::new(framing);
        for piece in body.chunks(cut) {
            s.push(piece);
        }
        s.finish()
    }

    #[test]
    fn ndjson_counts_lines_and_needs_done_last() {
        let body = b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"message\":{\"content\":\"b\"},\"done\":false}\n{\"done\":true,\"done_reason\":\"length\"}\n";
        for cut in [1, 2, 7, body.len()] {
            assert_eq!(scan(Framing::Ndjson, body, cut), Ok(3));
        }
        let cut_short = &body[..body.len() - 38];
        assert!(scan(Framing::Ndjson, cut_short, 5).unwrap_err().contains("last not done"));
        let error = b"{\"done\":false}\n{\"error\":\"model unloaded\"}\n";
        assert!(scan(Framing::Ndjson, error, 3).unwrap_err().contains("model unloaded"));
    }

    #[test]
    fn sse_counts_data_events_and_needs_done() {
        let body = b"data: {\"choices\":[]}\n\ndata: {\"choices\":[]}\r\n\r\n: comment\n\ndata: [DONE]\n\n";
        for cut in [1, 3, body.len()] {
            assert_eq!(scan(Framing::Sse, body, cut), Ok(2));
        }
        assert!(scan(Framing::Sse, &body[..40], 4).unwrap_err().contains("without data: [DONE]"));
        let late = b"data: [DONE]\n\ndata: {}\n\n";
        assert!(scan(Framing::Sse, late, 4).unwrap_err().contains("after [DONE]"));
    }

    #[test]
    fn object_needs_done_true() {
        assert_eq!(scan(Framing::Object, br#"{"message":{},"done":true}"#, 4), Ok(1));
        assert!(scan(Framing::Object, br#"{"error":"boom"}"#, 4).unwrap_err().contains("boom"));
        assert!(scan(Framing::Object, b"<html>", 4).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn scenarios_scale_concurrency() {
        assert_eq!(Scenario::new(ScenarioId::S4, 1.0).concurrency, 64);
        assert_eq!(Scenario::new(ScenarioId::S2, 0.01).concurrency, 1);
        let s3 = Scenario::new(ScenarioId::S3, 0.5);
        assert_eq!((s3.concurrency, s3.path, s3.framing), (8, "/v1/chat/completions", Framing::Sse));
        let body: Value = serde_json::from_slice(&Scenario::new(ScenarioId::S1, 1.0).body).unwrap();
        assert_eq!(body["options"]["num_predict"], 16);
        assert_eq!(body["stream"], false);
    }
}
