//! The first exchange on a shared-daemon connection: the client sends its settings layers
//! (see `client_layers.rs`) as a `cfgate/hello` request, the daemon answers it, and then the
//! connection is an ordinary JSON-RPC one.
//!
//! It is a request in LSP framing so that versions can meet: a daemon from before it answers
//! it with an error (not initialized, or unknown method) and serves the client as before,
//! and a client from before it sends `initialize` first, which the daemon passes on. The
//! header is read a byte at a time so that nothing after the frame is consumed here.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use secrecy::zeroize::Zeroizing;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

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
    read_frame_after(input, max_body, Vec::with_capacity(64)).await
}

/// [`read_frame`], for a frame whose first bytes were read already.
async fn read_frame_after<R: AsyncRead + Unpin>(
    input: &mut R,
    max_body: usize,
    read: Vec<u8>,
) -> io::Result<Option<RawFrame>> {
    let mut bytes = Zeroizing::new(read);
    if bytes.ends_with(b"\r\n\r\n") {
        return Ok(Some(RawFrame {
            bytes,
            body_at: None,
        }));
    }
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
    /// Its stdin and stdout came with the frame (SCM_RIGHTS), to be served directly.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fds: bool,
}

/// Client side: sends the layers (and the endpoint it asked for, if any) and reads the
/// answer: `Ok(result)` from a daemon that took them, `Err` with the error object from one
/// that predates them.
/// With `stdio`, the relay's stdin and stdout go along (SCM_RIGHTS) for the daemon to serve
/// directly; the answer's `fds` says whether it took them.
pub async fn send(
    stream: &mut UnixStream,
    layers: &ClientLayers,
    listen: Option<&str>,
    stdio: Option<[BorrowedFd<'_>; 2]>,
) -> io::Result<Result<Value, Value>> {
    let request = Request {
        jsonrpc: "2.0",
        id: ID,
        method: METHOD,
        params: Params {
            layers: layers.wire(),
            listen,
            fds: stdio.is_some(),
        },
    };
    let body = Zeroizing::new(serde_json::to_vec(&request).map_err(io::Error::other)?);
    let frame = Zeroizing::new(framing::encode(&body).to_vec());
    let sent = match stdio {
        Some(fds) => send_with_fds(stream, &frame, &fds).await?,
        None => 0,
    };
    stream.write_all(&frame[sent..]).await?;
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

/// Sends the start of `frame` with `fds` attached; how many bytes went.
async fn send_with_fds(
    stream: &UnixStream,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors"));
    }
    loop {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            Ok(sendmsg(
                stream,
                &[IoSlice::new(frame)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            sent => return sent,
        }
    }
}

/// Reads the first byte, and the descriptors sent with it, if any.
async fn receive_first_byte(stream: &UnixStream) -> io::Result<(Option<u8>, Vec<OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let read = loop {
        stream.readable().await?;
        let read = stream.try_io(Interest::READABLE, || {
            Ok(recvmsg(
                stream,
                &mut [IoSliceMut::new(&mut byte)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?
            .bytes)
        });
        match read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => break read?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    Ok(((read == 1).then_some(byte[0]), fds))
}

/// A client's hello, as the daemon took it.
pub struct Hello {
    pub layers: ClientLayers,
    /// The endpoint it asked for.
    pub listen: Option<String>,
    /// Its stdin and stdout, when it sent them (and said so).
    pub stdio: Option<(OwnedFd, OwnedFd)>,
}

/// What a connection began with.
pub enum Opening {
    /// A client's hello, to be answered.
    Hello(Box<Hello>),
    /// A client from before hellos: these bytes are its first frame, to be served as such.
    Other(Zeroizing<Vec<u8>>),
    /// It closed before sending anything.
    Closed,
}

/// Daemon side: reads the first frame, and the descriptors that came with it.
pub async fn receive(stream: &mut UnixStream) -> io::Result<Opening> {
    let (first, fds) = receive_first_byte(stream).await?;
    let Some(first) = first else {
        return Ok(Opening::Closed);
    };
    let Some(frame) = read_frame_after(stream, MAX_HELLO, vec![first]).await? else {
        return Ok(Opening::Closed);
    };
    Ok(opening(frame, fds))
}

/// What the first frame says.
fn opening(frame: RawFrame, fds: Vec<OwnedFd>) -> Opening {
    #[derive(serde::Deserialize)]
    struct Sent {
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
        #[serde(default)]
        fds: bool,
    }
    let hello = frame
        .body()
        .and_then(|b| serde_json::from_slice::<Sent>(b).ok())
        .filter(|h| h.method == METHOD);
    let Some(hello) = hello else {
        return Opening::Other(frame.bytes);
    };
    let params = hello.params.unwrap_or(HelloParams {
        layers: ClientLayers::default(),
        listen: None,
        fds: false,
    });
    let mut fds = fds.into_iter();
    let stdio = match (params.fds, fds.next(), fds.next()) {
        (true, Some(stdin), Some(stdout)) => Some((stdin, stdout)),
        _ => None,
    };
    Opening::Hello(Box::new(Hello {
        layers: params.layers,
        listen: params.listen,
        stdio,
    }))
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
        let frame = read_frame(&mut input, MAX_HELLO).await.unwrap().unwrap();
        match opening(frame, vec![]) {
            Opening::Other(bytes) => assert_eq!(&bytes[..], sent.as_bytes()),
            _ => panic!("not given back"),
        }
    }
}
