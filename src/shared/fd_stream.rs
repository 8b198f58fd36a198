//! An editor's pipe (or Unix socket) end, read and written through the runtime's reactor:
//! what the shared daemon serves when a relay hands it its stdin and stdout (`hello.rs`),
//! and what the relay copies through when it cannot. Pipes and Unix stream sockets only
//! (Node, so VS Code, gives its children socket pairs): what tokio can wait on without
//! `unsafe`; a terminal or a file is never made one.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

/// Whether `fd` is a pipe or a Unix stream socket.
pub fn is_pipe_or_socket(fd: impl AsFd) -> bool {
    kind(fd).is_some()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipe,
    UnixSocket,
}

fn kind(fd: impl AsFd) -> Option<Kind> {
    use rustix::fs::FileType;
    let stat = rustix::fs::fstat(&fd).ok()?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Fifo => Some(Kind::Pipe),
        FileType::Socket => {
            use rustix::net::{AddressFamily, SocketType, sockopt};
            let unix = sockopt::socket_domain(&fd).ok()? == AddressFamily::UNIX;
            let stream = sockopt::socket_type(&fd).ok()? == SocketType::STREAM;
            (unix && stream).then_some(Kind::UnixSocket)
        }
        _ => None,
    }
}

pub enum FdStream {
    Reader(pipe::Receiver),
    Writer(pipe::Sender),
    Socket(UnixStream),
}

impl FdStream {
    /// `fd` to be read from.
    pub fn reader(fd: OwnedFd) -> io::Result<FdStream> {
        match kind(&fd) {
            Some(Kind::Pipe) => Ok(FdStream::Reader(pipe::Receiver::from_owned_fd(fd)?)),
            _ => FdStream::socket(fd),
        }
    }

    /// `fd` to be written to.
    pub fn writer(fd: OwnedFd) -> io::Result<FdStream> {
        match kind(&fd) {
            Some(Kind::Pipe) => Ok(FdStream::Writer(pipe::Sender::from_owned_fd(fd)?)),
            _ => FdStream::socket(fd),
        }
    }

    fn socket(fd: OwnedFd) -> io::Result<FdStream> {
        if kind(&fd) != Some(Kind::UnixSocket) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a pipe or a Unix stream socket",
            ));
        }
        let socket = std::os::unix::net::UnixStream::from(fd);
        socket.set_nonblocking(true)?;
        Ok(FdStream::Socket(UnixStream::from_std(socket)?))
    }
}

fn wrong_way() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "this end goes the other way")
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            FdStream::Reader(pipe) => Pin::new(pipe).poll_read(cx, buf),
            FdStream::Socket(socket) => Pin::new(socket).poll_read(cx, buf),
            FdStream::Writer(_) => Poll::Ready(Err(wrong_way())),
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            FdStream::Writer(pipe) => Pin::new(pipe).poll_write(cx, buf),
            FdStream::Socket(socket) => Pin::new(socket).poll_write(cx, buf),
            FdStream::Reader(_) => Poll::Ready(Err(wrong_way())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Left to the descriptor's closing: a socket's shutdown would end it for the editor's
    /// other uses of it too.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
