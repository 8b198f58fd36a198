//! What an editor's completion request turns into: the context sent around the cursor, and
//! the suggestions already shown, so typing through one costs no new model call.
//!
//! Both are pure and work on document snapshots; the LSP handlers own the timing
//! (cancel-on-newer) and the upstream call.

use std::collections::HashMap;
use std::sync::Mutex;

use ropey::Rope;

/// The text sent around the cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub prefix: String,
    pub suffix: String,
}

/// Share of the budget that goes after the cursor when both sides are long: the code
/// before the cursor says more about what comes next.
const SUFFIX_SHARE: usize = 4;

/// The text before and after char `cursor`, at most `budget` chars in all. A side that is
/// shorter than its share leaves the rest to the other. A cut side is cut at a line break
/// when one is in reach, so the model never sees half a line at the edge.
pub fn context(text: &Rope, cursor: usize, budget: usize) -> Context {
    let cursor = cursor.min(text.len_chars());
    let before = cursor;
    let after = text.len_chars() - cursor;
    let suffix_budget = (budget / SUFFIX_SHARE).max(budget.saturating_sub(before));
    let suffix_len = after.min(suffix_budget);
    let prefix_len = before.min(budget - suffix_len.min(budget));

    let mut start = cursor - prefix_len;
    if start > 0 {
        // Cut after the first line break inside the window, unless that loses it all.
        let window = text.slice(start..cursor);
        if let Some(nl) = window.chars().position(|c| c == '\n') {
            if start + nl + 1 < cursor {
                start += nl + 1;
            }
        }
    }
    let mut end = cursor + suffix_len;
    if end < text.len_chars() {
        let window = text.slice(cursor..end);
        let last_nl = window
            .chars_at(window.len_chars())
            .reversed()
            .position(|c| c == '\n');
        if let Some(back) = last_nl {
            let cut = end - back;
            if cut > cursor {
                end = cut;
            }
        }
    }
    Context {
        prefix: text.slice(start..cursor).to_string(),
        suffix: text.slice(cursor..end).to_string(),
    }
}

/// The last suggestion shown for each document.
#[derive(Default)]
pub struct Shown {
    last: Mutex<HashMap<String, Suggestion>>,
}

/// A suggestion as it was shown: the document then, where, and what.
#[derive(Clone)]
struct Suggestion {
    text: Rope,
    cursor: usize,
    insertion: String,
}

/// Documents remembered at most; a client rarely has more in view.
const REMEMBERED: usize = 64;

impl Shown {
    /// Remembers the suggestion `insertion` made at `cursor` of `text`.
    pub fn remember(&self, uri: &str, text: &Rope, cursor: usize, insertion: &str) {
        let mut last = self.lock();
        if last.len() >= REMEMBERED && !last.contains_key(uri) {
            // Any one will do: the cache is a convenience, not a record.
            if let Some(evict) = last.keys().next().cloned() {
                last.remove(&evict);
            }
        }
        last.insert(
            uri.to_string(),
            Suggestion {
                text: text.clone(),
                cursor,
                insertion: insertion.to_string(),
            },
        );
    }

    /// The rest of the last suggestion, if the document now is the document then with a
    /// start of that suggestion typed at its place and the cursor right after it. The
    /// same request again (nothing typed) gets the whole suggestion.
    pub fn rest(&self, uri: &str, text: &Rope, cursor: usize) -> Option<String> {
        let last = self.lock().get(uri).cloned()?;
        let typed_len = cursor.checked_sub(last.cursor)?;
        let typed_bytes = last
            .insertion
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(last.insertion.len()))
            .nth(typed_len)?;
        let grown = last.text.len_chars() + typed_len;
        if text.len_chars() != grown || cursor > text.len_chars() {
            return None;
        }
        let same = text.slice(..last.cursor) == last.text.slice(..last.cursor)
            && text.slice(last.cursor..cursor) == last.insertion[..typed_bytes]
            && text.slice(cursor..) == last.text.slice(last.cursor..);
        let rest = &last.insertion[typed_bytes..];
        (same && !rest.is_empty()).then(|| rest.to_string())
    }

    pub fn forget(&self, uri: &str) {
        self.lock().remove(uri);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Suggestion>> {
        crate::sync::lock(&self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_text_within_budget() {
        let text = Rope::from_str("fn main() {\n    let x = \n}\n");
        let c = context(&text, 24, 1000);
        assert_eq!(c.prefix, "fn main() {\n    let x = ");
        assert_eq!(c.suffix, "\n}\n");
    }

    #[test]
    fn long_sides_are_cut_at_line_breaks() {
        let before: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let after: String = (0..50).map(|i| format!("tail {i}\n")).collect();
        let text = Rope::from_str(&format!("{before}cur{after}"));
        let cursor = before.chars().count() + 3;
        let c = context(&text, cursor, 100);
        assert!(c.prefix.chars().count() + c.suffix.chars().count() <= 100);
        assert!(c.prefix.ends_with("line 49\ncur"), "{:?}", c.prefix);
        assert!(
            c.prefix.starts_with("line "),
            "cut mid-line: {:?}",
            c.prefix
        );
        assert!(c.suffix.starts_with("tail 0\n"));
        assert!(c.suffix.ends_with('\n'), "cut mid-line: {:?}", c.suffix);
        assert!(c.suffix.chars().count() <= 25);
    }

    #[test]
    fn short_suffix_leaves_its_share_to_the_prefix() {
        let before = "x".repeat(500);
        let text = Rope::from_str(&format!("{before}\nend"));
        let c = context(&text, 500, 100);
        assert_eq!(c.suffix, "\nend");
        assert_eq!(c.prefix.chars().count(), 96);
    }

    #[test]
    fn typing_through_a_suggestion_gives_its_rest() {
        let shown = Shown::default();
        let then = Rope::from_str("let x = \nnext");
        shown.remember("u", &then, 8, "foo(1);");
        assert_eq!(shown.rest("u", &then, 8).as_deref(), Some("foo(1);"));
        let now = Rope::from_str("let x = fo\nnext");
        assert_eq!(shown.rest("u", &now, 10).as_deref(), Some("o(1);"));
        // Typed something else, moved the cursor, changed the text after it, or typed it all.
        assert_eq!(
            shown.rest("u", &Rope::from_str("let x = fa\nnext"), 10),
            None
        );
        assert_eq!(shown.rest("u", &now, 9), None);
        assert_eq!(
            shown.rest("u", &Rope::from_str("let x = fo\nnexT"), 10),
            None
        );
        assert_eq!(
            shown.rest("u", &Rope::from_str("let x = foo(1);\nnext"), 15),
            None
        );
        assert_eq!(shown.rest("other", &now, 10), None);
    }

    #[test]
    fn multibyte_suggestions() {
        let shown = Shown::default();
        let then = Rope::from_str("s = ");
        shown.remember("u", &then, 4, "\"é😀x\"");
        let now = Rope::from_str("s = \"é😀");
        assert_eq!(shown.rest("u", &now, 7).as_deref(), Some("x\""));
    }
}
