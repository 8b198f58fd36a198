//! One client connection: our tolerant framing, then tower-lsp-server's service, called
//! directly.
//!
//! ```text
//! input ─▶ FrameReader ─▶ message::parse ─▶ LspService (ContainPanics) ─▶ answers ─┐
//!              │ bad frame      │ not JSON-RPC: JSON-RPC error                    ▼
//!              └────────────────┴─────────────────────────────────────────▶ outbox ─▶ output
//!                handlers' $/progress, the server's own requests ────────────────▶ ┘
//! ```
//! Each frame is read once and parsed once (`message.rs`), straight into the
//! [`Request`](tower_lsp_server::jsonrpc::Request) the service takes or the
//! [`Response`](tower_lsp_server::jsonrpc::Response) its client socket takes; everything
//! written is serialized once, straight into its frame. tower-lsp-server's own `Server`
//! is not used: its codec ends the connection after one frame it cannot decode.
//!
//! Every frame written goes through one queue (the outbox, `outbox.rs`: bounded in bytes,
//! a client that stops reading is cut off) and one writer, so frames never interleave.
//! A handler queues its progress notifications before it returns, and its response is
//! queued only after it returned, so a client always sees every `$/progress` of a request
//! before its answer.
//!
//! The connection ends when input ends or `exit` arrives. The service (and with it every
//! request in flight, and their upstream HTTP requests) is dropped then, after a short
//! grace for answers under way: a daemon must never outlive its client.

use std::future::poll_fn;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service as _;
use tower_lsp_server::jsonrpc::{self, ErrorCode, Response};
use tracing::{debug, warn};

use super::contain::ContainPanics;
use super::framing::{self, FrameReader, Incoming};
use super::lsp::Backend;
use super::message::{self, Message};
pub use super::outbox::Outbox;
use super::outbox::outbox;
use crate::service::Service;

/// How long answers already under way may still be written after the input ended.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(300);
/// Requests (and notifications) one connection may have in progress at once; past it,
/// input is not read until one ends.
const MAX_CONCURRENT_REQUESTS: usize = 4096;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Input closed.
    Eof,
    /// `exit` arrived; `after_shutdown` says whether `shutdown` came first.
    Exit { after_shutdown: bool },
    /// The output cannot be written any more.
    OutputGone,
    /// The client left more output unread than the outbox holds; it was cut off.
    Overflow,
}

/// What one connection may cost: the largest frame it may send, and the most output it
/// may leave unread before it is cut off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame: usize,
    pub max_outbox: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame: framing::DEFAULT_MAX_FRAME,
            max_outbox: super::outbox::DEFAULT_MAX_OUTBOX,
        }
    }
}

/// Serves one client until it goes away.
pub async fn serve<R, W>(input: R, output: W, service: Arc<Service>, limits: Limits) -> Ending
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let max_frame = limits.max_frame;
    let (outbox, writer) = outbox(limits.max_outbox);
    let writer = writer.run(output);
    tokio::pin!(writer);

    let (lsp, socket) = Backend::service(service, outbox.clone());
    #[cfg(debug_assertions)]
    let lsp = super::contain::PanicOnAsk(lsp);
    let mut lsp = ContainPanics::new(lsp);
    // The server's own requests and notifications to the client, and the client's answers
    // to them.
    let (mut to_client, mut client_answers) = socket.split();

    let mut reader = FrameReader::new(input, max_frame);
    // Every handler runs here, on this one task, inside `running`. Handlers are pushed in
    // the order their messages arrived, and a FuturesUnordered first polls its futures in
    // the order they were pushed, so each handler starts (runs up to its first await) in
    // arrival order, as tower-lsp-server's own server does: `language.rs` relies on this
    // to apply document edits in the order they were sent.
    let mut running = FuturesUnordered::new();
    let mut after_shutdown = false;

    let ending = loop {
        tokio::select! {
            biased;
            written = &mut writer => return match written {
                Ok(Err(overflow)) => {
                    warn!("cutting the client off: {overflow}");
                    Ending::Overflow
                }
                _ => Ending::OutputGone,
            },
            Some(answer) = running.next() => send_answer(&outbox, answer),
            Some(request) = to_client.next() => {
                // Refused only when the client is being cut off; the writer reports that.
                outbox.send_message(&request);
            }
            item = reader.next(), if running.len() < MAX_CONCURRENT_REQUESTS => {
                let body = match item {
                    Ok(Some(Incoming::Frame(body))) => body,
                    Ok(Some(Incoming::Malformed(reason))) => {
                        warn!("malformed frame: {reason}");
                        let message = format!("Parse error: malformed frame: {reason}");
                        send_error(&outbox, jsonrpc::Id::Null, -32700, message);
                        continue;
                    }
                    Ok(Some(Incoming::Oversized(len))) => {
                        warn!("frame of {len} bytes over the {max_frame}-byte limit skipped");
                        let message = format!(
                            "Invalid request: frame of {len} bytes is over the {max_frame}-byte limit"
                        );
                        send_error(&outbox, jsonrpc::Id::Null, -32600, message);
                        continue;
                    }
                    Ok(None) => break Ending::Eof,
                    Err(e) => {
                        debug!("input read failed: {e}");
                        break Ending::Eof;
                    }
                };
                match message::parse(&body) {
                    Message::Request(request) => {
                        match request.method() {
                            // Never handed on: the connection ends here, and the service
                            // with it.
                            "exit" => break Ending::Exit { after_shutdown },
                            "shutdown" => after_shutdown = true,
                            _ => {}
                        }
                        // LspService is ready at once until it has seen `exit`, which
                        // never reaches it; waiting here would hold up every answer.
                        match poll_fn(|cx| lsp.poll_ready(cx)).now_or_never() {
                            Some(Ok(())) => running.push(lsp.call(request)),
                            _ => {
                                warn!("the server refused {}", request.method());
                                if let Some(id) = request.id() {
                                    let message = "the server is not taking requests".into();
                                    send_error(&outbox, id.clone(), -32603, message);
                                }
                            }
                        }
                    }
                    // An answer to a request of ours; always taken at once.
                    Message::Response(response) => {
                        let _ = client_answers.send(response).await;
                    }
                    Message::Invalid { id, code, message } => {
                        warn!("rejected message: {message}");
                        send_error(&outbox, id, code, message);
                    }
                }
            }
        }
    };
    // Input is over. Answers already made, or made within the grace period, still go out;
    // then everything left in flight is dropped with this function's locals.
    drop(reader);
    let flush = async {
        while let Some(answer) = running.next().await {
            send_answer(&outbox, answer);
        }
        // The last senders: once they are gone the writer flushes and ends.
        drop((lsp, to_client, client_answers, outbox));
        let _ = writer.await;
    };
    let _ = tokio::time::timeout(FLUSH_GRACE, flush).await;
    ending
}

/// Queues what a handler answered (a notification answers nothing).
fn send_answer<E: std::fmt::Display>(outbox: &Outbox, answer: Result<Option<Response>, E>) {
    match answer {
        // Refused only when the client is being cut off; the writer reports that.
        Ok(Some(response)) => _ = outbox.send_message(&response),
        Ok(None) => {}
        Err(e) => debug!("the server ended a request: {e}"),
    }
}

fn send_error(outbox: &Outbox, id: jsonrpc::Id, code: i64, message: String) {
    let error = jsonrpc::Error {
        code: ErrorCode::from(code),
        message: message.into(),
        data: None,
    };
    outbox.send_message(&Response::from_error(id, error));
}
