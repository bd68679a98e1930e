//! Request translation: the parameters ollama-herd drops (herd-router.md §6.1, §18 item 6), the
//! message conversions of wire-api.md §6.1, completions and embeddings.

use serde_json::{json, Value};

use crate::api::{ollama, openai};
use crate::translate::base64;
use crate::translate::{
    chat_request, completion_request, embedding_request, legacy_embed_request, ChatTranslation, CompletionTranslation,
    EmbeddingEncoding, EmbeddingTranslation, RemoteImage, RequestError, SamplingDefaults,
};

fn chat_with(body: Value, defaults: SamplingDefaults) -> Result<ChatTranslation, RequestError> {
    chat_request(serde_json::from_value::<openai::ChatRequest>(body).unwrap(), defaults)
}

fn chat(body: Value) -> Result<ChatTranslation, RequestError> {
    chat_with(body, SamplingDefaults::OllamaV1)
}

/// The native body as JSON.
fn native(body: Value) -> Value {
    serde_json::to_value(chat(body).unwrap().into_body().unwrap()).unwrap()
}

fn completion(body: Value) -> Result<CompletionTranslation, RequestError> {
    completion_request(serde_json::from_value::<openai::CompletionRequest>(body).unwrap(), SamplingDefaults::OllamaV1)
}

fn embedding(body: Value) -> Result<EmbeddingTranslation, RequestError> {
    embedding_request(serde_json::from_value::<openai::EmbeddingRequest>(body).unwrap())
}

fn user(content: Value) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

#[test]
fn keeps_every_parameter_ollama_herd_drops() {
    let tool = json!({"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}});
    let body = json!({
        "model": "qwen3", "stream": true, "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.7, "top_p": 0.9, "stop": "END", "seed": 42, "presence_penalty": 0.5,
        "frequency_penalty": 0.25, "max_tokens": 100, "max_completion_tokens": 50,
        "response_format": {"type": "json_object"}, "tools": [tool], "tool_choice": "auto",
        "stream_options": {"include_usage": true}, "reasoning_effort": "minimal",
        "logprobs": true, "top_logprobs": 3, "user": "u1", "n": 1, "parallel_tool_calls": false,
    });
    let t = chat(body).unwrap();
    assert!(t.include_usage());
    assert!(t.remote_images().is_empty());
    let expected = json!({
        "model": "qwen3", "stream": true, "messages": [{"role": "user", "content": "hi"}],
        "options": {"temperature": 0.7, "top_p": 0.9, "stop": ["END"], "seed": 42,
            "presence_penalty": 0.5, "frequency_penalty": 0.25, "num_predict": 50},
        "format": "json", "tools": [tool], "tool_choice": "auto", "think": "low",
        "logprobs": true, "top_logprobs": 3,
    });
    assert_eq!(serde_json::to_value(t.into_body().unwrap()).unwrap(), expected);
}

#[test]
fn sampling_defaults() {
    let body = user(json!("hi"));
    let ollama_v1 = native(body.clone());
    assert_eq!(ollama_v1["options"], json!({"temperature": 1.0, "top_p": 1.0}));
    assert_eq!(ollama_v1["stream"], false, "absent stream is false on /v1 and must be said natively");
    let t = chat_with(body.clone(), SamplingDefaults::Modelfile).unwrap();
    assert_eq!(serde_json::to_value(t.body()).unwrap()["options"], json!({}));
    // herd's `options` extension sits under the OpenAI parameters and beats the defaults.
    let mut body = body;
    body["options"] = json!({"num_ctx": 8192, "temperature": 0.2, "top_p": 0.5});
    body["top_p"] = json!(0.8);
    body["keep_alive"] = json!("10m");
    let n = native(body);
    assert_eq!(n["options"], json!({"num_ctx": 8192, "temperature": 0.2, "top_p": 0.8}));
    assert_eq!(n["keep_alive"], "10m");
}

#[test]
fn budgets_stop_lists_and_formats() {
    let mut body = user(json!("hi"));
    body["max_tokens"] = json!(64);
    body["stop"] = json!(["a", "b"]);
    body["response_format"] = json!({"type": "json_schema",
        "json_schema": {"name": "w", "strict": true, "schema": {"type": "object"}}});
    let n = native(body.clone());
    assert_eq!((&n["options"]["num_predict"], &n["options"]["stop"]), (&json!(64), &json!(["a", "b"])));
    assert_eq!(n["format"], json!({"type": "object"}));
    body["max_tokens"] = Value::Null;
    body["max_completion_tokens"] = json!(7);
    body["response_format"] = json!({"type": "text"});
    let n = native(body.clone());
    assert_eq!(n["options"]["num_predict"], 7);
    assert!(n.get("format").is_none());
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "w"}});
    let missing = RequestError::MissingField { field: "response_format.json_schema.schema" };
    assert_eq!(chat(body.clone()).unwrap_err(), missing);
    body["response_format"] = json!({"type": "xml"});
    assert!(matches!(chat(body.clone()), Err(RequestError::InvalidValue { field: "response_format.type", .. })));
    body["response_format"] = Value::Null;
    body["stop"] = json!(["a", 1]);
    assert_eq!(chat(body.clone()).unwrap_err(), RequestError::InvalidValue { field: "stop", value: "1".into() });
    body["stop"] = Value::Null;
    body["temperature"] = json!("hot");
    let wrong = RequestError::WrongType { field: "temperature", expected: "a number" };
    assert_eq!(chat(body).unwrap_err(), wrong);
}

#[test]
fn reasoning_effort_becomes_think() {
    let think = |effort: Value| {
        let mut body = user(json!("hi"));
        body["reasoning_effort"] = effort;
        chat(body).map(|t| serde_json::to_value(t.body()).unwrap()["think"].clone())
    };
    assert_eq!(think(json!("none")), Ok(json!(false)));
    assert_eq!(think(json!("minimal")), Ok(json!("low")));
    assert_eq!(think(json!("high")), Ok(json!("high")));
    assert_eq!(think(json!("xhigh")), Ok(json!("max")));
    assert_eq!(think(json!("ultra")), Ok(json!("max")));
    assert_eq!(think(Value::Null), Ok(Value::Null), "absent: the model's default");
    let bad = RequestError::InvalidValue { field: "reasoning_effort", value: "\"huge\"".into() };
    assert_eq!(think(json!("huge")), Err(bad));
    let mut body = user(json!("hi"));
    body["reasoning"] = json!({"effort": "medium"});
    assert_eq!(native(body)["think"], "medium");
}

#[test]
fn tool_choice_none_and_named() {
    let tools = json!([{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]);
    let mut body = user(json!("hi"));
    body["tools"] = tools.clone();
    body["tool_choice"] = json!("none");
    let n = native(body.clone());
    assert!(n.get("tools").is_none(), "none: the model may not call tools");
    assert_eq!(n["tool_choice"], "none");
    body["tool_choice"] = json!({"type": "function", "function": {"name": "b"}});
    assert_eq!(native(body.clone())["tools"], json!([tools[1]]));
    body["tool_choice"] = json!({"type": "function", "function": {"name": "zzz"}});
    assert_eq!(native(body.clone())["tools"], tools, "an unknown name keeps every tool");
    body["tool_choice"] = json!("required");
    assert_eq!(native(body)["tools"], tools);
}

#[test]
fn list_content_images_and_remote_urls() {
    let content = json!([
        {"type": "text", "text": "What is in"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw==", "detail": "low"}},
        {"type": "text", "text": "these pictures?"},
        {"type": "image_url", "image_url": "https://example.com/cat.jpg"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]);
    let body = json!({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": content}]});
    let mut t = chat(body).unwrap();
    let remote = RemoteImage { url: "https://example.com/cat.jpg".into(), message: 1, slot: 1 };
    assert_eq!(t.remote_images(), [remote]);
    assert_eq!(t.clone().into_body(), Err(RequestError::UnresolvedImage { index: 0 }));
    assert_eq!(t.resolve_image(1, b"x"), Err(RequestError::NoSuchImage { index: 1 }));
    t.resolve_image(0, b"\xff\xd8\xff").unwrap();
    let n = serde_json::to_value(t.into_body().unwrap()).unwrap();
    assert_eq!(n["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        n["messages"][1],
        json!({"role": "user", "content": "What is in\nthese pictures?",
            "images": ["iVBORw==", base64::encode(b"\xff\xd8\xff"), "UklGRg=="]})
    );
}

#[test]
fn bad_parts_and_contents() {
    let err = |content: Value| chat(user(content)).unwrap_err();
    let video = json!([{"type": "text", "text": "a"}, {"type": "video", "url": "x"}]);
    assert_eq!(err(video), RequestError::UnknownPart { message: 0, part: 1, kind: "video".into() });
    let ftp = json!([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]);
    assert_eq!(err(ftp), RequestError::InvalidImage { message: 0, part: 0 });
    let audio = json!([{"type": "input_audio", "input_audio": {"format": "wav"}}]);
    assert_eq!(err(audio), RequestError::InvalidAudio { message: 0, part: 0 });
    assert_eq!(err(Value::Null), RequestError::NullContent { message: 0 });
    assert_eq!(chat(json!({"model": "m"})).unwrap_err(), RequestError::MissingField { field: "messages" });
    assert_eq!(
        chat(json!({"model": "m", "messages": []})).unwrap_err(),
        RequestError::EmptyField { field: "messages" }
    );
    assert_eq!(chat(json!({"messages": [{"role": "user", "content": "x"}]})).unwrap_err().http_status(), 400);
}

#[test]
fn tool_calls_and_tool_results() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Tokyo and Paris?"},
        {"role": "assistant", "content": null, "reasoning": "Two cities.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "22°C"},
        {"role": "tool", "tool_call_id": "call_b", "name": "clock", "content": "09:00"},
    ]});
    let n = native(body.clone());
    assert_eq!(
        n["messages"][1],
        json!({"role": "assistant", "thinking": "Two cities.", "tool_calls": [
            {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}},
            {"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {}}}]})
    );
    assert_eq!(
        n["messages"][2],
        json!({"role": "tool", "content": "22°C", "tool_name": "get_weather", "tool_call_id": "call_a"})
    );
    assert_eq!(n["messages"][3]["tool_name"], "clock", "an explicit name wins");
    let mut bad = body;
    bad["messages"][1]["tool_calls"][1]["function"]["arguments"] = json!("{not json");
    assert_eq!(chat(bad.clone()).unwrap_err(), RequestError::InvalidToolCall { message: 1, call: 1 });
    bad["messages"][1]["tool_calls"][1]["function"]["arguments"] = json!("[1]");
    assert_eq!(chat(bad).unwrap_err(), RequestError::InvalidToolCall { message: 1, call: 1 });
}

#[test]
fn completions_to_generate() {
    let body = json!({"model": "m", "prompt": "The capital of France is", "suffix": "!", "max_tokens": 8,
        "temperature": 0, "stop": ["\n"], "logprobs": 3, "echo": true, "best_of": 2, "stream": true,
        "stream_options": {"include_usage": true}});
    let t = completion(body.clone()).unwrap();
    assert!(t.include_usage);
    assert_eq!(
        serde_json::to_value(&t.body).unwrap(),
        json!({"model": "m", "prompt": "The capital of France is", "suffix": "!", "stream": true,
            "options": {"temperature": 0, "top_p": 1.0, "stop": ["\n"], "num_predict": 8},
            "logprobs": true, "top_logprobs": 3})
    );
    let mut one = body.clone();
    one["prompt"] = json!(["only"]);
    assert_eq!(completion(one).unwrap().body.prompt.as_deref(), Some("only"));
    let mut two = body.clone();
    two["prompt"] = json!(["a", "b"]);
    assert_eq!(completion(two).unwrap_err(), RequestError::PromptBatch { len: 2 });
    let mut none = body;
    none["prompt"] = Value::Null;
    assert_eq!(completion(none).unwrap_err(), RequestError::MissingField { field: "prompt" });
}

#[test]
fn embeddings_to_embed() {
    // What the OpenAI SDK sends (wire-api.md §11).
    let t = embedding(json!({"model": "m", "input": "hello", "encoding_format": "base64"})).unwrap();
    assert_eq!(t.encoding, EmbeddingEncoding::Base64);
    assert_eq!(serde_json::to_value(&t.body).unwrap(), json!({"model": "m", "input": ["hello"]}));
    let t = embedding(json!({"model": "m", "input": "", "dimensions": 2, "user": "u"})).unwrap();
    assert_eq!(t.encoding, EmbeddingEncoding::Float);
    assert_eq!(serde_json::to_value(&t.body).unwrap(), json!({"model": "m", "input": [""], "dimensions": 2}));
    assert_eq!(embedding(json!({"model": "m", "input": []})).unwrap_err(), RequestError::EmptyField { field: "input" });
    let bad = RequestError::InvalidValue { field: "encoding_format", value: "\"int8\"".into() };
    assert_eq!(embedding(json!({"model": "m", "input": "x", "encoding_format": "int8"})).unwrap_err(), bad);
    let dims = RequestError::WrongType { field: "dimensions", expected: "a positive integer" };
    assert_eq!(embedding(json!({"model": "m", "input": "x", "dimensions": 0})).unwrap_err(), dims);
}

#[test]
fn legacy_embeddings_request() {
    let req: ollama::EmbeddingsRequest =
        serde_json::from_value(json!({"model": "all-minilm", "prompt": "text", "options": {}, "keep_alive": "5m"}))
            .unwrap();
    let body = serde_json::to_value(legacy_embed_request(req)).unwrap();
    assert_eq!(body, json!({"model": "all-minilm", "input": "text", "options": {}, "keep_alive": "5m"}));
}
