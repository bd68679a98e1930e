//! herd-sim: the deterministic simulation of whole fleets (simulated Ollama machines, their
//! agents, trace-driven clients and seeded faults around a real `herd_core::router::Router`),
//! the routing-quality comparison, and the fake backends the end-to-end tests will use.

#[cfg(feature = "world")]
pub use herd_core::testing;

pub mod bins;
#[cfg(feature = "world")]
pub mod compare;
pub mod fleet;
/// The machine model, which herd-fake-ollama owns and times its answers with.
pub use herd_fake_ollama::machine as node;
pub mod service;
#[cfg(feature = "world")]
pub mod sweep;
pub mod trace;
pub mod workload;
#[cfg(feature = "world")]
pub mod world;
