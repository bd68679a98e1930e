//! Turning trace rows into the simulation's arrivals: the trace gives times, prompt and answer sizes;
//! a seeded draw adds what it lacks (which model, embeddings, multi-turn conversations that share a
//! prefix with their previous turn).

use crate::trace::TraceRow;
use herd_core::ids::ModelName;
use herd_core::request::{RequestKind, RequestSpec};
use herd_core::rng::{mix, Rng};
use herd_core::time::Instant;

/// Open conversations a new request may continue; the least recently used one is dropped beyond it.
pub const MAX_OPEN_CONVERSATIONS: usize = 256;
/// A prompt never grows past this; a conversation whose next turn would reach it is closed.
pub const MAX_PROMPT_TOKENS: u32 = 32_768;

/// How rows become arrivals.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    /// Chat models in popularity order. Empty: chat arrivals name the empty model.
    pub models: Vec<ModelName>,
    /// Zipf exponent over `models`: model `i` (from 0) has weight `1 / (i + 1)^s`.
    pub zipf_s: f64,
    /// Chance a chat request continues an open conversation of the same model.
    pub conversation_share: f64,
    /// Chance a request is an embedding request.
    pub embed_share: f64,
    /// The model embedding requests name.
    pub embed_model: ModelName,
    /// Offsets are multiplied by this (1.0 = real time, 0.5 = twice as fast). Negative or NaN is 0.
    pub time_scale: f64,
    /// Keep only the earliest this many rows.
    pub max_requests: Option<usize>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            models: ["qwen3:8b", "llama3.1:8b", "qwen2.5-coder:7b", "gemma3:27b", "llama3.3:70b"]
                .into_iter()
                .map(ModelName::new)
                .collect(),
            zipf_s: 1.1,
            conversation_share: 0.35,
            embed_share: 0.03,
            embed_model: ModelName::new("nomic-embed-text"),
            time_scale: 1.0,
            max_requests: None,
        }
    }
}

/// One request the simulation submits, and what the simulated node will do with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// When the client sends it: `Instant::ZERO` + offset × `time_scale`.
    pub at: Instant,
    /// The request as the router sees it.
    pub spec: RequestSpec,
    /// Tokens the simulated node generates (the trace's `GeneratedTokens`; 0 for embeddings).
    pub output_tokens: u32,
    /// `(conversation key, tokens shared with that conversation's previous turn)` for a continued
    /// conversation; `None` for a first turn or an embedding.
    pub prefix: Option<(u64, u32)>,
}

/// A conversation that a later request may continue.
#[derive(Clone, Debug)]
struct Conversation {
    key: u64,
    model: usize,
    /// Prompt plus output of its last turn: what the next turn shares.
    history_tokens: u32,
}

/// The four draws every row takes, whatever it becomes, so changing one share leaves the others'
/// draws in place.
struct Draws {
    embed: f64,
    conversation: f64,
    model: f64,
    pick: f64,
}

/// Turns `rows` into arrivals, one per row, in time order (rows are taken in stable offset order,
/// so unsorted input is fine), keeping the earliest `cfg.max_requests`.
///
/// Same rows, config and seed give the same arrivals. A continued conversation's prompt is its
/// previous prompt + previous output + the row's context tokens, capped at [`MAX_PROMPT_TOKENS`];
/// `prefix` never exceeds `estimated_prompt_tokens`.
pub fn workload(rows: &[TraceRow], cfg: &WorkloadConfig, seed: u64) -> Vec<Arrival> {
    let mut order: Vec<&TraceRow> = rows.iter().collect();
    order.sort_by_key(|r| r.offset_ms);
    order.truncate(cfg.max_requests.unwrap_or(usize::MAX));
    let weights = zipf_cumulative(cfg.models.len(), cfg.zipf_s);
    let mut rng = Rng::new(seed);
    let mut open: Vec<Conversation> = Vec::new();
    let mut started = 0u64;
    let mut out = Vec::with_capacity(order.len());
    for row in order {
        let d = Draws { embed: rng.unit(), conversation: rng.unit(), model: rng.unit(), pick: rng.unit() };
        let at = scaled(row.offset_ms, cfg.time_scale);
        if d.embed < cfg.embed_share {
            out.push(embed(at, row, cfg));
            continue;
        }
        let model = pick_weighted(&weights, d.model);
        let continued =
            if d.conversation < cfg.conversation_share { take_open(&mut open, model, d.pick) } else { None };
        let (conv, shared) = match continued {
            Some(c) => (c.key, Some(c.history_tokens)),
            None => {
                started += 1;
                (mix(seed.wrapping_add(started)), None)
            }
        };
        let prompt = shared.unwrap_or(0).saturating_add(row.context_tokens).min(MAX_PROMPT_TOKENS);
        let history_tokens = prompt.saturating_add(row.generated_tokens);
        if history_tokens < MAX_PROMPT_TOKENS {
            if open.len() >= MAX_OPEN_CONVERSATIONS {
                open.remove(0);
            }
            open.push(Conversation { key: conv, model, history_tokens });
        }
        let name = cfg.models.get(model).cloned().unwrap_or_default();
        out.push(Arrival {
            at,
            spec: RequestSpec {
                kind: RequestKind::Chat,
                model: name,
                estimated_prompt_tokens: prompt,
                stream: true,
                session_key: Some(format!("session:conv-{conv}")),
                prefix_key: Some(conv),
                tags: vec!["trace".to_string()],
                ..RequestSpec::default()
            },
            output_tokens: row.generated_tokens,
            prefix: shared.map(|s| (conv, s)),
        });
    }
    out
}

fn embed(at: Instant, row: &TraceRow, cfg: &WorkloadConfig) -> Arrival {
    Arrival {
        at,
        spec: RequestSpec {
            kind: RequestKind::Embed,
            model: cfg.embed_model.clone(),
            estimated_prompt_tokens: row.context_tokens.min(MAX_PROMPT_TOKENS),
            stream: false,
            tags: vec!["trace".to_string()],
            ..RequestSpec::default()
        },
        output_tokens: 0,
        prefix: None,
    }
}

/// `Instant::ZERO + offset_ms × scale`; monotone in `offset_ms`, saturating at `Instant::MAX`.
fn scaled(offset_ms: u64, scale: f64) -> Instant {
    let scale = if scale >= 0.0 { scale } else { 0.0 };
    // `as` saturates (and maps NaN to 0), which is what we want for absurd scales.
    Instant::from_micros((offset_ms as f64 * 1000.0 * scale) as u64)
}

/// Cumulative Zipf weights for `n` models; uniform when the exponent gives no usable weights.
fn zipf_cumulative(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let zipf: Vec<f64> = (1..=n)
        .map(|rank| {
            acc += (rank as f64).powf(-s);
            acc
        })
        .collect();
    if acc.is_finite() && acc > 0.0 && zipf.iter().all(|w| w.is_finite()) {
        zipf
    } else {
        (1..=n).map(|rank| rank as f64).collect()
    }
}

/// The index whose cumulative weight first exceeds `u × total`; 0 when there are none.
fn pick_weighted(cumulative: &[f64], u: f64) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let target = u * total;
    cumulative.iter().position(|&c| target < c).unwrap_or(cumulative.len().saturating_sub(1))
}

/// Removes and returns one open conversation of `model`, chosen by `u` in `[0, 1)`.
fn take_open(open: &mut Vec<Conversation>, model: usize, u: f64) -> Option<Conversation> {
    let same: Vec<usize> = open.iter().enumerate().filter(|(_, c)| c.model == model).map(|(i, _)| i).collect();
    if same.is_empty() {
        return None;
    }
    let i = ((u * same.len() as f64) as usize).min(same.len() - 1);
    Some(open.remove(same[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> Vec<TraceRow> {
        (0..n)
            .map(|i| TraceRow { offset_ms: i * 100, context_tokens: 100 + i as u32 % 50, generated_tokens: 40 })
            .collect()
    }

    fn chat_only() -> WorkloadConfig {
        WorkloadConfig { embed_share: 0.0, ..WorkloadConfig::default() }
    }

    #[test]
    fn zipf_makes_the_first_model_most_frequent() {
        let cfg = chat_only();
        let arrivals = workload(&rows(5000), &cfg, 1);
        let counts: Vec<usize> =
            cfg.models.iter().map(|m| arrivals.iter().filter(|a| &a.spec.model == m).count()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 5000);
        assert!(counts.windows(2).all(|w| w[0] > w[1]), "{counts:?}");
        // 1 / H(5, 1.1) ≈ 0.44 of requests ask for the first model.
        assert!((2150..2500).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn continuations_grow_the_prompt_and_share_the_prefix() {
        let cfg = WorkloadConfig { conversation_share: 0.5, ..chat_only() };
        let input = rows(2000);
        let arrivals = workload(&input, &cfg, 7);
        let mut last: std::collections::BTreeMap<u64, (u32, u32)> = std::collections::BTreeMap::new();
        let mut continued = 0;
        for (a, row) in arrivals.iter().zip(&input) {
            let key = a.spec.prefix_key.expect("chat arrivals carry a conversation key");
            assert_eq!(a.spec.session_key.as_deref(), Some(format!("session:conv-{key}").as_str()));
            match a.prefix {
                None => {
                    assert!(!last.contains_key(&key), "a first turn gets a fresh key");
                    assert_eq!(a.spec.estimated_prompt_tokens, row.context_tokens);
                }
                Some((k, shared)) => {
                    continued += 1;
                    assert_eq!(k, key);
                    let (prompt, output) = last[&key];
                    assert_eq!(shared, prompt + output);
                    assert_eq!(a.spec.estimated_prompt_tokens, (shared + row.context_tokens).min(MAX_PROMPT_TOKENS));
                    assert!(a.spec.estimated_prompt_tokens > prompt);
                }
            }
            assert!(a.prefix.is_none_or(|(_, s)| s <= a.spec.estimated_prompt_tokens));
            last.insert(key, (a.spec.estimated_prompt_tokens, a.output_tokens));
        }
        assert!((800..1200).contains(&continued), "{continued} of 2000 continued");
    }

    #[test]
    fn continuations_keep_their_model_and_long_conversations_close() {
        let cfg = WorkloadConfig { conversation_share: 1.0, ..chat_only() };
        let big = vec![TraceRow { offset_ms: 0, context_tokens: 6000, generated_tokens: 2000 }; 50];
        let arrivals = workload(&big, &cfg, 3);
        let mut model_of = std::collections::BTreeMap::new();
        for a in &arrivals {
            let key = a.spec.prefix_key.unwrap();
            assert_eq!(model_of.entry(key).or_insert_with(|| a.spec.model.clone()), &a.spec.model);
            assert!(a.spec.estimated_prompt_tokens <= MAX_PROMPT_TOKENS);
        }
        // Each turn adds 8000 tokens: turns 1-4 leave 8k..32k of history, the fifth is capped and closes.
        for key in model_of.keys() {
            let turns = arrivals.iter().filter(|a| a.spec.prefix_key == Some(*key)).count();
            assert!(turns <= 5, "{turns} turns");
        }
        assert!(arrivals.iter().any(|a| a.spec.estimated_prompt_tokens == MAX_PROMPT_TOKENS));
    }

    #[test]
    fn embed_share_is_roughly_honoured() {
        let cfg = WorkloadConfig { embed_share: 0.1, ..WorkloadConfig::default() };
        let arrivals = workload(&rows(10_000), &cfg, 11);
        let embeds: Vec<&Arrival> = arrivals.iter().filter(|a| a.spec.kind == RequestKind::Embed).collect();
        assert!((850..1150).contains(&embeds.len()), "{} embeds", embeds.len());
        for e in embeds {
            assert_eq!(e.spec.model, ModelName::new("nomic-embed-text"));
            assert_eq!((e.output_tokens, e.prefix, e.spec.stream), (0, None, false));
            assert_eq!((e.spec.session_key.as_ref(), e.spec.prefix_key), (None, None));
        }
        let none = workload(&rows(1000), &WorkloadConfig { embed_share: 0.0, ..cfg }, 11);
        assert!(none.iter().all(|a| a.spec.kind == RequestKind::Chat && a.spec.stream));
    }

    #[test]
    fn same_seed_same_arrivals_other_seed_other_models() {
        let cfg = WorkloadConfig::default();
        let input = rows(500);
        assert_eq!(workload(&input, &cfg, 42), workload(&input, &cfg, 42));
        assert_ne!(workload(&input, &cfg, 42), workload(&input, &cfg, 43));
    }

    #[test]
    fn max_requests_and_time_scale() {
        let input = rows(100);
        let cfg = WorkloadConfig { max_requests: Some(10), time_scale: 0.5, ..WorkloadConfig::default() };
        let arrivals = workload(&input, &cfg, 5);
        assert_eq!(arrivals.len(), 10);
        assert_eq!(arrivals[9].at, Instant::from_millis(450));
        let real = workload(&input, &WorkloadConfig::default(), 5);
        assert_eq!(real[99].at, Instant::from_millis(9900));
        assert_eq!(
            arrivals[..],
            real[..10]
                .iter()
                .map(|a| Arrival { at: Instant::from_micros(a.at.as_micros() / 2), ..a.clone() })
                .collect::<Vec<_>>()[..]
        );
        let burst = workload(&input, &WorkloadConfig { time_scale: f64::NAN, ..WorkloadConfig::default() }, 5);
        assert!(burst.iter().all(|a| a.at == Instant::ZERO));
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        let input = rows(200);
        for cfg in [
            WorkloadConfig { models: Vec::new(), ..WorkloadConfig::default() },
            WorkloadConfig { zipf_s: f64::NAN, conversation_share: f64::NAN, ..WorkloadConfig::default() },
            WorkloadConfig { zipf_s: -2000.0, time_scale: f64::INFINITY, ..WorkloadConfig::default() },
            WorkloadConfig { embed_share: 2.0, max_requests: Some(0), ..WorkloadConfig::default() },
        ] {
            let arrivals = workload(&input, &cfg, 0);
            assert_eq!(arrivals.len(), cfg.max_requests.unwrap_or(200));
        }
        assert_eq!(pick_weighted(&[], 0.5), 0);
        assert_eq!(pick_weighted(&zipf_cumulative(3, f64::INFINITY), 0.99), 0);
        assert_eq!(pick_weighted(&zipf_cumulative(3, 0.0), 0.99), 2);
    }

    #[test]
    fn the_shared_trace_becomes_an_hour_of_arrivals() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/azure-llm-2023-conv.csv");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipping: {} is absent", path.display());
            return;
        };
        let input = crate::trace::parse_trace(&text).unwrap();
        let arrivals = workload(&input, &WorkloadConfig::default(), 1);
        assert_eq!(arrivals.len(), input.len());
        let continued = arrivals.iter().filter(|a| a.prefix.is_some()).count();
        assert!(continued > input.len() / 5, "{continued} continued");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn any_rows() -> impl Strategy<Value = Vec<TraceRow>> {
            proptest::collection::vec(
                (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(o, c, g)| TraceRow {
                    offset_ms: o % 10_000_000,
                    context_tokens: c % 40_000,
                    generated_tokens: g % 5000,
                }),
                0..300,
            )
        }

        proptest! {
            #[test]
            fn one_arrival_per_row_in_time_order(
                rows in any_rows(),
                max in proptest::option::of(0usize..400),
                scale in prop_oneof![Just(0.0), Just(1.0), 0.001f64..100.0],
                conv in 0.0f64..1.0,
                seed in any::<u64>(),
            ) {
                let cfg = WorkloadConfig { max_requests: max, time_scale: scale, conversation_share: conv, ..WorkloadConfig::default() };
                let arrivals = workload(&rows, &cfg, seed);
                prop_assert_eq!(arrivals.len(), rows.len().min(max.unwrap_or(usize::MAX)));
                prop_assert!(arrivals.windows(2).all(|w| w[0].at <= w[1].at));
                for a in &arrivals {
                    prop_assert!(a.spec.estimated_prompt_tokens <= MAX_PROMPT_TOKENS);
                    prop_assert!(a.prefix.is_none_or(|(_, s)| s <= a.spec.estimated_prompt_tokens));
                }
            }
        }
    }
}
