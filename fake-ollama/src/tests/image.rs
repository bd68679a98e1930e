//! The simulated image servers against core's translation: core writes each backend's request,
//! the fake (written from the servers' docs, not from core) answers, core reads the answer, and
//! the `png` crate decodes every image at the size asked for.

use std::time::Duration;

use herd_core::image::backend::{self, ComfyDefaults, ComfyState, ImageBackendKind, Images};
use herd_core::image::{parse, ImageJob, ImageLimits, ImageSurface};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::call_at;
use crate::image::{render_png, ImageFake, ImageFakeConfig, ImageKind};

async fn fake(kind: ImageKind, models: &[&str], concurrency: usize, queue: usize, secs: f64) -> ImageFake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ImageFakeConfig {
        kind,
        models: models.iter().map(|m| (*m).to_string()).collect(),
        secs_per_image: secs,
        load_secs: 0.0,
        concurrency,
        queue,
    };
    ImageFake::start(listener, config).unwrap()
}

fn job(model: &str, n: u32) -> ImageJob {
    let body =
        json!({"model": model, "prompt": "a lighthouse at dusk", "size": "64x128", "n": n, "steps": 8, "seed": 5});
    parse(ImageSurface::OpenAi, &serde_json::to_vec(&body).unwrap(), &ImageLimits::default()).unwrap()
}

fn decode(png: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(png);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("decodable pixels");
    (info.width, info.height)
}

fn sizes(images: Images) -> Vec<(u32, u32)> {
    match images {
        Images::Png(png) => vec![decode(&png)],
        Images::Base64(list) => list.iter().map(|b| decode(&backend::decode_base64(b).unwrap())).collect(),
    }
}

const KINDS: [(ImageKind, ImageBackendKind); 4] = [
    (ImageKind::Sdcpp, ImageBackendKind::SdCpp),
    (ImageKind::A1111, ImageBackendKind::A1111),
    (ImageKind::Openai, ImageBackendKind::OpenAi),
    (ImageKind::OllamaHerd, ImageBackendKind::OllamaHerd),
];

#[tokio::test]
async fn each_backend_answers_what_core_asks_with_real_pngs_of_the_size() {
    for (fake_kind, kind) in KINDS {
        let f = fake(fake_kind, &["sdxl.safetensors"], 1, 4, 0.0).await;
        let n = if kind == ImageBackendKind::OllamaHerd { 1 } else { 2 };
        let job = job("sdxl.safetensors", n);
        let call = backend::request(kind, &job).unwrap();
        let reply = call_at(f.addr(), "POST", call.path, std::str::from_utf8(&call.body).unwrap()).await;
        assert_eq!(reply.status, 200, "{kind:?}: {}", reply.text());
        let images = backend::parse_answer(kind, &reply.body).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(sizes(images), vec![(64, 128); n as usize], "{kind:?}");
        if kind == ImageBackendKind::OllamaHerd {
            assert_eq!(reply.header("x-image-size"), Some("64x128"));
            assert_eq!(reply.header("x-image-model"), Some("sdxl.safetensors"));
            assert!(reply.header("x-generation-time").is_some_and(|t| t.parse::<u64>().is_ok()));
        }
        // Its model list, where core looks for it, as core reads it.
        let list = call_at(f.addr(), "GET", kind.models_path(), "").await;
        if kind != ImageBackendKind::OllamaHerd {
            assert_eq!(list.status, 200, "{kind:?}");
            assert_eq!(backend::parse_models(kind, &list.body).unwrap(), vec!["sdxl.safetensors"], "{kind:?}");
        }
        assert_eq!(f.generated(), u64::from(n));
        f.shutdown();
    }
}

#[tokio::test]
async fn comfyui_runs_the_filled_workflow_and_serves_its_output() {
    let f = fake(ImageKind::Comfyui, &["sd15.safetensors"], 1, 4, 0.0).await;
    let template = json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": "{{steps}}", "cfg": "{{guidance}}"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{model}}"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{n}}"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "herd"}}
    });
    let job = job("sd15.safetensors", 2);
    let body = backend::comfy_prompt(&template, &job, 1, ComfyDefaults::default(), "herd-test");
    let reply = call_at(f.addr(), "POST", "/prompt", std::str::from_utf8(&body).unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let id = backend::comfy_prompt_id(&reply.body).unwrap();
    // Poll the history as the router does, within a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let files = loop {
        let h = call_at(f.addr(), "GET", &format!("/history/{id}"), "").await;
        match backend::comfy_history(&h.body, &id).unwrap() {
            ComfyState::Done(files) => break files,
            ComfyState::Failed(why) => panic!("failed: {why}"),
            ComfyState::Pending => {
                assert!(tokio::time::Instant::now() < deadline, "the prompt never finished");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert_eq!(files.len(), 2);
    let list = call_at(f.addr(), "GET", ImageBackendKind::ComfyUi.models_path(), "").await;
    assert_eq!(backend::parse_models(ImageBackendKind::ComfyUi, &list.body).unwrap(), vec!["sd15.safetensors"]);
    for file in files {
        let png = call_at(f.addr(), "GET", &file.view_path(), "").await;
        assert_eq!(png.status, 200);
        assert_eq!(decode(&png.body), (64, 128));
    }
    // A workflow naming a checkpoint it does not have is refused in ComfyUI's shape.
    let bad = backend::comfy_prompt(&template, &self::job("nope.safetensors", 1), 1, ComfyDefaults::default(), "t");
    let reply = call_at(f.addr(), "POST", "/prompt", std::str::from_utf8(&bad).unwrap()).await;
    assert_eq!(reply.status, 404);
    assert!(backend::comfy_prompt_id(&reply.body).is_err());
}

#[tokio::test]
async fn unknown_models_are_refused_in_each_servers_shape() {
    for (fake_kind, kind) in KINDS {
        if kind == ImageBackendKind::SdCpp {
            continue; // sd-server draws with its one model whatever the name
        }
        let f = fake(fake_kind, &["a.safetensors"], 1, 4, 0.0).await;
        let call = backend::request(kind, &job("other", 1)).unwrap();
        let reply = call_at(f.addr(), "POST", call.path, std::str::from_utf8(&call.body).unwrap()).await;
        assert_eq!(reply.status, 404, "{kind:?}");
        let v: Value = reply.json();
        assert!(v.get("error").is_some() || v.get("detail").is_some(), "{kind:?}: {v}");
        f.shutdown();
    }
}

#[tokio::test]
async fn a_full_sd_server_queue_answers_429() {
    let f = fake(ImageKind::Sdcpp, &["z.gguf"], 1, 0, 60.0).await;
    let call = backend::request(ImageBackendKind::SdCpp, &job("z.gguf", 1)).unwrap();
    let (addr, path, body) = (f.addr(), call.path, String::from_utf8(call.body.clone()).unwrap());
    let held = tokio::spawn(async move { call_at(addr, "POST", path, &body).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.jobs() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the first job never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let reply = call_at(f.addr(), "POST", call.path, std::str::from_utf8(&call.body).unwrap()).await;
    assert_eq!(reply.status, 429, "{}", reply.text());
    held.abort();
    f.shutdown();
}

#[test]
fn a_rendered_megapixel_weighs_what_a_generated_one_does() {
    let png = render_png(1024, 1024, 42);
    assert_eq!(decode(&png), (1024, 1024));
    let mb = png.len() as f64 / 1e6;
    assert!((1.0..2.5).contains(&mb), "{mb} MB");
    assert_eq!(render_png(64, 64, 1), render_png(64, 64, 1), "deterministic");
}
