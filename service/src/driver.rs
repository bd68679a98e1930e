//! The driver: the one owner of core's `Router`, behind one lock. Request tasks, the heartbeat
//! handler and the static-node pollers hand it inputs, each handled at once by the task that
//! sends it; it answers each request task on that request's own channel. The driver task handles
//! inputs that found the lock taken and sleeps until core's next deadline. It holds no policy: it
//! feeds inputs, drains commands and events.

use crate::Runtime;
use herd_core::api::Surface;
use herd_core::fleet::address;
use herd_core::fleet::heartbeat::{Heartbeat, Report};
use herd_core::fleet::Registered;
use herd_core::ids::{AttemptId, ModelName, NodeId, RequestId};
use herd_core::metrics::{BuildInfo, ChunkGaps, Metrics, MetricsConfig};
use herd_core::policy::retry::UpstreamFailure;
use herd_core::request::RequestSpec;
use herd_core::router::{
    CancelReason, Command, Dispatch, Event, Outcome, Rejection, ReportError, RouteKind, Router, Usage,
};
use herd_core::url::BaseUrl;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// One finished request, as the trace store keeps it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceRecord {
    /// The router's request id (unique per router run).
    pub request_id: u64,
    /// When the request arrived, ms since the Unix epoch.
    pub started_unix_ms: i64,
    /// The API surface (`ollama_chat`, `openai_chat`, ...).
    pub surface: String,
    /// The model asked for.
    pub requested_model: String,
    /// The model that answered (differs on a fallback).
    pub served_model: Option<String>,
    /// The node that answered, or the last one tried.
    pub node: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// `completed`, `rejected`, `failed_after_commit` or `client_gone`.
    pub outcome: String,
    /// The HTTP status answered (499 when the client left).
    pub status: u16,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// `primary`, `client_fallback` or `substitute`.
    pub route: Option<String>,
    /// Time queued, ms.
    pub queued_ms: f64,
    /// Time to the first byte, ms.
    pub ttft_ms: Option<f64>,
    /// Total time, ms.
    pub total_ms: f64,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// The request's tags (`metadata.tags`, `X-Herd-Tags`, `user`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The client's address.
    pub client: Option<String>,
    /// Whether the answer was streamed.
    pub stream: bool,
}

/// Where the driver sends each finished request's trace. Must not block: the driver is the hot
/// path of every request.
pub trait TraceSink: Send {
    /// Keeps one trace.
    fn record(&self, rec: TraceRecord);
}

/// What the driver tells one request task.
#[derive(Debug)]
pub enum ReqMsg {
    /// The router's id for the request.
    Admitted(RequestId),
    /// Start this attempt at `url`.
    Dispatch(Dispatch, Arc<NodeAddr>),
    /// Abort this attempt.
    Cancel(AttemptId, CancelReason),
    /// Answer the client with this refusal.
    Reject(Rejection),
}

/// Where a node is reached, and its name for headers and traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Node name.
    pub name: String,
    /// Ollama's base URL.
    pub url: BaseUrl,
}

/// What happened to an attempt, reported by its request task.
#[derive(Debug, Clone)]
pub enum AttemptInput {
    /// The first body byte arrived.
    FirstByte,
    /// More bytes arrived.
    Progress,
    /// Done, with token counts.
    Finished(Usage),
    /// The gaps between the chunks of the attempt's answer, sent once just before its end.
    Gaps(Box<ChunkGaps>),
    /// Failed.
    Failed(UpstreamFailure),
}

/// What a request task knows about its request besides the spec, for its trace.
#[derive(Debug, Clone)]
pub struct ReqMeta {
    /// The API surface.
    pub surface: Surface,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: i64,
}

/// A read-only look at the router, answered on the driver task.
pub type Query = Box<dyn FnOnce(&Router, &Nodes) + Send>;

/// Inputs to the driver.
pub enum Input {
    /// A new request; the driver answers on `tx`.
    Request {
        /// What it asks.
        spec: RequestSpec,
        /// For the trace.
        meta: ReqMeta,
        /// The request task's channel.
        tx: mpsc::UnboundedSender<ReqMsg>,
    },
    /// An attempt's progress.
    Attempt(AttemptId, AttemptInput),
    /// The client left.
    ClientGone(RequestId),
    /// A node's report over HTTP.
    Heartbeat {
        /// The body.
        body: bytes::Bytes,
        /// Who sent it.
        peer: Option<IpAddr>,
        /// The answer.
        reply: oneshot::Sender<Result<Registered, ReportError>>,
    },
    /// A report from a static-node poller, with the URL it polls.
    Static(Box<Heartbeat>, BaseUrl),
    /// What an `--image-node` poller found: the machine and its servers.
    ImageServers(String, Vec<herd_core::image::sched::BackendInfo>),
    /// Drain a node by name (admin).
    /// An operator's drain (`true`) or undrain of the named node.
    Drain(String, bool, oneshot::Sender<Result<Registered, ReportError>>),
    /// A pull ended.
    PullResult(NodeId, ModelName, bool),
    /// A read-only query.
    Query(Query),
    /// The `/metrics` text, for this binary.
    Metrics(BuildInfo<'static>, oneshot::Sender<String>),
}

/// The handle request tasks hold.
///
/// An input is handled at once by the task that sends it, under the driver's lock: a request is
/// decided and dispatched in the poll that read it, with no hop to another task and back (each
/// hop waits its turn behind every task the runtime has ready, which under load is most of a
/// request's time to first byte). Inputs that find the lock taken wait in `pending` for whoever
/// holds it, or for the driver task, which also keeps core's deadlines.
#[derive(Clone)]
pub struct DriverTx {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<Driver>,
    /// Inputs sent while the lock was taken, in the order they were sent.
    pending: Mutex<VecDeque<Input>>,
    /// Set after an input is queued in `pending`: the hot path reads this, not the queue's lock.
    queued: AtomicBool,
    /// Wakes the driver task: inputs are pending, core's next deadline moved earlier, or the last
    /// handle is gone.
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: the driver task stops.
        self.wake.notify_one();
    }
}

impl DriverTx {
    /// Handles an input now, waiting for the lock while another thread holds it (for no longer
    /// than one input takes).
    pub async fn send(&self, input: Input) {
        let driver = lock(&self.shared.state);
        self.settle(driver, Some(input));
    }

    /// Handles an input from a synchronous context (a body's poll or a drop): now if the lock is
    /// free, else by whoever holds it or the driver task, in the order inputs were sent. Never
    /// blocks.
    pub fn send_now(&self, input: Input) {
        match self.shared.state.try_lock() {
            Ok(driver) => self.settle(driver, Some(input)),
            Err(TryLockError::Poisoned(p)) => self.settle(p.into_inner(), Some(input)),
            Err(TryLockError::WouldBlock) => {
                lock(&self.shared.pending).push_back(input);
                // After the push: whoever sees the flag finds the input.
                self.shared.queued.store(true, Ordering::Release);
                self.shared.wake.notify_one();
            }
        }
    }

    /// Runs `f` on the router and returns what it computes, after every input sent before it.
    pub async fn query<T: Send + 'static>(&self, f: impl FnOnce(&Router, &Nodes) -> T + Send + 'static) -> Option<T> {
        let mut driver = lock(&self.shared.state);
        driver.take_pending(&self.shared);
        let out = f(&driver.router, &driver.nodes);
        self.settle(driver, None);
        Some(out)
    }

    /// With the lock held: the inputs pending before `input`, then `input`, then the commands and
    /// events they caused; tells the driver task when core's next deadline moved earlier or more
    /// inputs arrived meanwhile.
    fn settle(&self, mut driver: MutexGuard<'_, Driver>, input: Option<Input>) {
        driver.take_pending(&self.shared);
        if let Some(input) = input {
            driver.handle(input);
        }
        driver.turn(&self.shared);
        let earlier = driver.router.poll_timeout().is_some_and(|at| at < driver.armed);
        drop(driver);
        if earlier || self.shared.queued.load(Ordering::Acquire) {
            self.shared.wake.notify_one();
        }
    }
}

/// Locks `m`; a panic in another holder does not stop the router (core's state stays whole:
/// every input is one call).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Node addresses the adapter resolved (core keeps identities, the adapter keeps URLs).
#[derive(Default)]
pub struct Nodes {
    addrs: BTreeMap<NodeId, Arc<NodeAddr>>,
}

impl Nodes {
    /// The address of `node`.
    pub fn addr(&self, node: NodeId) -> Option<&Arc<NodeAddr>> {
        self.addrs.get(&node)
    }
    fn set(&mut self, node: NodeId, name: &str, url: BaseUrl) {
        if self.addrs.get(&node).is_none_or(|a| a.url != url || a.name != name) {
            self.addrs.insert(node, Arc::new(NodeAddr { name: name.to_string(), url }));
        }
    }
}

struct Live {
    tx: mpsc::UnboundedSender<ReqMsg>,
    meta: ReqMeta,
    stream: bool,
    route: Option<RouteKind>,
    error: Option<String>,
}

/// The driver's state.
pub struct Driver {
    router: Router,
    nodes: Nodes,
    live: BTreeMap<RequestId, Live>,
    rt: Arc<dyn Runtime>,
    traces: Option<Box<dyn TraceSink>>,
    pulls: mpsc::UnboundedSender<(NodeId, ModelName, Arc<NodeAddr>)>,
    /// Where agents' nodes may be reached (`--node-networks`).
    node_networks: Vec<address::Network>,
    /// What `/metrics` counts; fed here, beside the router it counts, under the same lock.
    metrics: Metrics,
    /// The deadline the driver task's timer is set to.
    armed: herd_core::time::Instant,
}

/// The auto-pull orders the driver hands out: pull this model onto this node.
pub type PullOrders = mpsc::UnboundedReceiver<(NodeId, ModelName, Arc<NodeAddr>)>;

/// Starts the driver task on `rt`; returns its handle and the channel of auto-pull orders.
pub fn spawn(router: Router, traces: Option<Box<dyn TraceSink>>, rt: Arc<dyn Runtime>) -> (DriverTx, PullOrders) {
    let (pulls, pull_rx) = mpsc::unbounded_channel();
    let node_networks = router.config().fleet.node_networks();
    let metrics =
        Metrics::new(MetricsConfig { max_nodes: router.config().fleet.max_nodes.max(1), ..MetricsConfig::default() });
    let driver = Driver {
        router,
        nodes: Nodes::default(),
        live: BTreeMap::new(),
        rt: rt.clone(),
        traces,
        pulls,
        node_networks,
        metrics,
        armed: herd_core::time::Instant::MAX,
    };
    let wake = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        state: Mutex::new(driver),
        pending: Mutex::new(VecDeque::new()),
        queued: AtomicBool::new(false),
        wake: wake.clone(),
    });
    rt.spawn(Box::pin(run(Arc::downgrade(&shared), wake, rt.clone())));
    (DriverTx { shared }, pull_rx)
}

/// The driver task: handles inputs that found the lock taken and keeps core's deadlines; stops
/// when the last handle is dropped.
async fn run(shared: Weak<Shared>, wake: Arc<Notify>, rt: Arc<dyn Runtime>) {
    // One timer for the driver's life, moved to core's next deadline each turn.
    let mut timer = rt.timer(herd_core::time::Instant::MAX);
    let mut fired = false;
    loop {
        let Some(tx) = shared.upgrade().map(|shared| DriverTx { shared }) else { return };
        let at = {
            let mut driver = lock(&tx.shared.state);
            driver.take_pending(&tx.shared);
            if fired {
                let now = driver.now();
                driver.router.handle_timeout(now);
            }
            driver.turn(&tx.shared);
            let at = driver.router.poll_timeout().unwrap_or(herd_core::time::Instant::MAX);
            driver.armed = at;
            at
        };
        drop(tx);
        timer.as_mut().reset(at);
        let woken = std::pin::pin!(wake.notified());
        let timeout = std::future::poll_fn(|cx| timer.as_mut().poll(cx));
        fired = matches!(crate::race(woken, timeout).await, crate::Either::Right(()));
    }
}

impl Driver {
    /// Handles the inputs that found the lock taken, oldest first; whether there were any. Costs
    /// one atomic load when there are none (nearly always).
    fn take_pending(&mut self, shared: &Shared) -> bool {
        let mut took = false;
        while shared.queued.swap(false, Ordering::AcqRel) {
            let batch = std::mem::take(&mut *lock(&shared.pending));
            took |= !batch.is_empty();
            for input in batch {
                self.handle(input);
            }
        }
        took
    }

    /// Every command and event (core's `handle_*` calls have already run what time made due),
    /// then any input that arrived meanwhile and what it caused.
    fn turn(&mut self, shared: &Shared) {
        self.drain();
        if self.take_pending(shared) {
            self.drain();
        }
    }

    fn now(&self) -> herd_core::time::Instant {
        self.rt.now()
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Request { spec, meta, tx } => {
                let stream = spec.stream;
                let id = self.router.handle_request(now, spec);
                let gone = tx.send(ReqMsg::Admitted(id)).is_err();
                self.live.insert(id, Live { tx, meta, stream, route: None, error: None });
                if gone {
                    // The client left before the request reached the driver.
                    self.router.handle_client_gone(now, id);
                }
                // Commands for it are drained right after; they find its channel now.
            }
            Input::Attempt(attempt, a) => match a {
                AttemptInput::FirstByte => self.router.handle_first_byte(now, attempt),
                AttemptInput::Progress => self.router.handle_progress(now, attempt),
                AttemptInput::Finished(usage) => self.router.handle_finished(now, attempt, usage),
                AttemptInput::Failed(f) => self.router.handle_failed(now, attempt, f),
                AttemptInput::Gaps(g) => {
                    if let Some(model) = self.router.attempt_model(attempt) {
                        self.metrics.observe_gaps(model, &g);
                    }
                }
            },
            Input::ClientGone(id) => self.router.handle_client_gone(now, id),
            Input::Heartbeat { body, peer, reply } => {
                let limits = self.router.config().fleet.report_limits();
                let result = match Heartbeat::parse_within(&body, &limits) {
                    Ok(report) => self.report(now, report, peer, None),
                    Err(e) => Err(ReportError::Invalid(e)),
                };
                if let Err(e) = &result {
                    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
                    tracing::warn!(peer = peer.as_str(), status = e.http_status(), "heartbeat refused: {e}");
                }
                let _ = reply.send(result);
            }
            Input::Static(hb, url) => {
                if let Err(e) = self.report(now, Report::Static(hb), None, Some(url.clone())) {
                    tracing::warn!(node = url.as_str(), "static node report refused: {e}");
                }
            }
            Input::ImageServers(machine, servers) => self.router.handle_image_servers(now, &machine, servers),
            Input::Drain(name, on, reply) => {
                let report =
                    if on { Report::AdminDrain { node_id: name } } else { Report::AdminUndrain { node_id: name } };
                let _ = reply.send(self.router.handle_report(now, report));
            }
            Input::PullResult(node, model, ok) => self.router.handle_pull_result(now, node, model, ok),
            Input::Query(f) => f(&self.router, &self.nodes),
            Input::Metrics(build, reply) => {
                let mut text = String::with_capacity(64 << 10);
                self.metrics.render(&self.router, now, build, &mut text);
                let _ = reply.send(text);
            }
        }
    }

    fn report(
        &mut self,
        now: herd_core::time::Instant,
        report: Report,
        peer: Option<IpAddr>,
        url: Option<BaseUrl>,
    ) -> Result<Registered, ReportError> {
        let resolved = match &report {
            // The router's own static nodes are where the operator said.
            Report::Static(hb) => url.map(|u| (hb.node_id.clone(), u)),
            Report::Heartbeat(hb) => {
                let url = match url {
                    Some(u) => u,
                    None => address::backend_url(&hb.ollama_host, &hb.lan_ip, peer)?,
                };
                address::check_node_url(&url, &self.node_networks)?;
                Some((hb.node_id.clone(), url))
            }
            Report::Drain { .. } | Report::AdminDrain { .. } | Report::AdminUndrain { .. } => None,
        };
        let registered = self.router.handle_report(now, report)?;
        if let Some((name, url)) = resolved {
            self.nodes.set(registered.node, &name, url);
        }
        Ok(registered)
    }

    fn drain(&mut self) {
        while let Some(cmd) = self.router.poll_command() {
            self.command(cmd);
        }
        while let Some(ev) = self.router.poll_event() {
            self.event(ev);
        }
    }

    fn send(&mut self, id: RequestId, msg: ReqMsg) {
        let gone = match self.live.get(&id) {
            Some(l) => l.tx.send(msg).is_err(),
            None => false,
        };
        if gone {
            // The request task is gone: its client left.
            let now = self.now();
            self.router.handle_client_gone(now, id);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Dispatch(d) => {
                let addr = self.nodes.addr(d.node).cloned();
                match addr {
                    Some(addr) => self.send(d.request, ReqMsg::Dispatch(d, addr)),
                    None => {
                        // A node core knows but we cannot reach: report it as a connect failure.
                        let now = self.now();
                        self.router.handle_failed(now, d.attempt, UpstreamFailure::Connect);
                    }
                }
            }
            // The request task answered the client at the first byte, from `Dispatch::commit`.
            Command::Commit(c) => {
                self.metrics.observe_commit(c.route);
                if let Some(l) = self.live.get_mut(&c.request) {
                    l.route = Some(c.route);
                }
            }
            Command::Cancel { request, attempt, reason } => self.send(request, ReqMsg::Cancel(attempt, reason)),
            Command::Reject { request, rejection } => {
                if let Some(l) = self.live.get_mut(&request) {
                    l.error = Some(rejection.as_str().to_string());
                }
                self.send(request, ReqMsg::Reject(rejection));
            }
            Command::Pull { node, model } => {
                if let Some(addr) = self.nodes.addr(node).cloned() {
                    let _ = self.pulls.send((node, model, addr));
                } else {
                    let now = self.now();
                    self.router.handle_pull_result(now, node, model, false);
                }
            }
        }
    }

    fn event(&mut self, ev: Event) {
        if !matches!(ev, Event::Ended(_)) {
            self.metrics.observe_event(&self.router, &ev);
        }
        match ev {
            Event::Ended(trace) => {
                let live = self.live.remove(&trace.request);
                let Some(live) = live else { return };
                self.metrics.observe_end(&self.router, live.meta.surface, &trace);
                let Some(writer) = &self.traces else { return };
                let (prompt_tokens, completion_tokens, error) = match &trace.outcome {
                    Outcome::Completed(u) => (u.prompt_tokens, u.completion_tokens, None),
                    Outcome::Rejected(r) => (0, 0, Some(r.as_str().to_string())),
                    Outcome::FailedAfterCommit(f) => (0, 0, Some(f.as_str().to_string())),
                    Outcome::ClientGone => (0, 0, Some("client_gone".to_string())),
                };
                let node = trace.node.and_then(|n| self.nodes.addr(n)).map(|a| a.name.clone());
                writer.record(TraceRecord {
                    request_id: trace.request.0,
                    started_unix_ms: live.meta.started_unix_ms,
                    surface: live.meta.surface.name().to_string(),
                    // What the client asked for: an Anthropic id as it named it (the served
                    // model says what answered).
                    requested_model: trace.anthropic_model.clone().unwrap_or_else(|| trace.requested_model.to_string()),
                    served_model: trace.served_model.as_ref().map(|m| m.as_str().to_string()),
                    node,
                    attempts: trace.attempts,
                    outcome: trace.outcome.as_str().to_string(),
                    // What the client was answered (core's mapping, which the proxy answers
                    // with too), even when core ended the request (a reap) before the request
                    // task wrote it.
                    status: trace.outcome.http_status(live.stream),
                    error: error.or(live.error),
                    route: live.route.map(|r| r.as_str().to_string()),
                    queued_ms: ms(trace.queued),
                    ttft_ms: trace.ttft.map(ms),
                    total_ms: ms(trace.total),
                    prompt_tokens,
                    completion_tokens,
                    tags: trace.tags,
                    client: trace.client,
                    stream: live.stream,
                });
            }
            Event::NodeStatus { name, from, to, .. } => {
                tracing::info!(node = %name, from = ?from.map(|s| s.as_str()), to = ?to.map(|s| s.as_str()), "node status");
            }
            Event::Retried { request, node, failure, .. } => {
                let name = self.nodes.addr(node).map(|a| a.name.clone()).unwrap_or_default();
                tracing::info!(request = request.0, node = %name, failure = failure.as_str(), "retrying on another node");
            }
            Event::Reaped { request, node, reason, .. } => {
                let name = self.nodes.addr(node).map(|a| a.name.clone()).unwrap_or_default();
                tracing::warn!(request = request.0, node = %name, reason = ?reason, "reaped a stuck attempt");
            }
            Event::Breaker { node, open } => {
                let name = self.nodes.addr(node).map(|a| a.name.clone()).unwrap_or_default();
                tracing::warn!(node = %name, open, "breaker");
            }
            Event::Fallback { request, from, to, route } => {
                tracing::info!(
                    request = request.0,
                    from = from.as_str(),
                    to = to.as_str(),
                    route = route.as_str(),
                    "fallback"
                );
            }
            Event::Resolved { request, asked, model, by } => {
                tracing::info!(request = request.0, asked = %asked, model = %model, by = by.as_str(), "model id resolved");
            }
            Event::Context { .. } | Event::Holding { .. } => {}
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
