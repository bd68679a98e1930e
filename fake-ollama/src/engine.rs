//! When tokens come: [`Engine`] admits a job and hands back a [`Run`] whose `first_token`,
//! `next_token` and `finish` resolve when the machine would produce them.
//!
//! * `Timing::Fixed`: a FIFO semaphore of `num_parallel` permits, then fixed delays.
//! * `Timing::Simulated`: one driver task owns a [`SimNode`] and maps real time to its virtual
//!   time (`virtual µs = real µs × speedup`). Requests send it jobs; it forwards each job's
//!   [`NodeEvent`]s to the job's channel. Tokens between the first one and `Done` are paced at the
//!   node's decode rate; tokens still pending at `Done` are flushed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::machine::{Fault, Job, JobId, MachineSpec, NodeEvent, NodeFailure, SimNode, StartError};
use herd_core::fleet::heartbeat::Heartbeat;
use herd_core::ids::ModelName;
use herd_core::time::Instant as VInstant;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, sleep_until, Instant};

use super::faults::Faults;
use super::Timing;

/// SimNode's decode efficiency and prefill speed-up (machine.rs formulas).
const DECODE_EFFICIENCY: f64 = 0.7;
const PREFILL_SPEEDUP: f64 = 25.0;

/// One request as the engine sees it.
#[derive(Clone, Debug)]
pub(crate) struct JobSpec {
    /// Model (on disk).
    pub model: ModelName,
    /// Its weights, GB.
    pub weights_gb: f64,
    /// Estimated prompt tokens.
    pub prompt_tokens: u32,
    /// Tokens (chunks) to produce; at least 1.
    pub output_tokens: u32,
    /// An embedding or a load: first token, then done.
    pub embed: bool,
}

/// Why a running job failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunError {
    /// Ollama answered this status (error burst, queue full).
    Status(u16),
    /// The node went down under the job.
    Reset,
}

/// The measured timeline of a finished job, for the final chunk's metrics.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timings {
    pub total: Duration,
    pub load: Duration,
    pub prompt_eval: Duration,
    pub eval: Duration,
    pub prompt_tokens: u32,
    pub eval_count: u32,
}

enum Msg {
    Start { job: Job, events: mpsc::UnboundedSender<NodeEvent>, reply: oneshot::Sender<Result<(), StartError>> },
    Cancel(JobId),
    Slow(f64),
    Disk(Vec<(ModelName, f64)>),
    Unload(ModelName),
    Snapshot(oneshot::Sender<(Heartbeat, u64)>),
}

enum Kind {
    Fixed { permits: Arc<Semaphore>, first_token: Duration, token_interval: Duration, flush: bool },
    Simulated { tx: mpsc::UnboundedSender<Msg>, speedup: f64 },
}

/// Admits jobs and times them; see the module docs.
pub(crate) struct Engine {
    kind: Kind,
    spec: MachineSpec,
    faults: Arc<Faults>,
    disk: Mutex<Vec<(ModelName, f64)>>,
    active: Arc<AtomicU32>,
    next_job: AtomicU64,
    cold_loads: Arc<AtomicU64>,
}

impl Engine {
    /// An engine for `spec`; in simulated mode this spawns the node's driver task (so it must be
    /// called inside a tokio runtime). The driver ends when the engine is dropped.
    pub fn new(spec: MachineSpec, timing: &Timing, faults: Arc<Faults>) -> Engine {
        let disk = Mutex::new(spec.disk.clone());
        let cold_loads = Arc::new(AtomicU64::new(0));
        let kind = match *timing {
            Timing::Fixed { first_token, token_interval } | Timing::Batched { first_token, token_interval } => {
                Kind::Fixed {
                    permits: Arc::new(Semaphore::new(spec.num_parallel.max(1) as usize)),
                    first_token,
                    token_interval,
                    flush: matches!(timing, Timing::Fixed { .. }),
                }
            }
            Timing::Simulated { speedup } => {
                let speedup = if speedup.is_finite() && speedup > 0.0 { speedup.clamp(1e-3, 1e6) } else { 1.0 };
                let (tx, rx) = mpsc::unbounded_channel();
                let driver = Driver::new(SimNode::new(spec.clone(), VInstant::ZERO), speedup, cold_loads.clone());
                tokio::spawn(driver.run(rx));
                Kind::Simulated { tx, speedup }
            }
        };
        Engine { kind, spec, faults, disk, active: Arc::default(), next_job: AtomicU64::new(1), cold_loads }
    }

    /// Models the simulated node loaded from disk so far (0 in fixed mode).
    pub fn cold_loads(&self) -> u64 {
        self.cold_loads.load(Ordering::Relaxed)
    }

    /// Admits `job`. Fixed mode never refuses (the caller checked the disk).
    ///
    /// # Errors
    /// The node's [`StartError`] in simulated mode.
    pub async fn start(&self, job: JobSpec) -> Result<Run, StartError> {
        let output_tokens = job.output_tokens.max(1);
        let inner = match &self.kind {
            Kind::Fixed { permits, first_token, token_interval, flush } => RunInner::Fixed {
                permits: permits.clone(),
                permit: None,
                first: *first_token,
                interval: *token_interval,
                flush: *flush,
            },
            Kind::Simulated { tx, speedup } => {
                let id = self.next_job.fetch_add(1, Ordering::Relaxed);
                let (events, rx) = mpsc::unbounded_channel();
                let (reply, answer) = oneshot::channel();
                let sim_job = Job {
                    id,
                    model: job.model.clone(),
                    prompt_tokens: job.prompt_tokens,
                    output_tokens,
                    prefix: None,
                    embed: job.embed,
                };
                tx.send(Msg::Start { job: sim_job, events, reply }).map_err(|_| StartError::NodeDown)?;
                answer.await.map_err(|_| StartError::NodeDown)??;
                let bandwidth = if self.spec.bandwidth_gbps > 0.0 { self.spec.bandwidth_gbps } else { 100.0 };
                let tps = DECODE_EFFICIENCY * bandwidth / job.weights_gb.max(0.01) * speedup;
                RunInner::Sim {
                    id,
                    rx,
                    tx: tx.clone(),
                    interval: Duration::from_secs_f64(1.0 / tps),
                    prefill: Duration::from_secs_f64(f64::from(job.prompt_tokens) / (PREFILL_SPEEDUP * tps)),
                    next_at: None,
                    done: None,
                    finished: false,
                }
            }
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        Ok(Run {
            inner,
            faults: self.faults.clone(),
            active: self.active.clone(),
            started: Instant::now(),
            ready_at: None,
            first_at: None,
            left: output_tokens - 1,
            prompt_tokens: job.prompt_tokens,
            output_tokens: if job.embed { 0 } else { output_tokens },
        })
    }

    /// The node's heartbeat now (its memory, loaded models and active requests) and its cold
    /// loads so far.
    pub async fn snapshot(&self) -> (Heartbeat, u64) {
        match &self.kind {
            Kind::Simulated { tx, .. } => {
                let (reply, answer) = oneshot::channel();
                if tx.send(Msg::Snapshot(reply)).is_ok() {
                    if let Ok(snap) = answer.await {
                        return snap;
                    }
                }
                (Heartbeat::default(), 0)
            }
            Kind::Fixed { .. } => {
                // Every model on disk counts as loaded: a node with all of them preloaded.
                let disk = self.disk.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let preloaded = disk.iter().map(|(m, _)| m.clone()).collect();
                let spec = MachineSpec { disk, preloaded, ..self.spec.clone() };
                let mut hb = SimNode::new(spec, VInstant::ZERO).heartbeat(VInstant::ZERO);
                hb.ollama.requests_active = self.active.load(Ordering::Relaxed);
                (hb, 0)
            }
        }
    }

    /// The disk changed (pull, copy, create, delete). The simulated node is rebuilt with it once
    /// idle, keeping its resident models.
    pub fn set_disk(&self, disk: Vec<(ModelName, f64)>) {
        *self.disk.lock().unwrap_or_else(|e| e.into_inner()) = disk.clone();
        if let Kind::Simulated { tx, .. } = &self.kind {
            let _ = tx.send(Msg::Disk(disk));
        }
    }

    /// Unloads `model` (keep_alive 0) once the node is idle; a no-op in fixed mode.
    pub fn unload(&self, model: ModelName) {
        if let Kind::Simulated { tx, .. } = &self.kind {
            let _ = tx.send(Msg::Unload(model));
        }
    }

    /// Applies a new slowness factor to the simulated node's rates (pacing reads it directly).
    pub fn set_slow(&self, factor: f64) {
        if let Kind::Simulated { tx, .. } = &self.kind {
            let _ = tx.send(Msg::Slow(factor));
        }
    }
}

enum RunInner {
    Fixed {
        permits: Arc<Semaphore>,
        permit: Option<OwnedSemaphorePermit>,
        first: Duration,
        interval: Duration,
        /// Tokens due at once still go out one write each (see [`Timing::Fixed`]).
        flush: bool,
    },
    Sim {
        id: JobId,
        rx: mpsc::UnboundedReceiver<NodeEvent>,
        tx: mpsc::UnboundedSender<Msg>,
        interval: Duration,
        prefill: Duration,
        next_at: Option<Instant>,
        done: Option<(u32, u32)>,
        finished: bool,
    },
}

/// One admitted job. Call [`first_token`](Self::first_token) once, then
/// [`next_token`](Self::next_token) until it says no token is left, then
/// [`finish`](Self::finish). Dropping it early cancels the job and frees its slot.
pub(crate) struct Run {
    inner: RunInner,
    faults: Arc<Faults>,
    active: Arc<AtomicU32>,
    started: Instant,
    ready_at: Option<Instant>,
    first_at: Option<Instant>,
    left: u32,
    prompt_tokens: u32,
    output_tokens: u32,
}

fn failure(f: NodeFailure) -> RunError {
    match f {
        NodeFailure::Reset => RunError::Reset,
        NodeFailure::Status(s) => RunError::Status(s),
    }
}

/// Sleeps `d` unless it is zero (the benchmark's "as fast as possible").
async fn pause(d: Duration) {
    if !d.is_zero() {
        sleep(d).await;
    }
}

impl Run {
    /// Resolves when the first token is ready (model loaded, slot free, prompt evaluated).
    ///
    /// # Errors
    /// [`RunError`] when the node fails the job first.
    pub async fn first_token(&mut self) -> Result<(), RunError> {
        let slow = self.faults.slow();
        match &mut self.inner {
            RunInner::Fixed { permits, permit, first, .. } => {
                *permit = Some(permits.clone().acquire_owned().await.map_err(|_| RunError::Reset)?);
                self.ready_at = Some(Instant::now());
                pause(first.mul_f64(slow)).await;
            }
            RunInner::Sim { rx, done, .. } => loop {
                match rx.recv().await {
                    Some(NodeEvent::FirstToken { .. }) => break,
                    Some(NodeEvent::Done { prompt_tokens, completion_tokens, .. }) => {
                        *done = Some((prompt_tokens, completion_tokens));
                        break;
                    }
                    Some(NodeEvent::Failed { failure: f, .. }) => return Err(failure(f)),
                    Some(NodeEvent::Progress { .. }) => {}
                    None => return Err(RunError::Reset),
                }
            },
        }
        self.first_at = Some(Instant::now());
        Ok(())
    }

    /// Waits for the next token; `Ok(false)` when every token has been produced.
    ///
    /// # Errors
    /// [`RunError`] when the node fails the job meanwhile.
    pub async fn next_token(&mut self) -> Result<bool, RunError> {
        if self.left == 0 {
            return Ok(false);
        }
        let slow = self.faults.slow();
        match &mut self.inner {
            // A token due at once still leaves the server on its own: yielding lets hyper write
            // and flush the one before, as Ollama flushes each token it generates.
            RunInner::Fixed { interval, flush: true, .. } if interval.is_zero() => tokio::task::yield_now().await,
            RunInner::Fixed { interval, .. } => pause(interval.mul_f64(slow)).await,
            RunInner::Sim { rx, interval, next_at, done, .. } => {
                let at = next_at.unwrap_or_else(Instant::now) + interval.mul_f64(slow);
                *next_at = Some(at);
                while done.is_none() {
                    tokio::select! {
                        _ = sleep_until(at) => break,
                        ev = rx.recv() => match ev {
                            Some(NodeEvent::Done { prompt_tokens, completion_tokens, .. }) => {
                                *done = Some((prompt_tokens, completion_tokens));
                            }
                            Some(NodeEvent::Failed { failure: f, .. }) => return Err(failure(f)),
                            Some(_) => {}
                            None => return Err(RunError::Reset),
                        },
                    }
                }
            }
        }
        self.left -= 1;
        Ok(true)
    }

    /// Waits for the job's end and returns its timeline.
    ///
    /// # Errors
    /// [`RunError`] when the node fails the job instead.
    pub async fn finish(&mut self) -> Result<Timings, RunError> {
        let mut prefill_estimate = None;
        if let RunInner::Sim { rx, done, finished, prefill, .. } = &mut self.inner {
            while done.is_none() {
                match rx.recv().await {
                    Some(NodeEvent::Done { prompt_tokens, completion_tokens, .. }) => {
                        *done = Some((prompt_tokens, completion_tokens));
                    }
                    Some(NodeEvent::Failed { failure: f, .. }) => return Err(failure(f)),
                    Some(_) => {}
                    None => return Err(RunError::Reset),
                }
            }
            *finished = true;
            prefill_estimate = Some(prefill.mul_f64(self.faults.slow()));
        }
        let now = Instant::now();
        let first = self.first_at.unwrap_or(now);
        let ttft = first.saturating_duration_since(self.started);
        let (load, prompt_eval) = match (prefill_estimate, self.ready_at) {
            (Some(p), _) => (ttft.saturating_sub(p), p.min(ttft)),
            (None, Some(ready)) => {
                (ready.saturating_duration_since(self.started), first.saturating_duration_since(ready))
            }
            (None, None) => (Duration::ZERO, ttft),
        };
        self.left = 0;
        Ok(Timings {
            total: now.saturating_duration_since(self.started),
            load,
            prompt_eval,
            eval: now.saturating_duration_since(first),
            prompt_tokens: self.prompt_tokens,
            eval_count: self.output_tokens,
        })
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        if let RunInner::Sim { id, tx, finished: false, .. } = &self.inner {
            let _ = tx.send(Msg::Cancel(*id));
        }
    }
}

/// A job waiting for the node to be rebuilt with its model on disk.
type Deferred = (Job, mpsc::UnboundedSender<NodeEvent>, oneshot::Sender<Result<(), StartError>>);

/// The task that owns the simulated node.
struct Driver {
    node: SimNode,
    epoch: Instant,
    speedup: f64,
    jobs: HashMap<JobId, mpsc::UnboundedSender<NodeEvent>>,
    pending_disk: Option<Vec<(ModelName, f64)>>,
    pending_unload: Vec<ModelName>,
    deferred: Vec<Deferred>,
    cold_base: u64,
    cold_loads: Arc<AtomicU64>,
    slow: f64,
}

impl Driver {
    fn new(node: SimNode, speedup: f64, cold_loads: Arc<AtomicU64>) -> Self {
        Driver {
            node,
            epoch: Instant::now(),
            speedup,
            jobs: HashMap::new(),
            pending_disk: None,
            pending_unload: Vec::new(),
            deferred: Vec::new(),
            cold_base: 0,
            cold_loads,
            slow: 1.0,
        }
    }

    /// Virtual now: real time since the epoch times the speed-up.
    fn vnow(&self) -> VInstant {
        let real = Instant::now().saturating_duration_since(self.epoch).as_micros() as f64;
        VInstant::from_micros((real * self.speedup) as u64)
    }

    /// The real instant virtual `t` is reached (rounded up, so waking at it sees `t`).
    fn real(&self, t: VInstant) -> Instant {
        let micros = (t.as_micros() as f64 / self.speedup).ceil();
        self.epoch + Duration::from_micros(micros.min(1e15) as u64)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let deadline = self.node.poll_timeout().map(|t| self.real(t));
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let now = self.vnow();
                    self.node.handle_timeout(now);
                }
            }
            self.route_events();
            self.apply_pending();
        }
    }

    fn handle(&mut self, msg: Msg) {
        let now = self.vnow();
        match msg {
            Msg::Start { job, events, reply } => {
                let on_disk = self.node.spec().disk.iter().any(|(m, _)| *m == job.model);
                if !on_disk && self.pending_disk.is_some() {
                    self.deferred.push((job, events, reply));
                    return;
                }
                let id = job.id;
                let result = self.node.start(now, job);
                if result.is_ok() {
                    self.jobs.insert(id, events);
                }
                let _ = reply.send(result);
            }
            Msg::Cancel(id) => {
                self.node.cancel(now, id);
                self.jobs.remove(&id);
                self.deferred.retain(|(job, _, _)| job.id != id);
            }
            Msg::Slow(factor) => {
                self.slow = factor;
                self.node.inject(now, Fault::Slow(factor));
            }
            Msg::Disk(disk) => self.pending_disk = Some(disk),
            Msg::Unload(model) => self.pending_unload.push(model),
            Msg::Snapshot(reply) => {
                let _ = reply.send((self.node.heartbeat(now), self.cold_base + self.node.stats().cold_loads));
            }
        }
    }

    fn route_events(&mut self) {
        self.cold_loads.store(self.cold_base + self.node.stats().cold_loads, Ordering::Relaxed);
        while let Some(ev) = self.node.poll_event() {
            let id = ev.job();
            if let Some(tx) = self.jobs.get(&id) {
                let _ = tx.send(ev);
            }
            if matches!(ev, NodeEvent::Done { .. } | NodeEvent::Failed { .. }) {
                self.jobs.remove(&id);
            }
        }
    }

    /// Rebuilds the node for a new disk or an unload once no job is on it, keeping the resident
    /// models (minus unloaded ones), then starts jobs that waited for the new disk.
    fn apply_pending(&mut self) {
        if self.pending_disk.is_none() && self.pending_unload.is_empty() {
            return;
        }
        if self.node.job_ids().next().is_some() {
            return;
        }
        let now = self.vnow();
        let resident: Vec<ModelName> =
            self.node.heartbeat(now).ollama.models_loaded.into_iter().map(|m| m.name).collect();
        let mut spec = self.node.spec().clone();
        if let Some(disk) = self.pending_disk.take() {
            spec.disk = disk;
        }
        let unload = std::mem::take(&mut self.pending_unload);
        spec.preloaded = resident.into_iter().filter(|m| !unload.contains(m)).collect();
        self.cold_base += self.node.stats().cold_loads;
        self.node = SimNode::new(spec, now);
        if self.slow != 1.0 {
            self.node.inject(now, Fault::Slow(self.slow));
        }
        for (job, events, reply) in std::mem::take(&mut self.deferred) {
            self.handle(Msg::Start { job, events, reply });
        }
        self.route_events();
    }
}
