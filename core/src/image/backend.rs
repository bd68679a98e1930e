//! The image backends a machine runs (backends.md §1), and the translation of an [`ImageJob`] to
//! each one's request and of each one's answer back to images.
//!
//! | kind | request | answer |
//! |---|---|---|
//! | `sdcpp` (stable-diffusion.cpp `sd-server`) | `POST /sdapi/v1/txt2img` | `{images: [base64 PNG]}` |
//! | `a1111` (AUTOMATIC1111 / Forge `--api`) | `POST /sdapi/v1/txt2img`, the checkpoint in `override_settings` | `{images: [base64 PNG]}` |
//! | `comfyui` | `POST /prompt` with the model's workflow template filled in | `{prompt_id}`, then `GET /history/{id}` and `GET /view?…` |
//! | `openai` (LocalAI, vLLM, SGLang) | `POST /v1/images/generations`, `response_format: b64_json` | `{data: [{b64_json}]}` |
//! | `ollama-herd` (its Mac image server, port 11436) | `POST /api/generate-image` | `image/png` |

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::ImageJob;

/// An image server's kind, as `--image-node KIND=URL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageBackendKind {
    /// stable-diffusion.cpp's `sd-server`.
    SdCpp,
    /// AUTOMATIC1111 or Forge with `--api`.
    A1111,
    /// ComfyUI, driven by a workflow template per model.
    ComfyUi,
    /// Any server with OpenAI's `POST /v1/images/generations`.
    OpenAi,
    /// ollama-herd's node image server (mflux / DiffusionKit).
    OllamaHerd,
}

impl ImageBackendKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [ImageBackendKind; 5] = [
        ImageBackendKind::SdCpp,
        ImageBackendKind::A1111,
        ImageBackendKind::ComfyUi,
        ImageBackendKind::OpenAi,
        ImageBackendKind::OllamaHerd,
    ];

    /// Reads a kind as `--image-node` writes it (case-insensitive; `sd-server`, `forge` and
    /// `mflux` are accepted as aliases).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "sdcpp" | "sd-server" | "sd.cpp" | "stable-diffusion.cpp" => ImageBackendKind::SdCpp,
            "a1111" | "automatic1111" | "forge" => ImageBackendKind::A1111,
            "comfyui" | "comfy" => ImageBackendKind::ComfyUi,
            "openai" => ImageBackendKind::OpenAi,
            "ollama-herd" | "mflux" | "diffusionkit" => ImageBackendKind::OllamaHerd,
            _ => return None,
        })
    }

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageBackendKind::SdCpp => "sdcpp",
            ImageBackendKind::A1111 => "a1111",
            ImageBackendKind::ComfyUi => "comfyui",
            ImageBackendKind::OpenAi => "openai",
            ImageBackendKind::OllamaHerd => "ollama-herd",
        }
    }

    /// The port the server listens on by default (sd-server 1234, A1111 7860, ComfyUI 8188, vLLM's
    /// 8000 for OpenAI-style servers, ollama-herd's node image server 11436).
    pub fn default_port(self) -> u16 {
        match self {
            ImageBackendKind::SdCpp => 1234,
            ImageBackendKind::A1111 => 7860,
            ImageBackendKind::ComfyUi => 8188,
            ImageBackendKind::OpenAi => 8000,
            ImageBackendKind::OllamaHerd => 11436,
        }
    }

    /// Where the backend lists its models.
    pub fn models_path(self) -> &'static str {
        match self {
            ImageBackendKind::SdCpp | ImageBackendKind::OpenAi => "/v1/models",
            ImageBackendKind::A1111 => "/sdapi/v1/sd-models",
            ImageBackendKind::ComfyUi => "/object_info/CheckpointLoaderSimple",
            ImageBackendKind::OllamaHerd => "/api/image-models",
        }
    }

    /// How many backend calls one job of `n` images takes: the ollama-herd server draws one image
    /// per call; the others take `n` in one.
    pub fn calls_for(self, n: u32) -> u32 {
        match self {
            ImageBackendKind::OllamaHerd => n.max(1),
            _ => 1,
        }
    }
}

/// One backend call: `POST path` with a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendCall {
    /// The path on the backend.
    pub path: &'static str,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The request for `job` on a backend of `kind`, for every kind but ComfyUI (whose request is a
/// filled workflow: [`comfy_prompt`]). Fields the client left out are left out, so the backend's
/// own defaults apply; a random seed is the backend's to draw.
///
/// For [`ImageBackendKind::OllamaHerd`] the call draws one image ([`ImageBackendKind::calls_for`]);
/// for [`ImageBackendKind::ComfyUi`] there is none (`None`).
pub fn request(kind: ImageBackendKind, job: &ImageJob) -> Option<BackendCall> {
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_string(), v);
    };
    let path = match kind {
        ImageBackendKind::ComfyUi => return None,
        ImageBackendKind::SdCpp | ImageBackendKind::A1111 => {
            put("prompt", json!(job.prompt));
            put("negative_prompt", json!(job.negative_prompt.as_deref().unwrap_or("")));
            put("width", json!(job.width));
            put("height", json!(job.height));
            put("batch_size", json!(job.n));
            put("n_iter", json!(1));
            // sdapi's "random" is -1.
            put("seed", job.seed.map_or(json!(-1), |s| json!(s)));
            if let Some(steps) = job.steps {
                put("steps", json!(steps));
            }
            if let Some(g) = job.guidance {
                put("cfg_scale", json!(g));
            }
            if kind == ImageBackendKind::A1111 {
                // The checkpoint for this call; kept loaded afterwards (switching is the slow part).
                put("override_settings", json!({ "sd_model_checkpoint": job.model }));
                put("override_settings_restore_afterwards", json!(false));
            }
            "/sdapi/v1/txt2img"
        }
        ImageBackendKind::OpenAi => {
            put("model", json!(job.model));
            put("prompt", json!(job.prompt));
            put("n", json!(job.n));
            put("size", json!(job.size()));
            put("response_format", json!("b64_json"));
            optional(&mut put, job, "num_inference_steps", "guidance_scale");
            "/v1/images/generations"
        }
        ImageBackendKind::OllamaHerd => {
            put("model", json!(job.model));
            put("prompt", json!(job.prompt));
            put("width", json!(job.width));
            put("height", json!(job.height));
            optional(&mut put, job, "steps", "guidance");
            "/api/generate-image"
        }
    };
    Some(BackendCall { path, body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default() })
}

/// The fields a client may leave out, put only when it named them: `seed`, `negative_prompt`, and
/// steps and guidance under the server's own names.
fn optional(put: &mut impl FnMut(&str, Value), job: &ImageJob, steps: &str, guidance: &str) {
    if let Some(s) = job.seed {
        put("seed", json!(s));
    }
    if let Some(n) = job.steps {
        put(steps, json!(n));
    }
    if let Some(g) = job.guidance {
        put(guidance, json!(g));
    }
    if let Some(neg) = &job.negative_prompt {
        put("negative_prompt", json!(neg));
    }
}

/// Images a backend answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Images {
    /// Base64 PNGs, as JSON answers carry them (kept encoded: an OpenAI client takes them so).
    Base64(Vec<String>),
    /// One PNG, as the ollama-herd server answers.
    Png(Vec<u8>),
}

impl Images {
    /// How many images.
    pub fn len(&self) -> usize {
        match self {
            Images::Base64(v) => v.len(),
            Images::Png(_) => 1,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a backend's answer held no usable image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not the JSON the backend's API promises.
    #[error("the image backend's answer is not what its API promises: {0}")]
    Malformed(String),
    /// Well-formed, but without an image.
    #[error("the image backend answered without an image")]
    NoImage,
    /// An image that is not a PNG.
    #[error("the image backend answered something that is not a PNG")]
    NotPng,
}

/// Reads a successful (2xx) answer of a backend of `kind` (every kind but ComfyUI, whose images
/// come from [`comfy_history`] and `/view`).
///
/// # Errors
/// [`AnswerError`] when the answer holds no PNG.
pub fn parse_answer(kind: ImageBackendKind, body: &[u8]) -> Result<Images, AnswerError> {
    let images = match kind {
        ImageBackendKind::OllamaHerd => {
            return if super::png::is_png(body) { Ok(Images::Png(body.to_vec())) } else { Err(AnswerError::NotPng) };
        }
        ImageBackendKind::ComfyUi => {
            return Err(AnswerError::Malformed("ComfyUI answers through its history and /view".into()))
        }
        ImageBackendKind::SdCpp | ImageBackendKind::A1111 => {
            #[derive(serde::Deserialize)]
            struct SdApi {
                images: Vec<String>,
            }
            let a: SdApi = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
            a.images
        }
        ImageBackendKind::OpenAi => {
            #[derive(serde::Deserialize)]
            struct Item {
                b64_json: Option<String>,
                url: Option<String>,
            }
            #[derive(serde::Deserialize)]
            struct OpenAi {
                data: Vec<Item>,
            }
            let a: OpenAi = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
            let mut out = Vec::with_capacity(a.data.len());
            for item in a.data {
                match (item.b64_json, item.url) {
                    (Some(b), _) => out.push(b),
                    (None, Some(_)) => return Err(AnswerError::Malformed("a url where b64_json was asked for".into())),
                    (None, None) => return Err(AnswerError::NoImage),
                }
            }
            out
        }
    };
    let images: Vec<String> = images.into_iter().map(strip_data_uri).collect();
    if images.is_empty() {
        return Err(AnswerError::NoImage);
    }
    for b in &images {
        if !base64_is_png(b) {
            return Err(AnswerError::NotPng);
        }
    }
    Ok(Images::Base64(images))
}

/// A1111 extensions sometimes prefix `data:image/png;base64,`.
fn strip_data_uri(s: String) -> String {
    match s.strip_prefix("data:") {
        Some(rest) => match rest.split_once(";base64,") {
            Some((_, b64)) => b64.to_string(),
            None => s,
        },
        None => s,
    }
}

/// Whether base64 text decodes to something starting with a PNG signature (only the first bytes
/// are decoded).
pub fn base64_is_png(b64: &str) -> bool {
    // 12 base64 characters are 9 whole bytes: enough for the 8-byte signature.
    b64.as_bytes().get(..12).is_some_and(|head| {
        base64::engine::general_purpose::STANDARD.decode(head).is_ok_and(|b| super::png::is_png(&b))
    })
}

/// Decodes base64 (standard alphabet, padding optional, ASCII whitespace ignored).
///
/// # Errors
/// Text that is not base64.
pub fn decode_base64(b64: &str) -> Result<Vec<u8>, AnswerError> {
    let cleaned: std::borrow::Cow<'_, str> = if b64.bytes().any(|b| b.is_ascii_whitespace()) {
        b64.chars().filter(|c| !c.is_ascii_whitespace()).collect::<String>().into()
    } else {
        b64.into()
    };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cleaned.trim_end_matches('='))
        .map_err(|e| AnswerError::Malformed(format!("bad base64: {e}")))
}

/// Encodes bytes as standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// OpenAI's answer with base64 images: `{created, data: [{b64_json, revised_prompt}]}`.
pub fn openai_b64_answer(created: i64, images: &[String], revised_prompt: &str) -> Vec<u8> {
    let total: usize = images.iter().map(String::len).sum();
    let mut out = Vec::with_capacity(total + 64 + images.len() * (32 + revised_prompt.len()));
    out.extend_from_slice(format!("{{\"created\":{created},\"data\":[").as_bytes());
    let prompt = serde_json::to_string(revised_prompt).unwrap_or_else(|_| "\"\"".into());
    for (i, b64) in images.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Base64 needs no JSON escaping.
        out.extend_from_slice(b"{\"b64_json\":\"");
        out.extend_from_slice(b64.as_bytes());
        out.extend_from_slice(b"\",\"revised_prompt\":");
        out.extend_from_slice(prompt.as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// OpenAI's answer with URLs: `{created, data: [{url, revised_prompt}]}`.
pub fn openai_url_answer(created: i64, urls: &[String], revised_prompt: &str) -> Vec<u8> {
    let data: Vec<Value> = urls.iter().map(|u| json!({ "url": u, "revised_prompt": revised_prompt })).collect();
    serde_json::to_vec(&json!({ "created": created, "data": data })).unwrap_or_default()
}

/// The placeholders a ComfyUI workflow template may hold, filled from the job: a string that is
/// exactly a number placeholder becomes the number; text placeholders are replaced inside strings.
pub const COMFY_PLACEHOLDERS: [&str; 8] = [
    "{{model}}",
    "{{prompt}}",
    "{{negative_prompt}}",
    "{{width}}",
    "{{height}}",
    "{{steps}}",
    "{{seed}}",
    "{{guidance}}",
];

/// Defaults for a ComfyUI job's fields the client left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComfyDefaults {
    /// Sampling steps.
    pub steps: u32,
    /// CFG scale.
    pub guidance: f64,
}

impl Default for ComfyDefaults {
    fn default() -> Self {
        ComfyDefaults { steps: 20, guidance: 7.0 }
    }
}

/// `POST /prompt`'s body: `template` (a ComfyUI API-format workflow, `{node_id: {class_type,
/// inputs}}`) with the placeholders filled from `job`; `seed` is used when the job has none (ComfyUI
/// needs a concrete one), `client_id` names the router.
pub fn comfy_prompt(template: &Value, job: &ImageJob, seed: u64, defaults: ComfyDefaults, client_id: &str) -> Vec<u8> {
    let seed = job.seed.unwrap_or(seed);
    let numbers: [(&str, Value); 5] = [
        ("{{width}}", json!(job.width)),
        ("{{height}}", json!(job.height)),
        ("{{steps}}", json!(job.steps.unwrap_or(defaults.steps))),
        ("{{seed}}", json!(seed)),
        ("{{guidance}}", json!(job.guidance.unwrap_or(defaults.guidance))),
    ];
    let texts: [(&str, &str); 3] = [
        ("{{model}}", job.model.as_str()),
        ("{{negative_prompt}}", job.negative_prompt.as_deref().unwrap_or("")),
        ("{{prompt}}", job.prompt.as_str()),
    ];
    let mut workflow = template.clone();
    fill(&mut workflow, &numbers, &texts, job.n);
    serde_json::to_vec(&json!({ "prompt": workflow, "client_id": client_id })).unwrap_or_default()
}

fn fill(v: &mut Value, numbers: &[(&str, Value)], texts: &[(&str, &str)], n: u32) {
    match v {
        Value::String(s) => {
            if let Some((_, num)) = numbers.iter().find(|(p, _)| s == p) {
                *v = num.clone();
            } else if s == "{{n}}" {
                *v = json!(n);
            } else if s.contains("{{") {
                // One pass over the template text: a prompt that itself holds "{{seed}}" is not
                // filled again.
                let mut out = String::with_capacity(s.len());
                let mut rest = s.as_str();
                'scan: while let Some(at) = rest.find("{{") {
                    out.push_str(&rest[..at]);
                    rest = &rest[at..];
                    for (p, t) in texts {
                        if let Some(after) = rest.strip_prefix(p) {
                            out.push_str(t);
                            rest = after;
                            continue 'scan;
                        }
                    }
                    out.push_str("{{");
                    rest = &rest[2..];
                }
                out.push_str(rest);
                *s = out;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| fill(i, numbers, texts, n)),
        Value::Object(map) => map.values_mut().for_each(|i| fill(i, numbers, texts, n)),
        _ => {}
    }
}

/// `POST /prompt`'s answer: the prompt id to poll.
pub fn comfy_prompt_id(body: &[u8]) -> Result<String, AnswerError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    if let Some(err) = v.get("error") {
        let msg = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_string);
        return Err(AnswerError::Malformed(format!("ComfyUI refused the workflow: {msg}")));
    }
    v.get("prompt_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| AnswerError::Malformed("no prompt_id".into()))
}

/// One output file of a ComfyUI prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComfyFile {
    /// File name.
    pub filename: String,
    /// Subfolder of the output directory.
    pub subfolder: String,
    /// `output` or `temp`.
    pub kind: String,
}

impl ComfyFile {
    /// `GET` path for the file's bytes.
    pub fn view_path(&self) -> String {
        format!(
            "/view?filename={}&subfolder={}&type={}",
            percent_encode(&self.filename),
            percent_encode(&self.subfolder),
            percent_encode(&self.kind)
        )
    }
}

/// Where a ComfyUI prompt stands, from `GET /history/{prompt_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComfyState {
    /// Not in the history yet: queued or running.
    Pending,
    /// Finished, with its image files.
    Done(Vec<ComfyFile>),
    /// Finished with an error.
    Failed(String),
}

/// Reads `GET /history/{prompt_id}`.
///
/// # Errors
/// Not ComfyUI's history JSON.
pub fn comfy_history(body: &[u8], prompt_id: &str) -> Result<ComfyState, AnswerError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    let Some(entry) = v.get(prompt_id) else { return Ok(ComfyState::Pending) };
    let status = entry.get("status");
    if status.and_then(|s| s.get("status_str")).and_then(Value::as_str) == Some("error") {
        let why = status
            .and_then(|s| s.get("messages"))
            .map_or_else(|| "ComfyUI reported an error".to_string(), Value::to_string);
        return Ok(ComfyState::Failed(why));
    }
    let mut files = Vec::new();
    if let Some(outputs) = entry.get("outputs").and_then(Value::as_object) {
        // Node ids are strings; sort them so the order is the workflow's, not the map's.
        let mut nodes: Vec<(&String, &Value)> = outputs.iter().collect();
        nodes.sort_by(|a, b| a.0.parse::<u64>().ok().cmp(&b.0.parse::<u64>().ok()).then(a.0.cmp(b.0)));
        for (_, out) in nodes {
            for img in out.get("images").and_then(Value::as_array).into_iter().flatten() {
                let field = |k: &str| img.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let kind = field("type");
                // Previews (`temp`) are not the result.
                if kind == "output" && !field("filename").is_empty() {
                    files.push(ComfyFile { filename: field("filename"), subfolder: field("subfolder"), kind });
                }
            }
        }
    }
    let completed = status.and_then(|s| s.get("completed")).and_then(Value::as_bool).unwrap_or(true);
    match (completed, files.is_empty()) {
        (true, false) => Ok(ComfyState::Done(files)),
        (true, true) => Err(AnswerError::NoImage),
        (false, _) => Ok(ComfyState::Pending),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Most models read from one backend's list; more are ignored.
pub const MAX_LISTED_MODELS: usize = 1024;

/// Reads the model list a backend of `kind` answers at [`ImageBackendKind::models_path`]:
/// `{data: [{id}]}` (sd-server, OpenAI-style), `[{title, model_name}]` (A1111: the title, which
/// `sd_model_checkpoint` takes), ComfyUI's `CheckpointLoaderSimple.input.required.ckpt_name[0]`,
/// or `{models: [{name}]}` / `{models: ["name"]}` (an ollama-herd server). Names are kept as
/// listed, de-duplicated, at most [`MAX_LISTED_MODELS`].
///
/// # Errors
/// [`AnswerError::Malformed`] when the body is not the kind's list.
pub fn parse_models(kind: ImageBackendKind, body: &[u8]) -> Result<Vec<String>, AnswerError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    models_of(kind, &v)
}

/// [`parse_models`] of an answer already read as JSON.
///
/// # Errors
/// [`AnswerError::Malformed`] when `v` is not the kind's list.
pub fn models_of(kind: ImageBackendKind, v: &Value) -> Result<Vec<String>, AnswerError> {
    let bad = || AnswerError::Malformed(format!("not {}'s model list", kind.as_str()));
    let names: Vec<&str> = match kind {
        ImageBackendKind::SdCpp | ImageBackendKind::OpenAi => v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .filter_map(|m| m.get("id")?.as_str())
            .collect(),
        ImageBackendKind::A1111 => v
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .filter_map(|m| m.get("title").or_else(|| m.get("model_name"))?.as_str())
            .collect(),
        ImageBackendKind::ComfyUi => v
            .pointer("/CheckpointLoaderSimple/input/required/ckpt_name/0")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .filter_map(Value::as_str)
            .collect(),
        ImageBackendKind::OllamaHerd => v
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .filter_map(|m| m.as_str().or_else(|| m.get("name")?.as_str()))
            .collect(),
    };
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim();
        if !n.is_empty()
            && n.len() <= super::MAX_MODEL_BYTES
            && !n.chars().any(char::is_control)
            && !out.iter().any(|o| o == n)
        {
            out.push(n.to_string());
            if out.len() == MAX_LISTED_MODELS {
                break;
            }
        }
    }
    Ok(out)
}
