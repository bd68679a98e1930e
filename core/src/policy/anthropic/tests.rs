//! Each step of the resolution order, the tiers, and what never answers a Claude id.

use super::*;
use crate::config::ModelMapError;
use crate::fleet::heartbeat::{Heartbeat, Report};
use crate::fleet::tests::hb;
use crate::time::Instant;

/// A fleet of the given heartbeats, each with the metadata given by name.
fn fleet(nodes: Vec<Heartbeat>, meta: &[(&str, &[&str], &str)]) -> Fleet {
    let mut f = Fleet::new(crate::config::FleetConfig::default());
    for mut h in nodes {
        let m: BTreeMap<ModelName, ModelMeta> = meta
            .iter()
            .map(|&(name, caps, size)| {
                let meta = ModelMeta {
                    capabilities: caps.iter().map(|c| c.to_string()).collect(),
                    parameter_size: size.into(),
                    ..ModelMeta::default()
                };
                (ModelName::new(name), meta)
            })
            .collect();
        h.ollama.models_available_meta = Some(m);
        f.handle_report(Instant::ZERO, Report::Heartbeat(Box::new(h))).unwrap();
    }
    f
}

fn config(map: &[(&str, &str)], auto_route: bool) -> AnthropicConfig {
    AnthropicConfig { model_map: map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), auto_route }
}

fn got(r: Option<Resolution>) -> Option<(String, ResolvedBy)> {
    r.map(|r| (r.model.as_str().to_string(), r.by))
}

#[test]
fn the_order_map_fleet_loaded_disk_default_none() {
    let f = fleet(
        vec![hb("a", &[("qwen3:8b", 5.0, 8192)], &["qwen3:8b", "qwen2.5-coder:32b"]), hb("b", &[], &["llama3.1:8b"])],
        &[],
    );
    let map = config(&[("claude-sonnet-4-5", "llama3.1:8b"), ("default", "qwen2.5-coder:32b")], true);
    // 1: the map, even over a loaded model.
    assert_eq!(got(resolve("claude-sonnet-4-5", &map, &f, false)), Some(("llama3.1:8b".into(), ResolvedBy::Map)));
    // 2: a model the fleet has, as named (a client that names a local model on /v1/messages).
    assert_eq!(got(resolve("llama3.1:8b", &map, &f, false)), Some(("llama3.1:8b".into(), ResolvedBy::Fleet)));
    assert_eq!(got(resolve("qwen3:8b", &map, &f, false)), Some(("qwen3:8b".into(), ResolvedBy::Fleet)));
    // 3: the best loaded model (here the only one), before a better one on disk.
    assert_eq!(got(resolve("claude-opus-4-1", &map, &f, false)), Some(("qwen3:8b".into(), ResolvedBy::AutoLoaded)));
    // 4: nothing loaded: the best on disk (coding first).
    let cold = fleet(vec![hb("a", &[], &["qwen3:8b", "qwen2.5-coder:32b"])], &[]);
    assert_eq!(
        got(resolve("claude-sonnet-4-5", &config(&[], true), &cold, false)),
        Some(("qwen2.5-coder:32b".into(), ResolvedBy::AutoOnDisk))
    );
    // 5: auto-route off: the default; 6: no default either.
    let off = config(&[("default", "qwen3:8b")], false);
    assert_eq!(got(resolve("claude-3-5-haiku", &off, &f, false)), Some(("qwen3:8b".into(), ResolvedBy::Default)));
    assert_eq!(resolve("claude-3-5-haiku", &config(&[], false), &f, false), None);
    // An empty fleet with auto-route: the default, else nothing.
    let empty = fleet(vec![], &[]);
    assert_eq!(got(resolve("claude-x", &map, &empty, false)).map(|g| g.1), Some(ResolvedBy::Default));
    assert_eq!(resolve("claude-x", &config(&[], true), &empty, false), None);
}

#[test]
fn tiers_weigh_size() {
    assert_eq!(Tier::of("claude-3-5-haiku-20241022"), Tier::Fast);
    assert_eq!(Tier::of("Claude-Opus-4-1"), Tier::Premium);
    assert_eq!(Tier::of("claude-sonnet-4-5"), Tier::Balanced);
    assert_eq!(Tier::of("gpt-4o"), Tier::Balanced);
    // Three general models loaded: 8 B (from the name), 70 B (from metadata), 14 B.
    let f = fleet(
        vec![hb("a", &[("llama3.1:8b", 5.0, 8192), ("big", 40.0, 8192), ("phi4:14b", 9.0, 8192)], &[])],
        &[("big", &["completion"], "70.6B")],
    );
    let auto = config(&[], true);
    assert_eq!(got(resolve("claude-opus-4-1", &auto, &f, false)).unwrap().0, "big:latest", "premium: the biggest");
    assert_eq!(got(resolve("claude-3-5-haiku", &auto, &f, false)).unwrap().0, "llama3.1:8b", "fast: the smallest");
    // Balanced: size does not count; equal scores go to the first name.
    assert_eq!(got(resolve("claude-sonnet-4-5", &auto, &f, false)).unwrap().0, "big:latest");
}

#[test]
fn categories_and_exclusions() {
    let models =
        ["nomic-embed-text", "x/flux2-klein", "deepseek-r1:8b", "llava:7b", "qwen3:8b", "decider", "qwen3-coder:30b"];
    let loaded: Vec<(&str, f64, u32)> = models.iter().map(|m| (*m, 4.0, 4096)).collect();
    let f = fleet(vec![hb("a", &loaded, &[])], &[("decider", &["completion", "decision"], "3B")]);
    let auto = config(&[], true);
    // Coding beats general beats reasoning and vision; embeddings, images and decision models never.
    assert_eq!(got(resolve("claude-sonnet-4-5", &auto, &f, false)).unwrap().0, "qwen3-coder:30b");
    // With an image, only a model that sees.
    assert_eq!(got(resolve("claude-sonnet-4-5", &auto, &f, true)).unwrap().0, "llava:7b");
    let only_bad = fleet(vec![hb("a", &[("nomic-embed-text", 0.5, 0), ("bge-m3", 1.0, 0)], &["x/z-image-turbo"])], &[]);
    assert_eq!(resolve("claude-sonnet-4-5", &auto, &only_bad, false), None);
    assert_eq!(resolve("claude-sonnet-4-5", &auto, &fleet(vec![hb("a", &[], &["qwen3:8b"])], &[]), true), None);
}

#[test]
fn only_routable_nodes_offer_candidates() {
    let mut f = fleet(vec![hb("a", &[("qwen3:8b", 5.0, 8192)], &[])], &[]);
    f.handle_report(Instant::ZERO, Report::AdminDrain { node_id: "a".into() }).unwrap();
    assert_eq!(resolve("claude-sonnet-4-5", &config(&[], true), &f, false), None);
    // A model the fleet knows is still itself (routing then holds or refuses it).
    assert_eq!(got(resolve("qwen3:8b", &config(&[], true), &f, false)).map(|g| g.1), Some(ResolvedBy::Fleet));
}

#[test]
fn parameter_sizes() {
    assert_eq!(params_b("8.2B"), Some(8.2));
    assert_eq!(params_b("567M"), Some(0.567));
    assert_eq!(params_b(""), None);
    assert_eq!(params_b("B"), None);
    assert_eq!(params_b("lots"), None);
    let n = |s: &str| params_from_name(&ModelName::new(s));
    assert_eq!(n("qwen3:30b-a3b"), Some(30.0));
    assert_eq!(n("llama3.2:1b"), Some(1.0));
    assert_eq!(n("qwen3:0.6b"), Some(0.6));
    assert_eq!(n("gpt-oss:120b"), Some(120.0));
    assert_eq!(n("hf.co/x/Qwen2.5-7B-Instruct:Q4"), Some(7.0));
    assert_eq!(n("llama3.1"), None);
    assert_eq!(n("phi4:latest"), None);
}

#[test]
fn model_maps_as_json() {
    let m = AnthropicConfig::parse_model_map(r#"{"claude-sonnet-4-5": " qwen3:32b ", "default": "qwen3:8b"}"#).unwrap();
    assert_eq!(m.get("claude-sonnet-4-5").map(String::as_str), Some("qwen3:32b"));
    assert_eq!(m.len(), 2);
    assert!(AnthropicConfig::parse_model_map("  ").unwrap().is_empty());
    assert!(matches!(AnthropicConfig::parse_model_map("{oops"), Err(ModelMapError::NotJson(_))));
    assert_eq!(AnthropicConfig::parse_model_map(r#"["a"]"#), Err(ModelMapError::NotAnObject));
    assert_eq!(AnthropicConfig::parse_model_map(r#"{" ": "m"}"#), Err(ModelMapError::EmptyKey));
    assert_eq!(
        AnthropicConfig::parse_model_map(r#"{"claude": 5}"#),
        Err(ModelMapError::NotAString { key: "claude".into() })
    );
    assert_eq!(
        AnthropicConfig::parse_model_map(r#"{"claude": "bad name"}"#),
        Err(ModelMapError::BadModel { key: "claude".into(), value: "bad name".into() })
    );
    // A configuration file's map is checked as well.
    let mut c = crate::config::RouterConfig::default();
    c.anthropic.model_map.insert("claude".into(), "m:".into());
    assert!(c.validate().is_err());
}
