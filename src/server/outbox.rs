//! One connection's queue of frames to write, bounded in bytes.
//!
//! Every frame for a client goes through one queue and one writer, so frames never
//! interleave. Nothing that sends ever waits on the client: a handler streaming an answer
//! must not be held up (with its upstream request and its `max_in_flight` slot) by a client
//! that stopped reading. Instead the queue counts the bytes not yet written, and when a
//! frame would take them over the limit, the client is cut off: the connection's owner sees
//! [`OutboxWriter::run`] end with [`Overflow`], logs why, and drops the connection, with
//! every request it had in flight. Memory per connection is thus bounded by the limit (plus
//! one frame), whatever the client does. One queue per connection: a shared daemon gives
//! each client its own, so one stuck client cannot touch the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use super::framing;

/// Bytes a client may leave unread before it is cut off.
pub const DEFAULT_MAX_OUTBOX: usize = 64 * 1024 * 1024;
/// Frames are gathered into one write up to about this many bytes.
const BATCH: usize = 1024 * 1024;

struct Shared {
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    overflow: Notify,
}

/// Queues frames for the client; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

/// The writing end, run by the connection.
pub struct OutboxWriter {
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
}

/// The client left more than the limit unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub queued: usize,
    pub limit: usize,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client is not reading its output: {} bytes unread would exceed the {}-byte limit",
            self.queued, self.limit
        )
    }
}

/// A queue that admits at most `limit` unwritten bytes (and always one frame, however large).
pub fn outbox(limit: usize) -> (Outbox, OutboxWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit,
        overflowed: AtomicBool::new(false),
        overflow: Notify::new(),
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        OutboxWriter { rx, shared },
    )
}

impl Outbox {
    /// Queues one framed message. Returns `false` if it was not queued: the writer is gone,
    /// or the client has too much unread and is being cut off.
    pub fn send_frame(&self, frame: Bytes) -> bool {
        let shared = &self.shared;
        if shared.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let len = frame.len();
        let before = shared.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > shared.limit {
            shared.queued.fetch_sub(len, Ordering::AcqRel);
            shared.overflowed.store(true, Ordering::Relaxed);
            // `notify_one` stores a permit, so the writer wakes even if it is not waiting yet.
            shared.overflow.notify_one();
            return false;
        }
        if self.tx.send(frame).is_err() {
            shared.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues one message, serialized once, straight into its frame.
    pub fn send_message(&self, message: &impl serde::Serialize) -> bool {
        match framing::encode_json(message) {
            Ok(frame) => self.send_frame(frame),
            Err(_) => false,
        }
    }

    /// Sends a notification. Never waits; see the module docs.
    pub fn try_notify(&self, method: &str, params: impl serde::Serialize) {
        self.send_message(&Notification {
            jsonrpc: "2.0",
            method,
            params,
        });
    }

    /// Sends a JSON-RPC error response.
    pub fn error(&self, id: Value, code: i64, message: String) {
        self.send_message(&ErrorReply {
            jsonrpc: "2.0",
            id,
            error: ErrorObject { code, message },
        });
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

/// The messages the outbox makes itself, serialized as they are (no `Value` between).
#[derive(serde::Serialize)]
struct Notification<'a, P> {
    jsonrpc: &'static str,
    method: &'a str,
    params: P,
}

#[derive(serde::Serialize)]
struct ErrorReply {
    jsonrpc: &'static str,
    id: Value,
    error: ErrorObject,
}

#[derive(serde::Serialize)]
struct ErrorObject {
    code: i64,
    message: String,
}

impl OutboxWriter {
    /// Writes frames in order until every [`Outbox`] is dropped (then `Ok(Ok(()))`), the
    /// output fails (`Err`), or the client is cut off (`Ok(Err(Overflow))`). A burst of
    /// frames goes out in one write and one flush.
    pub async fn run<W: AsyncWrite + Unpin>(
        mut self,
        mut writer: W,
    ) -> std::io::Result<Result<(), Overflow>> {
        let mut batch = BytesMut::with_capacity(64 * 1024);
        loop {
            let frame = tokio::select! {
                biased;
                _ = self.shared.overflow.notified() => {
                    return Ok(Err(Overflow {
                        queued: self.shared.queued.load(Ordering::Relaxed),
                        limit: self.shared.limit,
                    }));
                }
                frame = self.rx.recv() => frame,
            };
            let Some(frame) = frame else {
                writer.flush().await?;
                return Ok(Ok(()));
            };
            let mut taken = frame.len();
            batch.extend_from_slice(&frame);
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(frame) => {
                        taken += frame.len();
                        batch.extend_from_slice(&frame);
                    }
                    Err(_) => break,
                }
            }
            let written = async {
                writer.write_all(&batch).await?;
                writer.flush().await
            };
            // A client that stops reading blocks this write; overflow must still end it.
            tokio::select! {
                biased;
                _ = self.shared.overflow.notified() => {
                    return Ok(Err(Overflow {
                        queued: self.shared.queued.load(Ordering::Relaxed),
                        limit: self.shared.limit,
                    }));
                }
                result = written => result?,
            }
            self.shared.queued.fetch_sub(taken, Ordering::AcqRel);
            batch.clear();
            if batch.capacity() > 4 * BATCH {
                batch = BytesMut::with_capacity(64 * 1024);
            }
        }
    }
}

impl crate::clients::Notifier for Outbox {
    fn notify(&self, method: &str, params: &Value) {
        self.try_notify(method, params);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_in_order_and_ends_when_senders_go() {
        let (outbox, writer) = outbox(1024);
        assert!(outbox.send_frame(Bytes::from_static(b"one ")));
        assert!(outbox.send_frame(Bytes::from_static(b"two")));
        drop(outbox);
        let mut out = Vec::new();
        assert_eq!(writer.run(&mut out).await.unwrap(), Ok(()));
        assert_eq!(out, b"one two");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_cut_off_at_the_limit() {
        let (outbox, writer) = outbox(100);
        // A pipe whose other end nobody reads: the writer blocks after 16 bytes.
        let (output, _unread) = tokio::io::duplex(16);
        let run = tokio::spawn(writer.run(output));
        // One frame is always admitted, however large.
        assert!(outbox.send_frame(Bytes::from(vec![b'x'; 500])));
        let mut refused = false;
        for _ in 0..10 {
            if !outbox.send_frame(Bytes::from(vec![b'y'; 60])) {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(refused, "the queue grew past its limit");
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("writer ended")
            .unwrap()
            .unwrap();
        assert!(
            matches!(ended, Err(Overflow { limit: 100, .. })),
            "{ended:?}"
        );
        assert!(!outbox.send_frame(Bytes::from_static(b"late")));
    }
}
