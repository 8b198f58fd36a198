//! Front ends that speak JSON-RPC in LSP framing: the transport, kept apart from what
//! the server does (`lsp.rs`), which is itself kept apart from the work (`service.rs`).

mod code_actions;
pub mod connection;
pub mod contain;
pub mod framing;
pub mod language;
pub mod lsp;
pub mod message;
pub mod outbox;

use std::sync::Arc;

use crate::service::Service;
pub use connection::{Ending, Limits};

/// Serves the one client on stdin/stdout.
///
/// When both are pipes (what an editor gives its child) they are read and written
/// through the runtime's reactor; tokio's `stdin()`/`stdout()` would go through its
/// blocking pool, a thread hop for every read and write.
pub async fn serve_stdio(service: Arc<Service>, limits: Limits) -> Ending {
    #[cfg(unix)]
    if let Some((input, output)) = stdio_pipes() {
        return connection::serve(input, output, service, limits).await;
    }
    connection::serve(tokio::io::stdin(), tokio::io::stdout(), service, limits).await
}

/// Stdin and stdout as non-blocking pipe ends, if both are pipes. `from_owned_fd` refuses
/// anything that is not a FIFO (a terminal, a file, a socket), which then goes the slow way.
#[cfg(unix)]
pub fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let receiver = pipe::Receiver::from_owned_fd(input).ok()?;
    let sender = pipe::Sender::from_owned_fd(output).ok()?;
    Some((receiver, sender))
}
