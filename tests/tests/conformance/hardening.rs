//! What a hostile client or a machine on the LAN can try (issue "Hardening"): each case failed
//! before its fix, and runs against both routers.

use super::*;

/// A heartbeat body for `node_id` with `extra` fields merged in.
fn heartbeat(node_id: &str, extra: Value) -> Value {
    let mut hb = json!({"node_id": node_id, "cpu": {}, "memory": {}, "ollama": {"models_available": ["qwen3:8b"]}});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        hb[k] = v;
    }
    hb
}

/// A URL where nothing listens: a node re-pointed there would fail every request.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

/// A heartbeat (with or without a key, with or without a machine id) naming a `--node` static
/// node is refused with 409 and changes nothing: the next chat still goes to the static node.
pub(crate) fn heartbeat_cannot_take_over_a_static_node(r: Router) {
    let mut f = Fleet::new(r);
    let url = f.fake(FakeSpec::new("solo", &["qwen3:8b"]).without_heartbeats());
    f.launch(&["--node", &url]);
    let name = url.trim_start_matches("http://").to_string();
    f.wait_nodes(&[&name]);
    for extra in [json!({}), json!({"machine_id": "attacker"})] {
        let mut hb = heartbeat(&name, extra);
        hb["ollama_host"] = json!(dead_url());
        let refused = f.post("/heartbeat", &hb);
        let message = Proto::Ollama.assert_error(&refused, 409, "");
        assert!(message.contains("static node"), "{message}");
    }
    let drain = f.post("/heartbeat", &json!({"node_id": name, "draining": true}));
    Proto::Ollama.assert_error(&drain, 409, "");
    for _ in 0..3 {
        let reply = f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b"));
        assert_eq!((reply.status, reply.header("x-herd-node")), (200, name.as_str()), "{}", reply.text());
    }
}

/// With a fleet key, the router's own static nodes still join (they are trusted by
/// construction) and serve, while an agent without the key is refused.
pub(crate) fn static_nodes_join_with_a_fleet_key(r: Router) {
    let mut f = Fleet::new(r);
    let url = f.fake(FakeSpec::new("solo", &["qwen3:8b"]).without_heartbeats());
    f.launch(&["--node", &url, "--fleet-key", "hush"]);
    let name = url.trim_start_matches("http://").to_string();
    f.wait_nodes(&[&name]);
    let reply = f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b"));
    assert_eq!((reply.status, reply.header("x-herd-node")), (200, name.as_str()), "{}", reply.text());
    Proto::Ollama.assert_error(&f.post("/heartbeat", &heartbeat("intruder", json!({}))), 401, "");
}

/// A node that registered with a machine id is neither re-pointed nor drained by a report
/// without it (or with another one) while it lives; the status comes from the error's type, not
/// from the node's name (`hx-monkey` contains "key").
pub(crate) fn machine_id_cannot_be_omitted(r: Router) {
    let f = Fleet::start(r, &[]);
    let owner = heartbeat("hx-monkey", json!({"machine_id": "m-1"}));
    assert_eq!(f.post("/heartbeat", &owner).status, 200);
    let other = heartbeat("hx-monkey", json!({"machine_id": "m-2", "ollama_host": dead_url()}));
    Proto::Ollama.assert_error(&f.post("/heartbeat", &other), 409, "");
    let anonymous = heartbeat("hx-monkey", json!({"ollama_host": dead_url()}));
    let message = Proto::Ollama.assert_error(&f.post("/heartbeat", &anonymous), 409, "");
    assert!(message.contains("machine_id"), "{message}");
    let drain = json!({"node_id": "hx-monkey", "draining": true});
    Proto::Ollama.assert_error(&f.post("/heartbeat", &drain), 409, "");
    let status = f.get("/fleet/status").json();
    let node = status["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == "hx-monkey").cloned();
    assert_eq!(node.map(|n| n["status"].clone()), Some(json!("online")), "{status}");
    let own_drain = json!({"node_id": "hx-monkey", "draining": true, "machine_id": "m-1"});
    assert_eq!(f.post("/heartbeat", &own_drain).status, 200);
}

/// Heartbeats are bounded: a body over the limit is 413, too many models or a name too long
/// 422 naming the field, sub-objects sent as arrays 422; `/api/tags` stays small.
pub(crate) fn heartbeats_are_bounded(r: Router) {
    let f = Fleet::start(r, &[]);
    let names: Vec<String> = (0..100_000).map(|i| format!("m{i}:latest")).collect();
    let huge = heartbeat("flood", json!({"ollama": {"models_available": names}}));
    Proto::Ollama.assert_error(&f.post("/heartbeat", &huge), 413, "");
    let many: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
    let reply = f.post("/heartbeat", &heartbeat("many", json!({"ollama": {"models_available": many}})));
    let message = Proto::Ollama.assert_error(&reply, 422, "");
    assert!(message.contains("models_available") && message.contains("2048"), "{message}");
    let long = heartbeat("long", json!({"ollama": {"models_loaded": [{"name": "x".repeat(300)}]}}));
    let message = Proto::Ollama.assert_error(&f.post("/heartbeat", &long), 422, "");
    assert!(message.contains("models_loaded"), "{message}");
    for field in ["memory", "cpu", "ollama", "capacity", "gpus"] {
        let value = if field == "gpus" { json!([[1]]) } else { json!([1]) };
        let message =
            Proto::Ollama.assert_error(&f.post("/heartbeat", &heartbeat("shape", json!({field: value}))), 422, "");
        assert!(message.contains(field), "{field}: {message}");
    }
    let tags = f.get("/api/tags");
    assert_eq!(tags.status, 200);
    assert!(tags.body.len() < 4096, "{} bytes of tags", tags.body.len());
}

/// Agents may not point the router at link-local or cloud-metadata addresses, and with
/// `--node-networks` only at addresses inside them.
pub(crate) fn node_addresses_are_checked(r: Router) {
    let f = Fleet::start(r, &[]);
    for host in ["http://169.254.169.254:80", "http://[fd00:ec2::254]:80", "http://metadata.google.internal"] {
        let reply = f.post("/heartbeat", &heartbeat("meta", json!({"ollama_host": host})));
        let message = Proto::Ollama.assert_error(&reply, 403, "");
        assert!(message.contains("metadata"), "{host}: {message}");
    }
    drop(f);
    let f = Fleet::start(r, &["--node-networks", "10.0.0.0/8"]);
    // From loopback with a loopback ollama_host: reached at 127.0.0.1, outside 10/8.
    let local = heartbeat("local", json!({"ollama_host": "http://localhost:11434"}));
    let message = Proto::Ollama.assert_error(&f.post("/heartbeat", &local), 403, "");
    assert!(message.contains("10.0.0.0/8"), "{message}");
    let inside = heartbeat("inside", json!({"ollama_host": "http://10.1.2.3:11434"}));
    assert_eq!(f.post("/heartbeat", &inside).status, 200);
}

/// A known path with a wrong method is 405 with `Allow`; on `/v1/*` its body is the protocol's
/// JSON error, elsewhere Ollama's plain text.
pub(crate) fn method_not_allowed_says_allow(r: Router) {
    let f = one_node(r, &[]);
    let chat = f.get("/v1/chat/completions");
    assert_eq!((chat.status, chat.header("allow")), (405, "POST"));
    Proto::OpenAi.assert_error(&chat, 405, "api_error");
    // `GET /v1/messages` is Anthropic clients' probe; other methods are refused.
    let messages = f.send("DELETE", "/v1/messages", &[], b"");
    assert_eq!(messages.header("allow"), "GET, HEAD, POST");
    Proto::Anthropic.assert_error(&messages, 405, "api_error");
    let native = f.get("/api/chat");
    assert_eq!(
        (native.status, native.header("allow"), native.text().as_str()),
        (405, "POST", "405 method not allowed")
    );
    let tags = f.send("POST", "/api/tags", &[], b"{}");
    assert_eq!((tags.status, tags.header("allow")), (405, "GET, HEAD"));
    let models = f.send("DELETE", "/v1/models", &[], b"");
    assert_eq!(models.header("allow"), "GET, HEAD");
    Proto::OpenAi.assert_error(&models, 405, "api_error");
    let delete = f.get("/api/delete");
    assert_eq!((delete.status, delete.header("allow")), (405, "DELETE"));
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or with two, is 400; HTTP/1.0 needs none.
pub(crate) fn host_header_is_required(r: Router) {
    let f = one_node(r, &[]);
    for wire in ["GET /api/version HTTP/1.1\r\n\r\n", "GET /api/version HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"] {
        let raw = http::exchange(f.addr(), wire.as_bytes().to_vec(), Duration::from_secs(5)).unwrap();
        assert!(raw.text().starts_with("HTTP/1.1 400"), "{wire:?}: {}", raw.text());
    }
    let old = http::exchange(f.addr(), b"GET /api/version HTTP/1.0\r\n\r\n".to_vec(), Duration::from_secs(5)).unwrap();
    assert!(old.text().starts_with("HTTP/1.1 200") || old.text().starts_with("HTTP/1.0 200"), "{}", old.text());
}

/// The Bearer scheme is case-insensitive and each configured key is trimmed.
pub(crate) fn bearer_scheme_and_keys_are_lenient(r: Router) {
    let mut f = Fleet::start(r, &["--api-keys", "k1, k2"]);
    f.use_key("k2");
    f.fake(FakeSpec::new("alpha", &["qwen3:8b"]));
    f.wait_nodes(&["alpha"]);
    for (auth, status) in
        [("Bearer k1", 200), ("BEARER k2", 200), ("bearer  k2 ", 200), ("Bearer k3", 401), ("Basic k1", 401)]
    {
        let reply = f.send("GET", "/api/tags", &[("authorization", auth)], b"");
        assert_eq!(reply.status, status, "{auth}: {}", reply.text());
    }
}

/// A body whose `Content-Length` is over the limit is refused from the head and what the client
/// sends anyway is dropped as it arrives, never buffered: 80 MB sent without `Expect` against the
/// default 64 MiB limit leave the router's memory where it was, and the 413 is read.
pub(crate) fn oversized_body_is_not_buffered(r: Router) {
    let f = one_node(r, &[]);
    let before = f.router_rss_kb();
    let big = vec![b'a'; 80 << 20];
    let reply = f.send("POST", "/api/generate", &[("content-type", "application/json")], &big);
    Proto::Ollama.assert_error(&reply, 413, "");
    let grown_mb = f.router_rss_kb().saturating_sub(before) / 1024;
    assert!(grown_mb < 24, "the router grew by {grown_mb} MB for a refused body");
    assert_eq!(f.get("/api/version").status, 200);
}

/// `messages` entries and content parts are capped (413 in each protocol, naming what is over),
/// and a 32 MB body of a million one-letter messages is refused without the router's memory
/// growing with what its JSON would expand to; `/api/show` and the admin paths count values too.
pub(crate) fn request_bodies_are_bounded_by_count(r: Router) {
    let f = one_node(r, &["--max-messages", "100", "--max-parts", "10"]);
    let message = json!({"role": "user", "content": "a"});
    for proto in PROTOCOLS {
        let mut body = proto.chat_body("qwen3:8b");
        body["messages"] = Value::Array(vec![message.clone(); 101]);
        let text = proto.assert_error(&f.post(proto.chat_path(), &body), 413, "invalid_request_error");
        assert!(text.contains("100 messages"), "{proto:?}: {text}");
        body["messages"] = Value::Array(vec![message.clone(); 100]);
        assert_eq!(f.post(proto.chat_path(), &body).status, 200, "{proto:?}: 100 messages are fine");
    }
    let parts: Vec<Value> = (0..11).map(|_| json!({"type": "text", "text": "a"})).collect();
    let body = json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": parts}]});
    let text = Proto::OpenAi.assert_error(&f.post("/v1/chat/completions", &body), 413, "invalid_request_error");
    assert!(text.contains("10 content parts"), "{text}");
    drop(f);

    let f = one_node(r, &[]);
    let before = f.router_rss_kb();
    let mut flood = String::with_capacity(33 << 20);
    flood.push_str(r#"{"model":"qwen3:8b","stream":false,"messages":["#);
    for i in 0..1_000_000 {
        flood.push_str(if i == 0 { r#"{"role":"user","content":"a"}"# } else { r#",{"role":"user","content":"a"}"# });
    }
    flood.push_str("]}");
    let text = Proto::Ollama.assert_error(&post_raw(&f, "/api/chat", &flood), 413, "");
    assert!(text.contains("messages"), "{text}");
    // The fleet paths that read a body read it the same way.
    let values = format!(r#"{{"model":"qwen3:8b","x":[{}1]}}"#, "1,".repeat(1_000_000));
    for path in ["/api/show", "/api/pull"] {
        let text = Proto::Ollama.assert_error(&post_raw(&f, path, &values), 413, "");
        assert!(text.contains("JSON values"), "{path}: {text}");
    }
    let grown_mb = f.router_rss_kb().saturating_sub(before) / 1024;
    assert!(grown_mb < 4 * 32 + 16, "the router grew by {grown_mb} MB for a 32 MB body");
    assert_eq!(f.post("/api/chat", &Proto::Ollama.chat_body("qwen3:8b")).status, 200);
}

/// The bytes of bodies in flight are budgeted over all requests: while one client holds a
/// declared 6 MiB body open, another 5 MiB body is 503 with `Retry-After` (in its protocol's
/// envelope), and once the first leaves it is served.
pub(crate) fn bodies_in_flight_are_budgeted(r: Router) {
    let f = one_node(r, &["--max-body-mb", "8", "--max-inflight-body-mb", "8"]);
    let mut holder = TcpStream::connect(f.addr()).unwrap();
    let head = format!(
        "POST /api/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        6 << 20
    );
    holder.write_all(head.as_bytes()).unwrap();
    let mut body = Proto::OpenAi.chat_body("qwen3:8b");
    body["messages"][0]["content"] = json!("a".repeat(5 << 20));
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let reply = f.post("/v1/chat/completions", &body);
        if reply.status == 503 {
            break reply;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(Instant::now() < deadline, "the held body never counted against the budget");
    };
    assert_eq!(refused.header("retry-after"), "1");
    let text = Proto::OpenAi.assert_error(&refused, 503, "api_error");
    assert!(text.contains("in flight"), "{text}");
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = f.post("/v1/chat/completions", &body);
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(Instant::now() < deadline, "the budget was not given back when the client left");
    }
}
