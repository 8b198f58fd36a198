//! A shared-daemon connection's socket as the reader and writer that `connection::serve`
//! takes, while the daemon keeps a handle on it: after serving ends it still writes the
//! connection's last word (`cfgate/connectionEnded`, see `end.rs`), and when the daemon is
//! stopped the reader ends at once, so the connection winds down after answering.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A reader that ends (EOF) once `stop` has completed.
pub struct UntilStopped<R> {
    inner: R,
    stop: Stop,
}

impl<R> UntilStopped<R> {
    pub fn new(inner: R, stop: impl Future<Output = ()> + Send + 'static) -> UntilStopped<R> {
        UntilStopped {
            inner,
            stop: Box::pin(stop),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for UntilStopped<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Reads what the client sent first (already read by the hello), then the socket.
pub struct SocketReader {
    socket: Arc<UnixStream>,
    first: Vec<u8>,
    at: usize,
}

impl SocketReader {
    pub fn new(socket: Arc<UnixStream>, first: Vec<u8>) -> SocketReader {
        SocketReader {
            socket,
            first,
            at: 0,
        }
    }
}

impl AsyncRead for SocketReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.first.len() {
            let n = buf.remaining().min(self.first.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.first[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            match self.socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Writes to the socket; shutting it down is left to whoever holds it last.
pub struct SocketWriter {
    socket: Arc<UnixStream>,
}

impl SocketWriter {
    pub fn new(socket: Arc<UnixStream>) -> SocketWriter {
        SocketWriter { socket }
    }
}

impl AsyncWrite for SocketWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
