//! The CLI's way into the shared daemon: a minimal JSON-RPC client over its socket, so
//! `cfgate chat --session` continues the same conversations the editors see and
//! `cfgate status` can show who is connected. It speaks the same framing as any editor;
//! the daemon cannot tell it apart from one.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::server::framing::{self, FrameReader, Incoming};
use crate::shared::{self, Paths};

pub struct DaemonClient {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: i64,
}

/// A failed request: the daemon's JSON-RPC error object, or why there was no answer.
#[derive(Debug)]
pub enum CallError {
    Rpc(Value),
    Io(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Rpc(e) => {
                write!(f, "{}", e["message"].as_str().unwrap_or("error"))?;
                if let Some(hint) = e["data"]["hint"].as_str() {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            CallError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl DaemonClient {
    /// Connects (starting the daemon when `start` and none runs) and initializes.
    /// `Ok(None)`: no daemon runs and `start` was false.
    pub async fn connect(start: bool) -> Result<Option<DaemonClient>, String> {
        let paths = Paths::from_env()?;
        let mut stream = if start {
            shared::connect_or_start(&paths, &[]).await?
        } else {
            match UnixStream::connect(&paths.socket).await {
                Ok(stream) => stream,
                Err(_) => return Ok(None),
            }
        };
        // This command's own settings, which the daemon resolves its requests from.
        let layers = crate::client_layers::ClientLayers::gather();
        shared::hello::send(&mut stream, &layers, None, None)
            .await
            .map_err(|e| format!("the shared daemon did not answer: {e}"))?
            .ok();
        drop(layers);
        let (read, writer) = stream.into_split();
        let mut client = DaemonClient {
            reader: FrameReader::new(read, framing::DEFAULT_MAX_FRAME),
            writer,
            next_id: 1,
        };
        let init = json!({
            "processId": std::process::id(),
            "capabilities": {},
            "clientInfo": {"name": "cfgate-cli", "version": env!("CARGO_PKG_VERSION")},
        });
        client
            .call("initialize", init, |_| {})
            .await
            .map_err(|e| format!("the shared daemon refused initialize: {e}"))?;
        client
            .send(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            .await?;
        Ok(Some(client))
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        self.writer
            .write_all(&framing::encode(&body))
            .await
            .map_err(|e| format!("the shared daemon went away: {e}"))
    }

    /// Sends a request; every notification before its answer goes to `on_notification`.
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
        mut on_notification: impl FnMut(&Value),
    ) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
            .map_err(CallError::Io)?;
        loop {
            let frame = match self.reader.next().await {
                Ok(Some(Incoming::Frame(body))) => body,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    return Err(CallError::Io(
                        "the shared daemon closed the connection".into(),
                    ));
                }
            };
            let Ok(message) = serde_json::from_slice::<Value>(&frame) else {
                continue;
            };
            if message.get("method").is_some() {
                on_notification(&message);
                continue;
            }
            if message["id"] != json!(id) {
                continue;
            }
            return match message.get("error") {
                Some(error) => Err(CallError::Rpc(error.clone())),
                None => Ok(message["result"].clone()),
            };
        }
    }
}
