//! One connection of the shared daemon: its hello (the client's settings layers, see
//! `hello.rs`), then the same JSON-RPC serving as a private `cfgate serve`, with a view of the
//! service that resolves this client's requests from this client's layers, and last the
//! connection's end (`end.rs`).
//!
//! A relay whose stdin and stdout are pipes or sockets hands them over with its hello: the
//! daemon then reads and writes the editor's pipes itself, as a private `cfgate serve` does,
//! and the socket only carries the end (and says, by closing, that the relay is gone).

use std::sync::Arc;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tracing::{debug, info};

use super::end::Ended;
use super::fd_stream::FdStream;
use super::hello::{self, Hello, Opening};
use super::socket_io::{SocketReader, SocketWriter, UntilStopped};
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
    let limits = connection::Limits {
        max_frame,
        ..connection::Limits::default()
    };
    let hello = match hello::receive(&mut stream).await {
        Ok(Opening::Hello(hello)) => hello,
        // A client from before hellos: the daemon's own settings, as it was then.
        Ok(Opening::Other(first)) => {
            let socket = Arc::new(stream);
            let input = SocketReader::new(socket.clone(), first.to_vec());
            let input = UntilStopped::new(input, stopped(service.stopping()));
            let ending = connection::serve(input, SocketWriter::new(socket), service, limits).await;
            info!(?ending, "client disconnected");
            return;
        }
        Ok(Opening::Closed) | Err(_) => return,
    };
    let Hello {
        layers,
        listen,
        stdio,
    } = *hello;
    let resolved = layers.resolve();
    drop(layers);
    debug!(
        config = ?resolved.config_path,
        config_error = resolved.config_error.is_some(),
        fds = stdio.is_some(),
        "a client sent its settings"
    );
    let stdio = stdio.and_then(|(input, output)| {
        Some((
            FdStream::reader(input).ok()?,
            FdStream::writer(output).ok()?,
        ))
    });
    let mut facts = (*facts).clone();
    facts
        .warnings
        .extend(listen_not_served(listen.as_deref(), &facts));
    let answer = json!({ "pid": facts.pid, "warnings": facts.warnings, "fds": stdio.is_some() });
    let service = Arc::new(
        service
            .for_client(resolved.base, resolved.config_error.as_ref())
            .with_daemon_facts(facts),
    );
    if hello::answer(&mut stream, answer).await.is_err() {
        return;
    }
    let stopping = service.stopping();
    let socket = Arc::new(stream);
    let ending = match stdio {
        Some((input, output)) => {
            let input = UntilStopped::new(input, stopped(stopping.clone()));
            tokio::select! {
                ending = connection::serve(input, output, service, limits) => Some(ending),
                () = relay_gone(&socket) => None,
            }
        }
        None => {
            let input = SocketReader::new(socket.clone(), Vec::new());
            let input = UntilStopped::new(input, stopped(stopping.clone()));
            let output = SocketWriter::new(socket.clone());
            match connection::serve(input, output, service, limits).await {
                connection::Ending::OutputGone => None,
                ending => Some(ending),
            }
        }
    };
    let was_stopped = *stopping.borrow();
    info!(?ending, stopped = was_stopped, "client disconnected");
    if let Some(ending) = ending {
        let last = Ended::of(ending, was_stopped).frame();
        let _ = SocketWriter::new(socket).write_all(&last).await;
    }
}

/// Returns when the relay's side of the socket closes (it sends nothing after its hello).
async fn relay_gone(socket: &UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        match socket.try_read(&mut buf) {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
            Ok(_) => {}
        }
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
