//! One connection of the shared daemon: its hello (the client's settings layers, see
//! `hello.rs`), then the same JSON-RPC serving as a private `cfgate serve`, with a view of the
//! service that resolves this client's requests from this client's layers, and last the
//! connection's end (`end.rs`).

use std::sync::Arc;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tracing::{debug, info};

use super::end::Ended;
use super::hello::{self, Opening};
use super::socket_io::{SocketReader, SocketWriter};
use crate::protocol::DaemonFacts;
use crate::server::answer_on_stop::stopped;
use crate::server::connection;
use crate::service::Service;

/// Serves one client until it goes away, or the daemon stops.
pub(super) async fn serve_client(
    mut stream: UnixStream,
    service: Arc<Service>,
    facts: Arc<DaemonFacts>,
    max_frame: usize,
) {
    let (service, first, said_hello) = match hello::receive(&mut stream).await {
        Ok(Opening::Hello(layers, listen)) => {
            let resolved = layers.resolve();
            drop(layers);
            debug!(
                config = ?resolved.config_path,
                config_error = resolved.config_error.is_some(),
                "a client sent its settings"
            );
            let mut facts = (*facts).clone();
            facts
                .warnings
                .extend(listen_not_served(listen.as_deref(), &facts));
            let answer = json!({ "pid": facts.pid, "warnings": facts.warnings });
            let view = service
                .for_client(resolved.base, resolved.config_error.as_ref())
                .with_daemon_facts(facts);
            let answered = hello::answer(&mut stream, answer).await;
            if answered.is_err() {
                return;
            }
            (Arc::new(view), Vec::new(), true)
        }
        // A client from before hellos: the daemon's own settings, as it was then.
        Ok(Opening::Other(first)) => (service, first.to_vec(), false),
        Ok(Opening::Closed) | Err(_) => return,
    };
    let stopping = service.stopping();
    let socket = Arc::new(stream);
    let input = SocketReader::new(socket.clone(), first, stopped(stopping.clone()));
    let output = SocketWriter::new(socket.clone());
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
    let was_stopped = *stopping.borrow();
    info!(?ending, stopped = was_stopped, "client disconnected");
    if said_hello && ending != connection::Ending::OutputGone {
        let last = Ended::of(ending, was_stopped).frame();
        let _ = SocketWriter::new(socket).write_all(&last).await;
    }
}

/// Why the endpoint a client asked for (`serve --shared --listen`) is not there: the daemon
/// was already running, started without it or with another address.
fn listen_not_served(asked: Option<&str>, facts: &DaemonFacts) -> Option<String> {
    let asked = asked?;
    if facts.listen.as_deref() == Some(asked) {
        return None;
    }
    let serves = match &facts.listen {
        Some(other) => format!("serves the endpoint on {other} instead"),
        None => "serves no HTTP/WebSocket endpoint".to_string(),
    };
    Some(format!(
        "--listen {asked} was not applied: the shared daemon already running (pid {}) {serves}; run `cfgate stop` and start again to get it",
        facts.pid
    ))
}
