//! `herd-node`: the agent that runs on every machine with Ollama. It measures the machine
//! ([`probe`]) and its Ollama ([`ollama`]), drives core's heartbeat machine
//! ([`herd_core::agent::Agent`]) to keep every router informed ([`run`]), finds routers over mDNS
//! ([`mdns`]), and can expose a loopback-only Ollama to the routers through an authenticated
//! proxy ([`proxy`]). It runs on smol: light enough for a Raspberry Pi or a busy laptop.

pub mod args;
pub mod http;
pub mod mdns;
pub mod ollama;
pub mod ollama_env;
pub mod probe;
pub mod proxy;
pub mod run;
