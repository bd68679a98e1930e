//! herd-service: the router's HTTP service, written once for both routers. `herd` (tokio + hyper)
//! and `herd-lite` (smol + core's HTTP/1 codec) differ only in how they accept connections, read
//! and write bytes and keep time; everything a client can observe is decided here, from core's
//! decisions, so the two cannot drift apart.
//!
//! The seams, in the manner of quinn's `Runtime` and `AsyncUdpSocket`:
//! - [`Runtime`]: timers and spawning;
//! - [`upstream::Transport`]: a TCP connection to a node, for the pooled HTTP/1.1 client;
//! - [`BodyStream`]: a body read as it is polled (a node's answer, a relayed stream);
//! - [`driver::TraceSink`] and [`TraceLog`]: where traces go (SQLite in `herd`, a ring in
//!   `herd-lite`) and how `/fleet/traces` and `/fleet/usage` read them back.
//!
//! The shape: [`http`] checks a request's path and keys and sends it to [`proxy`] (one routed
//! inference request: core decides every attempt, retry and fallback; the proxy performs them) or
//! [`fleet`] (model lists, admin calls, heartbeats, `/fleet/*`). [`relay`] carries a committed
//! answer to the client. [`driver`] is the one task that owns core's `Router`.

pub mod args;
pub mod driver;
pub mod errors;
pub mod fleet;
pub mod fleet_env;
pub mod http;
pub mod image_fetch;
pub mod image_nodes;
pub mod proxy;
pub mod relay;
pub mod ring;
pub mod server;
pub mod static_nodes;
pub mod upstream;

use bytes::Bytes;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Time, timers and tasks of the async runtime the service runs on: the only place the service
/// learns what time it is. `herd` and `herd-lite` read the system's clocks; herd-sim's runtime
/// keeps virtual time, so the whole service runs there deterministically.
pub trait Runtime: Send + Sync + 'static {
    /// Monotonic now, as core counts time: microseconds since the runtime's epoch.
    fn now(&self) -> Instant;
    /// Wall-clock milliseconds since the Unix epoch (for traces and `created` fields).
    fn unix_ms(&self) -> i64;
    /// A seed for core's randomness when none is configured.
    fn seed(&self) -> u64;
    /// A timer that fires at `at` and can be moved ([`AsyncTimer::reset`]).
    fn timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>>;
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let mut timer = self.timer(self.now() + d);
        Box::pin(std::future::poll_fn(move |cx| timer.as_mut().poll(cx)))
    }
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// Gives memory the allocator holds freed back to the system. The service calls it after it
    /// let go of a large body's copies ([`RELEASE_AFTER_BYTES`]): allocators keep freed memory
    /// for reuse, so a router would otherwise sit on a large request's peak until the next one.
    fn release_memory(&self) {}
}

/// A resettable timer, in the manner of quinn's `AsyncTimer`: one allocation for a task that
/// waits for a deadline that keeps moving (the driver's next core timeout).
pub trait AsyncTimer: Send + Sync {
    /// Fires at `at` instead (earlier or later).
    fn reset(self: Pin<&mut Self>, at: Instant);
    /// Ready once the deadline has passed; stays ready until reset.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// Core's monotonic time, as the runtime tells it.
pub use herd_core::time::Instant;

/// The conversions every system-clock [`Runtime`] makes, from readings it takes itself (the
/// service reads no clock).
pub mod clock {
    use super::Instant;
    use std::time::{Duration, SystemTime};

    /// Core's instant `elapsed` after the runtime's epoch.
    pub fn instant(elapsed: Duration) -> Instant {
        Instant::from_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// How long after the runtime's epoch `at` is, bounded so that adding it to a system
    /// instant cannot overflow (`Instant::MAX` is "never": about 146,000 years ahead).
    pub fn offset(at: Instant) -> Duration {
        Duration::from_micros(at.as_micros().min(u64::MAX / 4))
    }

    /// Milliseconds since the Unix epoch of a wall-clock reading.
    pub fn unix_ms(wall: SystemTime) -> i64 {
        wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    /// A seed for core's randomness from a wall-clock reading and this process's id.
    pub fn seed(wall: SystemTime) -> u64 {
        let nanos = wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (nanos as u64) ^ (u64::from(std::process::id()) << 32)
    }
}

/// After a request with a large body is answered: gives freed memory back now, and once more a
/// second later, for buffers still held as the answer went out (the node connection's) and freed
/// just after.
pub fn release_after_large_request(rt: &Arc<dyn Runtime>) {
    rt.release_memory();
    let later = rt.clone();
    rt.spawn(Box::pin(async move {
        later.sleep(Duration::from_secs(1)).await;
        later.release_memory();
    }));
}

/// A body at least this large has its copies' memory given back (`Runtime::release_memory`) as
/// soon as they are freed.
pub const RELEASE_AFTER_BYTES: usize = 1 << 20;

/// A body read as it is polled: `None` at its end, `Some(Err)` when it failed (its connection
/// broke); it is not polled again after either.
pub trait BodyStream: Send {
    /// The next piece of the body.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>>;
}

impl BodyStream for Box<dyn BodyStream> {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        (**self).poll_chunk(cx)
    }
}

/// Waits for the next piece of `body`.
pub async fn next_chunk(body: &mut (impl BodyStream + ?Sized)) -> Option<io::Result<Bytes>> {
    std::future::poll_fn(|cx| body.poll_chunk(cx)).await
}

/// Reads all of `body`, at most `limit` bytes.
///
/// # Errors
///
/// The body failed, or it was longer than `limit`.
pub async fn read_to_end(body: &mut (impl BodyStream + ?Sized), limit: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(piece) = next_chunk(body).await {
        out.extend_from_slice(&piece?);
        if out.len() > limit {
            return Err(io::Error::other(format!("body longer than {limit} bytes")));
        }
    }
    Ok(out)
}

/// What the service answers: a status, headers (content type included) and a whole or streamed
/// body. The adapter writes it in its own way (hyper, or core's HTTP/1 encoder).
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Header fields, lowercase names.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: AnswerBody,
}

/// An answer's body.
pub enum AnswerBody {
    /// All of it.
    Full(Bytes),
    /// Streamed as it comes (chunked on the wire). An `Err` piece ends it abnormally: the
    /// connection is closed without the final chunk, so the client sees a truncated answer.
    Stream(Box<dyn BodyStream>),
}

impl Answer {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// The request headers the service reads, whatever the adapter's header type is.
pub trait Headers {
    /// The value of `name` (case-insensitive), when present and text.
    fn get(&self, name: &str) -> Option<&str>;
}

/// Where the router's traces can be read back from, for `/fleet/traces` and `/fleet/usage`.
pub trait TraceLog: Send + Sync {
    /// The latest `limit` traces, newest first, as JSON objects.
    fn recent(&self, limit: u32) -> BoxFuture<'_, Result<Vec<serde_json::Value>, String>>;
    /// Token usage since `since_unix_ms`: (by tag, by model), as JSON arrays.
    fn usage(&self, since_unix_ms: i64) -> BoxFuture<'_, Result<(serde_json::Value, serde_json::Value), String>>;
}

/// The header that carries the fleet key to nodes (checked by `herd-node --proxy-port`).
pub use herd_core::api::names::FLEET_KEY_HEADER;

/// What request tasks share.
#[derive(Clone)]
pub struct App {
    /// The driver.
    pub driver: driver::DriverTx,
    /// Connections to the nodes.
    pub upstream: Arc<dyn upstream::Upstream>,
    /// Timers and tasks.
    pub runtime: Arc<dyn Runtime>,
    /// Inference keys (empty = open).
    pub api_keys: Vec<String>,
    /// Admin key.
    pub admin_key: Option<String>,
    /// The key Anthropic paths need besides (or instead of) an inference key.
    pub anthropic_key: Option<String>,
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    /// Largest heartbeat body, bytes (core's `fleet.max_report_bytes`).
    pub max_report_bytes: usize,
    /// What one inference body may hold (core's `body` limits).
    pub body_limits: herd_core::api::body::BodyLimits,
    /// Bytes of request bodies held at once, over every request.
    pub body_budget: Arc<BodyBudget>,
    /// Longest wait for a request's head or body.
    pub read_timeout: Duration,
    /// The fleet key, presented to every node in `X-Herd-Fleet-Key` (a `herd-node` proxy refuses
    /// callers without it).
    pub fleet_key: Option<String>,
    /// Trace reader for `/fleet/traces` and `/fleet/usage`.
    pub traces: Option<Arc<dyn TraceLog>>,
    /// `/metrics` answers without a key even when keys are set (`--metrics-open`).
    pub metrics_open: bool,
    /// Hosts and networks remote `image_url`s may be fetched from (`None`: not fetched).
    pub image_urls: Option<Arc<herd_core::api::image_url::ImageUrlPolicy>>,
    /// Limits of one image fetch.
    pub image_fetch: image_fetch::FetchLimits,
    /// Browser origins allowed (`--cors-origins`; `None`: CORS off).
    pub cors: Option<herd_core::api::cors::CorsPolicy>,
    /// The binary's name, for `herd_build_info`.
    pub binary: &'static str,
    /// This listener serves `/metrics` only (`--metrics-addr`).
    pub only_metrics: bool,
    /// Where core's instants sit on the wall clock, read once at start so that the times core
    /// shows (a model's first sighting) stay put.
    pub wall: herd_core::time::WallClock,
}

impl App {
    /// The state for a listener of its own that serves `/metrics` only (`--metrics-addr`).
    pub fn for_metrics(&self) -> Arc<App> {
        Arc::new(App { only_metrics: true, ..self.clone() })
    }

    /// The extra header every request to a node carries.
    pub fn node_headers(&self) -> Vec<(&'static str, &[u8])> {
        self.fleet_key.as_deref().map(|k| (FLEET_KEY_HEADER, k.as_bytes())).into_iter().collect()
    }
}

/// Reads the router configuration: the JSON file's fields over `base` (core's defaults with
/// ollama-herd's `FLEET_*` settings applied), then the fleet key from the command line.
///
/// # Errors
///
/// The file cannot be read or parsed (with its path), or the configuration is invalid.
pub fn load_config(
    base: herd_core::config::RouterConfig,
    file: Option<&std::path::Path>,
    fleet_key: Option<&str>,
) -> Result<herd_core::config::RouterConfig, String> {
    let mut config = match file {
        Some(path) => {
            let shown = path.display();
            let text = std::fs::read_to_string(path).map_err(|e| format!("config file {shown}: {e}"))?;
            // Read as a configuration first, for errors with a line and column.
            serde_json::from_str::<herd_core::config::RouterConfig>(&text)
                .map_err(|e| format!("config file {shown}: {e}"))?;
            let file: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("config file {shown}: {e}"))?;
            let mut merged = serde_json::to_value(&base).map_err(|e| format!("config: {e}"))?;
            merge_json(&mut merged, file);
            serde_json::from_value(merged).map_err(|e| format!("config file {shown}: {e}"))?
        }
        None => base,
    };
    if let Some(k) = fleet_key.map(str::trim).filter(|k| !k.is_empty()) {
        config.fleet.fleet_key = Some(k.to_string());
    }
    config.validate().map_err(|e| format!("invalid configuration: {e}"))
}

/// `over` written onto `base`: objects field by field (at any depth), anything else replaced.
fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Starts what runs beside the requests: a poller per static node and per `--image-node`, and
/// the auto-pull worker.
pub fn start_background(
    app: &Arc<App>,
    mut pulls: driver::PullOrders,
    nodes: Vec<static_nodes::StaticNode>,
    image_nodes: Vec<image_nodes::ImageNode>,
) {
    for node in image_nodes {
        let poll = image_nodes::poll(app.driver.clone(), app.upstream.clone(), app.runtime.clone(), node);
        app.runtime.spawn(Box::pin(poll));
    }
    let headers: Vec<(&'static str, Vec<u8>)> = app.node_headers().into_iter().map(|(k, v)| (k, v.to_vec())).collect();
    for node in nodes {
        let poll =
            static_nodes::poll(app.driver.clone(), app.upstream.clone(), app.runtime.clone(), node, headers.clone());
        app.runtime.spawn(Box::pin(poll));
    }
    // Auto-pull orders (core emits them only for allow-listed models).
    let worker = app.clone();
    app.runtime.spawn(Box::pin(async move {
        while let Some((node, model, addr)) = pulls.recv().await {
            let app = worker.clone();
            worker.runtime.spawn(Box::pin(async move {
                let ok = fleet::pull(&app, &addr.url, model.as_str()).await;
                app.driver.send(driver::Input::PullResult(node, model, ok)).await;
            }));
        }
    }));
}

/// The bytes of request bodies the router holds at once, over every request: a request whose
/// body would take the total over the budget is refused (503 with `Retry-After`) instead of read,
/// so a flood of large uploads cannot take the router's memory.
#[derive(Debug)]
pub struct BodyBudget {
    held: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl BodyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { held: std::sync::atomic::AtomicUsize::new(0), max })
    }

    /// The budget, bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget until the permit is dropped; `None` when they do not fit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<BodyPermit> {
        use std::sync::atomic::Ordering;
        if bytes == 0 {
            return Some(BodyPermit { budget: self.clone(), bytes: 0 });
        }
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.max)
            })
            .ok()
            .map(|_| BodyPermit { budget: self.clone(), bytes })
    }
}

/// Bytes taken from a [`BodyBudget`], given back on drop.
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyPermit {
    /// Bytes it holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `more` bytes for the same request (a chunked body, known once read).
    pub fn grow(&mut self, more: usize) -> bool {
        match self.budget.reserve(more) {
            Some(mut extra) => {
                self.bytes += std::mem::take(&mut extra.bytes);
                true
            }
            None => false,
        }
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Constant-time comparison of a presented key with the configured ones.
pub fn key_matches(presented: &str, keys: &[String]) -> bool {
    // Every key is compared, so the time taken does not say which one matched.
    keys.iter().fold(false, |ok, k| ok | herd_core::secret::same_secret(presented.as_bytes(), k.as_bytes()))
}

/// The first of two futures to finish; `a` is polled first.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        b.as_mut().poll(cx).map(Either::Right)
    })
    .await
}

/// One of two values.
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first.
    Left(A),
    /// The second.
    Right(B),
}

/// `fut`'s output, or `None` when `d` passes first.
pub async fn timeout<T>(rt: &dyn Runtime, d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    match race(fut, rt.sleep(d)).await {
        Either::Left(v) => Some(v),
        Either::Right(()) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_budget_refuses_beyond_and_returns_on_drop() {
        let budget = BodyBudget::new(100);
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(50).is_none(), "60 + 50 > 100");
        let mut b = budget.reserve(40).expect("fits exactly");
        assert_eq!(budget.held(), 100);
        assert!(!b.grow(1));
        drop(a);
        assert!(b.grow(10));
        assert_eq!(budget.held(), 50);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert!(budget.reserve(0).is_some());
    }

    #[test]
    fn keys() {
        let keys = vec!["abc".to_string(), "longer-key".to_string()];
        assert!(key_matches("abc", &keys));
        assert!(key_matches("longer-key", &keys));
        assert!(!key_matches("ab", &keys));
        assert!(!key_matches("abcd", &keys));
        assert!(!key_matches("", &keys));
    }
}
