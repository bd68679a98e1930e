//! # herd-core: the sans-IO routing engine of herd
//!
//! herd sends each Ollama / OpenAI / Anthropic request to the best machine of a fleet. This crate
//! makes every decision and does no IO: no sockets, no clocks, no threads, no async, no OS
//! randomness. Time comes in as an argument (`now`, a [`time::Instant`] in microseconds from an
//! epoch the adapter picks), randomness from the seed given to [`router::Router::new`]. The same
//! configuration, seed and inputs always give the same outputs.
//!
//! The adapters (`herd` on tokio, `herd-lite` on smol) move bytes and drive a [`router::Router`]:
//! every input is a `handle_*(now, ...)` call, every effect comes out of `poll_command()`,
//! observations out of `poll_event()`, and `poll_timeout()` says when to call
//! `handle_timeout`. Nodes run [`agent::Agent`], the same kind of machine for heartbeats.
//!
//! ## The driver loop
//!
//! ```
//! use herd_core::config::RouterConfig;
//! use herd_core::request::RequestSpec;
//! use herd_core::router::{Command, Event, Outcome, Router, Usage};
//! use herd_core::time::Instant;
//!
//! let mut now = Instant::from_secs(0);
//! let mut router = Router::new(RouterConfig::default(), 42, now).expect("valid config");
//!
//! // A node's agent reports (this is ollama-herd's heartbeat schema).
//! let heartbeat = br#"{"node_id": "studio", "cpu": {"cores_physical": 24},
//!     "memory": {"total_gb": 192, "available_gb": 120, "pressure": "normal"},
//!     "ollama": {"models_loaded": [{"name": "qwen3:8b", "size_gb": 6.1, "context_length": 8192}],
//!                "models_available": ["qwen3:8b"], "num_parallel": 4},
//!     "memory_bandwidth_gbps": 800}"#;
//! router.handle_heartbeat(now, heartbeat).expect("valid heartbeat");
//!
//! // A client asks for a chat; the adapter described the body with `herd_core::api`.
//! let request = router.handle_request(now, RequestSpec::chat("qwen3:8b"));
//!
//! // The adapter's loop: perform each command, report each result back as an input.
//! let mut answered = false;
//! while !answered {
//!     while let Some(cmd) = router.poll_command() {
//!         match cmd {
//!             Command::Dispatch(d) => {
//!                 // Open the upstream call to node `d.node` with model `d.model`, `num_ctx`
//!                 // pinned to the resident window so the model never reloads.
//!                 assert_eq!(d.num_ctx, Some(8192));
//!                 now = Instant::from_millis(40);
//!                 router.handle_connected(now, d.attempt);
//!                 now = Instant::from_millis(250);
//!                 // The first byte commits: the adapter may answer the client at once from
//!                 // `d.commit()` (headers: node, model, attempts, score) and report it.
//!                 router.handle_first_byte(now, d.attempt); // → Command::Commit, the same
//!                 assert_eq!(router.poll_command(), Some(Command::Commit(d.commit())));
//!                 now = Instant::from_millis(900);
//!                 router.handle_finished(now, d.attempt, Usage { prompt_tokens: 12, completion_tokens: 40 });
//!                 answered = true;
//!             }
//!             Command::Reject { rejection, .. } => panic!("refused: {}", rejection.http_status()),
//!             Command::Commit(_) | Command::Cancel { .. } | Command::Pull { .. } => {}
//!         }
//!     }
//!     if let Some(deadline) = router.poll_timeout() {
//!         // A real adapter sleeps until `deadline` (or the next input) here.
//!         now = now.max(deadline.min(now + std::time::Duration::from_secs(1)));
//!         router.handle_timeout(now);
//!     }
//! }
//!
//! // Every request ends exactly once, with a trace.
//! let ended: Vec<_> = std::iter::from_fn(|| router.poll_event())
//!     .filter_map(|e| match e { Event::Ended(t) => Some(t), _ => None })
//!     .collect();
//! assert_eq!(ended.len(), 1);
//! assert_eq!(ended[0].request, request);
//! assert!(matches!(ended[0].outcome, Outcome::Completed(_)));
//! ```
//!
//! ## The driving contract
//!
//! A caller (the service's driver task, a simulation, a fuzz target) owns one [`router::Router`]
//! and must, in the manner of str0m's `Rtc`:
//!
//! | after | the caller must |
//! |---|---|
//! | any `handle_*` | drain [`router::Router::poll_command`] until `None` and perform each command; drain [`router::Router::poll_event`] (traces, status changes); re-read [`router::Router::poll_timeout`] |
//! | `Command::Dispatch(d)` | send attempt `d.attempt` to node `d.node` with model `d.model` (body from [`api::plan::AttemptPlan`]), then report `handle_connected`, `handle_first_byte`, `handle_progress` (while bytes flow), and exactly one of `handle_finished` / `handle_failed` |
//! | `Command::Commit(c)` | nothing more than it did at the first byte: the answer may already have gone out from `d.commit()`; after commit a failure is told in the stream ([`api::Protocol::stream_error`]), never retried |
//! | `Command::Reject { .. }` | answer the client with `rejection.http_status()` in its protocol; report nothing more for that request |
//! | `Command::Cancel { .. }` | stop the attempt (close its connection); core has already accounted for it |
//! | `Command::Pull { .. }` | pull the model on the node, then `handle_pull_result` |
//! | the client leaving | `handle_client_gone` (also for a request whose id it has not seen yet: see the service's proxy) |
//! | `poll_timeout()` passing | `handle_timeout(now)`; calling it early is harmless |
//!
//! Every request ends exactly once with [`router::Event::Ended`], whose
//! [`router::Outcome::http_status`] is what the client was answered. `now` must never go
//! backwards (core clamps it). The same rules hold for [`agent::Agent`]: `handle_*`, then drain
//! `poll_command`, then sleep until `poll_timeout`.
//!
//! Every decision a client can observe is made here, as pure functions the service only
//! performs: the attempt plan and its body ([`api::plan`]), the error envelopes of every protocol
//! ([`api::Protocol`]), the reading of a passed-through stream's end and usage ([`api::watch`]),
//! the fleet's model views and the order nodes are asked ([`fleet::views`]), the status of every
//! outcome, and the node agent's discovery, rescan and drain timing.
//!
//! ## Modules
//!
//! - [`fleet`]: the registry of nodes from heartbeats; liveness, the warm tier, forgetting.
//! - [`score`]: eliminations and the scoring signals, with an explainable breakdown.
//! - [`queue`]: per node+model slots and bounded queues.
//! - [`policy`]: circuit breaker, latency history, affinity pins, retries, context protection,
//!   fallbacks.
//! - [`router`]: the facade (`handle_*` / `poll_*`) and the request flow.
//! - [`agent`]: the node-side heartbeat machine.
//! - [`api`]: Ollama / OpenAI / Anthropic request types, the token estimate, body patches, the
//!   attempt plan, error envelopes and the stream watcher.
//! - [`config`], [`time`], [`rng`], [`ids`], [`model`], [`request`]: the vocabulary.
//! - `testing` (feature `testing`): the operation harness behind the property tests, the
//!   simulation and the fuzz targets.

pub mod agent;
pub mod api;
pub mod codec;
pub mod config;
pub mod fleet;
pub mod ids;
pub mod image;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod queue;
pub mod request;
pub mod rng;
pub mod router;
pub mod score;
pub mod secret;
pub mod time;
pub mod translate;
pub mod url;
/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(any(test, feature = "testing"))]
pub mod testing;
