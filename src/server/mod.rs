//! Front ends that speak JSON-RPC in LSP framing: the transport, kept apart from what
//! the server does (`lsp.rs`), which is itself kept apart from the work (`service.rs`).

pub mod connection;
pub mod framing;
pub mod language;
pub mod lsp;
pub mod outbox;

use std::sync::Arc;

use crate::service::Service;
pub use connection::{Ending, Limits};

/// Serves the one client on stdin/stdout.
pub async fn serve_stdio(service: Arc<Service>, limits: Limits) -> Ending {
    connection::serve(tokio::io::stdin(), tokio::io::stdout(), service, limits).await
}
