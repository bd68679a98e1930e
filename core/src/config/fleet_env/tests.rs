//! Worked examples of each kind of row: a flag, a configuration field, a unit conversion, an
//! unsupported name, a bad value, and a `HERD_*` variable that wins.

use super::*;
use crate::config::{ContextProtection, RouterConfig};

fn mapped(vars: &[(&str, &str)], herd: &[&str]) -> FleetEnv {
    let herd_set: BTreeSet<String> = herd.iter().map(|h| h.to_string()).collect();
    map(vars.iter().copied(), &herd_set, Some("/home/op"))
}

fn config(vars: &[(&str, &str)]) -> RouterConfig {
    let env = mapped(vars, &[]);
    assert_eq!(env.errors, [], "{vars:?}");
    let mut c = RouterConfig::default();
    env.apply(&mut c);
    c
}

fn flags(env: &FleetEnv) -> Vec<(&'static str, &str)> {
    env.flags.iter().map(|f| (f.herd, f.value.as_str())).collect()
}

#[test]
fn flags_become_herd_variables() {
    let env = mapped(
        &[
            ("FLEET_PORT", "18903"),
            ("FLEET_HOST", "localhost"),
            ("FLEET_DATA_DIR", "~/.fleet-manager"),
            ("PATH", "/bin"),
        ],
        &[],
    );
    assert_eq!(
        flags(&env),
        [("HERD_HOST", "127.0.0.1"), ("HERD_PORT", "18903"), ("HERD_DATA_DIR", "/home/op/.fleet-manager")]
    );
    assert_eq!((env.config.len(), env.unsupported.len(), env.errors.len()), (0, 0, 0));
    assert_eq!(flags(&mapped(&[("FLEET_HOST", " :: ")], &[])), [("HERD_HOST", "::")]);
    assert_eq!(flags(&mapped(&[("FLEET_DATA_DIR", "/srv/herd")], &[])), [("HERD_DATA_DIR", "/srv/herd")]);
}

#[test]
fn a_herd_variable_wins() {
    let env = mapped(&[("FLEET_PORT", "18903"), ("FLEET_LOG_LEVEL", "DEBUG")], &["HERD_PORT", "HERD_LOG"]);
    assert_eq!(flags(&env), []);
    assert_eq!(env.overridden, [("FLEET_PORT", "HERD_PORT"), ("FLEET_LOG_LEVEL", "HERD_LOG")]);
    // Even a value herd could not read: herd's own setting is the one used.
    assert_eq!(mapped(&[("FLEET_PORT", "nope")], &["HERD_PORT"]).errors, []);
}

#[test]
fn python_log_levels_and_the_console_one_first() {
    for (python, tracing) in
        [("DEBUG", "debug"), ("info", "info"), ("WARNING", "warn"), ("ERROR", "error"), ("CRITICAL", "error")]
    {
        assert_eq!(flags(&mapped(&[("FLEET_LOG_LEVEL", python)], &[])), [("HERD_LOG_LEVEL", tracing)]);
    }
    // herd logs to the console only: ollama-herd's console level wins over its file level.
    let env = mapped(&[("FLEET_LOG_LEVEL", "DEBUG"), ("FLEET_CONSOLE_LOG_LEVEL", "WARNING")], &[]);
    assert_eq!(flags(&env), [("HERD_LOG_LEVEL", "warn")]);
    assert_eq!(env.overridden, [("FLEET_LOG_LEVEL", "HERD_LOG_LEVEL")]);
}

#[test]
fn config_fields_and_their_units() {
    let c = config(&[
        ("FLEET_SCORE_MODEL_HOT", "60"),
        ("FLEET_SCORE_QUEUE_DEPTH_PENALTY_PER", "4.5"),
        ("FLEET_HEARTBEAT_TIMEOUT", "7.5"),
        ("FLEET_HEARTBEAT_OFFLINE", "20"),
        ("FLEET_BANDWIDTH_AWARE_SCORING", "False"),
        ("FLEET_QUEUE_PENALTY_BANDWIDTH_NORMALIZE", "0"),
        ("FLEET_VRAM_FALLBACK", "no"),
        ("FLEET_CONTEXT_PROTECTION", "passthrough"),
        ("FLEET_THINKING_OVERHEAD", "1"),
        ("FLEET_THINKING_MIN_PREDICT", "0"),
        ("FLEET_CLIENT_MAX_IN_FLIGHT", "8"),
        ("FLEET_CLIENT_CONCURRENCY_RETRY_AFTER", "5"),
        ("FLEET_AUTO_PULL_TIMEOUT", "90"),
    ]);
    assert_eq!((c.score.model_hot, c.score.queue_penalty_per), (60.0, 4.5));
    assert_eq!(c.fleet.degraded_after, Duration::from_millis(7500));
    assert_eq!(c.fleet.offline_after, Duration::from_secs(20));
    assert!(!c.score.bandwidth_aware && !c.score.queue_bandwidth_normalize && !c.policy.vram_fallback);
    assert_eq!(c.policy.context_protection, ContextProtection::Passthrough);
    assert_eq!((c.policy.thinking_overhead, c.policy.thinking_min_predict), (1.0, 0));
    assert_eq!(c.queue.client_max_in_flight, 8);
    assert_eq!(c.queue.retry_after, Duration::from_secs(5));
    assert_eq!(c.policy.pull_timeout, Duration::from_secs(90));
    c.validate().expect("a valid configuration");
}

#[test]
fn retries_are_counted_as_attempts() {
    for (retries, attempts) in [("0", 1), ("2", 3), ("5", 6), ("-1", 1)] {
        assert_eq!(config(&[("FLEET_MAX_RETRIES", retries)]).retry.max_attempts, attempts, "{retries}");
    }
}

#[test]
fn auto_pull_true_pulls_anything_unless_herd_has_a_list() {
    let c = config(&[("FLEET_AUTO_PULL", "true")]);
    assert!(c.policy.auto_pull);
    assert_eq!(c.policy.pull_allow, ["*"]);
    assert!(crate::policy::fallback::pull_allowed(&c.policy, &crate::ids::ModelName::new("any/model:7b")));
    let mut listed = RouterConfig::default();
    listed.policy.pull_allow = vec!["qwen3:*".into()];
    mapped(&[("FLEET_AUTO_PULL", "1")], &[]).apply(&mut listed);
    assert_eq!(listed.policy.pull_allow, ["qwen3:*"]);
    assert!(!config(&[("FLEET_AUTO_PULL", "false")]).policy.auto_pull);
}

#[test]
fn unsupported_names_are_reported_with_why() {
    let env = mapped(
        &[
            ("FLEET_MLX_ENABLED", "true"),
            ("FLEET_STALE_TIMEOUT", "600"),
            ("FLEET_PORTT", "1"),
            ("FLEET_NODE_OLLAMA_HOST", "http://x:11434"),
            ("FLEET_TELEMETRY", "false"),
            ("FLEET_ANTHROPIC_API_KEY", "k"),
            ("FLEET_ENV_FILE", "/etc/fleet.env"),
            ("FLEET_REBALANCE_INTERVAL", ""),
        ],
        &[],
    );
    let got: Vec<(&str, Option<&str>)> = env.unsupported.iter().map(|u| (u.var.as_str(), u.reason)).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], ("FLEET_STALE_TIMEOUT", row("FLEET_STALE_TIMEOUT").and_then(reason)));
    assert_eq!(got[1], ("FLEET_MLX_ENABLED", Some("MLX proxy is not part of herd")));
    assert_eq!(got[2], ("FLEET_PORTT", None), "an unknown name is reported too");
    assert_eq!((env.flags.len(), env.config.len(), env.errors.len()), (0, 0, 0));
}

fn reason(r: &Row) -> Option<&'static str> {
    match r.target {
        Target::Unsupported(why) => Some(why),
        _ => None,
    }
}

#[test]
fn bad_values_name_the_variable_and_the_value() {
    let env = mapped(
        &[
            ("FLEET_PORT", "eleven"),
            ("FLEET_SCORE_MODEL_HOT", "-5"),
            ("FLEET_VRAM_FALLBACK", "maybe"),
            ("FLEET_HEARTBEAT_TIMEOUT", "0"),
            ("FLEET_CONTEXT_PROTECTION", "trim"),
            ("FLEET_LOG_LEVEL", "LOUD"),
            ("FLEET_HOST", "router.lan"),
            ("FLEET_MAX_RETRIES", "2.5"),
        ],
        &[],
    );
    let vars: Vec<&str> = env.errors.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(
        vars,
        [
            "FLEET_HOST",
            "FLEET_PORT",
            "FLEET_LOG_LEVEL",
            "FLEET_HEARTBEAT_TIMEOUT",
            "FLEET_SCORE_MODEL_HOT",
            "FLEET_VRAM_FALLBACK",
            "FLEET_CONTEXT_PROTECTION",
            "FLEET_MAX_RETRIES"
        ]
    );
    assert_eq!(env.errors[1].to_string(), r#"FLEET_PORT="eleven": expected a port number (0 to 65535)"#);
    assert_eq!(env.flags, []);
    assert_eq!(env.config.len(), 0);
}

#[test]
fn the_order_of_the_environment_does_not_matter() {
    let vars = [("FLEET_PORT", "1"), ("FLEET_XYZ", "1"), ("FLEET_ABC", "1"), ("FLEET_SCORE_MODEL_WARM", "3")];
    let mut reversed = vars;
    reversed.reverse();
    let (a, b) = (mapped(&vars, &[]), mapped(&reversed, &[]));
    assert_eq!((a.flags, a.unsupported), (b.flags, b.unsupported));
}

#[test]
fn every_row_is_in_the_readme_table_once() {
    let readme = include_str!("../../../../README.md");
    let mut seen = BTreeSet::new();
    for r in FLEET_VARS {
        assert!(seen.insert(r.var), "{} twice in FLEET_VARS", r.var);
        let cell = format!("| `{}`", r.var);
        assert_eq!(readme.matches(&cell).count(), 1, "README.md needs one table row for {}", r.var);
    }
    // And the table names no variable the code does not know.
    for line in readme.lines().filter(|l| l.starts_with("| `FLEET_")) {
        let var = line.split('`').nth(1).unwrap_or_default();
        assert!(row(var).is_some() || var.starts_with("FLEET_NODE_"), "README row {var} is not in FLEET_VARS");
    }
}

#[test]
fn every_config_row_names_a_field_a_config_file_has() {
    let defaults = serde_json::to_value(RouterConfig::default()).unwrap();
    for r in FLEET_VARS {
        if let Target::Config { field, .. } = r.target {
            let (section, name) = field.split_once('.').unwrap_or_else(|| panic!("{field}"));
            assert!(defaults[section].get(name).is_some(), "{}: no field {field}", r.var);
        }
    }
}
