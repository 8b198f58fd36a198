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
#[derive(Debug, Clone, PartialEq)]
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
    /// Bytes of the body being awaited already searched for a frame header inside it.
    scanned: usize,
    /// The input has ended: what may still be a header no longer can be.
    eof: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame: usize) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::with_capacity(8 * 1024),
            max_frame,
            skipping: 0,
            resync: false,
            scanned: 0,
            eof: false,
        }
    }

    /// The next frame or problem; `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Incoming>> {
        loop {
            if let Some(item) = self.parse() {
                return Ok(Some(item));
            }
            if self.eof {
                let leftover = !self.buf.is_empty() && !self.resync && self.skipping == 0;
                self.buf.clear();
                return Ok(leftover
                    .then(|| Incoming::Malformed("input ended in the middle of a frame".into())));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8 * 1024);
            }
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }

    /// Takes one item out of the buffer if a whole one is there.
    fn parse(&mut self) -> Option<Incoming> {
        if self.skipping > 0 {
            let n = self.skipping.min(self.buf.len());
            // An oversized length that lied: the frames after it are not skipped with it.
            let skip = match header_inside(&self.buf, 0, n) {
                Scan::Found(at) => {
                    self.skipping = at;
                    at
                }
                Scan::NeedMore(at) if !self.eof => at,
                _ => n,
            };
            self.buf.advance(skip);
            self.skipping -= skip;
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
        // A body cannot hold a frame header (JSON has no raw CR or LF inside a string, and
        // no bare word outside one): one inside means the length lied and the body was cut
        // short. The frame after it is read from that header, not swallowed with the lie,
        // and a client waiting for that frame's answer is not kept waiting for the rest.
        let body = end + 4;
        let arrived = self.buf.len() - body;
        let complete = arrived >= length;
        match header_inside(&self.buf[body..], self.scanned, arrived.min(length)) {
            Scan::Found(at) => {
                self.buf.advance(body + at);
                self.scanned = 0;
                return Some(Incoming::Malformed(format!(
                    "Content-Length said {length} bytes, but the next frame began after {at}"
                )));
            }
            // Waiting even for a complete body: a read cut elsewhere would have told.
            Scan::NeedMore(at) if !self.eof => {
                self.scanned = at;
                self.buf.reserve(length.saturating_sub(arrived).max(64));
                return None;
            }
            _ if !complete => {
                self.scanned = arrived;
                self.buf.reserve(length - arrived);
                return None;
            }
            _ => {}
        }
        self.scanned = 0;
        self.buf.advance(body);
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

/// What a search for a frame header inside a body found.
#[derive(Debug, PartialEq)]
enum Scan {
    /// A `Content-Length: N` line starts here.
    Found(usize),
    /// Nothing up to the limit.
    Clean,
    /// Something here may be a header, but the input ends before that is known.
    NeedMore(usize),
}

/// Searches `bytes[from..limit]` for the start of a `Content-Length: N\r\n` line (which
/// may run on past `limit`, into what follows).
fn header_inside(bytes: &[u8], from: usize, limit: usize) -> Scan {
    let mut at = from;
    while at < limit {
        let Some(next) = memchr::memchr2(b'c', b'C', &bytes[at..limit]) else {
            return Scan::Clean;
        };
        at += next;
        match header_line_at(&bytes[at..]) {
            Some(true) => return Scan::Found(at),
            Some(false) => at += 1,
            None => return Scan::NeedMore(at),
        }
    }
    Scan::Clean
}

/// Whether `bytes` starts with a `Content-Length: N\r\n` line; `None` while it is cut short
/// before that can be told.
fn header_line_at(bytes: &[u8]) -> Option<bool> {
    let name = &bytes[..CONTENT_LENGTH.len().min(bytes.len())];
    if !CONTENT_LENGTH[..name.len()].eq_ignore_ascii_case(name) {
        return Some(false);
    }
    let mut rest = bytes.get(CONTENT_LENGTH.len()..)?;
    let spaces = |r: &[u8]| r.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    rest = &rest[spaces(rest)..];
    match rest.first()? {
        b':' => rest = &rest[1..],
        _ => return Some(false),
    }
    rest = &rest[spaces(rest)..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 20 {
        return Some(false);
    }
    rest = &rest[digits..];
    match rest {
        [] | [b'\r'] => None,
        [b'\r', b'\n', ..] => Some(digits > 0),
        _ => Some(false),
    }
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

/// One message serialized straight into its frame, once, with no `Value` in between: the
/// body is written into a per-thread scratch buffer after room left for the header, whose
/// length is then known, and the header fills the end of that room. The frame is then
/// copied out at its exact size, so that a frame waiting in an outbox holds no spare
/// capacity (a burst of small `$/progress` frames can queue by the ten thousand).
pub fn encode_json(message: &impl serde::Serialize) -> serde_json::Result<Bytes> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let frame = encode_json_in(&mut scratch, message);
            if scratch.capacity() > 64 * 1024 {
                *scratch = Vec::new();
            }
            frame
        }
        // Only if a message's own serialization sends a message.
        Err(_) => encode_json_in(&mut Vec::new(), message),
    })
}

fn encode_json_in(
    scratch: &mut Vec<u8>,
    message: &impl serde::Serialize,
) -> serde_json::Result<Bytes> {
    scratch.clear();
    scratch.resize(HEADER_ROOM, 0);
    serde_json::to_writer(&mut *scratch, message)?;
    let mut head = [0u8; HEADER_ROOM];
    let n = header(scratch.len() - HEADER_ROOM, &mut head);
    let start = HEADER_ROOM - n;
    scratch[start..HEADER_ROOM].copy_from_slice(&head[..n]);
    Ok(Bytes::copy_from_slice(&scratch[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn a_message_encoded_in_place_reads_back_whole() {
        for text in ["", "x", &"é".repeat(5000)] {
            let message = serde_json::json!({"jsonrpc": "2.0", "method": "m", "params": text});
            let frame = encode_json(&message).unwrap();
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

    #[test]
    fn encode_json_frames_a_message_as_encode_does() {
        for message in [
            serde_json::json!({}),
            serde_json::json!({"jsonrpc": "2.0", "method": "x", "params": {"a": "é".repeat(300)}}),
        ] {
            let body = serde_json::to_vec(&message).unwrap();
            assert_eq!(encode_json(&message).unwrap(), encode(&body));
        }
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
        assert!(matches!(items[0], Incoming::Malformed(_)), "{items:?}");
        // Tighter than the bound: the frame after it is read too.
        assert_eq!(
            items[1..],
            [
                Incoming::Frame(Bytes::from_static(b"{\"eaten\":true}")),
                Incoming::Frame(Bytes::from_static(b"{\"next\":1}"))
            ],
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

    /// 500 declared, 50 sent, then six frames: each of the six is read, however the input
    /// is cut into two reads.
    #[tokio::test]
    async fn a_length_longer_than_its_body_costs_none_of_the_frames_after_it() {
        let mut input = b"Content-Length: 500\r\n\r\n".to_vec();
        input.extend(&br#"{"jsonrpc":"2.0","id":1,"method":"cfgate/status","params":{}}"#[..50]);
        let bodies: Vec<String> = (2..8).map(|i| format!("{{\"id\":{i}}}")).collect();
        for body in &bodies {
            input.extend(frame(body));
        }
        let want: Vec<Incoming> = bodies
            .iter()
            .map(|b| Incoming::Frame(Bytes::from(b.clone())))
            .collect();
        let items = read_however_cut(&input).await;
        assert!(matches!(items[0], Incoming::Malformed(_)), "{items:?}");
        assert_eq!(items[1..], want[..]);
        // The lying body ends inside the next header.
        let mut input = b"Content-Length: 5\r\n\r\n{}Con".to_vec();
        input.extend(b"tent-Length: 2\r\n\r\n{}");
        let items = read_however_cut(&input).await;
        assert!(matches!(items[0], Incoming::Malformed(_)), "{items:?}");
        assert_eq!(items[1..], [Incoming::Frame(Bytes::from_static(b"{}"))]);
        // The same with a length over the cap: the skip stops at the next header.
        let mut input = b"Content-Length: 99999\r\n\r\n{\"jsonrpc\"".to_vec();
        input.extend(frame(&bodies[0]));
        let items = read_all(&input, 1024).await;
        assert_eq!(items, [Incoming::Oversized(99999), want[0].clone()]);
    }

    /// What `input` reads as, checked to be the same however it is cut into two reads.
    async fn read_however_cut(input: &[u8]) -> Vec<Incoming> {
        let whole = read_all(input, 1024).await;
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let mut reader = FrameReader::new(tokio_test_chain(a.to_vec(), b.to_vec()), 1024);
            let mut items = Vec::new();
            while let Some(item) = reader.next().await.unwrap() {
                items.push(item);
            }
            assert_eq!(items, whole, "cut at {cut}");
        }
        whole
    }

    #[test]
    fn a_header_inside_a_body_is_told_from_json() {
        assert_eq!(
            header_inside(b"{}Content-Length: 5\r\n", 0, 3),
            Scan::Found(2)
        );
        assert_eq!(
            header_inside(b"{}content-length:5\r\n", 0, 3),
            Scan::Found(2)
        );
        assert_eq!(header_inside(b"{}Content-Len", 0, 13), Scan::NeedMore(2));
        assert_eq!(
            header_inside(b"{}Content-Length: 5\r", 0, 3),
            Scan::NeedMore(2)
        );
        for json in [
            &br#"{"a":"Content-Length: 5"}"#[..],
            br#"{"a":"Content-Length: 5\r\n"}"#,
            br#"{"content":"c","Content-Length":1}"#,
        ] {
            assert_eq!(header_inside(json, 0, json.len()), Scan::Clean, "{json:?}");
        }
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
