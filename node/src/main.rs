//! Placeholder for `herd-node` until its issue lands; it links herd-core so the workspace stays whole.

fn main() {
    eprintln!(
        "herd-node {}: not built yet (herd-core {} is ready; see the open issues)",
        env!("CARGO_PKG_VERSION"),
        herd_core::VERSION
    );
    std::process::exit(2);
}
