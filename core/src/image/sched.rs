//! Where an image job runs: the fleet's image backends, what each has loaded and queued, how long
//! each takes per image (learned from what it did, with a prior from steps and pixels), and the
//! ranking of candidates for a job, explainable line by line.
//!
//! The rules (issue 13):
//! - a backend whose model is loaded comes first;
//! - then the least expected time: the wait behind the jobs it already runs or queues (at its own
//!   concurrency), the model's load when it must load it, and the job itself;
//! - a backend that is down, does not offer the model, was already tried, whose own queue is full
//!   (it would answer 429), or whose free VRAM cannot take a model it must load, is eliminated,
//!   with the reason kept for `/fleet/explain`;
//! - the reaper's deadline for an attempt follows from the learned time per image.
//!
//! Pure and deterministic: no clocks (durations come in as seconds), no hash-map iteration (every
//! map is a `BTreeMap`), ties broken by machine name, then backend id.

use std::collections::BTreeMap;
use std::time::Duration;

use super::backend::ImageBackendKind;

/// A backend's identity in the image fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub u32);

/// What the router knows of one image backend (from `--image-node` or a node's heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendInfo {
    /// The machine's name (the node it runs on, or the `--image-node` URL's host).
    pub machine: String,
    /// Which server.
    pub kind: ImageBackendKind,
    /// The models it offers, by its own names.
    pub models: Vec<String>,
    /// The model it has in memory, when it says (`None`: it does not say).
    pub loaded: Option<String>,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Jobs its own queue holds beyond those (sd-server's `max_queue_size`); more is a 429.
    /// `None`: unbounded or unknown.
    pub queue_limit: Option<u32>,
    /// Free VRAM, MB, when known.
    pub vram_free_mb: Option<u64>,
    /// Model sizes, MB, when known.
    pub model_mb: BTreeMap<String, u64>,
    /// Whether it answered its last probe.
    pub up: bool,
}

impl BackendInfo {
    /// A backend of `kind` on `machine` offering `models`, up, at its kind's usual concurrency
    /// (one job at a time), nothing else known.
    pub fn new(machine: &str, kind: ImageBackendKind, models: &[&str]) -> Self {
        BackendInfo {
            machine: machine.to_string(),
            kind,
            models: models.iter().map(|m| (*m).to_string()).collect(),
            loaded: None,
            concurrency: 1,
            queue_limit: None,
            vram_free_mb: None,
            model_mb: BTreeMap::new(),
            up: true,
        }
    }

    fn offers(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }
}

/// The scheduler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSchedConfig {
    /// Prior seconds per sampling step per megapixel, before a backend has been timed (about an
    /// SDXL-class model on a mid-range GPU).
    pub prior_s_per_step_mp: f64,
    /// Steps assumed when the client names none.
    pub default_steps: u32,
    /// Seconds to load a model the backend does not have loaded.
    pub load_s: f64,
    /// Weight of the newest observation in the learned time (exponential moving average).
    pub learn_rate: f64,
    /// The reaper's deadline is this many times the expected time...
    pub deadline_factor: f64,
    /// ...but never shorter than this...
    pub min_deadline: Duration,
    /// ...nor longer than this.
    pub max_deadline: Duration,
}

impl Default for ImageSchedConfig {
    fn default() -> Self {
        ImageSchedConfig {
            prior_s_per_step_mp: 0.15,
            default_steps: 20,
            load_s: 20.0,
            learn_rate: 0.3,
            deadline_factor: 4.0,
            min_deadline: Duration::from_secs(60),
            max_deadline: Duration::from_secs(900),
        }
    }
}

/// The shape of a job, as far as scheduling cares.
#[derive(Debug, Clone, PartialEq)]
pub struct JobShape {
    /// The model asked for.
    pub model: String,
    /// Pixels per image.
    pub pixels: u64,
    /// Steps, when the client named them.
    pub steps: Option<u32>,
    /// Images.
    pub n: u32,
}

impl JobShape {
    /// The shape of `job`.
    pub fn of(job: &super::ImageJob) -> Self {
        JobShape { model: job.model.clone(), pixels: job.pixels(), steps: job.steps, n: job.n }
    }

    fn work(&self, cfg: &ImageSchedConfig) -> f64 {
        // Steps × megapixels: what the time per image scales with.
        f64::from(self.steps.unwrap_or(cfg.default_steps).max(1)) * (self.pixels as f64 / 1_048_576.0).max(1e-3)
    }
}

/// Why a backend cannot take a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Elimination {
    /// It did not answer its last probe.
    Down,
    /// It does not offer the model.
    NoModel,
    /// An earlier attempt of this job failed there.
    Tried,
    /// Its own queue is full: it would answer 429.
    QueueFull {
        /// Jobs it has.
        jobs: u32,
        /// Jobs it takes.
        max: u32,
    },
    /// It must load the model and its free VRAM cannot hold it.
    DoesNotFit {
        /// The model, MB.
        need_mb: u64,
        /// Free VRAM, with what it would unload, MB.
        free_mb: u64,
    },
}

impl Elimination {
    /// A short reason, for explain and traces.
    pub fn as_str(&self) -> &'static str {
        match self {
            Elimination::Down => "down",
            Elimination::NoModel => "model_not_offered",
            Elimination::Tried => "already_tried",
            Elimination::QueueFull { .. } => "queue_full",
            Elimination::DoesNotFit { .. } => "vram_does_not_fit",
        }
    }
}

/// One backend that can take the job, with the times that rank it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The backend.
    pub backend: BackendId,
    /// Its machine.
    pub machine: String,
    /// Whether the model is loaded there (known to be).
    pub loaded: bool,
    /// Expected seconds waiting behind its other jobs.
    pub wait_s: f64,
    /// Expected seconds loading the model.
    pub load_s: f64,
    /// Expected seconds generating the job's images.
    pub run_s: f64,
    /// Whether `run_s` comes from this backend's own timings (else the prior).
    pub learned: bool,
}

impl Candidate {
    /// Expected seconds until the job's answer.
    pub fn total_s(&self) -> f64 {
        self.wait_s + self.load_s + self.run_s
    }
}

/// The ranking of a job: candidates best first, and the backends eliminated with why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ranking {
    /// Best first.
    pub candidates: Vec<Candidate>,
    /// The others, in backend order.
    pub eliminated: Vec<(BackendId, String, Elimination)>,
}

#[derive(Debug, Clone)]
struct Backend {
    info: BackendInfo,
    /// Whether its machine is reachable (a node that went offline takes its servers along).
    reachable: bool,
    in_flight: u32,
    /// Learned seconds per step-megapixel, per model.
    learned: BTreeMap<String, f64>,
}

/// The fleet's image backends and their load.
#[derive(Debug, Clone, Default)]
pub struct ImageFleet {
    backends: BTreeMap<BackendId, Backend>,
    by_key: BTreeMap<(String, ImageBackendKind), BackendId>,
    next: u32,
}

impl ImageFleet {
    /// An empty fleet.
    pub fn new() -> Self {
        ImageFleet::default()
    }

    /// Adds a backend, or updates the one of the same machine and kind (its load and learned
    /// times are kept). Returns its id.
    pub fn upsert(&mut self, info: BackendInfo) -> BackendId {
        let key = (info.machine.clone(), info.kind);
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(b) = self.backends.get_mut(&id) {
                b.info = info;
            }
            return id;
        }
        let id = BackendId(self.next);
        self.next += 1;
        self.by_key.insert(key, id);
        self.backends.insert(id, Backend { info, reachable: true, in_flight: 0, learned: BTreeMap::new() });
        id
    }

    /// Makes `machine`'s servers the ones in `infos` (from its latest report): each is upserted
    /// (reachable again), and its servers no longer reported are forgotten.
    pub fn sync_machine(&mut self, machine: &str, infos: Vec<BackendInfo>) {
        let kinds: Vec<ImageBackendKind> = infos.iter().map(|i| i.kind).collect();
        let stale: Vec<BackendId> =
            self.by_key.iter().filter(|((m, k), _)| m == machine && !kinds.contains(k)).map(|(_, &id)| id).collect();
        for id in stale {
            self.remove(id);
        }
        for info in infos.into_iter().filter(|i| i.machine == machine) {
            let id = self.upsert(info);
            if let Some(b) = self.backends.get_mut(&id) {
                b.reachable = true;
            }
        }
    }

    /// Marks every server of `machine` reachable or not (its node came back or went offline).
    pub fn set_machine_reachable(&mut self, machine: &str, reachable: bool) {
        for b in self.backends.values_mut().filter(|b| b.info.machine == machine) {
            b.reachable = reachable;
        }
    }

    /// Marks a backend up or down (a probe answered or not).
    pub fn set_up(&mut self, id: BackendId, up: bool) {
        if let Some(b) = self.backends.get_mut(&id) {
            b.info.up = up;
        }
    }

    /// Forgets a backend.
    pub fn remove(&mut self, id: BackendId) {
        if let Some(b) = self.backends.remove(&id) {
            self.by_key.remove(&(b.info.machine, b.info.kind));
        }
    }

    /// A backend's facts.
    pub fn info(&self, id: BackendId) -> Option<&BackendInfo> {
        self.backends.get(&id).map(|b| &b.info)
    }

    /// Every backend, in id order.
    pub fn backends(&self) -> impl Iterator<Item = (BackendId, &BackendInfo, u32)> {
        self.backends.iter().map(|(&id, b)| (id, &b.info, b.in_flight))
    }

    /// Whether a backend is up and its machine reachable.
    pub fn available(&self, id: BackendId) -> bool {
        self.backends.get(&id).is_some_and(|b| b.info.up && b.reachable)
    }

    /// Whether some backend (up or not) offers `model`.
    pub fn model_known(&self, model: &str) -> bool {
        self.backends.values().any(|b| b.info.offers(model))
    }

    /// Ranks the backends for `job`, leaving out `tried`.
    pub fn rank(&self, job: &JobShape, tried: &[BackendId], cfg: &ImageSchedConfig) -> Ranking {
        let mut r = Ranking::default();
        for (&id, b) in &self.backends {
            let info = &b.info;
            let out = |e: Elimination| (id, info.machine.clone(), e);
            if !info.offers(&job.model) {
                r.eliminated.push(out(Elimination::NoModel));
                continue;
            }
            if !info.up || !b.reachable {
                r.eliminated.push(out(Elimination::Down));
                continue;
            }
            if tried.contains(&id) {
                r.eliminated.push(out(Elimination::Tried));
                continue;
            }
            let concurrency = info.concurrency.max(1);
            if let Some(q) = info.queue_limit {
                let max = concurrency.saturating_add(q);
                if b.in_flight >= max {
                    r.eliminated.push(out(Elimination::QueueFull { jobs: b.in_flight, max }));
                    continue;
                }
            }
            let loaded = info.loaded.as_deref() == Some(job.model.as_str());
            if b.must_load(&job.model) {
                if let (Some(&need_mb), Some(free)) = (info.model_mb.get(&job.model), info.vram_free_mb) {
                    let unloaded = info.loaded.as_ref().and_then(|l| info.model_mb.get(l)).copied().unwrap_or(0);
                    let free_mb = free.saturating_add(unloaded);
                    if need_mb > free_mb {
                        r.eliminated.push(out(Elimination::DoesNotFit { need_mb, free_mb }));
                        continue;
                    }
                }
            }
            let e = b.expect(job, cfg);
            // Jobs ahead beyond its concurrency wait, each about as long as this one per image.
            let ahead = b.in_flight.saturating_add(1).saturating_sub(concurrency);
            let wait_s = f64::from(ahead) / f64::from(concurrency) * e.per_image_s;
            let (load_s, run_s, learned) = (e.load_s, e.run_s, e.learned);
            r.candidates.push(Candidate {
                backend: id,
                machine: info.machine.clone(),
                loaded,
                wait_s,
                load_s,
                run_s,
                learned,
            });
        }
        r.candidates.sort_by(|a, b| {
            b.loaded
                .cmp(&a.loaded)
                .then(a.total_s().total_cmp(&b.total_s()))
                .then_with(|| a.machine.cmp(&b.machine))
                .then(a.backend.cmp(&b.backend))
        });
        r
    }

    /// A job started on `id`.
    pub fn started(&mut self, id: BackendId) {
        if let Some(b) = self.backends.get_mut(&id) {
            b.in_flight = b.in_flight.saturating_add(1);
        }
    }

    /// A job on `id` ended without images (failed or cancelled).
    pub fn ended(&mut self, id: BackendId) {
        if let Some(b) = self.backends.get_mut(&id) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }

    /// A job on `id` finished in `secs`: it frees its place, the backend now has the job's model
    /// loaded, and the time per step-megapixel is learned.
    pub fn finished(&mut self, id: BackendId, job: &JobShape, secs: f64, cfg: &ImageSchedConfig) {
        let Some(b) = self.backends.get_mut(&id) else { return };
        b.in_flight = b.in_flight.saturating_sub(1);
        b.info.loaded = Some(job.model.clone());
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let observed = secs / (job.work(cfg) * f64::from(job.n.max(1)));
        let rate = cfg.learn_rate.clamp(0.0, 1.0);
        let learned = b.learned.entry(job.model.clone()).or_insert(observed);
        *learned += rate * (observed - *learned);
    }

    /// How long an attempt of `job` on `id` may run before the reaper ends it: the expected load
    /// and generation times there, times `deadline_factor`, within the configured bounds.
    pub fn deadline(&self, id: BackendId, job: &JobShape, cfg: &ImageSchedConfig) -> Duration {
        let expected = match self.backends.get(&id) {
            Some(b) => {
                let e = b.expect(job, cfg);
                e.load_s + e.run_s
            }
            None => cfg.prior_s_per_step_mp * job.work(cfg) * f64::from(job.n.max(1)) + cfg.load_s,
        };
        let secs =
            (expected * cfg.deadline_factor).clamp(cfg.min_deadline.as_secs_f64(), cfg.max_deadline.as_secs_f64());
        Duration::from_secs_f64(secs)
    }
}

/// A backend's expected times for a job.
struct Expect {
    per_image_s: f64,
    run_s: f64,
    load_s: f64,
    learned: bool,
}

impl Backend {
    fn must_load(&self, model: &str) -> bool {
        self.info.loaded.as_ref().is_some_and(|l| l != model)
    }

    fn expect(&self, job: &JobShape, cfg: &ImageSchedConfig) -> Expect {
        let (per_work, learned) = match self.learned.get(&job.model) {
            Some(&s) => (s, true),
            None => (cfg.prior_s_per_step_mp, false),
        };
        let per_image_s = per_work * job.work(cfg);
        Expect {
            per_image_s,
            run_s: per_image_s * f64::from(job.n.max(1)),
            load_s: if self.must_load(&job.model) { cfg.load_s } else { 0.0 },
            learned,
        }
    }
}

/// Whether an image attempt that failed this way, before the client got a byte, is worth another
/// backend: a connection that failed, a timeout, a 429 (queue full) and a 5xx are; any other status
/// is the request's own fault and is answered as it is.
pub fn retryable(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s == 429 || s == 408 || (500..=599).contains(&s),
    }
}
