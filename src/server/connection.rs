//! One client connection: our tolerant framing in front of tower-lsp-server.
//!
//! ```text
//! input ─▶ FrameReader ─▶ check ─▶ duplex ─▶ tower-lsp-server ─▶ duplex ─▶ relay ─┐
//!                           │ bad frame: JSON-RPC error                        ▼
//!                           └──────────────────────────────────────────▶ outbox ─▶ output
//!                         handlers' $/progress ─────────────────────────────▶ ┘
//! ```
//! Every frame written goes through one queue (the outbox, `outbox.rs`: bounded in bytes,
//! a client that stops reading is cut off) and one writer, so frames never interleave. A handler queues its progress notifications before it returns, and its
//! response reaches the outbox only after it returned, so a client always sees every
//! `$/progress` of a request before its answer.
//!
//! The connection ends when input ends or `exit` arrives. The tower server (and with it
//! every request in flight, and their upstream HTTP requests) is dropped at that moment,
//! rather than awaited: a daemon must never outlive its client.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tower_lsp_server::Server;
use tracing::{debug, warn};

use super::answer_on_stop::AnswerOnStop;
use super::contain::ContainPanics;
use super::framing::{self, FrameReader, Incoming};
use super::lsp::Backend;
pub use super::outbox::Outbox;
use super::outbox::outbox;
use crate::service::Service;

/// How long answers already under way may still be written after the input ended.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(300);
/// Requests one connection may have in progress at once.
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

    let (mut to_tower, tower_input) = tokio::io::duplex(64 * 1024);
    let (tower_output, from_tower) = tokio::io::duplex(64 * 1024);
    let stopping = service.stopping();
    let (lsp, socket) = Backend::service(service, outbox.clone());
    #[cfg(debug_assertions)]
    let lsp = super::contain::PanicOnAsk(lsp);
    let tower = Server::new(tower_input, tower_output, socket)
        .concurrency_level(MAX_CONCURRENT_REQUESTS)
        .serve(ContainPanics::new(AnswerOnStop::new(lsp, stopping)));

    let relay = relay_responses(from_tower, outbox.clone());
    let replies = outbox.clone();
    let read_input = async move {
        let outbox = replies;
        let mut reader = FrameReader::new(input, max_frame);
        let mut after_shutdown = false;
        loop {
            let item = match reader.next().await {
                Ok(Some(item)) => item,
                Ok(None) => return Ending::Eof,
                Err(e) => {
                    debug!("input read failed: {e}");
                    return Ending::Eof;
                }
            };
            let body = match item {
                Incoming::Frame(body) => body,
                Incoming::Malformed(reason) => {
                    warn!("malformed frame: {reason}");
                    outbox.error(
                        Value::Null,
                        -32700,
                        format!("Parse error: malformed frame: {reason}"),
                    );
                    continue;
                }
                Incoming::Oversized(len) => {
                    warn!("frame of {len} bytes over the {max_frame}-byte limit skipped");
                    let message = format!(
                        "Invalid request: frame of {len} bytes is over the {max_frame}-byte limit"
                    );
                    outbox.error(Value::Null, -32600, message);
                    continue;
                }
            };
            match check(&body) {
                Checked::Forward(body) => {
                    if to_tower.write_all(&framing::encode(&body)).await.is_err() {
                        return Ending::OutputGone;
                    }
                }
                Checked::Shutdown(body) => {
                    after_shutdown = true;
                    if to_tower.write_all(&framing::encode(&body)).await.is_err() {
                        return Ending::OutputGone;
                    }
                }
                Checked::Exit => return Ending::Exit { after_shutdown },
                Checked::Reject { id, code, message } => {
                    warn!("rejected message: {message}");
                    outbox.error(id, code, message);
                }
            }
        }
    };

    tokio::pin!(read_input, tower, relay, writer);
    let ending = tokio::select! {
        ending = &mut read_input => ending,
        // The other three end only when output is gone; nothing is left to flush then.
        _ = &mut tower => return Ending::OutputGone,
        _ = &mut relay => return Ending::OutputGone,
        written = &mut writer => return match written {
            Ok(Err(overflow)) => {
                warn!("cutting the client off: {overflow}");
                Ending::Overflow
            }
            _ => Ending::OutputGone,
        },
    };
    // Input is over (its end reached tower when `read_input` dropped its side). Answers
    // already made, or made within the grace period, still go out; then everything left
    // in flight is dropped with this function's futures.
    drop(outbox);
    let _ = tokio::time::timeout(FLUSH_GRACE, async {
        tower.await;
        relay.await;
        let _ = writer.await;
    })
    .await;
    ending
}

/// Moves tower's output frames into the outbox.
async fn relay_responses<R: AsyncRead + Unpin>(from_tower: R, outbox: Outbox) {
    let mut reader = FrameReader::new(from_tower, usize::MAX);
    while let Ok(Some(item)) = reader.next().await {
        if let Incoming::Frame(body) = item {
            // Refused only when the client is being cut off; the writer reports that.
            outbox.send_frame(framing::encode(&body));
        }
    }
}

enum Checked {
    Forward(Bytes),
    Shutdown(Bytes),
    Exit,
    Reject {
        id: Value,
        code: i64,
        message: String,
    },
}

/// Lets through only what tower-lsp-server can decode (anything else would end its input
/// stream), and answers the rest with the JSON-RPC error it deserves.
fn check(body: &Bytes) -> Checked {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Checked::Reject {
                id: Value::Null,
                code: -32700,
                message: format!("Parse error: {e}"),
            };
        }
    };
    let invalid = |id: Value, message: &str| Checked::Reject {
        id,
        code: -32600,
        message: format!("Invalid request: {message}"),
    };
    let Value::Object(mut obj) = value else {
        let what = if value.is_array() {
            "batches are not supported; send one message per frame"
        } else {
            "a message must be a JSON object"
        };
        return invalid(Value::Null, what);
    };
    let id = obj.get("id").cloned();
    let id_ok = match &id {
        None | Some(Value::Null) | Some(Value::String(_)) => true,
        Some(Value::Number(n)) => n.as_i64().is_some(),
        _ => false,
    };
    let reply_id = if id_ok {
        id.clone().unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(reply_id, "\"jsonrpc\" must be \"2.0\"");
    }
    if !id_ok {
        return invalid(Value::Null, "\"id\" must be an integer, a string or null");
    }
    match obj.get("method") {
        Some(Value::String(method)) => {
            match obj.get("params") {
                None | Some(Value::Null) | Some(Value::Object(_)) | Some(Value::Array(_)) => {}
                Some(_) => return invalid(reply_id, "\"params\" must be an object or an array"),
            }
            match method.as_str() {
                "exit" => return Checked::Exit,
                "shutdown" => return Checked::Shutdown(body.clone()),
                // cfgate's methods take params that may all be left out; tower wants them present.
                m if m.starts_with("cfgate/")
                    && matches!(obj.get("params"), None | Some(Value::Null)) =>
                {
                    obj.insert("params".into(), json!({}));
                    return match serde_json::to_vec(&obj) {
                        Ok(bytes) => Checked::Forward(Bytes::from(bytes)),
                        Err(_) => invalid(reply_id, "cannot re-encode"),
                    };
                }
                _ => {}
            }
            Checked::Forward(body.clone())
        }
        Some(_) => invalid(reply_id, "\"method\" must be a string"),
        None if obj.contains_key("result") => Checked::Forward(body.clone()),
        None if obj.contains_key("error") => {
            let error_ok = obj
                .get("error")
                .and_then(Value::as_object)
                .is_some_and(|e| {
                    e.get("code").and_then(Value::as_i64).is_some()
                        && e.get("message").is_some_and(Value::is_string)
                        && e.keys()
                            .all(|k| matches!(k.as_str(), "code" | "message" | "data"))
                });
            if error_ok {
                Checked::Forward(body.clone())
            } else {
                invalid(
                    reply_id,
                    "\"error\" must be {code: integer, message: string, data?}",
                )
            }
        }
        None => invalid(reply_id, "no \"method\" (and not a response)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> Option<i64> {
        match check(&Bytes::from(body.to_string())) {
            Checked::Reject { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(code_of("{"), Some(-32700));
        assert_eq!(code_of("[1]"), Some(-32600));
        assert_eq!(code_of("42"), Some(-32600));
        assert_eq!(
            code_of(r#"{"jsonrpc":"1.0","method":"x","id":1}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","id":1.5}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","id":{}}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":7,"id":1}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","params":3,"id":1}"#),
            Some(-32600)
        );
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1}"#), Some(-32600));
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","id":"a","params":{}}"#),
            None
        );
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1,"result":null}"#), None);
        assert!(matches!(
            check(&Bytes::from_static(br#"{"jsonrpc":"2.0","method":"exit"}"#)),
            Checked::Exit
        ));
    }

    #[test]
    fn fills_in_absent_params_of_cfgate_methods() {
        match check(&Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"cfgate/status","id":1}"#,
        )) {
            Checked::Forward(b) => {
                let v: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["params"], json!({}));
            }
            _ => panic!("not forwarded"),
        }
    }
}
