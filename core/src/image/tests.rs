use super::backend::{
    self, base64_is_png, comfy_history, comfy_prompt, comfy_prompt_id, decode_base64, encode_base64, openai_b64_answer,
    parse_answer, AnswerError, ComfyDefaults, ComfyFile, ComfyState, ImageBackendKind, Images,
};
use super::png::{dimensions, SIGNATURE};
use super::*;
use proptest::prelude::*;
use serde_json::json;

fn limits() -> ImageLimits {
    ImageLimits::default()
}

fn herd(v: Value) -> Result<ImageJob, ImageError> {
    parse(ImageSurface::Herd, &serde_json::to_vec(&v).unwrap(), &limits())
}

fn openai(v: Value) -> Result<ImageJob, ImageError> {
    parse(ImageSurface::OpenAi, &serde_json::to_vec(&v).unwrap(), &limits())
}

/// A PNG head: signature and IHDR of `w`×`h` (enough for [`dimensions`]).
fn png_head(w: u32, h: u32) -> Vec<u8> {
    let mut b = SIGNATURE.to_vec();
    b.extend_from_slice(&13u32.to_be_bytes());
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&w.to_be_bytes());
    b.extend_from_slice(&h.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b
}

#[test]
fn ollama_herd_request_shape_with_its_defaults() {
    let job = herd(json!({"model": "z-image-turbo", "prompt": "a red fox"})).unwrap();
    assert_eq!((job.width, job.height, job.n), (1024, 1024, 1));
    assert_eq!(job.model, "z-image-turbo", "image model names are kept as given, no :latest");
    assert_eq!((job.steps, job.guidance, job.seed), (None, None, None));
    let job = herd(json!({"model": "m", "prompt": "p", "width": 512, "height": 768, "steps": 4,
        "guidance": 3.5, "seed": 7, "negative_prompt": "blur", "quantize": 8, "metadata": {"tags": ["proj"]}}))
    .unwrap();
    assert_eq!((job.width, job.height, job.steps, job.guidance, job.seed), (512, 768, Some(4), Some(3.5), Some(7)));
    assert_eq!(job.negative_prompt.as_deref(), Some("blur"));
    assert_eq!(job.tags, vec!["proj".to_string()]);
}

#[test]
fn openai_request_shape() {
    let job = openai(json!({"model": "sd-model", "prompt": "p", "n": 2, "size": "768x512",
        "response_format": "url", "quality": "hd", "style": "vivid", "user": "alice"}))
    .unwrap();
    assert_eq!((job.width, job.height, job.n, job.format), (768, 512, 2, ResponseFormat::Url));
    assert_eq!(job.tags, vec!["user:alice".to_string()], "as a chat's `user` is tagged");
    let job = openai(json!({"model": "m", "prompt": "p", "size": "auto"})).unwrap();
    assert_eq!((job.width, job.height, job.format), (1024, 1024, ResponseFormat::B64Json));
    // Servers' own names for steps and guidance are read too.
    let job = openai(json!({"model": "m", "prompt": "p", "num_inference_steps": 9, "guidance_scale": 2})).unwrap();
    assert_eq!((job.steps, job.guidance), (Some(9), Some(2.0)));
}

#[test]
fn refusals_name_the_field() {
    let field = |r: Result<ImageJob, ImageError>| {
        let e = r.unwrap_err();
        (e.status, e.field)
    };
    assert_eq!(field(herd(json!({"prompt": "p"}))), (400, Some("model")));
    assert_eq!(field(herd(json!({"model": "m"}))), (400, Some("prompt")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "  "}))), (400, Some("prompt")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "width": 100}))), (400, Some("width")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "height": 8192}))), (400, Some("height")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "width": -8}))), (400, Some("width")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "steps": 0}))), (400, Some("steps")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "steps": 10_000}))), (400, Some("steps")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "steps": "many"}))), (400, Some("steps")));
    assert_eq!(field(herd(json!({"model": "m", "prompt": "p", "seed": -5}))), (400, Some("seed")));
    assert_eq!(field(openai(json!({"model": "m", "prompt": "p", "n": 0}))), (400, Some("n")));
    assert_eq!(field(openai(json!({"model": "m", "prompt": "p", "n": 99}))), (400, Some("n")));
    assert_eq!(field(openai(json!({"model": "m", "prompt": "p", "size": "big"}))), (400, Some("size")));
    assert_eq!(field(openai(json!({"model": "m", "prompt": "p", "size": "4096x4096"}))), (400, Some("size")));
    assert_eq!(
        field(openai(json!({"model": "m", "prompt": "p", "response_format": "png"}))),
        (400, Some("response_format"))
    );
    assert_eq!(
        field(openai(json!({"model": "m", "prompt": "p", "output_format": "webp"}))),
        (400, Some("output_format"))
    );
    let long = "x".repeat(limits().max_prompt_bytes + 1);
    assert_eq!(field(openai(json!({"model": "m", "prompt": long}))), (413, Some("prompt")));
    let e = parse(ImageSurface::Herd, b"{not json", &limits()).unwrap_err();
    assert_eq!((e.status, e.field), (400, None));
    // -1 is sdapi's "random".
    assert_eq!(herd(json!({"model": "m", "prompt": "p", "seed": -1})).unwrap().seed, None);
}

#[test]
fn each_backend_gets_its_own_request() {
    let job = openai(json!({"model": "sdxl", "prompt": "a cat", "n": 2, "size": "512x768", "steps": 12,
        "seed": 3, "negative_prompt": "dog"}))
    .unwrap();
    let body = |kind| -> (String, Value) {
        let call = backend::request(kind, &job).unwrap();
        (call.path.to_string(), serde_json::from_slice(&call.body).unwrap())
    };
    let (path, b) = body(ImageBackendKind::SdCpp);
    assert_eq!(path, "/sdapi/v1/txt2img");
    assert_eq!((b["width"].as_u64(), b["height"].as_u64(), b["batch_size"].as_u64()), (Some(512), Some(768), Some(2)));
    assert_eq!(
        (b["steps"].as_u64(), b["seed"].as_u64(), b["negative_prompt"].as_str()),
        (Some(12), Some(3), Some("dog"))
    );
    assert!(b.get("override_settings").is_none(), "sd-server runs the model it was started with");
    let (_, b) = body(ImageBackendKind::A1111);
    assert_eq!(b["override_settings"]["sd_model_checkpoint"], "sdxl");
    let (path, b) = body(ImageBackendKind::OpenAi);
    assert_eq!(path, "/v1/images/generations");
    assert_eq!(
        (b["size"].as_str(), b["n"].as_u64(), b["response_format"].as_str()),
        (Some("512x768"), Some(2), Some("b64_json"))
    );
    let (path, b) = body(ImageBackendKind::OllamaHerd);
    assert_eq!(path, "/api/generate-image");
    assert_eq!((b["model"].as_str(), b["width"].as_u64(), b["steps"].as_u64()), (Some("sdxl"), Some(512), Some(12)));
    assert_eq!(ImageBackendKind::OllamaHerd.calls_for(2), 2);
    assert_eq!(ImageBackendKind::SdCpp.calls_for(2), 1);
    assert!(backend::request(ImageBackendKind::ComfyUi, &job).is_none());
    // A random seed is sdapi's -1, and left out elsewhere.
    let random = herd(json!({"model": "m", "prompt": "p"})).unwrap();
    let sd: Value = serde_json::from_slice(&backend::request(ImageBackendKind::SdCpp, &random).unwrap().body).unwrap();
    assert_eq!(sd["seed"], -1);
    let oa: Value = serde_json::from_slice(&backend::request(ImageBackendKind::OpenAi, &random).unwrap().body).unwrap();
    assert!(oa.get("seed").is_none() && oa.get("num_inference_steps").is_none());
}

#[test]
fn kinds_round_trip_by_name() {
    for k in ImageBackendKind::ALL {
        assert_eq!(ImageBackendKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(ImageBackendKind::parse("Forge"), Some(ImageBackendKind::A1111));
    assert_eq!(ImageBackendKind::parse("dalle"), None);
}

#[test]
fn answers_are_read_and_checked_for_png() {
    let png = png_head(64, 64);
    let b64 = encode_base64(&png);
    let sd = serde_json::to_vec(&json!({"images": [b64.clone()], "parameters": {}, "info": "{}"})).unwrap();
    assert_eq!(parse_answer(ImageBackendKind::A1111, &sd).unwrap(), Images::Base64(vec![b64.clone()]));
    let with_uri = serde_json::to_vec(&json!({"images": [format!("data:image/png;base64,{b64}")]})).unwrap();
    assert_eq!(parse_answer(ImageBackendKind::SdCpp, &with_uri).unwrap(), Images::Base64(vec![b64.clone()]));
    let oa = serde_json::to_vec(&json!({"created": 1, "data": [{"b64_json": b64.clone()}]})).unwrap();
    assert_eq!(parse_answer(ImageBackendKind::OpenAi, &oa).unwrap().len(), 1);
    assert_eq!(parse_answer(ImageBackendKind::OllamaHerd, &png).unwrap(), Images::Png(png.clone()));
    assert_eq!(parse_answer(ImageBackendKind::OllamaHerd, b"404 page not found"), Err(AnswerError::NotPng));
    let empty = serde_json::to_vec(&json!({"images": []})).unwrap();
    assert_eq!(parse_answer(ImageBackendKind::A1111, &empty), Err(AnswerError::NoImage));
    let jpeg =
        serde_json::to_vec(&json!({"images": [encode_base64(&[0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0, 0, 0])]})).unwrap();
    assert_eq!(parse_answer(ImageBackendKind::A1111, &jpeg), Err(AnswerError::NotPng));
    let url = serde_json::to_vec(&json!({"data": [{"url": "http://x/y.png"}]})).unwrap();
    assert!(matches!(parse_answer(ImageBackendKind::OpenAi, &url), Err(AnswerError::Malformed(_))));
    assert!(matches!(parse_answer(ImageBackendKind::SdCpp, b"{"), Err(AnswerError::Malformed(_))));
}

#[test]
fn model_lists_of_each_kind() {
    use super::backend::parse_models;
    let list = |kind, v: Value| parse_models(kind, &serde_json::to_vec(&v).unwrap());
    assert_eq!(
        list(ImageBackendKind::OpenAi, json!({"object": "list", "data": [{"id": "a"}, {"id": "a"}, {"id": "b"}]}))
            .unwrap(),
        ["a", "b"]
    );
    assert_eq!(
        list(ImageBackendKind::A1111, json!([{"title": "v1-5.safetensors [6ce0161689]", "model_name": "v1-5"}]))
            .unwrap(),
        ["v1-5.safetensors [6ce0161689]"]
    );
    assert_eq!(
        list(
            ImageBackendKind::ComfyUi,
            json!({"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["x.safetensors"]]}}}})
        )
        .unwrap(),
        ["x.safetensors"]
    );
    assert_eq!(
        list(ImageBackendKind::OllamaHerd, json!({"models": [{"name": "z-image-turbo"}, "flux"]})).unwrap(),
        ["z-image-turbo", "flux"]
    );
    assert!(list(ImageBackendKind::A1111, json!({"data": []})).is_err());
    let many: Vec<Value> = (0..5000).map(|i| json!({"id": format!("m{i}")})).collect();
    assert_eq!(list(ImageBackendKind::SdCpp, json!({"data": many})).unwrap().len(), super::backend::MAX_LISTED_MODELS);
}

#[test]
fn png_dimensions_from_the_ihdr() {
    assert_eq!(dimensions(&png_head(1024, 768)), Some((1024, 768)));
    assert_eq!(dimensions(&png_head(0, 768)), None);
    assert_eq!(dimensions(b"\x89PNG\r\n\x1a\n"), None);
    let mut bad = png_head(8, 8);
    bad[12..16].copy_from_slice(b"IDAT");
    assert_eq!(dimensions(&bad), None);
}

#[test]
fn openai_answer_is_the_json_the_sdk_reads() {
    let imgs = vec![encode_base64(&png_head(8, 8)), encode_base64(&png_head(16, 16))];
    let out = openai_b64_answer(1_700_000_000, &imgs, "a \"quoted\" cat");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["data"][1]["b64_json"].as_str(), Some(imgs[1].as_str()));
    assert_eq!(v["data"][0]["revised_prompt"], "a \"quoted\" cat");
    let url = backend::openai_url_answer(5, &["http://r/images/a.png".into()], "p");
    let v: Value = serde_json::from_slice(&url).unwrap();
    assert_eq!(v["data"][0]["url"], "http://r/images/a.png");
}

#[test]
fn comfy_workflow_is_filled_once() {
    let template = json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": "{{steps}}", "cfg": "{{guidance}}"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{model}}"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{n}}"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "masterpiece, {{prompt}}"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}"}}
    });
    let job =
        openai(json!({"model": "sd15.safetensors", "prompt": "a {{seed}} cat", "n": 2, "size": "512x512"})).unwrap();
    let body: Value =
        serde_json::from_slice(&comfy_prompt(&template, &job, 99, ComfyDefaults::default(), "herd")).unwrap();
    let w = &body["prompt"];
    assert_eq!(body["client_id"], "herd");
    assert_eq!(w["3"]["inputs"]["seed"], 99);
    assert_eq!(w["3"]["inputs"]["steps"], 20);
    assert_eq!(w["4"]["inputs"]["ckpt_name"], "sd15.safetensors");
    assert_eq!((w["5"]["inputs"]["width"].as_u64(), w["5"]["inputs"]["batch_size"].as_u64()), (Some(512), Some(2)));
    assert_eq!(w["6"]["inputs"]["text"], "masterpiece, a {{seed}} cat", "the client's text is not filled again");
    assert_eq!(w["7"]["inputs"]["text"], "");
}

#[test]
fn comfy_answers_are_read() {
    assert_eq!(comfy_prompt_id(br#"{"prompt_id": "abc", "number": 1}"#).unwrap(), "abc");
    assert!(comfy_prompt_id(br#"{"error": {"message": "bad node"}, "node_errors": {}}"#).is_err());
    assert_eq!(comfy_history(b"{}", "abc").unwrap(), ComfyState::Pending);
    let done = json!({"abc": {"status": {"status_str": "success", "completed": true},
        "outputs": {"10": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}]},
                    "9": {"images": [{"filename": "a b.png", "subfolder": "x", "type": "output"},
                                     {"filename": "p.png", "subfolder": "", "type": "temp"}]}}}});
    let ComfyState::Done(files) = comfy_history(&serde_json::to_vec(&done).unwrap(), "abc").unwrap() else {
        panic!("not done")
    };
    assert_eq!(files.iter().map(|f| f.filename.as_str()).collect::<Vec<_>>(), ["a b.png", "b.png"]);
    assert_eq!(files[0].view_path(), "/view?filename=a%20b.png&subfolder=x&type=output");
    let failed =
        json!({"abc": {"status": {"status_str": "error", "completed": false, "messages": [["execution_error", {}]]}}});
    assert!(matches!(comfy_history(&serde_json::to_vec(&failed).unwrap(), "abc").unwrap(), ComfyState::Failed(_)));
    let _ = ComfyFile { filename: String::new(), subfolder: String::new(), kind: String::new() };
}

proptest! {
    /// Whatever the body, parsing answers a job or a refusal with a 400 or 413, never a panic;
    /// a job it answers is within the limits.
    #[test]
    fn any_body_is_a_job_within_limits_or_a_refusal(body in proptest::collection::vec(any::<u8>(), 0..256),
                                                    openai_surface in any::<bool>()) {
        let surface = if openai_surface { ImageSurface::OpenAi } else { ImageSurface::Herd };
        match parse(surface, &body, &limits()) {
            Ok(job) => {
                let l = limits();
                prop_assert!(job.width >= l.min_side && job.width <= l.max_side && job.width % 8 == 0);
                prop_assert!(job.pixels() <= l.max_pixels && job.n >= 1 && job.n <= l.max_n);
            }
            Err(e) => prop_assert!(e.status == 400 || e.status == 413),
        }
    }

    /// Any valid job, sent to any backend, carries its size, prompt and seed through: the request
    /// read back gives the same values.
    #[test]
    fn jobs_round_trip_through_every_backend_request(
        w in 8u32..=256, h in 8u32..=256, n in 1u32..=8, steps in proptest::option::of(1u32..=200),
        seed in proptest::option::of(0u64..u64::from(u32::MAX)), prompt in "[a-zA-Z0-9 ,.{}\"\\\\]{1,40}",
    ) {
        let mut req = json!({"model": "m", "prompt": prompt, "size": format!("{}x{}", w * 8, h * 8), "n": n});
        if let Some(s) = steps { req["steps"] = json!(s); }
        if let Some(s) = seed { req["seed"] = json!(s); }
        let Ok(job) = openai(req) else { return Ok(()) };
        for kind in ImageBackendKind::ALL {
            let Some(call) = backend::request(kind, &job) else { continue };
            let v: Value = serde_json::from_slice(&call.body).unwrap();
            prop_assert_eq!(v["prompt"].as_str(), Some(job.prompt.as_str()));
            let size = match kind {
                ImageBackendKind::OpenAi => v["size"].as_str().map(str::to_string),
                _ => Some(format!("{}x{}", v["width"], v["height"])),
            };
            prop_assert_eq!(size, Some(job.size()));
            let sent_seed = v.get("seed").and_then(Value::as_u64);
            prop_assert_eq!(sent_seed, job.seed);
            let sent_steps = v.get("steps").or(v.get("num_inference_steps")).and_then(Value::as_u64);
            prop_assert_eq!(sent_steps, job.steps.map(u64::from));
        }
    }

    /// Base64 round-trips, and a PNG's base64 is recognised as one.
    #[test]
    fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut png = SIGNATURE.to_vec();
        png.extend_from_slice(&bytes);
        let b64 = encode_base64(&png);
        prop_assert!(base64_is_png(&b64));
        prop_assert_eq!(decode_base64(&b64).unwrap(), png.clone());
        let wrapped: String = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n");
        prop_assert_eq!(decode_base64(&wrapped).unwrap(), png.clone());
        prop_assert!(!base64_is_png(&encode_base64(&bytes)) || bytes.starts_with(&SIGNATURE));
    }
}

proptest! {
    /// The fuzz harness on random bytes and on JSON-ish text.
    #[test]
    fn fuzz_image_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        crate::testing::fuzz_image(&data);
    }

    #[test]
    fn fuzz_image_on_request_like_text(
        w in 0u32..5000, h in 0u32..5000, n in 0u32..20, steps in 0u32..300, prompt in "[ -~]{0,30}",
    ) {
        let body = format!(r#"{{"model":"m","prompt":{prompt:?},"width":{w},"height":{h},"size":"{w}x{h}","n":{n},"steps":{steps}}}"#);
        crate::testing::fuzz_image(body.as_bytes());
    }
}

mod sched {
    use super::super::backend::ImageBackendKind;
    use super::super::sched::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn cfg() -> ImageSchedConfig {
        ImageSchedConfig::default()
    }

    fn job(model: &str) -> JobShape {
        JobShape { model: model.into(), pixels: 1024 * 1024, steps: Some(20), n: 1 }
    }

    #[test]
    fn a_loaded_backend_comes_first_then_the_least_expected_time() {
        let mut f = ImageFleet::new();
        let cold = f.upsert(BackendInfo::new("a-cold", ImageBackendKind::A1111, &["sdxl", "sd15"]));
        let mut hot = BackendInfo::new("b-hot", ImageBackendKind::SdCpp, &["sdxl"]);
        hot.loaded = Some("sdxl".into());
        let hot = f.upsert(hot);
        let mut other = BackendInfo::new("c-other", ImageBackendKind::ComfyUi, &["sdxl", "flux"]);
        other.loaded = Some("flux".into());
        let other = f.upsert(other);
        let r = f.rank(&job("sdxl"), &[], &cfg());
        let order: Vec<BackendId> = r.candidates.iter().map(|c| c.backend).collect();
        assert_eq!(order, vec![hot, cold, other], "loaded first; one that must swap models pays the load");
        assert_eq!(r.candidates[2].load_s, cfg().load_s);
        // Busy enough, the loaded backend still comes first (the rule), but its wait shows.
        for _ in 0..3 {
            f.started(hot);
        }
        let r = f.rank(&job("sdxl"), &[], &cfg());
        assert_eq!(r.candidates[0].backend, hot);
        assert!(r.candidates[0].wait_s > 0.0);
        // Tried ones are left out, with the reason.
        let r = f.rank(&job("sdxl"), &[hot], &cfg());
        assert_eq!(r.candidates[0].backend, cold);
        assert!(r.eliminated.iter().any(|(id, _, e)| *id == hot && *e == Elimination::Tried));
    }

    #[test]
    fn eliminations_say_why() {
        let mut f = ImageFleet::new();
        let mut full = BackendInfo::new("full", ImageBackendKind::SdCpp, &["m"]);
        full.queue_limit = Some(1);
        let full = f.upsert(full);
        f.started(full);
        f.started(full);
        let mut small = BackendInfo::new("small", ImageBackendKind::A1111, &["m", "other"]);
        small.loaded = Some("other".into());
        small.vram_free_mb = Some(1000);
        small.model_mb.insert("other".into(), 2000);
        small.model_mb.insert("m".into(), 6500);
        let small = f.upsert(small);
        let down = f.upsert(BackendInfo::new("down", ImageBackendKind::OpenAi, &["m"]));
        f.set_up(down, false);
        let none = f.upsert(BackendInfo::new("none", ImageBackendKind::OpenAi, &["x"]));
        let r = f.rank(&job("m"), &[], &cfg());
        assert!(r.candidates.is_empty());
        let why: Vec<(BackendId, &str)> = r.eliminated.iter().map(|(id, _, e)| (*id, e.as_str())).collect();
        assert_eq!(
            why,
            vec![(full, "queue_full"), (small, "vram_does_not_fit"), (down, "down"), (none, "model_not_offered")]
        );
        assert!(f.model_known("m") && !f.model_known("nope"));
        let listed = crate::fleet::views::image_models(&f);
        assert_eq!(
            listed.iter().find(|l| l.name == "m").map(|l| l.fleet_nodes.len()),
            Some(2),
            "down backends' models are not listed"
        );
    }

    #[test]
    fn the_time_per_image_is_learned_and_scales_with_steps_and_pixels() {
        let mut f = ImageFleet::new();
        let id = f.upsert(BackendInfo::new("gpu", ImageBackendKind::SdCpp, &["m"]));
        let r = f.rank(&job("m"), &[], &cfg());
        assert!(!r.candidates[0].learned);
        f.started(id);
        f.finished(id, &job("m"), 1.0, &cfg());
        let r = f.rank(&job("m"), &[], &cfg());
        assert!(r.candidates[0].learned && (r.candidates[0].run_s - 1.0).abs() < 1e-9);
        // Twice the steps at four times the pixels: eight times as long, as the learned rate says.
        let big = JobShape { model: "m".into(), pixels: 4 * 1024 * 1024, steps: Some(40), n: 2 };
        let r = f.rank(&big, &[], &cfg());
        assert!((r.candidates[0].run_s - 16.0).abs() < 1e-9, "{}", r.candidates[0].run_s);
        assert_eq!(
            f.info(id).and_then(|i| i.loaded.clone()).as_deref(),
            Some("m"),
            "a finished job leaves its model loaded"
        );
        // The reaper waits a multiple of the expected time, within bounds.
        assert_eq!(f.deadline(id, &job("m"), &cfg()), Duration::from_secs(60));
        assert_eq!(f.deadline(id, &big, &cfg()), Duration::from_secs(64));
    }

    #[test]
    fn what_is_retried() {
        assert!(retryable(None) && retryable(Some(429)) && retryable(Some(503)) && retryable(Some(500)));
        assert!(!retryable(Some(400)) && !retryable(Some(404)) && !retryable(Some(413)));
    }

    proptest! {
        /// Any sequence of upserts, starts, ends and finishes: the ranking is a deterministic
        /// total order (same inputs, same ranking), every backend appears once (candidate or
        /// eliminated), loaded candidates precede the others, and among equals the expected time
        /// never decreases.
        #[test]
        fn ranking_is_total_and_ordered(ops in proptest::collection::vec((0u8..5, 0u32..6, 0u8..3, 0u32..50), 0..60)) {
            let models = ["a", "b", "c"];
            let mut f = ImageFleet::new();
            let cfg = cfg();
            for (op, machine, model, secs) in ops {
                let name = format!("m{machine}");
                match op {
                    0 => {
                        let mut info = BackendInfo::new(&name, ImageBackendKind::ALL[(machine % 5) as usize], &models[..=model as usize]);
                        info.loaded = (secs % 2 == 0).then(|| models[model as usize].to_string());
                        info.concurrency = 1 + secs % 3;
                        info.queue_limit = (secs % 5 == 0).then_some(secs % 4);
                        f.upsert(info);
                    }
                    op => {
                        let Some(id) = f.backends().nth(machine as usize).map(|(id, ..)| id) else { continue };
                        match op {
                            1 => f.started(id),
                            2 => f.ended(id),
                            3 => f.finished(id, &job(models[model as usize]), f64::from(secs) / 3.0, &cfg),
                            _ => f.set_up(id, secs % 2 == 0),
                        }
                    }
                }
            }
            for m in models {
                let r = f.rank(&job(m), &[], &cfg);
                prop_assert_eq!(&r, &f.rank(&job(m), &[], &cfg));
                prop_assert_eq!(r.candidates.len() + r.eliminated.len(), f.backends().count());
                for w in r.candidates.windows(2) {
                    prop_assert!(w[0].loaded >= w[1].loaded);
                    if w[0].loaded == w[1].loaded {
                        prop_assert!(w[0].total_s() <= w[1].total_s());
                    }
                }
                for c in &r.candidates {
                    prop_assert!(c.total_s().is_finite() && c.total_s() >= 0.0);
                    let d = f.deadline(c.backend, &job(m), &cfg);
                    prop_assert!(d >= cfg.min_deadline && d <= cfg.max_deadline);
                }
            }
        }
    }
}
