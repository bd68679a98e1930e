//! Simulated image servers, one kind per server, faithful to each one's published API
//! (backends.md §1): stable-diffusion.cpp's `sd-server`, AUTOMATIC1111 / Forge, ComfyUI, an
//! OpenAI-style images server and ollama-herd's node image server. Each answers real PNGs of the
//! requested size (a pattern from the seed and prompt, with noise so that a 1024×1024 image weighs
//! what a generated one does, about 1.5 MB), after a time that scales with steps and pixels, runs
//! `concurrency` jobs at once and queues `queue` more (sd-server answers 429 beyond that).
//!
//! It shares no code with the router's translation (`herd_core::image`): its shapes are written
//! from the servers' own docs, so a mistake on one side is caught by the other.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Which server to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageKind {
    /// stable-diffusion.cpp `sd-server`: `/v1/images/generations`, `/sdapi/v1/txt2img`,
    /// `/sdcpp/v1/capabilities`, `/v1/models`; one model, the one it was started with.
    Sdcpp,
    /// AUTOMATIC1111 / Forge with `--api`: `/sdapi/v1/txt2img`, `/sdapi/v1/sd-models`; a checkpoint
    /// switch (`override_settings.sd_model_checkpoint`) costs a load.
    A1111,
    /// ComfyUI: `POST /prompt`, `GET /history/{id}`, `GET /view`, `GET /object_info/…`, `GET /queue`.
    Comfyui,
    /// An OpenAI-style server: `POST /v1/images/generations`, `GET /v1/models`.
    Openai,
    /// ollama-herd's node image server: `POST /api/generate-image` answering `image/png`.
    OllamaHerd,
}

/// How a simulated image server behaves.
#[derive(Debug, Clone)]
pub struct ImageFakeConfig {
    /// The server.
    pub kind: ImageKind,
    /// Models it offers (sd-server offers the first only).
    pub models: Vec<String>,
    /// Seconds per image at 20 steps and one megapixel (scaled by steps × megapixels).
    pub secs_per_image: f64,
    /// Seconds to switch models (A1111, ComfyUI).
    pub load_secs: f64,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Jobs queued beyond those; more is a 429 (sd-server) or waits anyway (the others).
    pub queue: usize,
}

/// Largest request body read.
const MAX_BODY: usize = 1 << 20;

struct State {
    config: ImageFakeConfig,
    loaded: Mutex<Option<String>>,
    jobs: AtomicUsize,
    running: tokio::sync::Semaphore,
    next_id: AtomicU64,
    /// ComfyUI's history and every server's stored files (`/view`, `url` answers).
    history: Mutex<BTreeMap<String, Value>>,
    files: Mutex<BTreeMap<String, Bytes>>,
    generated: AtomicU64,
    addr: SocketAddr,
}

/// A running image server.
pub struct ImageFake {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ImageFake {
    /// Starts serving on `listener`.
    pub fn start(listener: TcpListener, config: ImageFakeConfig) -> std::io::Result<ImageFake> {
        let addr = listener.local_addr()?;
        let loaded = match config.kind {
            // sd-server loads its one model at start; the others say nothing until a job.
            ImageKind::Sdcpp | ImageKind::A1111 => config.models.first().cloned(),
            _ => None,
        };
        let state = Arc::new(State {
            running: tokio::sync::Semaphore::new(config.concurrency.max(1)),
            config,
            loaded: Mutex::new(loaded),
            jobs: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            history: Mutex::new(BTreeMap::new()),
            files: Mutex::new(BTreeMap::new()),
            generated: AtomicU64::new(0),
            addr,
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(route(s, req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(ImageFake { state, task })
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// Jobs it holds now (running or queued).
    pub fn jobs(&self) -> usize {
        self.state.jobs.load(Ordering::SeqCst)
    }

    /// Images generated so far.
    pub fn generated(&self) -> u64 {
        self.state.generated.load(Ordering::Relaxed)
    }

    /// Stops serving (open connections end with the runtime).
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

type Answer = Response<Full<Bytes>>;

fn json_answer(status: u16, v: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// Each server's own error shape.
fn error(kind: ImageKind, status: u16, message: &str) -> Answer {
    let body = match kind {
        ImageKind::Openai | ImageKind::Sdcpp => {
            json!({"error": {"message": message, "type": "invalid_request_error", "code": status}})
        }
        // FastAPI's.
        ImageKind::A1111 | ImageKind::OllamaHerd => json!({ "detail": message }),
        ImageKind::Comfyui => {
            json!({"error": {"type": "invalid_prompt", "message": message, "details": ""}, "node_errors": {}})
        }
    };
    json_answer(status, &body)
}

async fn route(s: Arc<State>, req: Request<Incoming>) -> Answer {
    let kind = s.config.kind;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(kind, 413, "request body too large"),
    };
    let get = method == Method::GET;
    let post = method == Method::POST;
    match (kind, path.as_str()) {
        (ImageKind::Sdcpp | ImageKind::Openai, "/v1/models") if get => {
            let data: Vec<Value> =
                s.offered().iter().map(|m| json!({"id": m, "object": "model", "owned_by": "local"})).collect();
            json_answer(200, &json!({"object": "list", "data": data}))
        }
        (ImageKind::Sdcpp | ImageKind::Openai, "/v1/images/generations") if post => s.openai(&body).await,
        (ImageKind::Sdcpp | ImageKind::A1111, "/sdapi/v1/txt2img") if post => s.txt2img(&body).await,
        (ImageKind::Sdcpp, "/sdcpp/v1/capabilities") if get => json_answer(
            200,
            &json!({"max_queue_size": s.config.queue, "max_width": 4096, "max_height": 4096,
                    "model": s.offered().first(), "concurrency": s.config.concurrency}),
        ),
        (ImageKind::A1111, "/sdapi/v1/sd-models") if get => {
            let list: Vec<Value> = s
                .config
                .models
                .iter()
                .map(|m| json!({"title": m, "model_name": m.trim_end_matches(".safetensors"), "filename": format!("/models/Stable-diffusion/{m}")}))
                .collect();
            json_answer(200, &Value::Array(list))
        }
        (ImageKind::A1111, "/sdapi/v1/progress") if get => {
            let busy = s.jobs.load(Ordering::Relaxed) > 0;
            json_answer(
                200,
                &json!({"progress": if busy { 0.5 } else { 0.0 }, "state": {"job_count": s.jobs.load(Ordering::Relaxed)}}),
            )
        }
        (ImageKind::Comfyui, "/object_info/CheckpointLoaderSimple") if get => json_answer(
            200,
            &json!({"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [s.config.models]}}, "output": ["MODEL", "CLIP", "VAE"]}}),
        ),
        (ImageKind::Comfyui, "/prompt") if post => comfy_prompt(&s, &body),
        (ImageKind::Comfyui, "/queue") if get => {
            json_answer(200, &json!({"queue_running": [], "queue_pending": [], "jobs": s.jobs.load(Ordering::Relaxed)}))
        }
        (ImageKind::Comfyui, "/system_stats") if get => json_answer(
            200,
            &json!({"devices": [{"name": "cuda:0", "type": "cuda", "vram_total": 25_769_803_776u64, "vram_free": 20_000_000_000u64}]}),
        ),
        (ImageKind::Comfyui, p) if get && p.starts_with("/history/") => {
            let id = &p["/history/".len()..];
            let entry = s.history.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
            json_answer(200, &entry.map_or_else(|| json!({}), |e| json!({ id: e })))
        }
        (_, "/view") if get => {
            let name =
                query.split('&').find_map(|kv| kv.strip_prefix("filename=")).map(percent_decode).unwrap_or_default();
            s.file(&name)
        }
        (_, p) if get && p.starts_with("/files/") => s.file(&p["/files/".len()..]),
        (ImageKind::OllamaHerd, "/api/generate-image") if post => s.herd(&body).await,
        _ => error(kind, 404, &format!("no route for {method} {path}")),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A refusal: status and message, written in the server's shape by [`error`].
struct Refusal(u16, String);

/// What one job asks for.
struct Job {
    model: String,
    prompt: String,
    width: u32,
    height: u32,
    steps: u32,
    seed: u64,
    n: u32,
}

impl State {
    fn offered(&self) -> Vec<String> {
        match self.config.kind {
            ImageKind::Sdcpp => self.config.models.iter().take(1).cloned().collect(),
            _ => self.config.models.clone(),
        }
    }

    fn file(&self, name: &str) -> Answer {
        match self.files.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned() {
            Some(png) => png_answer(png, &[]),
            None => error(self.config.kind, 404, "file not found"),
        }
    }

    /// Checks a job's size, as the servers do.
    fn check(&self, job: &Job) -> Result<(), Refusal> {
        let invalid = if self.config.kind == ImageKind::A1111 { 422 } else { 400 };
        if job.prompt.is_empty() {
            return Err(Refusal(invalid, "prompt is required".into()));
        }
        let side = |v: u32| (64..=4096).contains(&v) && v % 8 == 0;
        if !side(job.width) || !side(job.height) {
            return Err(Refusal(invalid, "invalid size".into()));
        }
        if !self.offered().contains(&job.model) {
            return Err(Refusal(404, format!("model '{}' not found", job.model)));
        }
        Ok(())
    }

    fn refuse(&self, r: Refusal) -> Answer {
        error(self.config.kind, r.0, &r.1)
    }

    /// Waits its turn (429 when sd-server's queue is full), takes the time the job takes
    /// (plus a model switch), and draws the images.
    async fn generate(&self, job: &Job) -> Result<(Vec<Vec<u8>>, f64), Refusal> {
        let queued = self.jobs.fetch_add(1, Ordering::SeqCst);
        let _done = JobsGuard(&self.jobs);
        if self.config.kind == ImageKind::Sdcpp && queued >= self.config.concurrency + self.config.queue {
            return Err(Refusal(429, "queue is full".into()));
        }
        let started = std::time::Instant::now();
        let _permit = self.running.acquire().await.map_err(|_| Refusal(503, "shutting down".into()))?;
        let switch = {
            let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            let switch = loaded.as_deref() != Some(job.model.as_str());
            *loaded = Some(job.model.clone());
            switch && matches!(self.config.kind, ImageKind::A1111 | ImageKind::Comfyui)
        };
        let mp = f64::from(job.width) * f64::from(job.height) / 1_048_576.0;
        let secs = self.config.secs_per_image * f64::from(job.steps) / 20.0 * mp * f64::from(job.n)
            + if switch { self.config.load_secs } else { 0.0 };
        tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
        let images = (0..job.n)
            .map(|i| render_png(job.width, job.height, job.seed.wrapping_add(u64::from(i)) ^ hash(&job.prompt)))
            .collect::<Vec<_>>();
        self.generated.fetch_add(u64::from(job.n), Ordering::Relaxed);
        Ok((images, started.elapsed().as_secs_f64()))
    }

    async fn openai(&self, body: &[u8]) -> Answer {
        let kind = self.config.kind;
        let Ok(v) = serde_json::from_slice::<Value>(body) else { return error(kind, 400, "invalid JSON") };
        let size = v["size"].as_str().unwrap_or("1024x1024");
        let Some((w, h)) = size.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))) else {
            return error(kind, 400, "invalid size");
        };
        let model = match kind {
            // sd-server ignores the name: it has one model.
            ImageKind::Sdcpp => self.offered().first().cloned().unwrap_or_default(),
            _ => v["model"].as_str().unwrap_or("").to_string(),
        };
        let job = Job {
            model,
            prompt: v["prompt"].as_str().unwrap_or("").to_string(),
            width: w,
            height: h,
            steps: v["num_inference_steps"].as_u64().unwrap_or(20) as u32,
            seed: v["seed"].as_u64().unwrap_or(0),
            n: v["n"].as_u64().unwrap_or(1).clamp(1, 10) as u32,
        };
        if let Err(r) = self.check(&job) {
            return self.refuse(r);
        }
        let (images, _) = match self.generate(&job).await {
            Ok(r) => r,
            Err(r) => return self.refuse(r),
        };
        let url = v["response_format"].as_str() == Some("url");
        let data: Vec<Value> = images
            .into_iter()
            .map(|png| {
                if url {
                    let name = self.store(png);
                    json!({ "url": format!("http://{}/files/{name}", self.addr) })
                } else {
                    json!({ "b64_json": b64(&png) })
                }
            })
            .collect();
        json_answer(200, &json!({"created": unix_secs(), "data": data}))
    }

    async fn txt2img(&self, body: &[u8]) -> Answer {
        let kind = self.config.kind;
        let Ok(v) = serde_json::from_slice::<Value>(body) else { return error(kind, 422, "invalid JSON") };
        let model = match kind {
            ImageKind::A1111 => v["override_settings"]["sd_model_checkpoint"]
                .as_str()
                .map(str::to_string)
                .or_else(|| self.loaded.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .unwrap_or_default(),
            _ => self.offered().first().cloned().unwrap_or_default(),
        };
        let seed = match v["seed"].as_i64() {
            Some(s) if s >= 0 => s as u64,
            _ => self.next_id.fetch_add(7919, Ordering::Relaxed),
        };
        let job = Job {
            model,
            prompt: v["prompt"].as_str().unwrap_or("").to_string(),
            width: v["width"].as_u64().unwrap_or(512) as u32,
            height: v["height"].as_u64().unwrap_or(512) as u32,
            steps: v["steps"].as_u64().unwrap_or(20) as u32,
            seed,
            n: (v["batch_size"].as_u64().unwrap_or(1) * v["n_iter"].as_u64().unwrap_or(1)).clamp(1, 16) as u32,
        };
        if let Err(r) = self.check(&job) {
            return self.refuse(r);
        }
        let (images, _) = match self.generate(&job).await {
            Ok(r) => r,
            Err(r) => return self.refuse(r),
        };
        let images: Vec<String> = images.iter().map(|p| b64(p)).collect();
        let info = json!({"prompt": job.prompt, "seed": job.seed, "width": job.width, "height": job.height, "sd_model_name": job.model});
        json_answer(200, &json!({"images": images, "parameters": v, "info": info.to_string()}))
    }

    async fn herd(&self, body: &[u8]) -> Answer {
        let kind = self.config.kind;
        let Ok(v) = serde_json::from_slice::<Value>(body) else { return error(kind, 400, "invalid JSON") };
        let job = Job {
            model: v["model"].as_str().unwrap_or("z-image-turbo").to_string(),
            prompt: v["prompt"].as_str().unwrap_or("").to_string(),
            width: v["width"].as_u64().unwrap_or(1024) as u32,
            height: v["height"].as_u64().unwrap_or(1024) as u32,
            steps: v["steps"].as_u64().unwrap_or(4) as u32,
            seed: v["seed"].as_u64().unwrap_or(0),
            n: 1,
        };
        if let Err(r) = self.check(&job) {
            return self.refuse(r);
        }
        let (mut images, secs) = match self.generate(&job).await {
            Ok(r) => r,
            Err(r) => return self.refuse(r),
        };
        let png = images.pop().unwrap_or_default();
        png_answer(
            Bytes::from(png),
            &[
                ("x-generation-time", format!("{}", (secs * 1000.0).round() as u64)),
                ("x-image-model", job.model.clone()),
                ("x-image-size", format!("{}x{}", job.width, job.height)),
            ],
        )
    }
}

/// ComfyUI's `POST /prompt`: the job runs in the background; its result lands in the history.
fn comfy_prompt(state: &Arc<State>, body: &[u8]) -> Answer {
    let this = state.as_ref();
    let kind = this.config.kind;
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return error(kind, 400, "invalid JSON") };
    let Some(graph) = v["prompt"].as_object() else { return error(kind, 400, "no prompt") };
    // Read the job off the workflow's nodes, as ComfyUI's executor would.
    let mut job =
        Job { model: String::new(), prompt: String::new(), width: 512, height: 512, steps: 20, seed: 0, n: 1 };
    for node in graph.values() {
        let inputs = &node["inputs"];
        match node["class_type"].as_str().unwrap_or("") {
            "CheckpointLoaderSimple" => job.model = inputs["ckpt_name"].as_str().unwrap_or("").to_string(),
            "EmptyLatentImage" => {
                job.width = inputs["width"].as_u64().unwrap_or(512) as u32;
                job.height = inputs["height"].as_u64().unwrap_or(512) as u32;
                job.n = inputs["batch_size"].as_u64().unwrap_or(1).clamp(1, 16) as u32;
            }
            "KSampler" => {
                job.steps = inputs["steps"].as_u64().unwrap_or(20) as u32;
                job.seed = inputs["seed"].as_u64().unwrap_or(0);
            }
            "CLIPTextEncode" if job.prompt.is_empty() => job.prompt = inputs["text"].as_str().unwrap_or("").to_string(),
            _ => {}
        }
    }
    if let Err(r) = this.check(&job) {
        return this.refuse(r);
    }
    let id = format!("{:08x}-fake", this.next_id.fetch_add(1, Ordering::Relaxed));
    let state = state.clone();
    let pid = id.clone();
    tokio::spawn(async move {
        let entry = match state.generate(&job).await {
            Ok((images, _)) => {
                let files: Vec<Value> = images
                    .into_iter()
                    .map(|png| json!({"filename": state.store(png), "subfolder": "", "type": "output"}))
                    .collect();
                json!({"prompt": [0, pid, {}], "outputs": {"9": {"images": files}},
                           "status": {"status_str": "success", "completed": true, "messages": []}})
            }
            Err(_) => json!({"outputs": {}, "status": {"status_str": "error", "completed": false,
                                  "messages": [["execution_error", {"exception_message": "queue"}]]}}),
        };
        state.history.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, entry);
    });
    json_answer(200, &json!({"prompt_id": id, "number": 0, "node_errors": {}}))
}

impl State {
    fn store(&self, png: Vec<u8>) -> String {
        let name = format!("herd_{:05}_.png", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), Bytes::from(png));
        name
    }
}

struct JobsGuard<'a>(&'a AtomicUsize);

impl Drop for JobsGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn png_answer(png: Bytes, headers: &[(&'static str, String)]) -> Answer {
    let mut r = Response::new(Full::new(png));
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("image/png"));
    for (k, v) in headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `width`×`height` RGB PNG: a gradient coloured by `seed`, with noise in the low bits so it
/// compresses about as well as a generated picture does (a 1024×1024 one is about 1.5 MB).
pub fn render_png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tint = [(seed & 0xff) as u32, ((seed >> 8) & 0xff) as u32, ((seed >> 16) & 0xff) as u32];
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let noise = next();
            for (c, t) in tint.iter().enumerate() {
                let base = (x * 255 / width.max(1) + y * 255 / height.max(1) + t) / 3 + (c as u32) * 20;
                let n = ((noise >> (c * 8)) & 0x07) as u32;
                pixels.push(((base & 0xf8) | n) as u8);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(&pixels);
        }
    }
    out
}
