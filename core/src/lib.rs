//! placeholder
pub mod agent;
pub mod api;
pub mod config;
pub mod fleet;
pub mod ids;
pub mod model;
pub mod policy;
pub mod queue;
pub mod request;
pub mod rng;
pub mod router;
pub mod score;
pub mod time;
/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(any(test, feature = "testing"))]
pub mod testing;
