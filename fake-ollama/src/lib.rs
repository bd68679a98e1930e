//! herd-fake-ollama: a simulated Ollama server. The native `/api/*`, OpenAI-compatible `/v1/*`
//! and Anthropic `/v1/messages` endpoints with Ollama's exact shapes and error strings
//! (wire-api.md), timed by the machine model [`machine::SimNode`] (which herd-sim's deterministic
//! world runs too) or by fixed delays, with injectable faults and an optional heartbeat to a
//! router. `herd --demo`, the end-to-end tests and the benchmark run it; the binary
//! `herd-fake-ollama` runs one from the command line.
//!
//! It shares no code with the router's answers: its error envelopes are its own
//! ([`reply`]'s, written from Ollama's), so a bug in the router's cannot hide on both sides.
//!
//! ```no_run
//! use std::time::Duration;
//! use herd_core::ids::ModelName;
//! use herd_fake_ollama::machine::MachineSpec;
//! use herd_fake_ollama::{FakeConfig, FakeFault, FakeOllama, Timing};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let spec = MachineSpec {
//!     name: "box".into(), ram_gb: 64.0, gpu_vram_gb: vec![], bandwidth_gbps: 400.0,
//!     num_parallel: 2, max_loaded_models: 2, disk: vec![(ModelName::new("qwen3:8b"), 5.2)],
//!     preloaded: vec![], context_length: 4096, load_gbps: 2.0,
//!     ollama_version: herd_fake_ollama::machine::OLLAMA_VERSION.into(),
//! };
//! let timing = Timing::Fixed { first_token: Duration::ZERO, token_interval: Duration::ZERO };
//! let fake = FakeOllama::start("127.0.0.1:0".parse().unwrap(), FakeConfig { spec, timing, heartbeat: None }).await?;
//! println!("{}", fake.url()); // http://127.0.0.1:PORT
//! fake.inject(FakeFault::Status { code: 503, count: 1 }); // the next inference request gets 503
//! assert_eq!(fake.stats().completed, 0);
//! fake.shutdown();
//! # Ok(()) }
//! ```

mod anthropic;
pub mod demo;
mod engine;
mod faults;
mod gen;
pub mod image;
pub mod machine;
mod models;
mod native;
mod openai;
pub mod reply;
mod server;
mod text;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use faults::{parse_control, Control, FakeFault, FaultParseError};

/// How long things take on the fake.
#[derive(Clone, Debug, PartialEq)]
pub enum Timing {
    /// Load, prefill and decode times from herd-sim's `SimNode` model, divided by `speedup`
    /// (e.g. 20.0 for the demo so a cold load takes under a second).
    Simulated {
        /// Virtual seconds per real second.
        speedup: f64,
    },
    /// For the benchmark and fast tests: every model on disk is treated as loaded, the first
    /// token comes after `first_token`, then one token every `token_interval` (`Duration::ZERO`
    /// = as fast as possible), with at most `spec.num_parallel` requests running (more wait,
    /// FIFO). Every token is written and flushed on its own, as Ollama flushes each token it
    /// generates, even when tokens are due at once: a router in front pays one read per token.
    Fixed {
        /// Delay before the first token, once a slot is free.
        first_token: Duration,
        /// Delay between tokens.
        token_interval: Duration,
    },
    /// [`Timing::Fixed`], but tokens due at once leave in as few writes as the HTTP server
    /// makes of them (the fake's behaviour before it wrote per token): not what a node does,
    /// kept to compare with older figures.
    Batched {
        /// Delay before the first token, once a slot is free.
        first_token: Duration,
        /// Delay between tokens.
        token_interval: Duration,
    },
}

/// Where and how often to send heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatTarget {
    /// The router's base URL; heartbeats go to `{router_url}/heartbeat`.
    pub router_url: String,
    /// Time between heartbeats.
    pub interval: Duration,
    /// The fleet key to present, if the router wants one.
    pub fleet_key: Option<String>,
}

/// What a fake is.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeConfig {
    /// The machine: name (also the heartbeat's `node_id`), memory, bandwidth, `num_parallel`,
    /// `max_loaded_models`, models on disk, preloaded models, context length, load rate.
    pub spec: crate::machine::MachineSpec,
    /// Simulated or fixed timing.
    pub timing: Timing,
    /// Send heartbeats to a router, if set.
    pub heartbeat: Option<HeartbeatTarget>,
}

/// Counters for assertions (also served as JSON at `GET /_fake/stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FakeStats {
    /// Requests received per path (`/api/chat`, `/v1/models`, ...; unknown paths as `other`,
    /// every blob as `/api/blobs`), control requests excluded.
    pub requests: BTreeMap<String, u64>,
    /// Inference requests answered with a complete success.
    pub completed: u64,
    /// Inference requests that ended any other way (error status, cut, client gone).
    pub failed: u64,
    /// Models the simulated node loaded from disk (0 in fixed mode).
    pub cold_loads: u64,
    /// Inference requests in progress.
    pub in_flight: u64,
    /// The body of the last request that had one, as JSON (`None` if it was not JSON).
    pub last_body: Option<serde_json::Value>,
}

/// The simulated Ollama server; see the module docs.
#[derive(Debug)]
pub struct FakeOllama;

impl FakeOllama {
    /// Binds `addr` (port 0 picks a free port) and serves until [`FakeHandle::shutdown`]. Must be
    /// called inside a tokio runtime; the server's tasks run on it.
    ///
    /// # Errors
    /// The bind's error.
    pub async fn start(addr: SocketAddr, config: FakeConfig) -> std::io::Result<FakeHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let FakeConfig { spec, timing, heartbeat } = config;
        let shared = Arc::new(server::Shared::new(spec, timing, listener, local));
        tokio::spawn(server::accept_loop(shared.clone()));
        if let Some(target) = heartbeat {
            tokio::spawn(server::heartbeat_loop(shared.clone(), target));
        }
        Ok(FakeHandle { shared })
    }
}

/// A running fake. Clones control the same server.
#[derive(Clone)]
pub struct FakeHandle {
    shared: Arc<server::Shared>,
}

impl std::fmt::Debug for FakeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHandle").field("url", &self.shared.url).finish()
    }
}

impl FakeHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT` (the loopback address when bound to an unspecified one).
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// Arms `fault`. A refusal takes effect at once: the socket is closed (connections are
    /// refused) and open connections are dropped.
    pub fn inject(&self, fault: FakeFault) {
        self.shared.inject(&fault, None);
    }

    /// Disarms every fault and, if refusing, listens again on the same address.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// The counters now.
    pub fn stats(&self) -> FakeStats {
        self.shared.stats()
    }

    /// Stops listening and closes every connection, for good (a crashed node: connections are
    /// refused from now on).
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}
