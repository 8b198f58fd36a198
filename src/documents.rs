//! The text of the documents a client has open, kept in step with its edits.
//!
//! Positions arrive in the client's units: UTF-16 code units unless the client negotiated
//! UTF-8 or UTF-32 (`general.positionEncodings`). Lines end at `\n`, `\r\n` or `\r`, as LSP
//! says, and nowhere else (ropey's Unicode line breaks are turned off for this reason).
//! A position past the end of its line means the end of that line, and a line past the
//! end of the document means its end, as LSP asks of servers.
//!
//! Documents are ropes: an edit costs O(log n) and a snapshot is a cheap clone sharing the
//! same chunks. A request takes a snapshot and lets the lock go before it awaits anything,
//! so typing never waits for a model.

use std::collections::HashMap;
use std::sync::Mutex;

use ropey::{Rope, RopeSlice};
use tower_lsp_server::ls_types::{
    Position, PositionEncodingKind, Range, TextDocumentContentChangeEvent,
};

/// The unit of `Position.character`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    #[default]
    Utf16,
    Utf32,
}

impl Encoding {
    /// The client's first choice among those it offers (LSP: in order of preference);
    /// UTF-16 when it offers none, as LSP requires.
    pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> Encoding {
        offered
            .unwrap_or_default()
            .iter()
            .find_map(|kind| match kind.as_str() {
                "utf-8" => Some(Encoding::Utf8),
                "utf-16" => Some(Encoding::Utf16),
                "utf-32" => Some(Encoding::Utf32),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn kind(self) -> PositionEncodingKind {
        match self {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
            Encoding::Utf32 => PositionEncodingKind::UTF32,
        }
    }
}

/// A document as it was at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub uri: String,
    pub version: i32,
    pub language: String,
    pub text: Rope,
    pub encoding: Encoding,
}

impl Snapshot {
    /// The char index of `pos`, clamped into the document.
    pub fn offset(&self, pos: Position) -> usize {
        char_offset(&self.text, pos, self.encoding)
    }

    /// The position of char index `offset`.
    pub fn position(&self, offset: usize) -> Position {
        position_of(&self.text, offset, self.encoding)
    }

    /// The text between two positions (in either order), as given by the client.
    pub fn text_in(&self, range: Range) -> String {
        let (a, b) = (self.offset(range.start), self.offset(range.end));
        self.text.slice(a.min(b)..a.max(b)).to_string()
    }

    /// `range` with both ends clamped into the document and in order.
    pub fn clamp(&self, range: Range) -> Range {
        let (a, b) = (self.offset(range.start), self.offset(range.end));
        Range::new(self.position(a.min(b)), self.position(a.max(b)))
    }
}

/// Open documents by URI.
#[derive(Default)]
pub struct Documents {
    open: Mutex<HashMap<String, Snapshot>>,
}

impl Documents {
    pub fn open(&self, uri: String, version: i32, language: String, text: &str, enc: Encoding) {
        let doc = Snapshot {
            uri: uri.clone(),
            version,
            language,
            text: Rope::from_str(text),
            encoding: enc,
        };
        self.lock().insert(uri, doc);
    }

    /// Applies a client's edits in order. False if the document is not open.
    pub fn change(
        &self,
        uri: &str,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
    ) -> bool {
        let mut open = self.lock();
        let Some(doc) = open.get_mut(uri) else {
            return false;
        };
        for change in changes {
            apply(&mut doc.text, change, doc.encoding);
        }
        doc.version = version;
        true
    }

    pub fn close(&self, uri: &str) {
        self.lock().remove(uri);
    }

    /// A copy of the document as it is now (cheap: ropes share their chunks).
    pub fn snapshot(&self, uri: &str) -> Option<Snapshot> {
        self.lock().get(uri).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        // Every critical section is a plain map or rope operation that cannot leave the map
        // half-changed, so a poisoned lock still holds sound data.
        crate::sync::lock(&self.open)
    }
}

/// Applies one change to `text`.
/// (`rangeLength` is deprecated in LSP and ignored: the range says it all.)
pub fn apply(text: &mut Rope, change: &TextDocumentContentChangeEvent, enc: Encoding) {
    match change.range {
        None => *text = Rope::from_str(&change.text),
        Some(range) => {
            let a = char_offset(text, range.start, enc);
            let b = char_offset(text, range.end, enc);
            let (start, end) = (a.min(b), a.max(b));
            text.remove(start..end);
            text.insert(start, &change.text);
        }
    }
}

/// The char index of `pos` in `text`, clamped to the end of its line (and of the text).
pub fn char_offset(text: &Rope, pos: Position, enc: Encoding) -> usize {
    let line = pos.line as usize;
    if line >= text.len_lines() {
        return text.len_chars();
    }
    let start = text.line_to_char(line);
    let len = content_len(text.line(line));
    let end = start + len;
    let wanted = pos.character as usize;
    let within = match enc {
        Encoding::Utf32 => wanted.min(len),
        Encoding::Utf16 => {
            let base = text.char_to_utf16_cu(start);
            if base + wanted >= text.char_to_utf16_cu(end) {
                len
            } else {
                // Inside a surrogate pair: the char it belongs to.
                text.utf16_cu_to_char(base + wanted) - start
            }
        }
        Encoding::Utf8 => {
            let base = text.char_to_byte(start);
            if base + wanted >= text.char_to_byte(end) {
                len
            } else {
                // Inside a multi-byte char: the char it belongs to.
                text.byte_to_char(base + wanted) - start
            }
        }
    };
    start + within
}

/// The position of char index `offset` (clamped to the text).
pub fn position_of(text: &Rope, offset: usize, enc: Encoding) -> Position {
    let offset = offset.min(text.len_chars());
    let line = text.char_to_line(offset);
    let start = text.line_to_char(line);
    let character = match enc {
        Encoding::Utf32 => offset - start,
        Encoding::Utf16 => text.char_to_utf16_cu(offset) - text.char_to_utf16_cu(start),
        Encoding::Utf8 => text.char_to_byte(offset) - text.char_to_byte(start),
    };
    Position::new(line as u32, character as u32)
}

/// Chars in a line without its line break.
fn content_len(line: RopeSlice<'_>) -> usize {
    let n = line.len_chars();
    match (
        n.checked_sub(2).map(|i| line.char(i)),
        n.checked_sub(1).map(|i| line.char(i)),
    ) {
        (Some('\r'), Some('\n')) => n - 2,
        (_, Some('\n' | '\r')) => n - 1,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(line: u32, character: u32) -> Position {
        Position::new(line, character)
    }

    #[test]
    fn units_per_encoding() {
        // "é" is 2 UTF-8 bytes, 1 UTF-16 unit; "😀" is 4 bytes, 2 UTF-16 units, 1 char.
        let text = Rope::from_str("aé😀b\nx");
        assert_eq!(char_offset(&text, pos(0, 3), Encoding::Utf8), 2);
        assert_eq!(char_offset(&text, pos(0, 7), Encoding::Utf8), 3);
        assert_eq!(char_offset(&text, pos(0, 2), Encoding::Utf16), 2);
        assert_eq!(char_offset(&text, pos(0, 4), Encoding::Utf16), 3);
        assert_eq!(char_offset(&text, pos(0, 3), Encoding::Utf32), 3);
        for enc in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            for offset in 0..=text.len_chars() {
                let p = position_of(&text, offset, enc);
                assert_eq!(char_offset(&text, p, enc), offset, "{enc:?} {offset}");
            }
        }
    }

    #[test]
    fn past_the_end_clamps() {
        let text = Rope::from_str("ab\r\ncd\rlast");
        // Past the end of a line: the end of the line, before its break.
        assert_eq!(char_offset(&text, pos(0, 9), Encoding::Utf16), 2);
        assert_eq!(char_offset(&text, pos(1, 9), Encoding::Utf16), 6);
        assert_eq!(char_offset(&text, pos(2, 2), Encoding::Utf16), 9);
        // Past the last line: the end of the text.
        assert_eq!(char_offset(&text, pos(7, 0), Encoding::Utf16), 11);
    }

    #[test]
    fn only_lsp_line_breaks_count() {
        // U+2028 is a line break to Unicode but not to LSP.
        let text = Rope::from_str("a\u{2028}b\nc");
        assert_eq!(char_offset(&text, pos(1, 0), Encoding::Utf32), 4);
    }

    /// A client's view of a document: plain `String`, positions counted the slow way.
    fn reference_offset(text: &str, p: Position, enc: Encoding) -> usize {
        let mut lines: Vec<&str> = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find(['\n', '\r']) {
            let brk = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
            lines.push(&rest[..i + brk]);
            rest = &rest[i + brk..];
        }
        lines.push(rest);
        let Some(line) = lines.get(p.line as usize) else {
            return text.chars().count();
        };
        let before: usize = lines[..p.line as usize]
            .iter()
            .map(|l| l.chars().count())
            .sum();
        let content = line.trim_end_matches(['\n', '\r']);
        let mut units = 0;
        let mut chars = 0;
        for c in content.chars() {
            let w = match enc {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
                Encoding::Utf32 => 1,
            };
            if units + w > p.character as usize {
                break;
            }
            units += w;
            chars += 1;
        }
        before + chars
    }

    fn encoding() -> impl Strategy<Value = Encoding> {
        prop_oneof![
            Just(Encoding::Utf8),
            Just(Encoding::Utf16),
            Just(Encoding::Utf32)
        ]
    }

    proptest! {
        #[test]
        fn edits_keep_the_text_equal_to_the_clients(
            start in "[ab\n\r é😀]{0,20}",
            edits in proptest::collection::vec((0u32..6, 0u32..10, 0u32..6, 0u32..10, "[xy\n é😀]{0,4}"), 1..12),
            enc in encoding(),
        ) {
            let mut ours = Rope::from_str(&start);
            let mut theirs = start.clone();
            for (l1, c1, l2, c2, new) in edits {
                let (a, b) = (pos(l1, c1), pos(l2, c2));
                // The client edits its String at the same places, counted independently.
                let (x, y) = (reference_offset(&theirs, a, enc), reference_offset(&theirs, b, enc));
                let (x, y) = (x.min(y), x.max(y));
                let bx = theirs.char_indices().nth(x).map_or(theirs.len(), |(i, _)| i);
                let by = theirs.char_indices().nth(y).map_or(theirs.len(), |(i, _)| i);
                theirs.replace_range(bx..by, &new);
                let change = TextDocumentContentChangeEvent { range: Some(Range::new(a, b)), range_length: None, text: new };
                apply(&mut ours, &change, enc);
                prop_assert_eq!(ours.to_string(), theirs.clone());
            }
        }
    }
}
