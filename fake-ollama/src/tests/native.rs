//! The native `/api/*` endpoints: shapes, defaults and error strings.

use serde_json::{json, Value};

use super::{call, fast, get, post};
use crate::text::{seed_of, sentence, EMBEDDING_DIM};

const METRICS: [&str; 6] =
    ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"];

fn assert_final(line: &Value, reason: &str, eval_count: u64) {
    assert_eq!(line["done"], true);
    assert_eq!(line["done_reason"], reason);
    for m in METRICS {
        assert!(line[m].is_u64(), "{m} must be an integer: {line}");
    }
    assert_eq!(line["eval_count"], eval_count);
    assert!(line["prompt_eval_count"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn chat_streams_ndjson_by_default() {
    let h = fast().await;
    let r =
        post(&h, "/api/chat", r#"{"model":"Qwen3:8B","messages":[{"role":"user","content":"why is the sky blue?"}]}"#)
            .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert!(r.header("transfer-encoding").is_some() && r.complete);
    let lines = r.lines();
    assert_eq!(lines.len(), 17, "16 tokens and the final line");
    let mut text = String::new();
    for line in &lines[..16] {
        assert_eq!(line["model"], "Qwen3:8B", "the model is echoed verbatim");
        assert_eq!(line["done"], false);
        assert_eq!(line["message"]["role"], "assistant");
        let created = line["created_at"].as_str().unwrap();
        assert!(created.ends_with('Z') && created.len() >= 20, "{created}");
        text.push_str(line["message"]["content"].as_str().unwrap());
    }
    assert_eq!(text, sentence(seed_of("why is the sky blue?"), 16));
    let last = &lines[16];
    assert_final(last, "stop", 16);
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
}

#[tokio::test]
async fn chat_without_stream_is_one_object_and_num_predict_is_exact() {
    let h = fast().await;
    let body = r#"{"model":"qwen3:8b","stream":false,"options":{"num_predict":5},"tools":[],
                   "messages":[{"role":"user","content":"hi"},{"role":"assistant"},{"role":"user","content":"go"}]}"#;
    let r = post(&h, "/api/chat", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    let v = r.json();
    assert_final(&v, "length", 5);
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(v["message"]["content"].as_str().unwrap().split(' ').count(), 5);
    assert_eq!(h.stats().completed, 1);
    assert_eq!(h.stats().last_body.unwrap()["options"]["num_predict"], 5);
}

#[tokio::test]
async fn thinking_json_format_and_tools() {
    let h = fast().await;
    let r =
        post(&h, "/api/chat", r#"{"model":"qwen3:8b","think":true,"messages":[{"role":"user","content":"x"}]}"#).await;
    let lines = r.lines();
    assert!(lines[0]["message"]["thinking"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(lines[0]["message"]["content"], "");
    assert!(lines[4]["message"].get("thinking").is_none());

    let body = r#"{"model":"qwen3:8b","stream":false,"format":"json","messages":[{"role":"user","content":"x"}]}"#;
    let content = post(&h, "/api/chat", body).await.json()["message"]["content"].as_str().unwrap().to_string();
    assert!(serde_json::from_str::<Value>(&content).unwrap().is_object(), "{content}");

    let tools = r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
        "properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"]}}}]"#;
    let body = format!(
        r#"{{"model":"qwen3:8b","stream":false,"tools":{tools},"messages":[{{"role":"user","content":"w"}}]}}"#
    );
    let v = post(&h, "/api/chat", &body).await.json();
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["message"]["content"], "");
    let call = &v["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], json!({"city": "Paris", "days": 1}));
    assert!(call["id"].as_str().unwrap().starts_with("call_"));

    let body = format!(
        r#"{{"model":"qwen3:8b","stream":false,"tools":{tools},"messages":[{{"role":"user","content":"w"}},
            {{"role":"tool","tool_name":"get_weather","content":"22C"}}]}}"#
    );
    let v = post(&h, "/api/chat", &body).await.json();
    assert!(v["message"].get("tool_calls").is_none());
    assert!(!v["message"]["content"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn generate_streams_and_loads() {
    let h = fast().await;
    let lines = post(&h, "/api/generate", r#"{"model":"qwen3:8b","prompt":"p","images":["iVBORw=="]}"#).await.lines();
    assert_eq!(lines.len(), 17);
    assert!(lines[0]["response"].is_string() && lines[0].get("message").is_none());
    assert_final(&lines[16], "stop", 16);
    assert!(lines[16]["context"].is_array());

    let v = post(&h, "/api/generate", r#"{"model":"qwen3:8b","stream":false,"prompt":"p"}"#).await.json();
    assert_eq!(v["response"].as_str().unwrap().split(' ').count(), 16);

    let r = post(&h, "/api/generate", r#"{"model":"qwen3:8b"}"#).await;
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"), "load replies are one object");
    let v = r.json();
    assert_eq!((&v["done"], &v["done_reason"], &v["response"]), (&json!(true), &json!("load"), &json!("")));
    let v = post(&h, "/api/chat", r#"{"model":"qwen3:8b","messages":[],"keep_alive":0}"#).await.json();
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(v["message"], json!({"role": "assistant", "content": ""}));
}

#[tokio::test]
async fn embeddings_are_unit_vectors() {
    let h = fast().await;
    let v = post(&h, "/api/embed", r#"{"model":"nomic-embed-text","input":["a","b"]}"#).await.json();
    assert_eq!(v["model"], "nomic-embed-text");
    let vectors = v["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for vec in vectors {
        let xs: Vec<f64> = vec.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(xs.len(), EMBEDDING_DIM);
        assert!((xs.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() < 1e-4);
    }
    assert_ne!(vectors[0], vectors[1]);
    assert!(v["total_duration"].is_u64() && v["prompt_eval_count"].is_u64());
    let v = post(&h, "/api/embed", r#"{"model":"nomic-embed-text","input":"a","dimensions":2}"#).await.json();
    assert_eq!(v["embeddings"][0].as_array().unwrap().len(), 2);
    let v = post(&h, "/api/embed", r#"{"model":"nomic-embed-text","input":[]}"#).await.json();
    assert_eq!(v["embeddings"], json!([]));
    let r = post(&h, "/api/embed", r#"{"model":"nomic-embed-text","input":5}"#).await;
    assert_eq!((r.status, r.json()), (400, json!({"error": "invalid input type"})));
    let v = post(&h, "/api/embeddings", r#"{"model":"nomic-embed-text","prompt":"a"}"#).await.json();
    assert_eq!(v["embedding"].as_array().unwrap().len(), EMBEDDING_DIM);
}

#[tokio::test]
async fn listing_endpoints() {
    let h = fast().await;
    let r = get(&h, "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Ollama is running"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(call(&h, "HEAD", "/", "").await.status, 200);
    assert_eq!(get(&h, "/api/version").await.json(), json!({"version": crate::machine::OLLAMA_VERSION}));

    let tags = get(&h, "/api/tags").await.json();
    let models = tags["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let qwen = models.iter().find(|m| m["name"] == "qwen3:8b").unwrap();
    assert_eq!(qwen["model"], "qwen3:8b");
    assert_eq!(qwen["size"], 5_200_000_000u64);
    assert_eq!(qwen["digest"].as_str().unwrap().len(), 64);
    for key in ["parent_model", "format", "family", "families", "parameter_size", "quantization_level"] {
        assert!(qwen["details"].get(key).is_some(), "details.{key}");
    }
    assert!(models.iter().any(|m| m["name"] == "nomic-embed-text:latest"));

    // Fixed timing: every model on disk counts as loaded, in VRAM on this GPU machine.
    let ps = get(&h, "/api/ps").await.json();
    let loaded = ps["models"].as_array().unwrap();
    assert_eq!(loaded.len(), 2);
    assert!(loaded.iter().all(|m| m["size_vram"] == m["size"] && m["context_length"] == 8192));
    assert!(loaded[0]["expires_at"].as_str().unwrap().ends_with('Z'));

    let show = post(&h, "/api/show", r#"{"name":"qwen3:8b"}"#).await.json();
    assert_eq!(show["model_info"]["qwen.context_length"], 8192);
    assert!(show["capabilities"].as_array().unwrap().contains(&json!("completion")));
    for key in ["license", "modelfile", "parameters", "template", "details", "modified_at"] {
        assert!(show.get(key).is_some(), "show.{key}");
    }
}

#[tokio::test]
async fn errors_are_ollamas() {
    let h = fast().await;
    let cases: &[(&str, &str, u16, Value)] = &[
        (
            "/api/chat",
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
            404,
            json!({"error":"model 'nope' not found"}),
        ),
        ("/api/generate", r#"{"model":"nope","prompt":"x"}"#, 404, json!({"error":"model 'nope' not found"})),
        ("/api/generate", r#"{"prompt":"x"}"#, 404, json!({"error":"model '' not found"})),
        (
            "/api/embed",
            r#"{"model":"foo","input":"x"}"#,
            404,
            json!({"error":"model \"foo\" not found, try pulling it first"}),
        ),
        ("/api/show", r#"{"model":"nope"}"#, 404, json!({"error":"model 'nope:latest' not found"})),
        ("/api/chat", r#"{"messages":[]}"#, 400, json!({"error":"model is required"})),
        ("/api/chat", r#"{"model": x}"#, 400, json!({"error":"invalid character 'x' looking for beginning of value"})),
        ("/api/chat", "", 400, json!({"error":"missing request body"})),
        ("/api/chat", r#"{"model":"m:","messages":[]}"#, 400, json!({"error":"invalid model name"})),
        (
            "/api/chat",
            r#"{"model":"qwen3:8b","messages":5}"#,
            400,
            json!({"error":"json: cannot unmarshal number into Go struct field ChatRequest.messages of type []api.Message"}),
        ),
        (
            "/api/chat",
            r#"{"model":"qwen3:8b","think":"x","messages":[{"role":"user","content":"x"}]}"#,
            400,
            json!({"error":"invalid think value: \"x\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"}),
        ),
        (
            "/api/generate",
            r#"{"model":"qwen3:8b","prompt":"x","options":{"num_ctx":"big"}}"#,
            500,
            json!({"error":"option \"num_ctx\" must be of type integer"}),
        ),
        ("/api/delete", r#"{"model":"nope"}"#, 404, json!({"error":"model 'nope' not found"})),
        ("/api/copy", r#"{"source":"nope","destination":"b"}"#, 404, json!({"error":"model \"nope\" not found"})),
        (
            "/api/generate",
            r#"{"model":"nomic-embed-text","prompt":"x"}"#,
            400,
            json!({"error":"\"nomic-embed-text\" does not support generate"}),
        ),
    ];
    for (path, body, status, want) in cases {
        let method = if *path == "/api/delete" { "DELETE" } else { "POST" };
        let r = call(&h, method, path, body).await;
        assert_eq!((r.status, r.json()), (*status, want.clone()), "{path} {body}");
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    }
    let r = get(&h, "/api/nothing").await;
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found"));
    let r = get(&h, "/api/chat").await;
    assert_eq!((r.status, r.text().as_str()), (405, "405 method not allowed"));
    assert_eq!(h.stats().requests["/api/chat"], 8);
    assert_eq!(h.stats().requests["other"], 1);
}

#[tokio::test]
async fn pull_copy_delete() {
    let h = fast().await;
    let lines = post(&h, "/api/pull", r#"{"name":"llama3.2"}"#).await.lines();
    assert_eq!(lines.first().unwrap()["status"], "pulling manifest");
    assert_eq!(lines.last().unwrap(), &json!({"status": "success"}));
    assert!(lines[1]["digest"].as_str().unwrap().starts_with("sha256:"));
    let v = post(&h, "/api/pull", r#"{"model":"llama3.2","stream":false}"#).await.json();
    assert_eq!(v, json!({"status": "success"}));
    let names = |tags: Value| -> Vec<String> {
        tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(names(get(&h, "/api/tags").await.json()).contains(&"llama3.2:latest".to_string()));
    let r = post(&h, "/api/chat", r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"x"}]}"#)
        .await;
    assert_eq!(r.status, 200);

    let r = post(&h, "/api/copy", r#"{"source":"llama3.2","destination":"backup"}"#).await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(names(get(&h, "/api/tags").await.json()).contains(&"backup:latest".to_string()));
    let r = call(&h, "DELETE", "/api/delete", r#"{"name":"backup"}"#).await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(call(&h, "DELETE", "/api/delete", r#"{"name":"backup"}"#).await.status, 404);
    let v = post(&h, "/api/create", r#"{"model":"mine","from":"qwen3:8b","stream":false}"#).await.json();
    assert_eq!(v, json!({"status": "success"}));
    assert_eq!(post(&h, "/api/create", r#"{"model":"mine2"}"#).await.status, 400);
    assert_eq!(post(&h, "/api/push", r#"{"model":"mine"}"#).await.lines().last().unwrap()["status"], "success");
}
