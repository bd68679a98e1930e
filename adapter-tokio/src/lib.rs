//! herd-tokio: the `herd` router on tokio + hyper, the simulated Ollama server it demos and is
//! tested against, and the pieces they share. Policy lives in `herd-core`; this crate moves bytes.

pub mod fake;
pub mod store;
