//! LSP base framing (`Content-Length: N\r\n\r\n` + body) that survives bad input.
//!
//! tower-lsp-server reads frames with a tokio-util `FramedRead`, which ends the whole
//! stream after the first decoding error: one bad frame and the server stops listening.
//! This reader is the first thing input meets. It reports a broken frame, finds the next
//! `Content-Length` header and goes on, and it bounds what a client can make it buffer: a
//! header block of at most [`MAX_HEADER`] bytes, a body of at most the configured cap
//! (an oversized body is skipped as it arrives, never stored).

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const MAX_HEADER: usize = 8 * 1024;
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
const CONTENT_LENGTH: &[u8] = b"content-length";

/// What one read of the input produced.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A frame's body, not yet checked as JSON.
    Frame(Bytes),
    /// A header block that cannot be read; the reader has skipped to the next frame.
    Malformed(String),
    /// A body larger than the cap; it was skipped.
    Oversized(usize),
}

pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    max_frame: usize,
    /// Bytes of an oversized body still to throw away.
    skipping: usize,
    /// After a malformed header: throw input away up to the next `Content-Length`.
    resync: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame: usize) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::with_capacity(8 * 1024),
            max_frame,
            skipping: 0,
            resync: false,
        }
    }

    /// The next frame or problem; `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Incoming>> {
        loop {
            if let Some(item) = self.parse() {
                return Ok(Some(item));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8 * 1024);
            }
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                let leftover = !self.buf.is_empty() && !self.resync && self.skipping == 0;
                self.buf.clear();
                return Ok(leftover
                    .then(|| Incoming::Malformed("input ended in the middle of a frame".into())));
            }
        }
    }

    /// Takes one item out of the buffer if a whole one is there.
    fn parse(&mut self) -> Option<Incoming> {
        if self.skipping > 0 {
            let n = self.skipping.min(self.buf.len());
            self.buf.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return None;
            }
        }
        if self.resync {
            match find_content_length(&self.buf) {
                Some(at) => {
                    self.buf.advance(at);
                    self.resync = false;
                }
                None => {
                    // Keep a tail that may be the start of the header name.
                    let keep = CONTENT_LENGTH.len().min(self.buf.len());
                    self.buf.advance(self.buf.len() - keep);
                    return None;
                }
            }
        }
        // Blank lines between frames are harmless: some clients send a stray CRLF.
        while self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
        }
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > MAX_HEADER {
                return Some(
                    self.malformed(format!("no end of header within {MAX_HEADER} bytes"), 1),
                );
            }
            return None;
        };
        let length = match parse_header(&self.buf[..end]) {
            Ok(length) => length,
            Err(reason) => {
                // A body whose Content-Length lied leaves junk glued to the next header
                // (`...}Content-Length: 45`): read on from that header, not past it.
                if let Some(at) = glued_content_length(&self.buf[..end]) {
                    self.buf.advance(at);
                    return Some(Incoming::Malformed(reason));
                }
                return Some(self.malformed(reason, end + 4));
            }
        };
        if length > self.max_frame {
            self.buf.advance(end + 4);
            self.skipping = length;
            return Some(Incoming::Oversized(length));
        }
        if self.buf.len() < end + 4 + length {
            let needed = end + 4 + length - self.buf.len();
            self.buf.reserve(needed);
            return None;
        }
        self.buf.advance(end + 4);
        Some(Incoming::Frame(self.buf.split_to(length).freeze()))
    }

    /// Drops the broken header (its body, of unknown length, is skipped by the resync).
    fn malformed(&mut self, reason: String, consumed: usize) -> Incoming {
        self.buf.advance(consumed.min(self.buf.len()));
        self.resync = true;
        Incoming::Malformed(reason)
    }
}

/// Reads the header block; returns the body length.
fn parse_header(block: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(block).map_err(|_| "header is not UTF-8".to_string())?;
    let mut length: Option<usize> = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            let shown: String = line.chars().take(60).collect();
            return Err(format!("header line without a colon: {shown:?}"));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            let n: usize = value
                .parse()
                .map_err(|_| format!("Content-Length is not a whole number: {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("two different Content-Length headers".into());
            }
            length = Some(n);
        }
    }
    length.ok_or_else(|| "no Content-Length header".to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// A `Content-Length` inside a header block that does not start a line: the start of a
/// real header after junk.
fn glued_content_length(block: &[u8]) -> Option<usize> {
    let mut from = 1;
    while let Some(at) = block.get(from..).and_then(find_content_length) {
        let at = from + at;
        if block[at - 1] != b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn find_content_length(buf: &[u8]) -> Option<usize> {
    (0..buf.len().saturating_sub(CONTENT_LENGTH.len() - 1))
        .find(|&i| buf[i..i + CONTENT_LENGTH.len()].eq_ignore_ascii_case(CONTENT_LENGTH))
}

/// Room for the longest header: "Content-Length: " + 20 digits + "\r\n\r\n".
const HEADER_ROOM: usize = 40;

/// Writes the header of a `len`-byte body into `out`; returns how many bytes it took.
fn header(len: usize, out: &mut [u8; HEADER_ROOM]) -> usize {
    use std::io::Write;
    let mut rest = &mut out[..];
    // Cannot fail: the room fits the longest header.
    let _ = write!(rest, "Content-Length: {len}\r\n\r\n");
    HEADER_ROOM - rest.len()
}

/// One frame, header and body, ready to write.
pub fn encode(body: &[u8]) -> Bytes {
    let mut head = [0u8; HEADER_ROOM];
    let n = header(body.len(), &mut head);
    let mut out = BytesMut::with_capacity(n + body.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(body);
    out.freeze()
}

/// One message serialized straight into its frame: no `serde_json::Value` on the way and
/// no copy of the body; the header is written into room left in front of it.
pub fn encode_message(message: &impl serde::Serialize) -> serde_json::Result<Bytes> {
    let mut buf = Vec::with_capacity(HEADER_ROOM + 256);
    buf.resize(HEADER_ROOM, 0);
    serde_json::to_writer(&mut buf, message)?;
    let mut head = [0u8; HEADER_ROOM];
    let n = header(buf.len() - HEADER_ROOM, &mut head);
    let start = HEADER_ROOM - n;
    buf[start..HEADER_ROOM].copy_from_slice(&head[..n]);
    Ok(Bytes::from(buf).slice(start..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn a_message_encoded_in_place_reads_back_whole() {
        for text in ["", "x", &"é".repeat(5000)] {
            let message = serde_json::json!({"jsonrpc": "2.0", "method": "m", "params": text});
            let frame = encode_message(&message).unwrap();
            let body = serde_json::to_vec(&message).unwrap();
            assert_eq!(frame, encode(&body));
            assert_eq!(
                read_all(&frame, usize::MAX).await,
                vec![Incoming::Frame(body.into())]
            );
        }
    }

    async fn read_all(input: &[u8], max: usize) -> Vec<Incoming> {
        let mut reader = FrameReader::new(input, max);
        let mut out = Vec::new();
        while let Some(item) = reader.next().await.unwrap() {
            out.push(item);
        }
        out
    }

    fn frame(body: &str) -> Vec<u8> {
        encode(body.as_bytes()).to_vec()
    }

    #[tokio::test]
    async fn reads_frames_back_to_back() {
        let mut input = frame("{\"a\":1}");
        input.extend(b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}");
        let items = read_all(&input, 1024).await;
        assert_eq!(
            items,
            vec![
                Incoming::Frame(Bytes::from_static(b"{\"a\":1}")),
                Incoming::Frame(Bytes::from_static(b"{}"))
            ]
        );
    }

    #[tokio::test]
    async fn recovers_after_each_kind_of_bad_header() {
        let bad: &[&[u8]] = &[
            b"Content-Length: abc\r\n\r\n{}",
            b"Content-Length: -5\r\n\r\n{}",
            b"garbage line\r\n\r\n",
            b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            b"X-Junk: 1\r\n\r\n{}",
            b"Content-Length:\r\n\r\n",
        ];
        for bad in bad {
            let mut input = bad.to_vec();
            input.extend(frame("{\"ok\":true}"));
            let items = read_all(&input, 1024).await;
            assert!(
                matches!(items[0], Incoming::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(
                items.last(),
                Some(&Incoming::Frame(Bytes::from_static(b"{\"ok\":true}"))),
                "{:?}: {items:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn a_lying_length_costs_at_most_the_frame_after_it() {
        let next = frame("{\"next\":1}");
        // Too long: eats the start of the next frame, whose rest is junk.
        let mut input = b"Content-Length: 10\r\n\r\n{}".to_vec();
        input.extend(frame("{\"eaten\":true}"));
        input.extend(&next);
        let items = read_all(&input, 1024).await;
        assert_eq!(
            items.last(),
            Some(&Incoming::Frame(Bytes::from_static(b"{\"next\":1}"))),
            "{items:?}"
        );
        // Too short: the rest of its body is junk before the next header.
        let mut input = b"Content-Length: 3\r\n\r\n{\"jsonrpc\":\"2.0\"}".to_vec();
        input.extend(&next);
        let items = read_all(&input, 1024).await;
        assert_eq!(
            items.last(),
            Some(&Incoming::Frame(Bytes::from_static(b"{\"next\":1}"))),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn skips_oversized_bodies_without_storing_them() {
        let mut input = format!("Content-Length: 5000\r\n\r\n{}", "x".repeat(5000)).into_bytes();
        input.extend(frame("{}"));
        let items = read_all(&input, 100).await;
        assert_eq!(
            items,
            vec![
                Incoming::Oversized(5000),
                Incoming::Frame(Bytes::from_static(b"{}"))
            ]
        );
    }

    #[tokio::test]
    async fn endless_header_is_bounded() {
        let input = vec![b'a'; MAX_HEADER * 4];
        let items = read_all(&input, 100).await;
        assert!(matches!(items[0], Incoming::Malformed(_)));
    }

    #[tokio::test]
    async fn truncated_frame_at_eof_is_reported() {
        let items = read_all(b"Content-Length: 10\r\n\r\n{}", 100).await;
        assert!(matches!(items[..], [Incoming::Malformed(_)]));
    }

    proptest! {
        #[test]
        fn any_split_of_the_input_reads_the_same(
            bodies in proptest::collection::vec("[a-z{}\":]{0,20}", 1..5),
            cut in 0usize..200,
        ) {
            let input: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
            let cut = cut.min(input.len());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let items = rt.block_on(async {
                let (first, second) = input.split_at(cut);
                let reader = tokio_test_chain(first.to_vec(), second.to_vec());
                let mut reader = FrameReader::new(reader, 1024);
                let mut out = Vec::new();
                while let Some(item) = reader.next().await.unwrap() { out.push(item); }
                out
            });
            let want: Vec<Incoming> = bodies.iter().map(|b| Incoming::Frame(Bytes::from(b.clone()))).collect();
            prop_assert_eq!(items, want);
        }
    }

    /// Two reads: the input cut in two places the reader sees separately.
    fn tokio_test_chain(a: Vec<u8>, b: Vec<u8>) -> impl AsyncRead + Unpin {
        AsyncReadExt::chain(std::io::Cursor::new(a), std::io::Cursor::new(b))
    }
}
