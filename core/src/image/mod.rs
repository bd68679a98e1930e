//! Image generation: the job a client asks for, checked once, and its translation to each image
//! backend and back (backends.md §1, herd-node.md §2.1). Pure: bytes in, bytes out.
//!
//! Two client surfaces describe the same [`ImageJob`]:
//! - ollama-herd's `POST /api/generate-image` (`{model, prompt, width, height, steps, guidance,
//!   seed, negative_prompt}`, answered with `image/png`);
//! - OpenAI's `POST /v1/images/generations` (`{model, prompt, n, size: "WxH", response_format}`,
//!   `quality` and `style` accepted and ignored, answered with `{created, data: [{b64_json}]}` or
//!   URLs the router serves).
//!
//! Everything a backend would refuse is refused here first, with a 400 that names the field (a
//! prompt over the limit is a 413), so no request is forwarded only to fail on every node.
//! [`backend`] turns a job into each backend's request and reads each backend's answer.

pub mod backend;
pub mod png;
pub mod sched;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

/// Width and height when the client names none (ollama-herd's and OpenAI's default).
pub const DEFAULT_SIDE: u32 = 1024;
/// Image model names longer than this are refused.
pub const MAX_MODEL_BYTES: usize = 1024;

/// What an image request may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLimits {
    /// Longest prompt (and negative prompt), bytes; longer is a 413.
    pub max_prompt_bytes: usize,
    /// Smallest width or height.
    pub min_side: u32,
    /// Largest width or height.
    pub max_side: u32,
    /// Most pixels in one image (width × height).
    pub max_pixels: u64,
    /// Most sampling steps.
    pub max_steps: u32,
    /// Most images in one request (`n`).
    pub max_n: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_prompt_bytes: 16 * 1024,
            min_side: 64,
            max_side: 4096,
            max_pixels: 2048 * 2048 * 2,
            max_steps: 200,
            max_n: 8,
        }
    }
}

/// How the OpenAI surface hands the images back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `data[].b64_json`: the PNG in base64, inside the JSON answer.
    B64Json,
    /// `data[].url`: a URL the router serves for a while.
    Url,
}

/// Which client surface asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSurface {
    /// ollama-herd's `POST /api/generate-image`: one PNG as the body.
    Herd,
    /// OpenAI's `POST /v1/images/generations`.
    OpenAi,
}

/// One image request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageJob {
    /// The model, as the backend lists it (`sd_xl_base_1.0.safetensors`, `z-image-turbo`): image
    /// backends name models their own way, so the name is kept as given (no `:latest`).
    pub model: String,
    /// What to draw.
    pub prompt: String,
    /// What not to draw.
    pub negative_prompt: Option<String>,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Sampling steps; the backend's default when absent.
    pub steps: Option<u32>,
    /// Guidance (CFG) scale; the backend's default when absent.
    pub guidance: Option<f64>,
    /// The seed; random when absent.
    pub seed: Option<u64>,
    /// How many images.
    pub n: u32,
    /// The OpenAI surface's answer shape (`B64Json` for the PNG surface, which ignores it).
    pub format: ResponseFormat,
    /// Request tags (`metadata.tags`, OpenAI's `user`).
    pub tags: Vec<String>,
}

impl ImageJob {
    /// Pixels per image.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// `"WxH"`, as OpenAI's `size` and the `X-Image-Size` header write it.
    pub fn size(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

/// Why an image request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    /// 400, or 413 for a prompt over the limit.
    pub status: u16,
    /// The field at fault, when one is.
    pub field: Option<&'static str>,
    /// What to tell the client.
    pub message: String,
}

impl ImageError {
    fn field(field: &'static str, message: impl Into<String>) -> Self {
        ImageError { status: 400, field: Some(field), message: message.into() }
    }
}

/// Reads and checks an image request of `surface` from its JSON body.
///
/// # Errors
/// [`ImageError`]: not a JSON object, a missing or mistyped field (named), a size, step count or
/// `n` out of `limits` (400), a prompt over `limits.max_prompt_bytes` (413).
pub fn parse(surface: ImageSurface, body: &[u8], limits: &ImageLimits) -> Result<ImageJob, ImageError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ImageError {
        status: 400,
        field: None,
        message: format!("the body is not valid JSON: {e}"),
    })?;
    let Value::Object(map) = value else {
        return Err(ImageError { status: 400, field: None, message: "the body must be a JSON object".into() });
    };
    let model = model(&map)?;
    let prompt = prompt_field(&map, "prompt", limits)?
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| ImageError::field("prompt", "prompt is required: say what to draw"))?;
    let negative_prompt = prompt_field(&map, "negative_prompt", limits)?.filter(|p| !p.is_empty());
    let (width, height) = match surface {
        ImageSurface::Herd => (side(&map, "width")?, side(&map, "height")?),
        ImageSurface::OpenAi => size(&map)?,
    };
    for (name, v) in [("width", width), ("height", height)] {
        if v < limits.min_side || v > limits.max_side {
            return Err(ImageError::field(
                name,
                format!("{name} {v} is out of range: {} to {} pixels", limits.min_side, limits.max_side),
            ));
        }
        if v % 8 != 0 {
            return Err(ImageError::field(name, format!("{name} {v} must be a multiple of 8")));
        }
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        let field = if surface == ImageSurface::OpenAi { "size" } else { "width" };
        return Err(ImageError::field(
            field,
            format!(
                "{width}x{height} is {} pixels, over the limit of {}",
                u64::from(width) * u64::from(height),
                limits.max_pixels
            ),
        ));
    }
    let steps = match uint(&map, "steps")?.or(uint(&map, "num_inference_steps")?) {
        Some(0) => return Err(ImageError::field("steps", "steps must be at least 1")),
        Some(s) if s > u64::from(limits.max_steps) => {
            return Err(ImageError::field("steps", format!("steps {s} is over the limit of {}", limits.max_steps)))
        }
        s => s.map(|s| s as u32),
    };
    let guidance = match number(&map, "guidance")?.or(number(&map, "guidance_scale")?) {
        Some(g) if !(0.0..=100.0).contains(&g) => {
            return Err(ImageError::field("guidance", format!("guidance {g} is out of range: 0 to 100")))
        }
        g => g,
    };
    let seed = seed(&map)?;
    let n = match surface {
        ImageSurface::Herd => 1,
        ImageSurface::OpenAi => match uint(&map, "n")? {
            None => 1,
            Some(0) => return Err(ImageError::field("n", "n must be at least 1")),
            Some(n) if n > u64::from(limits.max_n) => {
                return Err(ImageError::field("n", format!("n {n} is over the limit of {}", limits.max_n)))
            }
            Some(n) => n as u32,
        },
    };
    let format = match surface {
        ImageSurface::Herd => ResponseFormat::B64Json,
        ImageSurface::OpenAi => response_format(&map)?,
    };
    if surface == ImageSurface::OpenAi {
        match map.get("output_format") {
            None | Some(Value::Null) => {}
            Some(Value::String(f)) if f.eq_ignore_ascii_case("png") => {}
            Some(other) => {
                return Err(ImageError::field(
                    "output_format",
                    format!("output_format {other} is not offered: images come back as png"),
                ))
            }
        }
    }
    Ok(ImageJob { model, prompt, negative_prompt, width, height, steps, guidance, seed, n, format, tags: tags(&map) })
}

fn model(map: &Map<String, Value>) -> Result<String, ImageError> {
    let name = match map.get("model") {
        Some(Value::String(s)) => s.trim(),
        None | Some(Value::Null) => "",
        Some(_) => return Err(ImageError::field("model", "model must be a string")),
    };
    if name.is_empty() {
        return Err(ImageError::field(
            "model",
            "model is required: GET /api/image-models lists the fleet's image models",
        ));
    }
    if name.len() > MAX_MODEL_BYTES || name.chars().any(char::is_control) {
        return Err(ImageError::field("model", "invalid model name"));
    }
    Ok(name.to_string())
}

fn prompt_field(
    map: &Map<String, Value>,
    name: &'static str,
    limits: &ImageLimits,
) -> Result<Option<String>, ImageError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > limits.max_prompt_bytes => Err(ImageError {
            status: 413,
            field: Some(name),
            message: format!("{name} is {} bytes, over the limit of {}", s.len(), limits.max_prompt_bytes),
        }),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ImageError::field(name, format!("{name} must be a string"))),
    }
}

fn uint(map: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, ImageError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            // 30.0 is 30; 30.5 and negatives are not counts.
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(ImageError::field(name, format!("{name} must be a whole number of at least 0"))),
        },
        Some(_) => Err(ImageError::field(name, format!("{name} must be a number"))),
    }
}

fn number(map: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, ImageError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ImageError::field(name, format!("{name} must be a number"))),
    }
}

fn side(map: &Map<String, Value>, name: &'static str) -> Result<u32, ImageError> {
    match uint(map, name)? {
        None => Ok(DEFAULT_SIDE),
        Some(v) => Ok(u32::try_from(v).unwrap_or(u32::MAX)),
    }
}

/// OpenAI's `size`: `"WxH"`, or `"auto"` / absent for the default.
fn size(map: &Map<String, Value>) -> Result<(u32, u32), ImageError> {
    let s = match map.get("size") {
        None | Some(Value::Null) => return Ok((DEFAULT_SIDE, DEFAULT_SIDE)),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(ImageError::field("size", "size must be a string such as \"1024x1024\"")),
    };
    if s.eq_ignore_ascii_case("auto") {
        return Ok((DEFAULT_SIDE, DEFAULT_SIDE));
    }
    let bad = || ImageError::field("size", format!("size {s:?} is not WIDTHxHEIGHT, such as \"1024x1024\""));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let parse = |t: &str| -> Result<u32, ImageError> {
        if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    Ok((parse(w)?, parse(h)?))
}

/// A seed: a whole number; `-1` (sdapi's "random") and absent both mean random.
fn seed(map: &Map<String, Value>) -> Result<Option<u64>, ImageError> {
    match map.get("seed") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(-1)) => Ok(None),
            _ => Err(ImageError::field("seed", "seed must be a whole number of at least 0 (or -1 for random)")),
        },
        Some(_) => Err(ImageError::field("seed", "seed must be a number")),
    }
}

fn response_format(map: &Map<String, Value>) -> Result<ResponseFormat, ImageError> {
    match map.get("response_format") {
        None | Some(Value::Null) => Ok(ResponseFormat::B64Json),
        Some(Value::String(s)) if s == "b64_json" => Ok(ResponseFormat::B64Json),
        Some(Value::String(s)) if s == "url" => Ok(ResponseFormat::Url),
        Some(other) => Err(ImageError::field(
            "response_format",
            format!("response_format {other} is not one of \"b64_json\", \"url\""),
        )),
    }
}

/// `metadata.tags` and OpenAI's `user` (as `user:<value>`), read as a text request's are.
fn tags(map: &Map<String, Value>) -> Vec<String> {
    let metadata = map.get("metadata").and_then(Value::as_object);
    crate::api::request_tags(metadata, map.get("user").and_then(Value::as_str), false, &[])
}
