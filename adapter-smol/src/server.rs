//! The listening side of herd-lite: accepts async-io sockets and hands each connection to
//! herd-service's HTTP/1.1 server ([`herd_service::server`]), which herd-sim runs too.

use crate::net::SmolTcp;
use async_io::{Async, Timer};
use herd_service::{race, App, Either};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

pub use herd_service::server::{Draining, MAX_HEADERS, MAX_HEAD_BYTES};

/// Accepts and serves connections until [`Draining::begin`].
pub async fn serve(listener: Async<TcpListener>, app: Arc<App>, draining: Draining) {
    loop {
        let accepted = match race(listener.accept(), draining.wait()).await {
            Either::Left(a) => a,
            Either::Right(()) => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.get_ref().set_nodelay(true);
        let serve =
            herd_service::server::serve_connection(SmolTcp::accepted(stream), peer, app.clone(), draining.clone());
        smol::spawn(serve).detach();
    }
}
