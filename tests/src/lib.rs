//! The simulation world and end-to-end tests arrive with the simulation issue; for now this crate
//! only checks that herd-core's `testing` feature builds for downstream users.

pub use herd_core::testing;
