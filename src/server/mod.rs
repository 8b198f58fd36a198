//! Front ends that speak JSON-RPC in LSP framing: the transport, kept apart from what
//! the server does (`lsp.rs`), which is itself kept apart from the work (`service.rs`).

pub mod connection;
pub mod framing;
pub mod language;
pub mod lsp;

use std::sync::Arc;

use crate::service::Service;
pub use connection::Ending;

/// Serves the one client on stdin/stdout.
pub async fn serve_stdio(service: Arc<Service>, max_frame: usize) -> Ending {
    connection::serve(tokio::io::stdin(), tokio::io::stdout(), service, max_frame).await
}
