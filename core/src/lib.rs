//! placeholder
pub mod ids;
pub mod request;
pub mod rng;
pub mod time;
/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "testing")]
pub mod testing {}
