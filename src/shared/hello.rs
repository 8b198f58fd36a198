//! The first exchange on a shared-daemon connection: the client sends its settings layers
//! (see `client_layers.rs`) as a `cfgate/hello` request, the daemon answers it, and then the
//! connection is an ordinary JSON-RPC one.
//!
//! It is a request in LSP framing so that versions can meet: a daemon from before it answers
//! it with an error (not initialized, or unknown method) and serves the client as before,
//! and a client from before it sends `initialize` first, which the daemon passes on. The
//! header is read a byte at a time so that nothing after the frame is consumed here.

use std::io;

use secrecy::zeroize::Zeroizing;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client_layers::ClientLayers;
use crate::server::framing;

pub const METHOD: &str = "cfgate/hello";
/// The id of the hello request; no editor's id (its own numbering) is a string like this.
pub const ID: &str = "cfgate/hello";
/// A hello carries a config file: bounded like any frame, well above any real file.
const MAX_HELLO: usize = 4 * 1024 * 1024;
const MAX_HEADER: usize = 1024;

/// One frame read exactly: the bytes read (header and body), and the body when the header
/// was well-formed. `None` at end of input before any byte.
pub struct RawFrame {
    pub bytes: Zeroizing<Vec<u8>>,
    pub body_at: Option<usize>,
}

impl RawFrame {
    pub fn body(&self) -> Option<&[u8]> {
        self.body_at.map(|at| &self.bytes[at..])
    }
}

/// Reads one frame and nothing after it. A header that is not LSP framing, or a body over
/// the bound, ends the read with what was read so far (`body_at` unset).
pub async fn read_frame<R: AsyncRead + Unpin>(
    input: &mut R,
    max_body: usize,
) -> io::Result<Option<RawFrame>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(64));
    loop {
        let mut byte = [0u8; 1];
        if input.read(&mut byte).await? == 0 {
            return Ok((!bytes.is_empty()).then_some(RawFrame {
                bytes,
                body_at: None,
            }));
        }
        bytes.push(byte[0]);
        if bytes.ends_with(b"\r\n\r\n") {
            break;
        }
        if bytes.len() > MAX_HEADER {
            return Ok(Some(RawFrame {
                bytes,
                body_at: None,
            }));
        }
    }
    let header = String::from_utf8_lossy(&bytes).to_string();
    let length = header.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    let Some(length) = length.filter(|n| *n <= max_body) else {
        return Ok(Some(RawFrame {
            bytes,
            body_at: None,
        }));
    };
    let body_at = bytes.len();
    bytes.resize(body_at + length, 0);
    input.read_exact(&mut bytes[body_at..]).await?;
    Ok(Some(RawFrame {
        bytes,
        body_at: Some(body_at),
    }))
}

#[derive(Serialize)]
struct Request<P: Serialize> {
    jsonrpc: &'static str,
    id: &'static str,
    method: &'static str,
    params: P,
}

#[derive(Serialize)]
struct Params<'a> {
    #[serde(flatten)]
    layers: crate::client_layers::Wire<'a>,
    /// The endpoint address this client asked for (`serve --shared --listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<&'a str>,
}

/// Client side: sends the layers (and the endpoint it asked for, if any) and reads the
/// answer: `Ok(result)` from a daemon that took them, `Err` with the error object from one
/// that predates them.
pub async fn send<S>(
    stream: &mut S,
    layers: &ClientLayers,
    listen: Option<&str>,
) -> io::Result<Result<Value, Value>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = Request {
        jsonrpc: "2.0",
        id: ID,
        method: METHOD,
        params: Params {
            layers: layers.wire(),
            listen,
        },
    };
    let body = Zeroizing::new(serde_json::to_vec(&request).map_err(io::Error::other)?);
    let frame = Zeroizing::new(framing::encode(&body).to_vec());
    stream.write_all(&frame).await?;
    loop {
        let Some(frame) = read_frame(stream, framing::DEFAULT_MAX_FRAME).await? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the shared daemon closed the connection",
            ));
        };
        let Some(answer) = frame
            .body()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared daemon's answer is not JSON-RPC",
            ));
        };
        // Only the answer to this request; a daemon sends nothing else before it.
        if answer["id"] != ID {
            continue;
        }
        return Ok(match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        });
    }
}

/// What a connection began with.
pub enum Opening {
    /// A client's layers and the endpoint it asked for, its hello to be answered.
    Hello(Box<ClientLayers>, Option<String>),
    /// A client from before hellos: these bytes are its first frame, to be served as such.
    Other(Zeroizing<Vec<u8>>),
    /// It closed before sending anything.
    Closed,
}

/// Daemon side: reads the first frame.
pub async fn receive<R: AsyncRead + Unpin>(input: &mut R) -> io::Result<Opening> {
    let Some(frame) = read_frame(input, MAX_HELLO).await? else {
        return Ok(Opening::Closed);
    };
    #[derive(serde::Deserialize)]
    struct Hello {
        method: String,
        #[serde(default)]
        params: Option<HelloParams>,
    }
    #[derive(serde::Deserialize)]
    struct HelloParams {
        #[serde(flatten)]
        layers: ClientLayers,
        #[serde(default)]
        listen: Option<String>,
    }
    let hello = frame
        .body()
        .and_then(|b| serde_json::from_slice::<Hello>(b).ok())
        .filter(|h| h.method == METHOD);
    Ok(match hello {
        Some(hello) => match hello.params {
            Some(p) => Opening::Hello(Box::new(p.layers), p.listen),
            None => Opening::Hello(Box::default(), None),
        },
        None => Opening::Other(frame.bytes),
    })
}

/// Daemon side: the answer to a hello.
pub async fn answer<W: AsyncWrite + Unpin>(output: &mut W, result: Value) -> io::Result<()> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": ID, "result": result});
    let body = serde_json::to_vec(&body).map_err(io::Error::other)?;
    output.write_all(&framing::encode(&body)).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_one_frame_and_nothing_after_it() {
        let mut input: &[u8] = b"Content-Length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]";
        let frame = read_frame(&mut input, 100).await.unwrap().unwrap();
        assert_eq!(frame.body(), Some(&b"{}"[..]));
        assert_eq!(input, b"Content-Length: 3\r\n\r\n[1]");
    }

    #[tokio::test]
    async fn an_old_clients_first_frame_is_given_back_whole() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#;
        let sent = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        let mut input: &[u8] = sent.as_bytes();
        match receive(&mut input).await.unwrap() {
            Opening::Other(bytes) => assert_eq!(&bytes[..], sent.as_bytes()),
            _ => panic!("not given back"),
        }
    }
}
