use super::*;
use crate::fleet::heartbeat::{Capacity, Gpu, Heartbeat, Report};
use crate::fleet::tests::hb;
use crate::fleet::Fleet;
use crate::time::Instant;

fn fleet_of(hbs: Vec<Heartbeat>) -> Fleet {
    let mut f = Fleet::new(Default::default());
    for h in hbs {
        f.handle_report(Instant::ZERO, Report::Heartbeat(Box::new(h))).unwrap();
    }
    f
}

fn score_all(f: &Fleet, model: &str, facts: &dyn Fn(&Node) -> Facts, c: &ScoreConfig) -> Decision {
    let m = ModelName::new(model);
    let want =
        Want { model: &m, estimated_tokens: 0, warm_window: Duration::from_secs(1800), expected_output_tokens: 256 };
    let mut d = Decision::default();
    let mut scored = Vec::new();
    for n in f.nodes() {
        let fa = facts(n);
        match eliminate(n, &m, fa.breaker_open) {
            Some(e) => d.eliminated.push((n.id(), e)),
            None => scored.push((
                n.id(),
                breakdown(c, n, &want, &fa, f.median_bandwidth(), Instant::ZERO),
                n.temperature(&m, Instant::ZERO, want.warm_window),
                fa,
            )),
        }
    }
    d.ranked = rank(c, scored, 42);
    d
}

/// ollama-herd's example fleet: a Mac Studio (M2 Ultra, 192 GB, 800 GB/s) with llama3.3:70b
/// loaded, and a MacBook Pro (128 GB, 400 GB/s) with it only on disk.
fn studio_and_macbook(studio_parallel: u32) -> Fleet {
    let mut studio = hb("studio", &[("llama3.3:70b", 48.0, 8192)], &["llama3.3:70b"]);
    studio.memory.total_gb = 192.0;
    studio.memory.available_gb = 100.0;
    studio.memory_bandwidth_gbps = 800.0;
    studio.ollama.num_parallel = studio_parallel;
    studio.ollama.models_available_sizes.insert(ModelName::new("llama3.3:70b"), 42.5);
    let mut mbp = hb("macbook", &[], &["llama3.3:70b"]);
    mbp.memory.total_gb = 128.0;
    mbp.memory.available_gb = 100.0;
    mbp.memory_bandwidth_gbps = 400.0;
    mbp.ollama.models_available_sizes.insert(ModelName::new("llama3.3:70b"), 42.5);
    fleet_of(vec![studio, mbp])
}

/// ollama-herd's own example: a 70B model, hot on a busy Mac Studio against cold on an idle
/// MacBook Pro. The hot machine wins despite its queue: a cold load costs far more.
#[test]
fn hot_busy_studio_beats_cold_idle_macbook() {
    let f = studio_and_macbook(0);
    let c = ScoreConfig { policy: ScorePolicy::Classic, ..ScoreConfig::default() };
    let depth3 = |n: &Node| Facts { depth: if n.name() == "studio" { 3 } else { 0 }, slots: 1, ..Facts::default() };
    let d = score_all(&f, "llama3.3:70b", &depth3, &c);
    let studio = &d.ranked[0];
    assert_eq!(f.node(studio.node).unwrap().name(), "studio");
    // 50 hot + 20 fit − 13.5 queue (3 / (800/600) × 6) − 0.13 wait + 25 role = 81.37
    assert!((studio.total - 81.367).abs() < 0.01, "{:?}", studio.breakdown);
    assert_eq!(studio.breakdown.get(Signal::QueueDepth), -13.5);
    // 10 cold + 20 fit (100/42.5 = 2.35×) + 15 role (5 + 400/40) = 45
    assert!((d.ranked[1].total - 45.0).abs() < 1e-9, "{:?}", d.ranked[1].breakdown);
}

#[test]
fn eliminations_carry_reasons_in_reference_order() {
    let mut critical = hb("critical", &[], &["m:7b"]);
    critical.memory.pressure = Pressure::Critical;
    let mut paused = hb("paused", &[], &["m:7b"]);
    paused.capacity = Some(Capacity { mode: "paused".into(), ..Default::default() });
    let absent = hb("absent", &[], &["other"]);
    let mut small = hb("small-gpu", &[], &["m:7b"]);
    small.gpus = vec![Gpu { vram_total_bytes: 4_000_000_000, vram_free_bytes: 3_000_000_000, ..Default::default() }];
    let mut down = hb("down", &[], &["m:7b"]);
    down.ollama.reachable = Some(false);
    let ok = hb("ok", &[], &["m:7b"]);
    let broken = hb("broken", &[], &["m:7b"]);
    let f = fleet_of(vec![critical, paused, absent, small, down, ok, broken]);
    let facts = |n: &Node| Facts { slots: 1, breaker_open: n.name() == "broken", ..Facts::default() };
    let d = score_all(&f, "m:7b", &facts, &ScoreConfig::default());
    let reasons: Vec<&str> = d.eliminated.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        reasons,
        ["memory_critical", "capacity_paused", "model_absent", "does_not_fit", "ollama_down", "breaker_open"]
    );
    assert_eq!(d.eliminated[3].1, Elimination::DoesNotFit { need_gb: 5.0, free_gb: 3.0 });
    assert_eq!(d.ranked.len(), 1);
    assert_eq!(f.node(d.ranked[0].node).unwrap().name(), "ok");
}

#[test]
fn critical_pressure_spares_a_resident_model() {
    let mut n = hb("solo", &[("m:7b", 5.0, 4096)], &["m:7b"]);
    n.memory.pressure = Pressure::Critical;
    let f = fleet_of(vec![n]);
    let d = score_all(&f, "m:7b", &|_| Facts { slots: 1, ..Facts::default() }, &ScoreConfig::default());
    assert_eq!(d.ranked.len(), 1, "ollama-herd 0.6.1 503'd a one-node fleet here");
}

#[test]
fn herd_ties_break_from_the_seed_classic_by_registration() {
    let f = fleet_of((0..8).map(|i| hb(&format!("n{i}"), &[], &["m:7b"])).collect());
    let facts = |_: &Node| Facts { slots: 1, ..Facts::default() };
    let classic = ScoreConfig { policy: ScorePolicy::Classic, ..ScoreConfig::default() };
    let m = ModelName::new("m:7b");
    let want =
        Want { model: &m, estimated_tokens: 0, warm_window: Duration::from_secs(1800), expected_output_tokens: 256 };
    let scored = |c: &ScoreConfig| -> Vec<_> {
        f.nodes()
            .map(|n| (n.id(), breakdown(c, n, &want, &facts(n), 0.0, Instant::ZERO), Temperature::Cold, facts(n)))
            .collect()
    };
    for seed in 0..20 {
        assert_eq!(rank(&classic, scored(&classic), seed)[0].node, NodeId(0));
    }
    let herd = ScoreConfig::default();
    let winners: std::collections::BTreeSet<NodeId> =
        (0..40).map(|seed| rank(&herd, scored(&herd), seed)[0].node).collect();
    assert!(winners.len() >= 4, "equal nodes should share the load across decisions: {winners:?}");
    assert_eq!(rank(&herd, scored(&herd), 7), rank(&herd, scored(&herd), 7));
}

#[test]
fn session_pin_yields_to_a_much_longer_queue() {
    let f = fleet_of(vec![hb("a", &[("m:7b", 5.0, 4096)], &["m:7b"]), hb("b", &[("m:7b", 5.0, 4096)], &["m:7b"])]);
    let c = ScoreConfig::default();
    let pinned_busy = |n: &Node| {
        if n.name() == "a" {
            Facts { depth: 4, slots: 1, session_pinned: true, ..Facts::default() }
        } else {
            Facts { depth: 0, slots: 1, ..Facts::default() }
        }
    };
    let d = score_all(&f, "m:7b", &pinned_busy, &c);
    assert_eq!(f.node(d.ranked[0].node).unwrap().name(), "b");
    assert_eq!(d.ranked[1].breakdown.get(Signal::SessionAffinity), 0.0, "guard drops the pin");
    let pinned_light = |n: &Node| Facts { depth: 1, slots: 1, session_pinned: n.name() == "a", ..Facts::default() };
    // Classic's fixed bonus (herd values a pin by the prefill it saves; see router tests).
    let c = ScoreConfig { policy: ScorePolicy::Classic, ..c };
    let d = score_all(&f, "m:7b", &pinned_light, &c);
    assert_eq!(f.node(d.ranked[0].node).unwrap().name(), "a");
    assert!((d.ranked[0].breakdown.get(Signal::SessionAffinity) - 20.0 / 1.5).abs() < 1e-9);
}

/// herd trades in seconds: the hot busy machine wins while its queue is shorter than a cold
/// load elsewhere, and loses once waiting there would take longer than loading.
#[test]
fn herd_weighs_queue_wait_against_load_time() {
    let mk = studio_and_macbook;
    let c = ScoreConfig::default();
    // Four slots, three busy: nobody waits on the Studio, while the MacBook must load 42.5 GB.
    let f = mk(4);
    let facts = |n: &Node| Facts {
        depth: if n.name() == "studio" { 3 } else { 0 },
        slots: n.num_parallel(),
        ..Facts::default()
    };
    let d = score_all(&f, "llama3.3:70b", &facts, &c);
    assert_eq!(f.node(d.ranked[0].node).unwrap().name(), "studio");
    // One slot, three ahead: waiting 3 × 19.4 s (256 tokens at 13.2 tok/s) then 19.4 s of
    // service (77.7 s) still beats loading 42.5 s and decoding at half the speed (81.4 s).
    let f = mk(1);
    let d = score_all(&f, "llama3.3:70b", &facts, &c);
    assert_eq!(f.node(d.ranked[0].node).unwrap().name(), "studio", "{:?}", d.ranked);
    // Four ahead (97 s) no longer does: the idle MacBook finishes first.
    let facts = |n: &Node| Facts {
        depth: if n.name() == "studio" { 4 } else { 0 },
        slots: n.num_parallel(),
        ..Facts::default()
    };
    let d = score_all(&f, "llama3.3:70b", &facts, &c);
    assert_eq!(f.node(d.ranked[0].node).unwrap().name(), "macbook", "{:?}", d.ranked);
    let studio = d.ranked.iter().find(|c| f.node(c.node).unwrap().name() == "studio").unwrap();
    let service = 256.0 / (560.0 / 42.5);
    assert!((studio.breakdown.get(Signal::QueueDepth) + 2.0 * 4.0 * service).abs() < 1e-6);
    let mbp = &d.ranked[0];
    assert!((mbp.breakdown.get(Signal::ModelTemperature) - (50.0 - 2.0 * 42.5)).abs() < 1e-9);
}

/// herd policy: a cold load on a node whose hot-model cap is full makes Ollama unload a
/// resident model; the node that can load without evicting wins, all else equal. A model
/// already loaded there costs nothing extra, and the classic policy (ollama-herd's) ignores caps.
#[test]
fn a_cold_load_avoids_evicting_when_another_node_has_room() {
    let node = |name: &str, loaded: &[(&str, f64, u32)]| {
        let mut h = hb(name, loaded, &["m:7b", "a:3b", "b:8b"]);
        h.ollama.max_loaded_models = 2;
        h.memory.available_gb = 60.0;
        h.ollama.models_available_sizes.insert(ModelName::new("m:7b"), 5.0);
        h
    };
    let f = fleet_of(vec![node("full", &[("a:3b", 3.0, 0), ("b:8b", 8.0, 0)]), node("room", &[("b:8b", 8.0, 0)])]);
    let idle = |_: &Node| Facts { slots: 1, ..Facts::default() };
    let herd = ScoreConfig::default();
    let d = score_all(&f, "m:7b", &idle, &herd);
    let name = |c: &Candidate| f.node(c.node).unwrap().name().to_string();
    assert_eq!(name(&d.ranked[0]), "room");
    let full = &d.ranked[1];
    // Reloading the smallest resident (3 GB at 1 GB/s) at 2 points a second.
    assert!((full.breakdown.get(Signal::Eviction) + 6.0).abs() < 1e-9, "{:?}", full.breakdown);
    assert_eq!(d.ranked[0].breakdown.get(Signal::Eviction), 0.0);
    assert!((d.ranked[0].total - full.total - 6.0).abs() < 1e-9, "the eviction is the whole difference");
    // Loaded where the cap is full: nothing is evicted.
    let hot = score_all(&f, "a:3b", &idle, &herd);
    assert_eq!(name(&hot.ranked[0]), "full");
    assert_eq!(hot.ranked[0].breakdown.get(Signal::Eviction), 0.0);
    // ollama-herd's scoring does not know caps: the two tie on everything.
    let classic = ScoreConfig { policy: ScorePolicy::Classic, ..ScoreConfig::default() };
    let d = score_all(&f, "m:7b", &idle, &classic);
    assert!(d.ranked.iter().all(|c| c.breakdown.get(Signal::Eviction) == 0.0));
    assert_eq!(d.ranked[0].total, d.ranked[1].total);
}
