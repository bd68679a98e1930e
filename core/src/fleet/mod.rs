//! The fleet registry: one entry per node, built from its reports, with liveness from the time
//! since the last report. It owns node status transitions, the "warm" tier (when a model left a
//! node's memory) and forgetting nodes that have been offline too long.

pub mod address;
pub mod heartbeat;
pub mod ollama_state;
pub mod version;
pub mod views;

use crate::config::FleetConfig;
use crate::ids::{ModelName, NodeId};
use crate::model;
use crate::time::Instant;
use heartbeat::{Heartbeat, LoadedModel, ModelMeta, Pressure, Report};
use std::collections::BTreeMap;
use std::time::Duration;

const GB: f64 = 1e9;

/// Most models whose first sighting the registry remembers (for `/api/tags`' `modified_at` when
/// a node does not tell it). Past this, models no node lists any more are forgotten first.
pub const MAX_FIRST_SEEN: usize = 16_384;

/// A node's liveness.
///
/// ```text
///             report                      silence > degraded_after
///   (new) ──────────────▶ Online ─────────────────────────────▶ Degraded
///                           ▲  ▲                                    │
///                    report │  └───────────── report ───────────────┤
///                           │                                       │ silence > offline_after
///       Draining ◀── drain ─┴── (any state) ...                     ▼
///           │  silence > offline_after                           Offline ── silence > forget_after ──▶ (forgotten)
///           └───────────────────────────────────────────────────────▲
/// ```
/// Online and Degraded nodes are routable; Offline and Draining ones are not.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeStatus {
    /// Reporting on time.
    Online,
    /// Late, still routable.
    Degraded,
    /// Silent too long.
    Offline,
    /// Shutting down: no new work.
    Draining,
}

impl NodeStatus {
    /// Lower-case name for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Online => "online",
            NodeStatus::Degraded => "degraded",
            NodeStatus::Offline => "offline",
            NodeStatus::Draining => "draining",
        }
    }
}

/// Whether a model is in memory on a node (reference signal 1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Temperature {
    /// Not on this node at all.
    Absent,
    /// On disk only.
    Cold,
    /// Left memory recently.
    Warm,
    /// Loaded.
    Hot,
}

/// What a node knows about one of its models, indexed once per report so that a scoring
/// decision does one lookup per node instead of scanning lists.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    loaded: Option<usize>,
    /// Weight size, GB (reference §2.4 order: on-disk size, loaded size, name, 100).
    pub size_gb: f64,
    /// Memory a load needs: the resident size when loaded, else the weights.
    pub fit_cost_gb: f64,
    /// The loaded window, when loaded and known.
    pub resident_ctx: Option<u32>,
    /// Ollama runs this model one request at a time.
    pub serial: bool,
    unloaded_at: Option<Instant>,
}

impl ModelEntry {
    /// Whether the model is in memory.
    pub fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }

    /// Hot, warm or cold (an entry exists, so never absent).
    pub fn temperature(&self, now: Instant, warm_window: Duration) -> Temperature {
        if self.loaded.is_some() {
            Temperature::Hot
        } else if self.unloaded_at.is_some_and(|t| now.saturating_since(t) < warm_window) {
            Temperature::Warm
        } else {
            Temperature::Cold
        }
    }
}

/// One machine in the fleet.
#[derive(Clone, Debug)]
pub struct Node {
    id: NodeId,
    status: NodeStatus,
    first_seen: Instant,
    last_report: Instant,
    report: Heartbeat,
    meta: BTreeMap<ModelName, ModelMeta>,
    unloaded_at: BTreeMap<ModelName, Instant>,
    /// Sorted by (key, name): one binary search over integers per lookup.
    models: Vec<(u64, ModelName, ModelEntry)>,
    free_gb: f64,
    /// Distinct models in memory.
    loaded_count: u32,
    /// Weight size of the smallest model in memory, GB.
    smallest_loaded_gb: Option<f64>,
    /// `OLLAMA_MAX_LOADED_MODELS` as reported, else the configured default.
    hot_cap: u32,
    origin: Origin,
    /// Drained by the operator: heartbeats keep it draining until undrained or restarted.
    held: bool,
}

/// Who reports a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An agent on the machine, over `POST /heartbeat`.
    Agent,
    /// The router's own poller of a `--node` URL: trusted by construction, and the only source
    /// that may change the node.
    Static,
}

impl Node {
    /// Core's id for this node.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The node's own name (`node_id` in its heartbeat).
    pub fn name(&self) -> &str {
        &self.report.node_id
    }
    /// Liveness.
    pub fn status(&self) -> NodeStatus {
        self.status
    }
    /// When the first report arrived.
    pub fn first_seen(&self) -> Instant {
        self.first_seen
    }
    /// When the last report arrived (router time).
    pub fn last_report(&self) -> Instant {
        self.last_report
    }
    /// The latest heartbeat.
    pub fn report(&self) -> &Heartbeat {
        &self.report
    }
    /// Who reports this node.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether new work may go here (status and Ollama reachability; the breaker is separate).
    pub fn routable(&self) -> bool {
        matches!(self.status, NodeStatus::Online | NodeStatus::Degraded) && self.report.ollama.reachable != Some(false)
    }
    /// The node's Ollama version, as its last report gave it ([`version::OllamaVersion::UNKNOWN`]
    /// when it gave none).
    pub fn ollama_version(&self) -> version::OllamaVersion {
        version::OllamaVersion::parse(&self.report.ollama.version)
    }
    /// Ollama metadata for a model, carried forward across `null` reports.
    pub fn meta(&self, model: &ModelName) -> Option<&ModelMeta> {
        self.meta.get(model)
    }
    /// The model's index entry, if the node has it loaded or on disk.
    pub fn entry(&self, model: &ModelName) -> Option<&ModelEntry> {
        self.entry_by_key(model.key(), model)
    }
    /// [`Node::entry`] with the name's [`ModelName::key`] computed once by the caller.
    pub fn entry_by_key(&self, key: u64, model: &ModelName) -> Option<&ModelEntry> {
        let start = self.models.partition_point(|(k, _, _)| *k < key);
        self.models[start..].iter().take_while(|(k, _, _)| *k == key).find(|(_, n, _)| n == model).map(|(_, _, e)| e)
    }
    /// Every model this node has (loaded or on disk).
    pub fn models(&self) -> impl Iterator<Item = (&ModelName, &ModelEntry)> {
        self.models.iter().map(|(_, n, e)| (n, e))
    }
    /// The loaded copy of a model, if any (the largest when loaded twice).
    pub fn loaded(&self, model: &ModelName) -> Option<&LoadedModel> {
        self.entry(model).and_then(|e| e.loaded).map(|i| &self.report.ollama.models_loaded[i])
    }
    /// Whether the model is loaded or on disk here.
    pub fn has_model(&self, model: &ModelName) -> bool {
        self.entry(model).is_some()
    }
    /// Hot, warm, cold or absent.
    pub fn temperature(&self, model: &ModelName, now: Instant, warm_window: Duration) -> Temperature {
        self.entry(model).map_or(Temperature::Absent, |e| e.temperature(now, warm_window))
    }
    /// Memory bandwidth, GB/s; 0 when unknown.
    pub fn bandwidth_gbps(&self) -> f64 {
        self.report.memory_bandwidth_gbps
    }
    /// Total RAM, GB.
    pub fn ram_total_gb(&self) -> f64 {
        self.report.memory.total_gb
    }
    /// Whether the node reports its memory at all (RAM total or GPUs). A static node (an Ollama
    /// server the router polls itself) does not: memory then neither refuses a cold load nor
    /// bounds concurrency; Ollama decides, and `OLLAMA_NUM_PARALLEL` as configured is the limit.
    pub fn memory_known(&self) -> bool {
        self.report.memory.total_gb > 0.0 || !self.report.gpus.is_empty()
    }
    /// Whether the node reports discrete GPUs.
    pub fn has_gpus(&self) -> bool {
        !self.report.gpus.is_empty()
    }
    /// Memory a new model can be loaded into, GB: free VRAM on GPU nodes (ollama-herd looked
    /// only at system RAM), available RAM otherwise; capped by the capacity learner's ceiling.
    pub fn free_memory_gb(&self) -> f64 {
        self.free_gb
    }
    /// How many models Ollama keeps in memory at once here: the node's reported
    /// `OLLAMA_MAX_LOADED_MODELS`, else `fleet.default_max_loaded_models` (ollama-herd's
    /// `hot_model_cap`; Ollama's own default is 3 per GPU). Loading one more evicts one.
    pub fn hot_model_cap(&self) -> u32 {
        self.hot_cap
    }
    /// Distinct models in memory now.
    pub fn models_loaded_count(&self) -> u32 {
        self.loaded_count
    }
    /// Models that can still be loaded without evicting one: `max(0, cap − loaded)`, as
    /// ollama-herd's `free_slots`.
    pub fn free_slots(&self) -> u32 {
        self.hot_cap.saturating_sub(self.loaded_count)
    }
    /// Weight size of the smallest model in memory, GB; `None` when nothing is loaded. A load
    /// on a node with no [`Node::free_slots`] evicts a resident model, which costs at least this
    /// much to load again.
    pub fn smallest_loaded_gb(&self) -> Option<f64> {
        self.smallest_loaded_gb
    }
    /// Memory pressure.
    pub fn pressure(&self) -> Pressure {
        self.report.memory.pressure
    }
    /// `OLLAMA_NUM_PARALLEL`, 1 when unreported (reference §4.2).
    pub fn num_parallel(&self) -> u32 {
        self.report.ollama.num_parallel.max(1)
    }
    /// Weight size of a model on this node, GB (reference §2.4): reported on-disk size, loaded
    /// size, name heuristic, else [`model::UNKNOWN_SIZE_GB`].
    pub fn model_size_gb(&self, model: &ModelName) -> f64 {
        self.entry(model)
            .map_or_else(|| model::size_from_name_gb(model).unwrap_or(model::UNKNOWN_SIZE_GB), |e| e.size_gb)
    }
    /// Memory a load would need: the resident size if loaded, else the weights.
    pub fn fit_cost_gb(&self, model: &ModelName) -> f64 {
        self.entry(model).map_or_else(|| self.model_size_gb(model), |e| e.fit_cost_gb)
    }
    /// Rebuilds the per-model index and cached figures from the latest report.
    fn reindex(&mut self) {
        let o = &self.report.ollama;
        let free = if self.report.gpus.is_empty() {
            self.report.memory.available_gb
        } else {
            self.report.gpus.iter().map(|g| g.vram_free_bytes as f64).sum::<f64>() / GB
        };
        self.free_gb = match &self.report.capacity {
            Some(c) if c.ceiling_gb > 0.0 => free.min(c.ceiling_gb),
            _ => free,
        };
        let mut models: Vec<(u64, ModelName, ModelEntry)> = Vec::new();
        let mut names: Vec<&ModelName> =
            o.models_loaded.iter().map(|m| &m.name).chain(o.models_available.iter()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let loaded = o
                .models_loaded
                .iter()
                .enumerate()
                .filter(|(_, m)| &m.name == name)
                .max_by(|a, b| a.1.size_gb.total_cmp(&b.1.size_gb))
                .map(|(i, _)| i);
            let lm = loaded.map(|i| &o.models_loaded[i]);
            let size_gb = o
                .models_available_sizes
                .get(name)
                .copied()
                .filter(|&s| s > 0.0)
                .or_else(|| lm.map(|l| l.size_gb).filter(|&s| s > 0.0))
                .or_else(|| model::size_from_name_gb(name))
                .unwrap_or(model::UNKNOWN_SIZE_GB);
            let fit_cost_gb = lm.map(|l| l.size_gb).filter(|&s| s > 0.0).unwrap_or(size_gb);
            let entry = ModelEntry {
                loaded,
                size_gb,
                fit_cost_gb,
                resident_ctx: lm.map(|l| l.context_length).filter(|&c| c > 0),
                serial: model::is_serial(self.meta.get(name)),
                unloaded_at: self.unloaded_at.get(name).copied(),
            };
            models.push((name.key(), name.clone(), entry));
        }
        models.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let loaded = models.iter().filter(|(_, _, e)| e.is_loaded());
        self.loaded_count = u32::try_from(loaded.clone().count()).unwrap_or(u32::MAX);
        self.smallest_loaded_gb = loaded.map(|(_, _, e)| e.size_gb).min_by(f64::total_cmp);
        self.models = models;
    }
    /// Capacity learner's availability score, if reported.
    pub fn availability(&self) -> Option<f64> {
        self.report.capacity.as_ref().map(|c| c.availability_score)
    }
    /// Whether the capacity learner has paused this node.
    pub fn capacity_paused(&self) -> bool {
        self.report
            .capacity
            .as_ref()
            .is_some_and(|c| c.mode == "paused" || c.mode == "bootstrap" || c.availability_score < 0.2)
    }
}

/// What a report changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The node.
    pub node: NodeId,
    /// Whether this report created it.
    pub new: bool,
    /// The status before, if it existed.
    pub previous: Option<NodeStatus>,
    /// The status now.
    pub status: NodeStatus,
}

/// A status change from the passage of time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// The node.
    pub node: NodeId,
    /// Its name.
    pub name: String,
    /// Before.
    pub from: NodeStatus,
    /// After; `None` = forgotten.
    pub to: Option<NodeStatus>,
}

/// Why a report was refused by the registry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Another live machine already uses this node id.
    #[error("node id {0:?} is in use by another machine")]
    NodeIdConflict(String),
    /// The node id belongs to a live machine that identified itself (`machine_id`); a report
    /// without an identity cannot take it over.
    #[error("node id {0:?} is in use by a machine that sends a machine_id; this report has none")]
    MissingMachineId(String),
    /// The node id is one of the router's own static nodes (`--node`), which only the router's
    /// poller reports.
    #[error("node id {0:?} is a static node of this router (--node); heartbeats cannot change it")]
    StaticNode(String),
    /// The registry is full.
    #[error("the fleet already has {0} nodes")]
    TooManyNodes(usize),
    /// The report did not present the fleet key the router requires.
    #[error("node {0:?} did not present the fleet key")]
    BadFleetKey(String),
    /// A drain for a node the registry does not know.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
}

impl FleetError {
    /// The HTTP status a refused report is answered with: 401 without the fleet key, 409 for a
    /// node id that belongs to someone else, 404 for a drain of an unknown node, 503 when full.
    pub fn http_status(&self) -> u16 {
        match self {
            FleetError::BadFleetKey(_) => 401,
            FleetError::NodeIdConflict(_) | FleetError::MissingMachineId(_) | FleetError::StaticNode(_) => 409,
            FleetError::UnknownNode(_) => 404,
            FleetError::TooManyNodes(_) => 503,
        }
    }
}

/// The registry.
#[derive(Clone, Debug)]
pub struct Fleet {
    config: FleetConfig,
    nodes: BTreeMap<NodeId, Node>,
    by_name: BTreeMap<String, NodeId>,
    next_id: u32,
    median_bw: f64,
    next_deadline: Option<Instant>,
    /// When each model was first listed by any node, bounded by [`MAX_FIRST_SEEN`].
    first_seen: BTreeMap<ModelName, Instant>,
}

impl Fleet {
    /// An empty registry.
    pub fn new(config: FleetConfig) -> Self {
        Fleet {
            config,
            nodes: BTreeMap::new(),
            by_name: BTreeMap::new(),
            next_id: 0,
            median_bw: 0.0,
            next_deadline: None,
            first_seen: BTreeMap::new(),
        }
    }

    /// Applies one parsed report received at `now`.
    ///
    /// # Errors
    /// [`FleetError`] when the report is refused; the registry is then unchanged.
    pub fn handle_report(&mut self, now: Instant, report: Report) -> Result<Registered, FleetError> {
        let r = self.apply_report(now, report);
        self.median_bw = self.compute_median_bandwidth();
        self.next_deadline = self.compute_next_deadline();
        r
    }

    fn apply_report(&mut self, now: Instant, report: Report) -> Result<Registered, FleetError> {
        match report {
            Report::Drain { node_id, fleet_key, machine_id } => {
                if !self.key_ok(fleet_key.as_deref()) {
                    return Err(FleetError::BadFleetKey(node_id));
                }
                let id = *self.by_name.get(&node_id).ok_or_else(|| FleetError::UnknownNode(node_id.clone()))?;
                let node = self.nodes.get_mut(&id).expect("by_name and nodes agree");
                if node.origin == Origin::Static {
                    return Err(FleetError::StaticNode(node_id));
                }
                match (&node.report.machine_id, &machine_id) {
                    (Some(old), Some(new)) if old != new => return Err(FleetError::NodeIdConflict(node_id)),
                    (Some(_), None) => return Err(FleetError::MissingMachineId(node_id)),
                    _ => {}
                }
                // The node is going down by itself: when it comes back it is a new start, and an
                // operator's drain does not outlive it.
                node.held = false;
                Ok(self.set_draining(now, id))
            }
            Report::AdminDrain { node_id } => {
                let id = *self.by_name.get(&node_id).ok_or(FleetError::UnknownNode(node_id))?;
                self.nodes.get_mut(&id).expect("by_name and nodes agree").held = true;
                Ok(self.set_draining(now, id))
            }
            Report::AdminUndrain { node_id } => {
                let id = *self.by_name.get(&node_id).ok_or(FleetError::UnknownNode(node_id))?;
                let node = self.nodes.get_mut(&id).expect("by_name and nodes agree");
                let previous = node.status;
                node.held = false;
                if node.status == NodeStatus::Draining {
                    // Routable again at once; the timers take it from its last report as usual.
                    node.status = NodeStatus::Online;
                }
                Ok(Registered { node: id, new: false, previous: Some(previous), status: node.status })
            }

            Report::Heartbeat(hb) => {
                if !self.key_ok(hb.fleet_key.as_deref()) {
                    return Err(FleetError::BadFleetKey(hb.node_id));
                }
                self.heartbeat(now, *hb, Origin::Agent)
            }
            Report::Static(hb) => self.heartbeat(now, *hb, Origin::Static),
        }
    }

    fn set_draining(&mut self, now: Instant, id: NodeId) -> Registered {
        let node = self.nodes.get_mut(&id).expect("by_name and nodes agree");
        let previous = node.status;
        node.status = NodeStatus::Draining;
        node.last_report = now;
        Registered { node: id, new: false, previous: Some(previous), status: NodeStatus::Draining }
    }

    /// Whether a presented fleet key is acceptable: any when none is configured, else equal
    /// (compared without an early exit, so timing does not reveal how much matched).
    fn key_ok(&self, presented: Option<&str>) -> bool {
        let Some(want) = &self.config.fleet_key else { return true };
        let Some(got) = presented else { return false };
        crate::secret::same_secret(got.as_bytes(), want.as_bytes())
    }

    /// Applies a heartbeat whose key (if any is needed) was checked.
    fn heartbeat(&mut self, now: Instant, hb: Heartbeat, origin: Origin) -> Result<Registered, FleetError> {
        let r = self.apply_heartbeat(now, hb, origin)?;
        self.note_seen(now, r.node);
        Ok(r)
    }

    /// Remembers when each model this node lists was first listed by any node.
    fn note_seen(&mut self, now: Instant, id: NodeId) {
        let Some(node) = self.nodes.get(&id) else { return };
        let mut pruned = false;
        for (name, _) in node.models() {
            if self.first_seen.contains_key(name) {
                continue;
            }
            if self.first_seen.len() >= MAX_FIRST_SEEN {
                if pruned {
                    continue;
                }
                // Full: forget the models no node lists now, once per report.
                pruned = true;
                let nodes = &self.nodes;
                self.first_seen.retain(|m, _| nodes.values().any(|n| n.has_model(m)));
                if self.first_seen.len() >= MAX_FIRST_SEEN {
                    continue;
                }
            }
            self.first_seen.insert(name.clone(), now);
        }
    }

    /// When a node first listed `model` (on disk or loaded), as far as this registry remembers:
    /// stable for as long as the router runs, the `modified_at` of a model whose node did not
    /// report one (ollama-herd's rule).
    pub fn first_seen(&self, model: &ModelName) -> Option<Instant> {
        self.first_seen.get(model).copied()
    }

    fn apply_heartbeat(&mut self, now: Instant, mut hb: Heartbeat, origin: Origin) -> Result<Registered, FleetError> {
        let max_text = self.config.max_model_name_bytes;
        let default_cap = self.config.default_max_loaded_models;
        for m in &mut hb.ollama.models_loaded {
            m.bound(max_text);
        }
        let mut meta_update = hb.ollama.models_available_meta.take();
        for meta in meta_update.iter_mut().flat_map(|m| m.values_mut()) {
            meta.bound(max_text);
        }
        let hot_cap = if hb.ollama.max_loaded_models > 0 { hb.ollama.max_loaded_models } else { default_cap };
        let Some(&id) = self.by_name.get(&hb.node_id) else {
            if self.nodes.len() >= self.config.max_nodes {
                return Err(FleetError::TooManyNodes(self.nodes.len()));
            }
            let id = NodeId(self.next_id);
            self.next_id += 1;
            self.by_name.insert(hb.node_id.clone(), id);
            let node = Node {
                id,
                status: NodeStatus::Online,
                first_seen: now,
                last_report: now,
                meta: meta_update.unwrap_or_default(),
                report: hb,
                unloaded_at: BTreeMap::new(),
                models: Vec::new(),
                free_gb: 0.0,
                loaded_count: 0,
                smallest_loaded_gb: None,
                hot_cap,
                origin,
                held: false,
            };
            let mut node = node;
            node.reindex();
            self.nodes.insert(id, node);
            return Ok(Registered { node: id, new: true, previous: None, status: NodeStatus::Online });
        };
        let node = self.nodes.get_mut(&id).expect("by_name and nodes agree");
        match (origin, node.origin) {
            // The router's own poller always wins: a static node is trusted by construction,
            // even over an agent that claimed its id first.
            (Origin::Static, _) => {}
            (Origin::Agent, Origin::Static) => return Err(FleetError::StaticNode(hb.node_id)),
            // Another machine may take an id over only once its holder is offline; a report with
            // no identity never takes over an id that was registered with one.
            (Origin::Agent, Origin::Agent) => match (&node.report.machine_id, &hb.machine_id) {
                (Some(old), Some(new)) if old != new && node.status != NodeStatus::Offline => {
                    return Err(FleetError::NodeIdConflict(hb.node_id))
                }
                (Some(_), None) => return Err(FleetError::MissingMachineId(hb.node_id)),
                _ => {}
            },
        }
        node.origin = origin;
        // Warm tier: every model that left memory since the last report.
        for old in &node.report.ollama.models_loaded {
            if !hb.ollama.models_loaded.iter().any(|m| m.name == old.name) {
                node.unloaded_at.insert(old.name.clone(), now);
            }
        }
        for m in &hb.ollama.models_loaded {
            node.unloaded_at.remove(&m.name);
        }
        let warm = self.config.warm_window;
        node.unloaded_at.retain(|_, &mut t| now.saturating_since(t) < warm);
        if let Some(meta) = meta_update {
            node.meta = meta;
        }
        let previous = node.status;
        node.report = hb;
        node.hot_cap = hot_cap;
        node.last_report = now;
        // An operator's drain holds over heartbeats.
        node.status = if node.held { NodeStatus::Draining } else { NodeStatus::Online };
        node.reindex();
        Ok(Registered { node: id, new: false, previous: Some(previous), status: node.status })
    }

    /// Moves nodes along the status diagram for the time passed; returns what changed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<StatusChange> {
        let mut changes = Vec::new();
        if self.next_deadline.is_none_or(|t| now < t) {
            return changes;
        }
        let c = &self.config;
        for node in self.nodes.values_mut() {
            let silent = now.saturating_since(node.last_report);
            let to = match node.status {
                NodeStatus::Online if silent >= c.offline_after => NodeStatus::Offline,
                NodeStatus::Online if silent >= c.degraded_after => NodeStatus::Degraded,
                NodeStatus::Degraded | NodeStatus::Draining if silent >= c.offline_after => NodeStatus::Offline,
                s => s,
            };
            if to != node.status {
                changes.push(StatusChange {
                    node: node.id,
                    name: node.name().to_string(),
                    from: node.status,
                    to: Some(to),
                });
                node.status = to;
                if to == NodeStatus::Offline {
                    // Gone silent: it comes back as a new start, not under an old drain.
                    node.held = false;
                }
            }
        }
        let forget: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.status == NodeStatus::Offline && now.saturating_since(n.last_report) >= c.forget_after)
            .map(|n| n.id)
            .collect();
        for id in forget {
            if let Some(n) = self.nodes.remove(&id) {
                self.by_name.remove(n.name());
                changes.push(StatusChange { node: id, name: n.name().to_string(), from: n.status, to: None });
            }
        }
        if !changes.is_empty() {
            self.median_bw = self.compute_median_bandwidth();
        }
        self.next_deadline = self.compute_next_deadline();
        changes
    }

    /// The next instant at which some node's status changes by itself.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    fn compute_next_deadline(&self) -> Option<Instant> {
        let c = &self.config;
        self.nodes
            .values()
            .map(|n| match n.status {
                NodeStatus::Online => n.last_report + c.degraded_after,
                NodeStatus::Degraded | NodeStatus::Draining => n.last_report + c.offline_after,
                NodeStatus::Offline => n.last_report + c.forget_after,
            })
            .min()
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// A node by its name.
    pub fn by_name(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name).and_then(|id| self.nodes.get(id))
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Number of nodes known.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Median bandwidth over non-offline nodes that report one; 0 when none does. Cached: it
    /// changes only with reports and status changes.
    pub fn median_bandwidth(&self) -> f64 {
        self.median_bw
    }

    fn compute_median_bandwidth(&self) -> f64 {
        let mut bw: Vec<f64> = self
            .nodes
            .values()
            .filter(|n| n.status != NodeStatus::Offline && n.bandwidth_gbps() > 0.0)
            .map(Node::bandwidth_gbps)
            .collect();
        if bw.is_empty() {
            return 0.0;
        }
        bw.sort_by(f64::total_cmp);
        let mid = bw.len() / 2;
        if bw.len() % 2 == 1 {
            bw[mid]
        } else {
            (bw[mid - 1] + bw[mid]) / 2.0
        }
    }

    /// Whether any known node (any status) has the model; decides 404 against holding.
    /// Forgotten nodes no longer count, unlike ollama-herd where they did forever.
    pub fn model_known(&self, model: &ModelName) -> bool {
        self.nodes.values().any(|n| n.has_model(model))
    }

    /// Records a model a pull put on a node's disk at `now` (Ollama confirmed it), until the
    /// next report.
    pub fn note_pulled(&mut self, now: Instant, node: NodeId, model: &ModelName) {
        if let Some(n) = self.nodes.get_mut(&node) {
            if !n.report.ollama.models_available.contains(model) {
                n.report.ollama.models_available.push(model.clone());
                n.reindex();
                self.note_seen(now, node);
            }
        }
    }

    /// Metadata for a model from any node that has it.
    pub fn meta(&self, model: &ModelName) -> Option<&ModelMeta> {
        self.nodes.values().find_map(|n| n.meta(model))
    }
}

#[cfg(test)]
pub(crate) mod tests;
