use super::*;
use crate::time::WallClock;
use heartbeat::{Gpu, Ollama};

pub(crate) fn hb(name: &str, loaded: &[(&str, f64, u32)], available: &[&str]) -> Heartbeat {
    Heartbeat {
        node_id: name.into(),
        memory: heartbeat::Memory { total_gb: 64.0, available_gb: 40.0, ..Default::default() },
        ollama: Ollama {
            models_loaded: loaded
                .iter()
                .map(|&(n, gb, ctx)| LoadedModel { context_length: ctx, ..LoadedModel::named(ModelName::new(n), gb) })
                .collect(),
            models_available: available.iter().map(|n| ModelName::new(n)).collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn report(h: Heartbeat) -> Report {
    Report::Heartbeat(Box::new(h))
}

#[test]
fn status_follows_silence_and_reports() {
    let mut f = Fleet::new(FleetConfig::default());
    let t0 = Instant::from_secs(100);
    let r = f.handle_report(t0, report(hb("a", &[], &["m"]))).unwrap();
    assert!(r.new);
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(15)));
    assert!(f.handle_timeout(t0 + Duration::from_secs(14)).is_empty());
    let ch = f.handle_timeout(t0 + Duration::from_secs(15));
    assert_eq!(ch[0].to, Some(NodeStatus::Degraded));
    assert!(f.by_name("a").unwrap().routable(), "degraded nodes stay routable");
    let ch = f.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(ch[0].to, Some(NodeStatus::Offline));
    assert!(!f.by_name("a").unwrap().routable());
    let back = f.handle_report(t0 + Duration::from_secs(31), report(hb("a", &[], &["m"]))).unwrap();
    assert_eq!((back.previous, back.status), (Some(NodeStatus::Offline), NodeStatus::Online));
}

#[test]
fn long_offline_nodes_are_forgotten_and_stop_counting_models() {
    let mut f = Fleet::new(FleetConfig::default());
    f.handle_report(Instant::ZERO, report(hb("a", &[], &["m"]))).unwrap();
    assert!(f.model_known(&ModelName::new("m")));
    f.handle_timeout(Instant::from_secs(30));
    let ch = f.handle_timeout(Instant::from_secs(3600));
    assert_eq!(ch.last().unwrap().to, None);
    assert!(f.is_empty());
    assert!(!f.model_known(&ModelName::new("m")));
    // A node that comes back gets a fresh id, never the old one.
    let r = f.handle_report(Instant::from_secs(4000), report(hb("a", &[], &[]))).unwrap();
    assert_eq!(r.node, NodeId(1));
}

#[test]
fn drain_stops_routing_until_next_heartbeat() {
    let mut f = Fleet::new(FleetConfig::default());
    f.handle_report(Instant::ZERO, report(hb("a", &[], &[]))).unwrap();
    f.handle_report(Instant::from_secs(1), Report::Drain { node_id: "a".into(), fleet_key: None, machine_id: None })
        .unwrap();
    assert_eq!(f.by_name("a").unwrap().status(), NodeStatus::Draining);
    assert!(!f.by_name("a").unwrap().routable());
    assert_eq!(
        f.handle_report(
            Instant::from_secs(1),
            Report::Drain { node_id: "zz".into(), fleet_key: None, machine_id: None }
        ),
        Err(FleetError::UnknownNode("zz".into()))
    );
    f.handle_report(Instant::from_secs(2), report(hb("a", &[], &[]))).unwrap();
    assert_eq!(f.by_name("a").unwrap().status(), NodeStatus::Online);
}

#[test]
fn warm_tier_remembers_unloads_for_the_window() {
    let mut f = Fleet::new(FleetConfig::default());
    let m = ModelName::new("qwen3:8b");
    f.handle_report(Instant::ZERO, report(hb("a", &[("qwen3:8b", 6.0, 4096)], &["qwen3:8b"]))).unwrap();
    let w = Duration::from_secs(1800);
    assert_eq!(f.by_name("a").unwrap().temperature(&m, Instant::ZERO, w), Temperature::Hot);
    f.handle_report(Instant::from_secs(5), report(hb("a", &[], &["qwen3:8b"]))).unwrap();
    assert_eq!(f.by_name("a").unwrap().temperature(&m, Instant::from_secs(6), w), Temperature::Warm);
    assert_eq!(f.by_name("a").unwrap().temperature(&m, Instant::from_secs(1806), w), Temperature::Cold);
    assert_eq!(f.by_name("a").unwrap().temperature(&ModelName::new("x"), Instant::ZERO, w), Temperature::Absent);
}

#[test]
fn meta_null_keeps_previous_copy() {
    let mut f = Fleet::new(FleetConfig::default());
    let mut h = hb("a", &[], &["qwen3:8b"]);
    let mut meta = BTreeMap::new();
    meta.insert(ModelName::new("qwen3:8b"), ModelMeta { family: "qwen3".into(), ..Default::default() });
    h.ollama.models_available_meta = Some(meta);
    f.handle_report(Instant::ZERO, report(h)).unwrap();
    f.handle_report(Instant::from_secs(5), report(hb("a", &[], &["qwen3:8b"]))).unwrap();
    assert_eq!(f.by_name("a").unwrap().meta(&ModelName::new("qwen3:8b")).unwrap().family, "qwen3");
}

#[test]
fn node_id_collision_is_refused_while_the_first_machine_lives() {
    let mut f = Fleet::new(FleetConfig::default());
    let mut a = hb("box", &[], &[]);
    a.machine_id = Some("m1".into());
    f.handle_report(Instant::ZERO, report(a.clone())).unwrap();
    let mut b = a.clone();
    b.machine_id = Some("m2".into());
    assert_eq!(
        f.handle_report(Instant::from_secs(1), report(b.clone())),
        Err(FleetError::NodeIdConflict("box".into()))
    );
    f.handle_timeout(Instant::from_secs(40));
    assert!(f.handle_report(Instant::from_secs(41), report(b)).is_ok(), "an offline id may be taken over");
}

#[test]
fn gpu_nodes_fit_by_free_vram() {
    let mut f = Fleet::new(FleetConfig::default());
    let mut h = hb("pc", &[], &["llama3.3:70b"]);
    h.memory.available_gb = 120.0;
    h.gpus = vec![Gpu { vram_total_bytes: 24_000_000_000, vram_free_bytes: 22_000_000_000, ..Default::default() }];
    f.handle_report(Instant::ZERO, report(h)).unwrap();
    let n = f.by_name("pc").unwrap();
    assert!((n.free_memory_gb() - 22.0).abs() < 1e-9);
    assert_eq!(n.model_size_gb(&ModelName::new("llama3.3:70b")), 45.0);
}

#[test]
fn registry_is_bounded() {
    let mut f = Fleet::new(FleetConfig { max_nodes: 2, ..FleetConfig::default() });
    f.handle_report(Instant::ZERO, report(hb("a", &[], &[]))).unwrap();
    f.handle_report(Instant::ZERO, report(hb("b", &[], &[]))).unwrap();
    assert_eq!(f.handle_report(Instant::ZERO, report(hb("c", &[], &[]))), Err(FleetError::TooManyNodes(2)));
    assert!((Fleet::new(FleetConfig::default()).median_bandwidth()).abs() < 1e-12);
}

#[test]
fn fleet_key_is_required_when_configured() {
    let mut f = Fleet::new(FleetConfig { fleet_key: Some("s3cret".into()), ..FleetConfig::default() });
    let mut h = hb("a", &[], &[]);
    assert_eq!(f.handle_report(Instant::ZERO, report(h.clone())), Err(FleetError::BadFleetKey("a".into())));
    h.fleet_key = Some("s3creT".into());
    assert_eq!(f.handle_report(Instant::ZERO, report(h.clone())), Err(FleetError::BadFleetKey("a".into())));
    h.fleet_key = Some("s3cret".into());
    assert!(f.handle_report(Instant::ZERO, report(h)).is_ok());
    let drain =
        |k: Option<&str>| Report::Drain { node_id: "a".into(), fleet_key: k.map(str::to_string), machine_id: None };
    assert_eq!(f.handle_report(Instant::ZERO, drain(None)), Err(FleetError::BadFleetKey("a".into())));
    assert!(f.handle_report(Instant::ZERO, drain(Some("s3cret"))).is_ok());
    assert_eq!(f.by_name("a").unwrap().status(), NodeStatus::Draining);
}

#[test]
fn static_nodes_need_no_key_and_agents_cannot_change_them() {
    let mut f = Fleet::new(FleetConfig { fleet_key: Some("k".into()), ..FleetConfig::default() });
    let t = Instant::ZERO;
    // The router's own poller: trusted, no key.
    let r = f.handle_report(t, Report::Static(Box::new(hb("10.0.0.5:11434", &[], &["m"])))).unwrap();
    assert_eq!(f.node(r.node).unwrap().origin(), Origin::Static);
    // An agent with the right key still cannot take the static node's id, nor drain it.
    let mut attacker = hb("10.0.0.5:11434", &[], &["m"]);
    attacker.fleet_key = Some("k".into());
    attacker.ollama_host = "http://10.9.9.9:11434".into();
    let refused = f.handle_report(t, report(attacker)).unwrap_err();
    assert_eq!((refused.clone(), refused.http_status()), (FleetError::StaticNode("10.0.0.5:11434".into()), 409));
    let drain = Report::Drain { node_id: "10.0.0.5:11434".into(), fleet_key: Some("k".into()), machine_id: None };
    assert_eq!(f.handle_report(t, drain), Err(FleetError::StaticNode("10.0.0.5:11434".into())));
    assert_eq!(f.by_name("10.0.0.5:11434").unwrap().report().ollama_host, "");
    // The operator may drain it.
    let admin = f.handle_report(t, Report::AdminDrain { node_id: "10.0.0.5:11434".into() }).unwrap();
    assert_eq!(admin.status, NodeStatus::Draining);
}

#[test]
fn static_report_takes_back_an_id_an_agent_claimed_first() {
    let mut f = Fleet::new(FleetConfig::default());
    f.handle_report(Instant::ZERO, report(hb("box:11434", &[], &[]))).unwrap();
    let r = f.handle_report(Instant::from_secs(1), Report::Static(Box::new(hb("box:11434", &[], &[])))).unwrap();
    assert_eq!(f.node(r.node).unwrap().origin(), Origin::Static);
    assert!(f.handle_report(Instant::from_secs(2), report(hb("box:11434", &[], &[]))).is_err());
}

#[test]
fn a_report_without_identity_cannot_take_an_identified_node() {
    let mut f = Fleet::new(FleetConfig::default());
    let mut owner = hb("studio", &[], &[]);
    owner.machine_id = Some("m-1".into());
    f.handle_report(Instant::ZERO, report(owner.clone())).unwrap();
    let anonymous = hb("studio", &[], &[]);
    let e = f.handle_report(Instant::from_secs(1), report(anonymous.clone())).unwrap_err();
    assert_eq!((e.clone(), e.http_status()), (FleetError::MissingMachineId("studio".into()), 409));
    let mut other = hb("studio", &[], &[]);
    other.machine_id = Some("m-2".into());
    assert_eq!(
        f.handle_report(Instant::from_secs(1), report(other.clone())),
        Err(FleetError::NodeIdConflict("studio".into()))
    );
    // Drains too: only with the same identity.
    let drain =
        |m: Option<&str>| Report::Drain { node_id: "studio".into(), fleet_key: None, machine_id: m.map(Into::into) };
    assert_eq!(f.handle_report(Instant::from_secs(1), drain(None)), Err(FleetError::MissingMachineId("studio".into())));
    assert_eq!(
        f.handle_report(Instant::from_secs(1), drain(Some("m-2"))),
        Err(FleetError::NodeIdConflict("studio".into()))
    );
    // Offline: another machine may take the id over, a report without identity still may not.
    f.handle_timeout(Instant::from_secs(40));
    assert_eq!(
        f.handle_report(Instant::from_secs(41), report(anonymous)),
        Err(FleetError::MissingMachineId("studio".into()))
    );
    assert!(f.handle_report(Instant::from_secs(41), report(other)).is_ok());
    assert!(f.handle_report(Instant::from_secs(42), drain(Some("m-2"))).is_ok());
    assert_eq!(FleetError::BadFleetKey("x".into()).http_status(), 401);
}

#[test]
fn views_merge_the_listed_nodes() {
    let mut f = Fleet::new(FleetConfig::default());
    let t = Instant::from_secs(1);
    f.handle_report(t, report(hb("a", &[("m", 5.0, 4096)], &["m", "n"]))).unwrap();
    f.handle_report(t, report(hb("b", &[], &["m"]))).unwrap();
    f.handle_report(t, report(hb("c", &[("n", 3.0, 8192)], &["n"]))).unwrap();
    let tags = views::tags(&f, WallClock::default());
    let names: Vec<&str> = tags.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["m:latest", "n:latest"], "one entry per model, in name order");
    assert_eq!(tags[0]["herd_nodes"], serde_json::json!(["a", "b"]));
    assert_eq!(tags[1]["herd_nodes"], serde_json::json!(["a", "c"]));
    // ollama-herd's name for the same list, inside `details`.
    assert_eq!(tags[0]["details"]["fleet_nodes"], serde_json::json!(["a", "b"]));
    assert_eq!(tags[1]["details"]["fleet_nodes"], tags[1]["herd_nodes"]);
    let ps = views::running(&f);
    assert_eq!(ps.len(), 2);
    assert_eq!((&ps[1]["herd_node"], &ps[1]["fleet_node"]), (&serde_json::json!("c"), &serde_json::json!("c")));
    assert_eq!(ps[1]["context_length"], 8192);
    // Loaded holders before disk ones.
    let m = ModelName::new("m");
    let order: Vec<&str> = views::holders(&f, &m).into_iter().map(|id| f.node(id).unwrap().name()).collect();
    assert_eq!(order, ["a", "b"]);
    let b_id = f.by_name("b").unwrap().id();
    let a_id = f.by_name("a").unwrap().id();
    f.handle_report(t, report(hb("b", &[("m", 5.0, 4096)], &["m"]))).unwrap();
    f.handle_report(t, report(hb("a", &[], &["m", "n"]))).unwrap();
    assert_eq!(views::holders(&f, &m), vec![b_id, a_id], "the one with it in memory first");
    // An offline node is not listed.
    f.handle_timeout(Instant::from_secs(3600));
    assert!(views::tags(&f, WallClock::default()).is_empty());
    assert_eq!(views::ollama_version(&f), None);
}

#[test]
fn an_admin_drain_holds_over_heartbeats_until_undrained_or_restarted() {
    let mut f = Fleet::new(FleetConfig::default());
    let t = |s| Instant::from_secs(s);
    f.handle_report(t(1), report(hb("a", &[], &["m"]))).unwrap();
    let r = f.handle_report(t(2), Report::AdminDrain { node_id: "a".into() }).unwrap();
    assert_eq!(r.status, NodeStatus::Draining);
    // Its next heartbeats do not put it back online.
    let r = f.handle_report(t(5), report(hb("a", &[], &["m"]))).unwrap();
    assert_eq!(r.status, NodeStatus::Draining, "the operator's drain holds");
    assert!(!f.by_name("a").unwrap().routable());
    // Undone by the operator: routable at once, and heartbeats keep it online.
    let r = f.handle_report(t(6), Report::AdminUndrain { node_id: "a".into() }).unwrap();
    assert_eq!((r.previous, r.status), (Some(NodeStatus::Draining), NodeStatus::Online));
    assert_eq!(f.handle_report(t(7), report(hb("a", &[], &["m"]))).unwrap().status, NodeStatus::Online);
    // A restart ends it too: the node drains itself on the way down, then comes back.
    f.handle_report(t(8), Report::AdminDrain { node_id: "a".into() }).unwrap();
    let own = Report::Drain { node_id: "a".into(), fleet_key: None, machine_id: None };
    f.handle_report(t(9), own).unwrap();
    assert_eq!(f.handle_report(t(12), report(hb("a", &[], &["m"]))).unwrap().status, NodeStatus::Online);
    // And so does going offline (a node that died and came back).
    f.handle_report(t(13), Report::AdminDrain { node_id: "a".into() }).unwrap();
    f.handle_timeout(t(13 + 60));
    assert_eq!(f.by_name("a").unwrap().status(), NodeStatus::Offline);
    assert_eq!(f.handle_report(t(80), report(hb("a", &[], &["m"]))).unwrap().status, NodeStatus::Online);
    assert!(matches!(
        f.handle_report(t(81), Report::AdminUndrain { node_id: "zz".into() }),
        Err(FleetError::UnknownNode(_))
    ));
}

/// What a plain Ollama answers for qwen3:8b on `/api/tags` and `/api/ps`, as the node's agent or
/// the router's static poller turns it into a report.
fn ollama_node(name: &str) -> Heartbeat {
    use crate::fleet::ollama_state;
    let details = serde_json::json!({"parent_model": "", "format": "gguf", "family": "qwen3", "families": ["qwen3"],
        "parameter_size": "8.2B", "quantization_level": "Q4_K_M"});
    let tags = serde_json::json!({"models": [{"name": "qwen3:8b", "model": "qwen3:8b", "size": 5_225_376_047u64,
        "digest": "500a1fe7a9f1", "modified_at": "2025-05-10T18:32:07.123-07:00", "details": details}]});
    let ps = serde_json::json!({"models": [{"name": "qwen3:8b", "model": "qwen3:8b", "size": 6_654_289_921u64,
        "size_vram": 6_000_000_001u64, "digest": "500a1fe7a9f1", "details": details,
        "expires_at": "2026-11-28T10:35:00.5Z", "context_length": 8192}]});
    let version = serde_json::json!({"version": "0.12.6"});
    let mut ollama = ollama_state::ollama_state(Some(&ps), Some(&tags), Some(&version));
    ollama.models_available_meta = Some(ollama_state::models_meta(Some(&tags)));
    Heartbeat { node_id: name.into(), ollama, ..Default::default() }
}

#[test]
fn views_show_the_nodes_own_digest_size_date_and_details() {
    let mut f = Fleet::new(FleetConfig::default());
    f.handle_report(Instant::from_secs(1), Report::Static(Box::new(ollama_node("box:11434")))).unwrap();
    let tags = views::tags(&f, WallClock::default());
    let q = &tags[0];
    assert_eq!(q["digest"], "500a1fe7a9f1");
    assert_eq!(q["size"], 5_225_376_047u64, "the node's bytes, not a rounded GB figure");
    assert_eq!(q["modified_at"], "2025-05-10T18:32:07.123-07:00");
    let want = serde_json::json!({"parent_model": "", "format": "gguf", "family": "qwen3", "families": ["qwen3"],
        "parameter_size": "8.2B", "quantization_level": "Q4_K_M", "fleet_nodes": ["box:11434"]});
    assert_eq!(q["details"], want);
    let ps = views::running(&f);
    let p = &ps[0];
    assert_eq!((p["digest"].as_str(), p["size"].as_u64()), (Some("500a1fe7a9f1"), Some(6_654_289_921)));
    assert_eq!((p["size_vram"].as_u64(), p["context_length"].as_u64()), (Some(6_000_000_001), Some(8192)));
    assert_eq!(p["expires_at"], "2026-11-28T10:35:00.5Z");
    let mut want_ps = want.clone();
    want_ps.as_object_mut().unwrap().remove("fleet_nodes");
    assert_eq!(p["details"], want_ps);
}

#[test]
fn views_fill_what_an_ollama_herd_agent_does_not_send() {
    // ollama-herd's agent sends metadata from /api/tags, and only name, size, parameter size,
    // quantization, context and digest of a loaded model.
    let mut f = Fleet::new(FleetConfig::default());
    let mut h = hb("studio", &[("qwen3:8b", 6.0, 8192), ("llama3.2:3b", 2.0, 4096)], &["qwen3:8b", "mystery"]);
    h.ollama.models_loaded[1].digest = "sha256:77aa".into();
    h.ollama.models_loaded[1].parameter_size = "3.2B".into();
    let meta = ModelMeta { family: "qwen3".into(), digest: "500a1f".into(), ..Default::default() };
    h.ollama.models_available_meta = Some(BTreeMap::from([(ModelName::new("qwen3:8b"), meta)]));
    f.handle_report(Instant::from_secs(90), report(h)).unwrap();
    let ps = views::running(&f);
    assert_eq!(ps[0]["digest"], "500a1f", "a loaded model without a digest takes its metadata's");
    assert_eq!(ps[0]["details"]["family"], "qwen3");
    assert_eq!(ps[0]["expires_at"], views::NEVER_EXPIRES);
    assert_eq!((ps[1]["digest"].as_str(), ps[1]["details"]["parameter_size"].as_str()), (Some("77aa"), Some("3.2B")));
    let wall = WallClock::from_readings(Instant::from_secs(100), 1_795_861_845_000);
    let tags = views::tags(&f, wall);
    let by_name = |n: &str| tags.iter().find(|t| t["name"] == n).unwrap_or_else(|| panic!("no {n}"));
    assert_eq!(by_name("llama3.2:3b")["digest"], "77aa", "a model only in memory keeps its loaded digest");
    assert_eq!(by_name("llama3.2:3b")["details"]["parameter_size"], "3.2B");
    // No date from the node: when the router first saw it (10 s before the readings).
    assert_eq!(by_name("mystery:latest")["modified_at"], "2026-11-28T10:30:35Z");
    assert_eq!(by_name("mystery:latest")["digest"].as_str().map(str::len), Some(64), "synthesised");
    // ... and it stays that date: later reports, and other nodes that list it, do not move it.
    f.handle_report(Instant::from_secs(200), report(hb("studio", &[], &["mystery"]))).unwrap();
    f.handle_report(Instant::from_secs(200), report(hb("other", &[], &["mystery"]))).unwrap();
    let tags = views::tags(&f, wall);
    let mystery = tags.iter().find(|t| t["name"] == "mystery:latest").unwrap();
    assert_eq!(mystery["modified_at"], "2026-11-28T10:30:35Z");
    assert_eq!(f.first_seen(&ModelName::new("mystery")), Some(Instant::from_secs(90)));
}

#[test]
fn texts_a_node_sends_are_bounded() {
    let config = FleetConfig { max_model_name_bytes: 16, ..FleetConfig::default() };
    let mut f = Fleet::new(config);
    let mut h = hb("a", &[("m", 1.0, 0)], &["m"]);
    h.ollama.models_loaded[0].family = "f".repeat(17);
    h.ollama.models_loaded[0].families = Some(vec!["ok".into(); 40]);
    let meta = ModelMeta {
        modified_at: "2".repeat(17),
        digest: "abc".into(),
        capabilities: vec!["x".repeat(17), "tools".into()],
        ..Default::default()
    };
    h.ollama.models_available_meta = Some(BTreeMap::from([(ModelName::new("m"), meta)]));
    f.handle_report(Instant::from_secs(1), report(h)).unwrap();
    let n = f.by_name("a").unwrap();
    let l = &n.report().ollama.models_loaded[0];
    assert_eq!((l.family.as_str(), l.families.as_ref().map(Vec::len)), ("", Some(heartbeat::MAX_TAGS_PER_MODEL)));
    let m = n.meta(&ModelName::new("m")).unwrap();
    assert_eq!((m.modified_at.as_str(), m.digest.as_str(), m.capabilities.clone()), ("", "abc", vec!["tools".into()]));
}

#[test]
fn hot_model_cap_and_free_slots() {
    let config = FleetConfig { default_max_loaded_models: 3, ..FleetConfig::default() };
    let mut f = Fleet::new(config);
    let mut h = hb("a", &[("m", 5.0, 0), ("n", 2.0, 0)], &["m", "n", "o"]);
    f.handle_report(Instant::from_secs(1), report(h.clone())).unwrap();
    let a = f.by_name("a").unwrap();
    assert_eq!((a.hot_model_cap(), a.models_loaded_count(), a.free_slots()), (3, 2, 1), "unreported: the default");
    assert_eq!(a.smallest_loaded_gb(), Some(2.0));
    h.ollama.max_loaded_models = 2;
    f.handle_report(Instant::from_secs(2), report(h.clone())).unwrap();
    let a = f.by_name("a").unwrap();
    assert_eq!((a.hot_model_cap(), a.free_slots()), (2, 0), "the node's OLLAMA_MAX_LOADED_MODELS");
    // One model loaded twice counts once; more loaded than the cap is no free slot, not an underflow.
    h.ollama.max_loaded_models = 1;
    h.ollama.models_loaded.push(LoadedModel::named(ModelName::new("m"), 6.0));
    f.handle_report(Instant::from_secs(3), report(h)).unwrap();
    let a = f.by_name("a").unwrap();
    assert_eq!((a.models_loaded_count(), a.free_slots()), (2, 0));
    f.handle_report(Instant::from_secs(4), report(hb("b", &[], &["m"]))).unwrap();
    let b = f.by_name("b").unwrap();
    assert_eq!((b.models_loaded_count(), b.free_slots(), b.smallest_loaded_gb()), (0, 3, None));
}
