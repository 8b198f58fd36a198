//! One connection of the shared daemon: its hello (the client's settings layers, see
//! `hello.rs`), then the same JSON-RPC serving as a private `cfgate serve`, with a view of the
//! service that resolves this client's requests from this client's layers.

use std::sync::Arc;

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tracing::{debug, info};

use super::hello::{self, Opening};
use crate::server::connection;
use crate::service::Service;

/// Serves one client until it goes away.
pub(super) async fn serve_client(mut stream: UnixStream, service: Arc<Service>, max_frame: usize) {
    let (service, first) = match hello::receive(&mut stream).await {
        Ok(Opening::Hello(layers)) => {
            let resolved = layers.resolve();
            drop(layers);
            debug!(
                config = ?resolved.config_path,
                config_error = resolved.config_error.is_some(),
                "a client sent its settings"
            );
            let view = service.for_client(resolved.base, resolved.config_error.as_ref());
            let answered = hello::answer(&mut stream, json!({ "pid": std::process::id() })).await;
            if answered.is_err() {
                return;
            }
            (Arc::new(view), Vec::new())
        }
        // A client from before hellos: the daemon's own settings, as it was then.
        Ok(Opening::Other(first)) => (service, first.to_vec()),
        Ok(Opening::Closed) | Err(_) => return,
    };
    let (input, output) = stream.into_split();
    let input = std::io::Cursor::new(first).chain(input);
    let ending = connection::serve(
        input,
        output,
        service,
        connection::Limits {
            max_frame,
            ..connection::Limits::default()
        },
    )
    .await;
    info!(?ending, "client disconnected");
}
