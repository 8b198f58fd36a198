//! Bounds on what a streamed answer can make cfgate hold, checked on the raw bytes before
//! the event-stream reader sees them.
//!
//! The event-stream reader keeps one line, and one event's `data`, in memory until the line
//! (or the event) ends; and the answer's text grows with every piece. A gateway, or anything
//! posing as it, could send one endless line or an endless stream. [`Bounded`] counts the
//! bytes of the whole answer and of the event being read, and past either bound ends the
//! stream with an error, so that the request is dropped and the daemon goes on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use crate::error::{Error, ErrorKind};

/// A streamed answer larger than this is cut off, as a whole answer's body is.
pub const MAX_STREAM_BYTES: usize = 32 * 1024 * 1024;
/// What each event counts toward [`MAX_STREAM_BYTES`] beyond its own bytes: about what the
/// `$/progress` notification it turns into adds around its text. Tiny events would
/// otherwise turn 32 MiB of answer into five times as much output for the client, past
/// what its outbox holds; this way one answer's notifications stay under 32 MiB. A real
/// answer's chunks are 150 to 300 bytes each, so its bound is only a few MiB lower.
pub const EVENT_CHARGE: usize = 128;
/// One event (its lines up to the blank line that ends it) larger than this is cut off.
/// A real event carries one token or one tool-call fragment; the bound leaves room for a
/// whole answer in one event, as a buffering guardrail sends it.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Why reading a stream's bytes stopped.
#[derive(Debug)]
pub enum ReadError<E> {
    Transport(E),
    /// A bound was passed; the error says which.
    TooLarge(Error),
}

impl<E: std::fmt::Display> std::fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Transport(e) => e.fmt(f),
            ReadError::TooLarge(e) => f.write_str(&e.message),
        }
    }
}

impl<E: std::fmt::Display + std::fmt::Debug> std::error::Error for ReadError<E> {}

/// A byte stream that ends with [`ReadError::TooLarge`] once the answer, or one event,
/// passes its bound. Nothing after the cut is passed on.
pub struct Bounded<S> {
    inner: S,
    max_total: usize,
    max_event: usize,
    total: usize,
    /// Bytes of the event being read, line ends excluded.
    event: usize,
    /// The current line has bytes (so a line end now does not end the event).
    in_line: bool,
    /// The last byte was `\r`: a `\n` right after it is the same line end.
    after_cr: bool,
    /// The start of a line whose end has not arrived yet.
    unended: BytesMut,
    over: bool,
}

impl<S> Bounded<S> {
    pub fn new(inner: S, max_total: usize, max_event: usize) -> Bounded<S> {
        Bounded {
            inner,
            max_total,
            max_event,
            total: 0,
            event: 0,
            in_line: false,
            after_cr: false,
            unended: BytesMut::new(),
            over: false,
        }
    }

    /// Counts `chunk`; the error says which bound it passes, if any.
    fn count(&mut self, chunk: &[u8]) -> Option<Error> {
        if self.total + chunk.len() > self.max_total {
            return Some(too_large_answer(self.max_total));
        }
        self.total += chunk.len();
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    if !self.in_line && self.event > 0 {
                        self.event = 0; // a blank line ends the event
                        self.total += EVENT_CHARGE;
                        if self.total > self.max_total {
                            return Some(too_large_answer(self.max_total));
                        }
                    }
                    self.in_line = false;
                    self.after_cr = byte == b'\r';
                }
                _ => {
                    self.after_cr = false;
                    self.in_line = true;
                    self.event += 1;
                    if self.event > self.max_event {
                        return Some(too_large_event(self.max_event));
                    }
                }
            }
        }
        None
    }
}

impl<S, E> Stream for Bounded<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, ReadError<E>>;

    /// Passes on whole lines only: the event-stream reader parses its buffer again from the
    /// start on every read, so a line that arrives in many reads would cost it time
    /// quadratic in the line's length. The part of a line not yet ended waits here.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.over {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(err) = this.count(&chunk) {
                        this.over = true;
                        this.unended.clear();
                        return Poll::Ready(Some(Err(ReadError::TooLarge(err))));
                    }
                    let Some(end) = memchr::memrchr2(b'\n', b'\r', &chunk) else {
                        this.unended.extend_from_slice(&chunk);
                        continue;
                    };
                    let lines = if this.unended.is_empty() {
                        chunk.slice(..=end)
                    } else {
                        this.unended.extend_from_slice(&chunk[..=end]);
                        this.unended.split().freeze()
                    };
                    this.unended.extend_from_slice(&chunk[end + 1..]);
                    return Poll::Ready(Some(Ok(lines)));
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(ReadError::Transport(e))));
                }
                Poll::Ready(None) => {
                    this.over = true;
                    if this.unended.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(this.unended.split().freeze())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn too_large_answer(max: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!(
            "the answer was cut off: it passed cfgate's bound of {} MiB for one answer",
            max / (1024 * 1024)
        ),
    )
    .with_hint("ask for a shorter answer (max_tokens); what had arrived is in data.partial_content")
}

fn too_large_event(max: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!(
            "the answer was cut off: one event of its stream passed cfgate's bound of {} MiB",
            max / (1024 * 1024)
        ),
    )
    .with_hint("the upstream sent a broken stream; what had arrived is in data.partial_content")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes passed on before a bound was passed, and the error.
    fn run(chunks: &[&[u8]], max_total: usize, max_event: usize) -> (usize, Option<String>) {
        let mut bounded = Bounded::new((), max_total, max_event);
        let mut passed = 0;
        for chunk in chunks {
            if let Some(err) = bounded.count(chunk) {
                return (passed, Some(err.message));
            }
            passed += chunk.len();
        }
        (passed, None)
    }

    #[test]
    fn many_short_events_pass_until_the_answer_bound() {
        let event: &[u8] = b"data: {\"a\":1}\r\n\r\n";
        let charged = event.len() + EVENT_CHARGE;
        let chunks = vec![event; 10];
        assert_eq!(run(&chunks, 10 * charged, 20).1, None);
        let (passed, err) = run(&chunks, 10 * charged - 1, 20);
        assert_eq!(passed, 9 * event.len());
        assert!(err.unwrap().contains("for one answer"));
        // Blank lines alone are no events: they cost only their bytes.
        let blank: &[u8] = b"\n\n\r\n";
        assert_eq!(run(&[blank; 10], 40, 20).1, None);
    }

    #[test]
    fn one_endless_line_or_event_is_cut_at_the_event_bound() {
        let line = vec![b'x'; 64];
        let chunks: Vec<&[u8]> = vec![b"data: ", &line, &line];
        let err = run(&chunks, usize::MAX, 100).1.unwrap();
        assert!(err.contains("one event"), "{err}");
        // Many lines without a blank line between them are one event.
        let chunks: Vec<&[u8]> = vec![b"data: aaaaaaaaaa\n"; 20];
        assert!(run(&chunks, usize::MAX, 100).1.is_some());
        // CRLF, CR and LF line ends with blank lines reset the count.
        let chunks: Vec<&[u8]> = vec![
            b"data: aaaa\r",
            b"\n\r\n",
            b"data: bbbb\r\r",
            b"data: c\n\n",
        ];
        assert_eq!(run(&chunks, usize::MAX, 10).1, None);
    }
}
