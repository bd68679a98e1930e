//! The server around the handlers: shared state, the accept loop (which can stop listening and
//! start again), one hyper HTTP/1 connection task per socket, the route table with Ollama's 404
//! and 405 answers, the `/_fake/*` control endpoints, request counters, and the heartbeat task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use crate::machine::MachineSpec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::engine::Engine;
use super::faults::{parse_control, Control, Faults};
use super::models::{self, DiskModel, Registry};
use super::reply::{self, Resp, Style, TEXT};
use super::{anthropic, native, openai, FakeFault, FakeStats, HeartbeatTarget, Timing};

/// Largest request body read, bytes.
const MAX_BODY_BYTES: usize = 256 << 20;

/// Whether the fake listens.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Serving,
    Refusing,
    Shutdown,
}

/// Paths counted in the stats, in this order; everything else counts as `other`.
const ROUTES: [&str; 22] = [
    "/",
    "/api/version",
    "/api/status",
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/pull",
    "/api/push",
    "/api/create",
    "/api/copy",
    "/api/delete",
    "/api/blobs",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/messages",
    "other",
];

#[derive(Default)]
struct Counters {
    routes: [AtomicU64; ROUTES.len()],
    completed: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    last_body: Mutex<Option<Bytes>>,
}

/// Everything the handlers of one fake share.
pub(crate) struct Shared {
    pub spec: MachineSpec,
    pub timing: Timing,
    pub url: String,
    pub addr: SocketAddr,
    pub engine: Engine,
    pub faults: Arc<Faults>,
    pub next_id: AtomicU64,
    pub blobs: Mutex<HashSet<String>>,
    registry: Mutex<Registry>,
    counters: Counters,
    listener: Mutex<Option<TcpListener>>,
    conns: Mutex<HashMap<u64, AbortHandle>>,
    next_conn: AtomicU64,
    life: watch::Sender<Life>,
    runtime: tokio::runtime::Handle,
}

impl Shared {
    /// State for a fake listening on `listener` (bound to `addr`).
    pub fn new(spec: MachineSpec, timing: Timing, listener: TcpListener, addr: SocketAddr) -> Shared {
        let faults = Arc::new(Faults::default());
        let ip = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
        Shared {
            url: format!("http://{}", SocketAddr::new(ip, addr.port())),
            engine: Engine::new(spec.clone(), &timing, faults.clone()),
            registry: Mutex::new(Registry::new(&spec.disk, SystemTime::now())),
            spec,
            timing,
            addr,
            faults,
            next_id: AtomicU64::new(0),
            blobs: Mutex::default(),
            counters: Counters::default(),
            listener: Mutex::new(Some(listener)),
            conns: Mutex::default(),
            next_conn: AtomicU64::new(0),
            life: watch::Sender::new(Life::Serving),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The disk, locked.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model `raw` names, if on disk.
    pub fn find_model(&self, raw: &str) -> Option<DiskModel> {
        self.registry().find(raw).cloned()
    }

    /// Changes the disk and tells the engine.
    pub fn update_disk(&self, f: impl FnOnce(&mut Registry)) {
        let disk = {
            let mut r = self.registry();
            f(&mut r);
            r.disk()
        };
        self.engine.set_disk(disk);
    }

    /// Answer tokens when the client sets no `num_predict`.
    pub fn default_tokens(&self) -> usize {
        match self.timing {
            Timing::Simulated { .. } => 24,
            Timing::Fixed { .. } | Timing::Batched { .. } => 16,
        }
    }

    /// Whether this Ollama has `/v1/messages`: 0.14.0 and later (wire-api.md §0). A version that
    /// does not read as `major.minor.patch` is taken for a recent one (a build from source).
    pub fn serves_messages(&self) -> bool {
        let v = self.spec.ollama_version.trim().trim_start_matches('v');
        let (core, pre) = match v.split_once('-') {
            Some((core, _)) => (core, true),
            None => (v, false),
        };
        let n: Vec<Option<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
        match n.as_slice() {
            [Some(major), Some(minor), Some(patch)] => {
                let v = (*major, *minor, *patch);
                v > (0, 14, 0) || (v == (0, 14, 0) && !pre)
            }
            _ => true,
        }
    }

    /// The context window models load with.
    pub fn context_length(&self) -> u32 {
        if self.spec.context_length == 0 {
            4096
        } else {
            self.spec.context_length
        }
    }

    /// The counters now.
    pub fn stats(&self) -> FakeStats {
        let c = &self.counters;
        let mut requests = BTreeMap::new();
        for (path, n) in ROUTES.iter().zip(&c.routes) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                requests.insert((*path).to_string(), n);
            }
        }
        let last = c.last_body.lock().unwrap_or_else(|e| e.into_inner()).clone();
        FakeStats {
            requests,
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            cold_loads: self.engine.cold_loads(),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            last_body: last.and_then(|b| serde_json::from_slice(&b).ok()),
        }
    }

    /// Applies `fault`; a refusal spares connection `except` (the control request's own).
    pub fn inject(&self, fault: &FakeFault, except: Option<u64>) {
        match fault {
            FakeFault::RefuseConnections => {
                if *self.life.borrow() == Life::Serving {
                    self.life.send_replace(Life::Refusing);
                    self.close_listener();
                    self.kill_connections(except);
                }
            }
            FakeFault::Slow { .. } => {
                self.faults.arm(fault);
                self.engine.set_slow(self.faults.slow());
            }
            other => self.faults.arm(other),
        }
    }

    /// Disarms every fault and listens again if refusing.
    pub fn clear_faults(&self) {
        let was_slow = self.faults.slow() != 1.0;
        self.faults.clear();
        if was_slow {
            self.engine.set_slow(1.0);
        }
        if *self.life.borrow() == Life::Refusing {
            let rebound = std::net::TcpListener::bind(self.addr).and_then(|l| {
                l.set_nonblocking(true)?;
                let _enter = self.runtime.enter();
                TcpListener::from_std(l)
            });
            // If the port cannot be had again right now, the accept loop keeps trying.
            if let Ok(l) = rebound {
                *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
            }
            self.life.send_replace(Life::Serving);
        }
    }

    /// Stops listening and closes every connection, for good.
    pub fn shutdown(&self) {
        self.life.send_replace(Life::Shutdown);
        self.close_listener();
        self.kill_connections(None);
    }

    fn close_listener(&self) {
        drop(self.listener.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    fn kill_connections(&self, except: Option<u64>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|id, task| {
            let keep = Some(*id) == except;
            if !keep {
                task.abort();
            }
            keep
        });
    }

    fn count(&self, path: &str) {
        let i = ROUTES.iter().position(|r| *r == path).unwrap_or(ROUTES.len() - 1);
        self.counters.routes[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one inference request as in flight until dropped, then as completed (if
/// [`Guard::complete`] was called) or failed.
pub(crate) struct Guard {
    shared: Arc<Shared>,
    done: bool,
}

impl Guard {
    fn new(shared: &Arc<Shared>) -> Guard {
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Guard { shared: shared.clone(), done: false }
    }

    /// The request succeeded.
    pub fn complete(&mut self) {
        self.done = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let c = &self.shared.counters;
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.done { &c.completed } else { &c.failed }.fetch_add(1, Ordering::Relaxed);
    }
}

/// Accepts connections while serving; waits (not listening) while refusing; ends at shutdown.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let mut life = shared.life.subscribe();
    loop {
        let state = *life.borrow_and_update();
        match state {
            Life::Shutdown => return,
            Life::Refusing => {
                if life.changed().await.is_err() {
                    return;
                }
            }
            Life::Serving => {
                let accept = poll_fn(|cx| match &*shared.listener.lock().unwrap_or_else(|e| e.into_inner()) {
                    Some(l) => l.poll_accept(cx).map(Some),
                    None => Poll::Ready(None),
                });
                tokio::select! {
                    accepted = accept => match accepted {
                        Some(Ok((stream, _))) => spawn_connection(&shared, stream),
                        Some(Err(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
                        None => {
                            // Serving without a socket: the rebind in `clear_faults` failed.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            rebind(&shared).await;
                        }
                    },
                    changed = life.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

async fn rebind(shared: &Shared) {
    if let Ok(l) = TcpListener::bind(shared.addr).await {
        let mut slot = shared.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() && *shared.life.borrow() == Life::Serving {
            *slot = Some(l);
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let s = shared.clone();
    // Held while spawning so the task cannot unregister itself before it is registered.
    let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
    let task = tokio::spawn(async move {
        let svc_shared = s.clone();
        let svc = service_fn(move |req| {
            let shared = svc_shared.clone();
            async move { Ok::<_, Infallible>(route(&shared, id, req).await) }
        });
        let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
        s.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    });
    conns.insert(id, task.abort_handle());
}

/// Which methods a known path takes.
fn methods(path: &str) -> Option<&'static [Method]> {
    const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];
    Some(match path {
        "/" | "/api/version" | "/api/tags" => GET_HEAD,
        "/api/status" | "/api/ps" | "/v1/models" | "/_fake/stats" => &[Method::GET],
        "/api/delete" => &[Method::DELETE],
        p if p.starts_with("/api/blobs/") => &[Method::HEAD, Method::POST],
        p if p.strip_prefix("/v1/models/").is_some_and(|m| !m.is_empty() && !m.contains('/')) => &[Method::GET],
        "/api/generate"
        | "/api/chat"
        | "/api/embed"
        | "/api/embeddings"
        | "/api/show"
        | "/api/pull"
        | "/api/push"
        | "/api/create"
        | "/api/copy"
        | "/v1/chat/completions"
        | "/v1/completions"
        | "/v1/embeddings"
        | "/v1/messages"
        | "/_fake/fault" => &[Method::POST],
        _ => return None,
    })
}

fn is_inference(path: &str) -> bool {
    matches!(
        path,
        "/api/generate"
            | "/api/chat"
            | "/api/embed"
            | "/api/embeddings"
            | "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/embeddings"
            | "/v1/messages"
    )
}

async fn route(shared: &Arc<Shared>, conn: u64, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if !path.starts_with("/_fake/") {
        shared.count(if path.starts_with("/api/blobs/") { "/api/blobs" } else { path });
    }
    let Some(allowed) = methods(path).filter(|_| path != "/v1/messages" || shared.serves_messages()) else {
        // Unknown routes, and `/v1/messages` on an Ollama from before it existed: gin's 404.
        return reply::not_found_page();
    };
    if !allowed.contains(&parts.method) {
        return reply::method_not_allowed();
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply::error(Style::Ollama, 400, "request body too large or cut"),
    };
    if !body.is_empty() && !path.starts_with("/_fake/") {
        *shared.counters.last_body.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.clone());
    }
    if is_inference(path) {
        let guard = Guard::new(shared);
        return match path {
            "/api/chat" => native::chat(shared, &body, guard).await,
            "/api/generate" => native::generate(shared, &body, guard).await,
            "/api/embed" => native::embed(shared, &body, guard).await,
            "/api/embeddings" => native::embeddings(shared, &body, guard).await,
            "/v1/chat/completions" => openai::chat(shared, &body, guard).await,
            "/v1/completions" => openai::completions(shared, &body, guard).await,
            "/v1/embeddings" => openai::embeddings(shared, &body, guard).await,
            _ => anthropic::messages(shared, &body, guard).await,
        };
    }
    match path {
        "/" => reply::bytes(200, TEXT, "Ollama is running"),
        "/api/version" => native::version(shared),
        "/api/status" => {
            reply::json_value(200, &serde_json::json!({"cloud": {"disabled": true, "source": "herd-fake"}}))
        }
        "/api/tags" => native::tags(shared),
        "/api/ps" => native::ps(shared).await,
        "/api/show" => native::show(shared, &body),
        "/api/pull" => native::pull(shared, &body),
        "/api/push" => native::push(shared, &body),
        "/api/create" => native::create(shared, &body),
        "/api/copy" => native::copy(shared, &body),
        "/api/delete" => native::delete(shared, &body),
        "/v1/models" => openai::models(shared),
        "/_fake/stats" => reply::json_value(200, &serde_json::to_value(shared.stats()).unwrap_or_default()),
        "/_fake/fault" => control(shared, conn, &body),
        p => match (p.strip_prefix("/api/blobs/"), p.strip_prefix("/v1/models/")) {
            (Some(digest), _) => native::blob(shared, parts.method == Method::POST, digest),
            (_, Some(model)) => openai::model(shared, model),
            _ => reply::not_found_page(),
        },
    }
}

/// `POST /_fake/fault`.
fn control(shared: &Shared, conn: u64, body: &[u8]) -> Resp {
    match parse_control(body) {
        Ok(Control::Clear) => {
            shared.clear_faults();
            reply::json_value(200, &serde_json::json!({"status": "cleared"}))
        }
        Ok(Control::Inject(fault)) => {
            shared.inject(&fault, Some(conn));
            let mut r = reply::json_value(200, &serde_json::json!({"status": "armed"}));
            if fault == FakeFault::RefuseConnections {
                // This connection was spared so the answer gets out; it closes after it.
                r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
        Err(e) => reply::error(Style::Ollama, 400, &e.to_string()),
    }
}

/// Posts the node's heartbeat to `{router_url}/heartbeat` every `interval` until shutdown;
/// failures are ignored (the next tick retries).
pub(crate) async fn heartbeat_loop(shared: Arc<Shared>, target: HeartbeatTarget) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("{}/heartbeat", target.router_url.trim_end_matches('/'));
    let mut life = shared.life.subscribe();
    let mut tick = tokio::time::interval(target.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = life.changed() => {
                if changed.is_err() || *life.borrow_and_update() == Life::Shutdown {
                    return;
                }
                continue;
            }
        }
        let state = *life.borrow();
        if state == Life::Shutdown {
            return;
        }
        let (mut hb, _) = shared.engine.snapshot().await;
        hb.node_id = shared.spec.name.clone();
        hb.ollama_host = shared.url.clone();
        hb.fleet_key = target.fleet_key.clone();
        {
            let registry = shared.registry();
            // What ollama-herd 0.11.4's agent reads from `/api/ps` for each loaded model.
            for lm in &mut hb.ollama.models_loaded {
                if let Some(disk) = registry.find(lm.name.as_str()) {
                    let m = models::meta(disk);
                    (lm.digest, lm.parameter_size, lm.quantization) =
                        (m.digest, m.parameter_size, m.quantization_level);
                }
            }
            let meta = registry.newest_first().iter().map(|m| (m.name.clone(), models::meta(m))).collect();
            hb.ollama.models_available_meta = Some(meta);
        }
        hb.timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if state == Life::Refusing {
            hb.ollama.reachable = Some(false);
            hb.ollama.models_loaded.clear();
        }
        let Ok(body) = serde_json::to_vec(&hb) else { continue };
        let Ok(req) = Request::post(url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
        else {
            return;
        };
        let _ = tokio::time::timeout(target.interval.max(Duration::from_secs(1)), client.request(req)).await;
    }
}
