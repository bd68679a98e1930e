//! The heartbeat a node sends: ollama-herd 0.11.4's schema (reference §1.2) plus herd's additions
//! (per-GPU VRAM, node identity, Ollama reachability). Parsing is lenient about unknown fields and
//! strict about types: a bad report is a typed [`HeartbeatError`], never a panic.

use crate::ids::ModelName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest accepted node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 256;

/// Most GPUs one report may list.
pub const MAX_GPUS: usize = 64;

/// Bounds on one report, so a node (a machine the router does not control) cannot make the
/// router hold, or answer `/api/tags` with, more than a real machine ever has. The defaults are far
/// above any real machine: a node with 300 models and their metadata sends about 100 KB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReportLimits {
    /// Largest report body, bytes.
    pub max_bytes: usize,
    /// Most models in each list (`models_loaded`, `models_available`, their metadata and sizes).
    pub max_models: usize,
    /// Longest model name, bytes.
    pub max_name_bytes: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits { max_bytes: 512 * 1024, max_models: 2048, max_name_bytes: 256 }
    }
}

/// A parsed report from a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// A regular heartbeat from an agent.
    Heartbeat(Box<Heartbeat>),
    /// A report the router built itself for one of its static nodes (`--node`): trusted by
    /// construction (no fleet key needed), and the only report that may change that node.
    Static(Box<Heartbeat>),
    /// `{"node_id": .., "draining": true}`: the node is shutting down.
    Drain {
        /// The node.
        node_id: String,
        /// The fleet key it presents, if any.
        fleet_key: Option<String>,
        /// The machine identity it presents, if any (herd-node sends it; a node that registered
        /// with one is drained only by a report that carries the same).
        machine_id: Option<String>,
    },
    /// The operator drains a node (`POST /fleet/drain/{node}` with the admin key): no key or
    /// identity to check, any node. The drain holds over the node's heartbeats until
    /// [`Report::AdminUndrain`], or until the node restarts (it drains itself on the way down,
    /// or goes offline).
    AdminDrain {
        /// The node.
        node_id: String,
    },
    /// The operator takes an admin drain back (`POST /fleet/undrain/{node}`).
    AdminUndrain {
        /// The node.
        node_id: String,
    },
}

/// Why a report was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Not JSON, or a field of the wrong type.
    #[error("invalid heartbeat JSON at line {line} column {column}: {message}")]
    Json {
        /// serde's description.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The body is JSON but not an object.
    #[error("heartbeat must be a JSON object")]
    NotAnObject,
    /// A required field is absent.
    #[error("heartbeat is missing required field `{0}`")]
    MissingField(&'static str),
    /// `node_id` is empty, too long, or has control characters.
    #[error("invalid node_id")]
    InvalidNodeId,
    /// The body is larger than [`ReportLimits::max_bytes`].
    #[error("heartbeat is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A list holds more entries than [`ReportLimits::max_models`] (or [`MAX_GPUS`]).
    #[error("heartbeat field `{field}` lists {count} entries; the limit is {limit}")]
    TooManyEntries {
        /// The field.
        field: &'static str,
        /// How many it lists.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A model name longer than [`ReportLimits::max_name_bytes`].
    #[error("heartbeat field `{field}` has a model name longer than {limit} bytes")]
    NameTooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A field of the wrong JSON shape (`"memory": [1]`), which would otherwise be read
    /// positionally as if it were an object.
    #[error("heartbeat field `{field}` must be {expected}")]
    WrongShape {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

impl HeartbeatError {
    /// The HTTP status a report refused for this reason is answered with: 413 for a body over
    /// the limit, 422 for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            HeartbeatError::TooLarge { .. } => 413,
            _ => 422,
        }
    }
}

/// CPU figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    /// Physical cores.
    #[serde(deserialize_with = "nullable")]
    pub cores_physical: u32,
    /// Utilisation, percent.
    #[serde(deserialize_with = "nullable")]
    pub utilization_pct: f64,
}

/// Memory pressure as the node computes it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pressure {
    /// Fine.
    #[default]
    Normal,
    /// Getting tight.
    Warn,
    /// Loading anything new would swap.
    Critical,
    /// Anything else a newer agent may send.
    #[serde(other)]
    Unknown,
}

/// Memory figures in GB as ollama-herd sends them: psutil bytes / 1024³ (herd-node does the same).
/// Model sizes are decimal GB, so comparing the two errs on the safe side by about 7 %.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// Total RAM.
    #[serde(deserialize_with = "nullable")]
    pub total_gb: f64,
    /// Used RAM.
    #[serde(deserialize_with = "nullable")]
    pub used_gb: f64,
    /// Available RAM.
    #[serde(deserialize_with = "nullable")]
    pub available_gb: f64,
    /// Pressure level.
    #[serde(deserialize_with = "nullable")]
    pub pressure: Pressure,
    /// macOS wired memory.
    #[serde(deserialize_with = "nullable")]
    pub wired_gb: f64,
    /// macOS compressor.
    #[serde(deserialize_with = "nullable")]
    pub compressed_gb: f64,
    /// Swap used.
    #[serde(deserialize_with = "nullable")]
    pub swap_used_gb: f64,
    /// Swap total.
    #[serde(deserialize_with = "nullable")]
    pub swap_total_gb: f64,
}

/// One GiB in GB.
const GIB_IN_GB: f64 = (1u64 << 30) as f64 / 1e9;

/// One loaded model, from Ollama's `/api/ps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    /// Model name.
    pub name: ModelName,
    /// Resident size including KV cache, GB.
    #[serde(default, deserialize_with = "nullable")]
    pub size_gb: f64,
    /// Part of it in GPU memory, GB (herd addition; `None` from ollama-herd agents).
    #[serde(default)]
    pub size_vram_gb: Option<f64>,
    /// Requests Ollama is running on it.
    #[serde(default, deserialize_with = "nullable")]
    pub requests_active: u32,
    /// e.g. "8.0B".
    #[serde(default, deserialize_with = "nullable")]
    pub parameter_size: String,
    /// e.g. "Q4_K_M".
    #[serde(default, deserialize_with = "nullable")]
    pub quantization: String,
    /// The allocated context window; 0 = unknown.
    #[serde(default, deserialize_with = "nullable")]
    pub context_length: u32,
    /// Runner kind.
    #[serde(default, deserialize_with = "nullable")]
    pub runner: String,
    /// Digest.
    #[serde(default, deserialize_with = "nullable")]
    pub digest: String,
    /// herd addition, from `/api/ps`'s `details.format` (`gguf`, `safetensors`); empty when the
    /// agent did not send it (ollama-herd's agents do not).
    #[serde(default, deserialize_with = "nullable")]
    pub format: String,
    /// herd addition: `details.family`.
    #[serde(default, deserialize_with = "nullable")]
    pub family: String,
    /// herd addition: `details.families`.
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// herd addition: when Ollama will unload it (`expires_at`, RFC 3339, as Ollama wrote it).
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: String,
}

impl LoadedModel {
    /// A loaded model known by its name and resident size alone.
    pub fn named(name: ModelName, size_gb: f64) -> LoadedModel {
        LoadedModel {
            name,
            size_gb,
            size_vram_gb: None,
            requests_active: 0,
            parameter_size: String::new(),
            quantization: String::new(),
            context_length: 0,
            runner: String::new(),
            digest: String::new(),
            format: String::new(),
            family: String::new(),
            families: None,
            expires_at: String::new(),
        }
    }
}

/// Most entries kept in one model's `families` or `capabilities` (Ollama lists a handful).
pub const MAX_TAGS_PER_MODEL: usize = 32;

/// Empties a text a node sent that is longer than `max_bytes`: no real Ollama writes a family,
/// digest or date that long, and the router would otherwise hold and answer it in every
/// `/api/tags`.
fn bound_text(s: &mut String, max_bytes: usize) {
    if s.len() > max_bytes {
        s.clear();
    }
}

/// Keeps at most [`MAX_TAGS_PER_MODEL`] entries of at most `max_bytes` each.
fn bound_list(list: &mut Vec<String>, max_bytes: usize) {
    list.retain(|s| s.len() <= max_bytes);
    list.truncate(MAX_TAGS_PER_MODEL);
}

impl LoadedModel {
    /// Bounds the texts a node sent about this model (see [`ModelMeta::bound`]).
    pub fn bound(&mut self, max_bytes: usize) {
        for s in [
            &mut self.parameter_size,
            &mut self.quantization,
            &mut self.runner,
            &mut self.digest,
            &mut self.format,
            &mut self.family,
            &mut self.expires_at,
        ] {
            bound_text(s, max_bytes);
        }
        if let Some(f) = &mut self.families {
            bound_list(f, max_bytes);
        }
    }
}

/// Ollama `/api/tags` metadata for one model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelMeta {
    /// `gguf` or `safetensors`.
    #[serde(deserialize_with = "nullable")]
    pub format: String,
    /// Model family.
    #[serde(deserialize_with = "nullable")]
    pub family: String,
    /// All families.
    pub families: Option<Vec<String>>,
    /// e.g. "8.0B".
    #[serde(deserialize_with = "nullable")]
    pub parameter_size: String,
    /// e.g. "Q4_K_M".
    #[serde(deserialize_with = "nullable")]
    pub quantization_level: String,
    /// `completion`, `vision`, `tools`, `thinking`, `embedding`...
    #[serde(deserialize_with = "nullable")]
    pub capabilities: Vec<String>,
    /// Digest.
    #[serde(deserialize_with = "nullable")]
    pub digest: String,
    /// When the model was last pulled or created, as Ollama wrote it (RFC 3339).
    #[serde(deserialize_with = "nullable")]
    pub modified_at: String,
    /// The model it was made from, if any.
    #[serde(deserialize_with = "nullable")]
    pub parent_model: String,
}

impl ModelMeta {
    /// Bounds what a node sent: each text longer than `max_bytes` (the model-name limit,
    /// [`ReportLimits::max_name_bytes`]) is emptied, as if the node had not sent it, and each
    /// list keeps at most [`MAX_TAGS_PER_MODEL`] entries no longer than that.
    pub fn bound(&mut self, max_bytes: usize) {
        for s in [
            &mut self.format,
            &mut self.family,
            &mut self.parameter_size,
            &mut self.quantization_level,
            &mut self.digest,
            &mut self.modified_at,
            &mut self.parent_model,
        ] {
            bound_text(s, max_bytes);
        }
        if let Some(f) = &mut self.families {
            bound_list(f, max_bytes);
        }
        bound_list(&mut self.capabilities, max_bytes);
    }
}

/// The node's Ollama.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ollama {
    /// Loaded models.
    #[serde(deserialize_with = "nullable")]
    pub models_loaded: Vec<LoadedModel>,
    /// Models on disk.
    #[serde(deserialize_with = "nullable")]
    pub models_available: Vec<ModelName>,
    /// Metadata; `None` = unchanged since the last report.
    pub models_available_meta: Option<BTreeMap<ModelName, ModelMeta>>,
    /// On-disk sizes, GB.
    #[serde(deserialize_with = "nullable")]
    pub models_available_sizes: BTreeMap<ModelName, f64>,
    /// `OLLAMA_MAX_LOADED_MODELS`; 0 = unreported.
    #[serde(deserialize_with = "nullable")]
    pub max_loaded_models: u32,
    /// `OLLAMA_NUM_PARALLEL`; 0 = unreported.
    #[serde(deserialize_with = "nullable")]
    pub num_parallel: u32,
    /// Sum of active requests.
    #[serde(deserialize_with = "nullable")]
    pub requests_active: u32,
    /// Ollama version.
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    /// herd addition: `false` when the agent could not reach its Ollama. ollama-herd agents
    /// never send it, so it defaults to reachable.
    pub reachable: Option<bool>,
}

/// Adaptive-capacity learner output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capacity {
    /// `full`, `learned_*`, `paused`, `bootstrap`.
    #[serde(deserialize_with = "nullable")]
    pub mode: String,
    /// Memory ceiling, GB; 0 = none.
    #[serde(deserialize_with = "nullable")]
    pub ceiling_gb: f64,
    /// 0..1.
    #[serde(deserialize_with = "nullable")]
    pub availability_score: f64,
}

/// One GPU (herd addition, from NVML).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpu {
    /// Index on the node.
    #[serde(deserialize_with = "nullable")]
    pub index: u32,
    /// Product name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Total VRAM.
    #[serde(deserialize_with = "nullable")]
    pub vram_total_bytes: u64,
    /// Used VRAM.
    #[serde(deserialize_with = "nullable")]
    pub vram_used_bytes: u64,
    /// Free VRAM.
    #[serde(deserialize_with = "nullable")]
    pub vram_free_bytes: u64,
    /// Utilisation, percent.
    #[serde(deserialize_with = "nullable")]
    pub utilization_pct: f64,
    /// Temperature.
    pub temperature_c: Option<f64>,
    /// Power draw.
    pub power_w: Option<f64>,
    /// Memory bandwidth, GB/s (bus width × maximum memory clock × 2); 0 = unknown.
    #[serde(deserialize_with = "nullable")]
    pub memory_bandwidth_gbps: f64,
}

/// A regular heartbeat. Fields ollama-herd sends that routing does not use are kept loosely.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    /// Node identity as the node names itself.
    #[serde(deserialize_with = "nullable")]
    pub node_id: String,
    /// Architecture label.
    #[serde(deserialize_with = "nullable")]
    pub arch: String,
    /// Node clock at send; informational only.
    #[serde(deserialize_with = "nullable")]
    pub timestamp: f64,
    /// CPU.
    #[serde(deserialize_with = "nullable")]
    pub cpu: Cpu,
    /// Memory.
    #[serde(deserialize_with = "nullable")]
    pub memory: Memory,
    /// Machine thermal state (not used for routing).
    pub thermal: Option<serde_json::Value>,
    /// Disk.
    pub disk: Option<serde_json::Value>,
    /// Ollama state.
    #[serde(deserialize_with = "nullable")]
    pub ollama: Ollama,
    /// Where Ollama listens, from the node's view.
    #[serde(deserialize_with = "nullable")]
    pub ollama_host: String,
    /// Self-reported LAN address.
    #[serde(deserialize_with = "nullable")]
    pub lan_ip: String,
    /// Drain flag (normally sent alone; see [`Report::Drain`]).
    #[serde(deserialize_with = "nullable")]
    pub draining: bool,
    /// Capacity learner.
    pub capacity: Option<Capacity>,
    /// Agent version.
    #[serde(deserialize_with = "nullable")]
    pub agent_version: String,
    /// Failed heartbeats since the last success.
    #[serde(deserialize_with = "nullable")]
    pub connection_failures: u64,
    /// Failed heartbeats since start.
    #[serde(deserialize_with = "nullable")]
    pub connection_failures_total: u64,
    /// Chip name.
    #[serde(deserialize_with = "nullable")]
    pub chip: String,
    /// Memory bandwidth, GB/s; 0 = unknown.
    #[serde(deserialize_with = "nullable")]
    pub memory_bandwidth_gbps: f64,
    /// herd addition: per-GPU figures.
    #[serde(deserialize_with = "nullable")]
    pub gpus: Vec<Gpu>,
    /// herd addition: a stable machine identity (e.g. machine-id hash), so two machines that
    /// claim one node id are told apart.
    pub machine_id: Option<String>,
    /// herd addition: the fleet key the node presents.
    pub fleet_key: Option<String>,
    /// ollama-herd's image server on the node (mflux / DiffusionKit), when it runs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageService>,
    /// Its port (11436 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_port: Option<u16>,
    /// herd addition: the image servers herd-node found or was told of (`--image-backend`).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub image_backends: Vec<ImageBackendReport>,
}

/// ollama-herd's `image` heartbeat field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageService {
    /// The models its binaries draw with.
    #[serde(deserialize_with = "nullable")]
    pub models_available: Vec<ImageServiceModel>,
    /// Whether it is drawing now.
    #[serde(deserialize_with = "nullable")]
    pub generating: bool,
}

/// One of ollama-herd's image models.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageServiceModel {
    /// The model (`z-image-turbo`).
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// The binary that draws it (`mflux-generate-z-image-turbo`).
    #[serde(deserialize_with = "nullable")]
    pub binary: String,
}

/// One image server on a herd-node machine (herd addition).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageBackendReport {
    /// `sdcpp`, `a1111`, `comfyui`, `openai` or `ollama-herd`.
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// Its port on the node's address.
    #[serde(deserialize_with = "nullable")]
    pub port: u16,
    /// The models it lists.
    #[serde(deserialize_with = "nullable")]
    pub models: Vec<String>,
    /// The model it has loaded, when it says.
    pub loaded: Option<String>,
    /// Jobs it runs at once (0: unknown, taken as 1).
    #[serde(deserialize_with = "nullable")]
    pub concurrency: u32,
    /// Jobs its own queue holds beyond those, when bounded.
    pub queue_limit: Option<u32>,
    /// Jobs it holds now.
    #[serde(deserialize_with = "nullable")]
    pub queued: u32,
    /// Free VRAM, MB, when it says.
    pub vram_free_mb: Option<u64>,
    /// Whether it answered the node's last probe.
    #[serde(deserialize_with = "nullable")]
    pub up: bool,
}

/// Most image servers one heartbeat may report.
pub const MAX_IMAGE_BACKENDS: usize = 16;

impl Heartbeat {
    /// The image servers this heartbeat reports, as the image scheduler knows them, each with its
    /// port on the node: ollama-herd's `image` / `image_port` (one job at a time; busy when it
    /// says `generating`) and herd-node's `image_backends` (unknown kinds are skipped).
    pub fn image_backends(&self) -> Vec<(crate::image::sched::BackendInfo, u16)> {
        use crate::image::backend::ImageBackendKind;
        use crate::image::sched::BackendInfo;
        let mut out = Vec::new();
        if let (Some(image), Some(port)) = (&self.image, self.image_port) {
            let models: Vec<&str> =
                image.models_available.iter().map(|m| m.name.as_str()).filter(|n| !n.is_empty()).collect();
            if port > 0 && !models.is_empty() {
                out.push((BackendInfo::new(&self.node_id, ImageBackendKind::OllamaHerd, &models), port));
            }
        }
        for b in &self.image_backends {
            let Some(kind) = ImageBackendKind::parse(&b.kind) else { continue };
            if b.port == 0 || out.iter().any(|(i, _): &(BackendInfo, u16)| i.kind == kind) {
                continue;
            }
            let models: Vec<&str> = b.models.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
            let mut info = BackendInfo::new(&self.node_id, kind, &models);
            info.loaded = b.loaded.clone().filter(|l| !l.is_empty());
            info.concurrency = b.concurrency.max(1);
            info.queue_limit = b.queue_limit;
            info.vram_free_mb = b.vram_free_mb;
            info.up = b.up;
            out.push((info, b.port));
        }
        out
    }
}

impl Heartbeat {
    /// Parses a report body within the default [`ReportLimits`].
    ///
    /// # Errors
    /// [`HeartbeatError`] for anything that is not a usable report; never panics.
    pub fn parse(body: &[u8]) -> Result<Report, HeartbeatError> {
        Heartbeat::parse_within(body, &ReportLimits::default())
    }

    /// Parses a report body within `limits`: a body over the size limit is refused before it is
    /// parsed, and lists and names over theirs before anything is kept.
    ///
    /// # Errors
    /// [`HeartbeatError`] for anything that is not a usable report; never panics.
    pub fn parse_within(body: &[u8], limits: &ReportLimits) -> Result<Report, HeartbeatError> {
        if body.len() > limits.max_bytes {
            return Err(HeartbeatError::TooLarge { limit: limits.max_bytes });
        }
        let value: serde_json::Value = serde_json::from_slice(body).map_err(json_error)?;
        let obj = value.as_object().ok_or(HeartbeatError::NotAnObject)?;
        let node_id = match obj.get("node_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(HeartbeatError::InvalidNodeId),
            None => return Err(HeartbeatError::MissingField("node_id")),
        };
        if node_id.is_empty() || node_id.len() > MAX_NODE_ID_LEN || node_id.chars().any(char::is_control) {
            return Err(HeartbeatError::InvalidNodeId);
        }
        if obj.get("draining") == Some(&serde_json::Value::Bool(true)) {
            let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
            return Ok(Report::Drain { node_id, fleet_key: text("fleet_key"), machine_id: text("machine_id") });
        }
        for field in ["cpu", "memory", "ollama"] {
            if !obj.contains_key(field) {
                return Err(HeartbeatError::MissingField(field));
            }
        }
        check_shape(obj, limits)?;
        let mut hb: Heartbeat = serde_json::from_value(value).map_err(json_error)?;
        hb.sanitize();
        Ok(Report::Heartbeat(Box::new(hb)))
    }

    /// Whether herd's own agent sent it (`agent_version` `herd-node/…`), not ollama-herd's.
    pub fn from_herd_agent(&self) -> bool {
        self.agent_version.starts_with("herd-node/")
    }

    /// Clamps figures a buggy agent may send (negative sizes, NaN is impossible in JSON) so the
    /// scorer never sees them.
    fn sanitize(&mut self) {
        let m = &mut self.memory;
        for v in [&mut m.total_gb, &mut m.used_gb, &mut m.available_gb] {
            *v = v.max(0.0);
        }
        self.memory_bandwidth_gbps = self.memory_bandwidth_gbps.max(0.0);
        // ollama-herd's agents report loaded sizes in GiB (bytes / 2^30) and available ones in
        // GB (herd-node.md §8.1 item 3); herd keeps GB throughout, as its own agent reports them.
        let scale = if self.from_herd_agent() { 1.0 } else { GIB_IN_GB };
        for lm in &mut self.ollama.models_loaded {
            lm.size_gb = lm.size_gb.max(0.0) * scale;
        }
        for v in self.ollama.models_available_sizes.values_mut() {
            *v = v.max(0.0);
        }
        if let Some(c) = &mut self.capacity {
            c.ceiling_gb = c.ceiling_gb.max(0.0);
            c.availability_score = c.availability_score.clamp(0.0, 1.0);
        }
        for g in &mut self.gpus {
            g.vram_free_bytes = g.vram_free_bytes.min(g.vram_total_bytes.max(g.vram_free_bytes));
        }
    }
}

/// Checks what serde would otherwise accept too loosely (a struct from an array, read by
/// position) and the sizes of the lists and names, before anything is kept.
fn check_shape(obj: &serde_json::Map<String, serde_json::Value>, limits: &ReportLimits) -> Result<(), HeartbeatError> {
    use serde_json::Value;
    const OBJECT: &str = "an object or null";
    fn object<'a>(
        map: &'a serde_json::Map<String, Value>,
        field: &'static str,
    ) -> Result<Option<&'a serde_json::Map<String, Value>>, HeartbeatError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(HeartbeatError::WrongShape { field, expected: OBJECT }),
        }
    }
    fn list<'a>(
        map: &'a serde_json::Map<String, Value>,
        field: &'static str,
        limit: usize,
    ) -> Result<&'a [Value], HeartbeatError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) if a.len() > limit => {
                Err(HeartbeatError::TooManyEntries { field, count: a.len(), limit })
            }
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(HeartbeatError::WrongShape { field, expected: "an array or null" }),
        }
    }
    let name_ok = |field: &'static str, name: &str| {
        if name.len() > limits.max_name_bytes {
            Err(HeartbeatError::NameTooLong { field, limit: limits.max_name_bytes })
        } else {
            Ok(())
        }
    };
    for field in ["cpu", "memory", "capacity", "thermal", "disk"] {
        object(obj, field)?;
    }
    for gpu in list(obj, "gpus", MAX_GPUS)? {
        if !gpu.is_object() {
            return Err(HeartbeatError::WrongShape { field: "gpus", expected: "an array of objects" });
        }
    }
    let max = limits.max_models;
    if let Some(image) = object(obj, "image")? {
        for m in list(image, "models_available", max)? {
            let Value::Object(m) = m else {
                return Err(HeartbeatError::WrongShape {
                    field: "image.models_available",
                    expected: "an array of objects",
                });
            };
            name_ok("image.models_available", m.get("name").and_then(Value::as_str).unwrap_or(""))?;
        }
    }
    for b in list(obj, "image_backends", MAX_IMAGE_BACKENDS)? {
        let Value::Object(b) = b else {
            return Err(HeartbeatError::WrongShape { field: "image_backends", expected: "an array of objects" });
        };
        for m in list(b, "models", max)? {
            name_ok("image_backends.models", m.as_str().unwrap_or(""))?;
        }
        name_ok("image_backends.loaded", b.get("loaded").and_then(Value::as_str).unwrap_or(""))?;
    }
    let Some(ollama) = object(obj, "ollama")? else { return Ok(()) };
    for m in list(ollama, "models_loaded", max)? {
        let Value::Object(m) = m else {
            return Err(HeartbeatError::WrongShape { field: "models_loaded", expected: "an array of objects" });
        };
        name_ok("models_loaded", m.get("name").and_then(Value::as_str).unwrap_or(""))?;
    }
    for name in list(ollama, "models_available", max)? {
        name_ok("models_available", name.as_str().unwrap_or(""))?;
    }
    for field in ["models_available_meta", "models_available_sizes"] {
        if let Some(map) = object(ollama, field)? {
            if map.len() > max {
                return Err(HeartbeatError::TooManyEntries { field, count: map.len(), limit: max });
            }
            for (name, v) in map {
                name_ok(field, name)?;
                if field == "models_available_meta" && !(v.is_object() || v.is_null()) {
                    return Err(HeartbeatError::WrongShape { field, expected: "an object of objects" });
                }
            }
        }
    }
    Ok(())
}

/// Reads `null` as the field's default: agents in the wild send `null` for values they could
/// not measure, which must not cost the whole heartbeat.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn json_error(e: serde_json::Error) -> HeartbeatError {
    HeartbeatError::Json { message: e.to_string(), line: e.line(), column: e.column() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat shaped exactly as ollama-herd 0.11.4's agent sends it.
    pub(crate) const OLLAMA_HERD_HEARTBEAT: &str = r#"{
      "node_id": "mac-studio", "arch": "apple_silicon", "timestamp": 1732700000.5,
      "cpu": {"cores_physical": 24, "utilization_pct": 12.5},
      "memory": {"total_gb": 192.0, "used_gb": 120.0, "available_gb": 72.0, "pressure": "normal",
                 "wired_gb": 80.1, "compressed_gb": 1.2, "swap_used_gb": 0.0, "swap_total_gb": 0.0},
      "thermal": {"state": "nominal", "temperature_c": null, "source": "pmset"},
      "disk": {"total_gb": 2000, "used_gb": 900, "available_gb": 1100},
      "ollama": {
        "models_loaded": [{"name": "llama3.3:70b", "size_gb": 48.2, "requests_active": 1,
                           "parameter_size": "70.6B", "quantization": "Q4_K_M",
                           "context_length": 8192, "runner": "llamacpp", "digest": "abc"}],
        "models_available": ["llama3.3:70b", "qwen3:8b", "nomic-embed-text"],
        "models_available_meta": {"qwen3:8b": {"format": "gguf", "family": "qwen3",
             "families": ["qwen3"], "parameter_size": "8.2B", "quantization_level": "Q4_K_M",
             "capabilities": ["completion", "tools", "thinking"], "modified_at": "2025-01-01"}},
        "models_available_sizes": {"llama3.3:70b": 42.5, "qwen3:8b": 5.2},
        "max_loaded_models": 3, "num_parallel": 4, "requests_active": 1, "version": "0.12.6",
        "backend_clients": []
      },
      "ollama_host": "http://localhost:11434", "lan_ip": "192.168.1.20",
      "capacity": null, "agent_version": "0.11.4", "process_memory": {"rss_gb": 0.2},
      "image": null, "image_port": 11436, "mlx_servers": [],
      "connection_failures": 0, "connection_failures_total": 2,
      "chip": "Apple M2 Ultra", "memory_bandwidth_gbps": 800
    }"#;

    #[test]
    fn accepts_ollama_herd_agent_payload() {
        let Report::Heartbeat(hb) = Heartbeat::parse(OLLAMA_HERD_HEARTBEAT.as_bytes()).unwrap() else {
            panic!("expected heartbeat")
        };
        assert_eq!(hb.node_id, "mac-studio");
        assert_eq!(hb.memory.pressure, Pressure::Normal);
        assert_eq!(hb.ollama.models_loaded[0].context_length, 8192);
        // Its 48.2 GiB resident is 51.75 GB in herd's units.
        assert!((hb.ollama.models_loaded[0].size_gb - 48.2 * 1.073_741_824).abs() < 1e-9);
        assert!(!hb.from_herd_agent());
        assert_eq!(hb.ollama.models_available[2].as_str(), "nomic-embed-text:latest");
        let meta = hb.ollama.models_available_meta.as_ref().unwrap();
        assert_eq!(meta[&ModelName::new("qwen3:8b")].capabilities[2], "thinking");
        assert_eq!(hb.memory_bandwidth_gbps, 800.0);
        assert!(hb.gpus.is_empty());
    }

    #[test]
    fn image_servers_are_read_from_both_agents() {
        use crate::image::backend::ImageBackendKind;
        // ollama-herd's agent: image null (no mflux) gives none.
        let Report::Heartbeat(hb) = Heartbeat::parse(OLLAMA_HERD_HEARTBEAT.as_bytes()).unwrap() else { panic!() };
        assert!(hb.image_backends().is_empty());
        let with_mflux = OLLAMA_HERD_HEARTBEAT.replace(
            r#""image": null"#,
            r#""image": {"models_available": [{"name": "z-image-turbo", "binary": "mflux-generate-z-image-turbo"}], "generating": true}"#,
        );
        let Report::Heartbeat(hb) = Heartbeat::parse(with_mflux.as_bytes()).unwrap() else { panic!() };
        let b = hb.image_backends();
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].0.kind, b[0].1, b[0].0.models.clone()),
            (ImageBackendKind::OllamaHerd, 11436, vec!["z-image-turbo".to_string()])
        );
        assert_eq!(b[0].0.machine, "mac-studio");
        // herd-node's list: kinds it knows, with what each says.
        let body = br#"{"node_id": "rig", "cpu": {"cores_physical": 8}, "memory": {"total_gb": 64}, "ollama": {}, "image_backends": [
            {"kind": "sdcpp", "port": 1234, "models": ["z.gguf"], "loaded": "z.gguf", "concurrency": 1,
             "queue_limit": 4, "queued": 2, "vram_free_mb": 9000, "up": true},
            {"kind": "dalle", "port": 1, "models": ["x"], "up": true},
            {"kind": "comfyui", "port": 8188, "models": ["a.safetensors"], "up": false}]}"#;
        let Report::Heartbeat(hb) = Heartbeat::parse(body).unwrap() else { panic!() };
        let b = hb.image_backends();
        assert_eq!(
            b.iter().map(|(i, p)| (i.kind, *p, i.up)).collect::<Vec<_>>(),
            vec![(ImageBackendKind::SdCpp, 1234, true), (ImageBackendKind::ComfyUi, 8188, false)]
        );
        assert_eq!(
            (b[0].0.loaded.as_deref(), b[0].0.queue_limit, b[0].0.vram_free_mb),
            (Some("z.gguf"), Some(4), Some(9000))
        );
        // Bounded like the rest of a report.
        let many: Vec<String> =
            (0..=MAX_IMAGE_BACKENDS).map(|i| format!(r#"{{"kind": "openai", "port": {}}}"#, i + 1)).collect();
        let body = format!(
            r#"{{"node_id": "n", "cpu": {{}}, "memory": {{}}, "ollama": {{}}, "image_backends": [{}]}}"#,
            many.join(",")
        );
        assert!(matches!(Heartbeat::parse(body.as_bytes()), Err(HeartbeatError::TooManyEntries { .. })));
        let long = "m".repeat(ReportLimits::default().max_name_bytes + 1);
        let body = format!(
            r#"{{"node_id": "n", "cpu": {{}}, "memory": {{}}, "ollama": {{}}, "image": {{"models_available": [{{"name": "{long}"}}]}}, "image_port": 11436}}"#
        );
        assert!(matches!(Heartbeat::parse(body.as_bytes()), Err(HeartbeatError::NameTooLong { .. })));
        assert!(matches!(
            Heartbeat::parse(br#"{"node_id": "n", "cpu": {}, "memory": {}, "ollama": {}, "image_backends": [1]}"#),
            Err(HeartbeatError::WrongShape { .. })
        ));
        // A heartbeat without image servers says nothing of them on the wire.
        let plain = serde_json::to_value(Heartbeat { node_id: "n".into(), ..Heartbeat::default() }).unwrap();
        assert!(plain.get("image").is_none() && plain.get("image_backends").is_none());
    }

    #[test]
    fn nulls_read_as_defaults() {
        let body = br#"{"node_id":"a","cpu":{"cores_physical":null},"memory":{"total_gb":null,"pressure":null},
            "ollama":{"models_loaded":[{"name":"m","size_gb":null,"context_length":null,"quantization":null}],
                      "models_available":null,"num_parallel":null,"version":null},
            "chip":null,"memory_bandwidth_gbps":null,"gpus":null}"#;
        let Report::Heartbeat(hb) = Heartbeat::parse(body).unwrap() else { panic!() };
        assert_eq!(hb.ollama.models_loaded[0].context_length, 0);
        assert_eq!(hb.memory.pressure, Pressure::Normal);
        assert!(hb.ollama.models_available.is_empty());
    }

    #[test]
    fn drain_message_needs_only_node_id() {
        assert_eq!(
            Heartbeat::parse(br#"{"node_id":"a","draining":true}"#),
            Ok(Report::Drain { node_id: "a".into(), fleet_key: None, machine_id: None })
        );
    }

    #[test]
    fn malformed_reports_are_typed_errors() {
        assert!(matches!(Heartbeat::parse(b"{not json"), Err(HeartbeatError::Json { line: 1, .. })));
        assert_eq!(Heartbeat::parse(b"[1]"), Err(HeartbeatError::NotAnObject));
        assert_eq!(Heartbeat::parse(b"{}"), Err(HeartbeatError::MissingField("node_id")));
        assert_eq!(Heartbeat::parse(br#"{"node_id":""}"#), Err(HeartbeatError::InvalidNodeId));
        assert_eq!(Heartbeat::parse(br#"{"node_id":7}"#), Err(HeartbeatError::InvalidNodeId));
        assert_eq!(Heartbeat::parse(br#"{"node_id":"a","cpu":{}}"#), Err(HeartbeatError::MissingField("memory")));
        let wrong_type = br#"{"node_id":"a","cpu":{},"memory":{"total_gb":"lots"},"ollama":{}}"#;
        assert!(matches!(Heartbeat::parse(wrong_type), Err(HeartbeatError::Json { .. })));
    }

    #[test]
    fn sub_objects_given_as_arrays_are_refused() {
        for field in ["cpu", "memory", "capacity"] {
            let body = format!(r#"{{"node_id":"a","cpu":{{}},"memory":{{}},"ollama":{{}},"{field}":[1]}}"#);
            assert_eq!(
                Heartbeat::parse(body.as_bytes()),
                Err(HeartbeatError::WrongShape { field, expected: "an object or null" }),
                "{field}"
            );
        }
        let ollama = br#"{"node_id":"a","cpu":{},"memory":{},"ollama":[1]}"#;
        assert!(matches!(Heartbeat::parse(ollama), Err(HeartbeatError::WrongShape { field: "ollama", .. })));
        let gpus = br#"{"node_id":"a","cpu":{},"memory":{},"ollama":{},"gpus":[[1,2]]}"#;
        assert!(matches!(Heartbeat::parse(gpus), Err(HeartbeatError::WrongShape { field: "gpus", .. })));
        let loaded = br#"{"node_id":"a","cpu":{},"memory":{},"ollama":{"models_loaded":[["m",1]]}}"#;
        assert!(matches!(Heartbeat::parse(loaded), Err(HeartbeatError::WrongShape { field: "models_loaded", .. })));
    }

    #[test]
    fn lists_names_and_bodies_are_bounded() {
        let limits = ReportLimits { max_bytes: 4096, max_models: 3, max_name_bytes: 8 };
        let many = br#"{"node_id":"a","cpu":{},"memory":{},"ollama":{"models_available":["a","b","c","d"]}}"#;
        assert_eq!(
            Heartbeat::parse_within(many, &limits),
            Err(HeartbeatError::TooManyEntries { field: "models_available", count: 4, limit: 3 })
        );
        let long = br#"{"node_id":"a","cpu":{},"memory":{},"ollama":{"models_available_sizes":{"123456789":1}}}"#;
        let e = Heartbeat::parse_within(long, &limits).unwrap_err();
        assert_eq!(e, HeartbeatError::NameTooLong { field: "models_available_sizes", limit: 8 });
        assert_eq!(e.http_status(), 422);
        let ok = br#"{"node_id":"a","cpu":{},"memory":{},"ollama":{"models_available":["a","b","c"]}}"#;
        assert!(Heartbeat::parse_within(ok, &limits).is_ok());
        let big = vec![b' '; 5000];
        let e = Heartbeat::parse_within(&big, &limits).unwrap_err();
        assert_eq!((e.clone(), e.http_status()), (HeartbeatError::TooLarge { limit: 4096 }, 413));
    }

    #[test]
    fn null_meta_means_unchanged_and_unknown_pressure_is_tolerated() {
        let body = br#"{"node_id":"a","cpu":{},"memory":{"pressure":"extreme","available_gb":-3},
                        "ollama":{"models_available_meta":null},"new_field":{"x":1}}"#;
        let Report::Heartbeat(hb) = Heartbeat::parse(body).unwrap() else { panic!() };
        assert!(hb.ollama.models_available_meta.is_none());
        assert_eq!(hb.memory.pressure, Pressure::Unknown);
        assert_eq!(hb.memory.available_gb, 0.0);
    }
}
