//! Code completion on a chat model: the prompt, and the cleaning of what comes back.
//!
//! Chat models wrap code in fences and like to repeat the line they were given. An editor
//! must get only the insertion, and must get it while it streams, so the cleaner works on a
//! growing text: it holds back only what it cannot yet decide (an opening fence line, a
//! possible repeat of the prefix's last line, a last line that may turn out to be a closing
//! fence or the suffix's first line) and lets everything else through at once. The pieces
//! it emits always join to exactly the final text.

use serde_json::{Map, Value};

use crate::protocol::{CompleteParams, message};

pub const DEFAULT_MAX_TOKENS: u32 = 256;
pub const DEFAULT_TEMPERATURE: f64 = 0.2;

const SYSTEM: &str = "You are a code completion engine. You are shown a file with the marker \
<CURSOR> where the cursor is. Reply with only the text to insert at the cursor: no \
explanation, no code fences, and do not repeat the text before or after the cursor. If \
nothing should be inserted, reply with nothing.";

/// The caller's `stop` as sent to the chat model, without any sequence holding a code
/// fence: FIM clients (Continue's autocomplete) stop at `` ``` `` because a raw completion
/// model past the code starts prose there, but a chat model may open its answer with a
/// fence (which the cleaner removes), and stopping there would leave nothing to insert.
/// `None` when nothing is left.
pub fn chat_stop(stop: &Value) -> Option<Value> {
    let keep = |s: &&Value| s.as_str().is_some_and(|s| !s.contains("```"));
    match stop {
        Value::String(_) => Some(stop).filter(keep).cloned(),
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter(keep).cloned().collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => Some(stop.clone()),
    }
}

/// The chat messages asking for the text between `prefix` and `suffix`.
pub fn prompt(params: &CompleteParams) -> Vec<Map<String, Value>> {
    let mut user = String::new();
    if let Some(path) = params.path.as_deref().filter(|p| !p.is_empty()) {
        user.push_str(&format!("File: {path}\n"));
    }
    if let Some(lang) = params.language.as_deref().filter(|l| !l.is_empty()) {
        user.push_str(&format!("Language: {lang}\n"));
    }
    user.push_str("```\n");
    user.push_str(&params.prefix);
    user.push_str("<CURSOR>");
    user.push_str(params.suffix.as_deref().unwrap_or_default());
    user.push_str("\n```\nThe text to insert at <CURSOR>:");
    vec![message("system", SYSTEM), message("user", user)]
}

/// Cleans a streamed answer into the insertion, emitting what is certain as it goes.
pub struct InsertionCleaner {
    /// The prefix's last line, trimmed: a model that repeats it has it stripped.
    prefix_line: String,
    /// The cursor sits after white space: an insertion's own leading blanks would double it.
    after_space: bool,
    /// The suffix's first non-blank line, trimmed: a model that ends with it has it stripped.
    suffix_line: String,
    raw: String,
    emitted: usize,
}

impl InsertionCleaner {
    pub fn new(prefix: &str, suffix: &str) -> Self {
        InsertionCleaner {
            prefix_line: prefix.rsplit('\n').next().unwrap_or("").trim().to_string(),
            after_space: prefix.ends_with([' ', '\t']),
            suffix_line: suffix
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string(),
            raw: String::new(),
            emitted: 0,
        }
    }

    /// True until the first piece arrives.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Adds a piece of the model's answer; returns newly certain text, if any.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.raw.push_str(piece);
        let stable = self.clean(false);
        self.emit(&stable)
    }

    /// The whole insertion, and the part of it not yet emitted.
    pub fn finish(mut self) -> (String, Option<String>) {
        let text = self.clean(true);
        let rest = self.emit(&text);
        (text, rest)
    }

    fn emit(&mut self, stable: &str) -> Option<String> {
        // `stable` only ever grows past what was emitted; the check keeps that an invariant
        // rather than an assumption.
        if stable.len() > self.emitted && stable.is_char_boundary(self.emitted) {
            let new = stable[self.emitted..].to_string();
            self.emitted = stable.len();
            Some(new)
        } else {
            None
        }
    }

    /// The insertion as far as it is decided (`last` = the answer is complete).
    fn clean(&self, last: bool) -> String {
        let mut body = self.raw.as_str();
        // An opening fence line, e.g. "```python\n".
        let leading = body.trim_start();
        if leading.starts_with("```") {
            match leading.find('\n') {
                Some(nl) => body = &leading[nl + 1..],
                None if last => body = "",
                None => return String::new(),
            }
        } else if !last && "```".starts_with(leading) {
            // Only blanks so far, or the start of a fence: nothing is decided yet.
            return String::new();
        }
        // A repeat of the prefix's last line.
        if !self.prefix_line.is_empty() {
            let trimmed = body.trim_start();
            if trimmed.starts_with(&self.prefix_line) {
                body = &trimmed[self.prefix_line.len()..];
                if self.after_space {
                    body = body.trim_start_matches([' ', '\t']);
                }
            } else if !last && self.prefix_line.starts_with(trimmed) {
                return String::new();
            }
        }
        // The last line (and the newline before it) may still become a closing fence or
        // the suffix's first line: decided only at the end. Blank lines after it belong to
        // it, so a fence followed by a line break is still seen as the last line.
        let tail_start = body.trim_end().rfind('\n').map_or(0, |i| i + 1);
        let (head, tail) = body.split_at(tail_start);
        let head = head.strip_suffix('\n').unwrap_or(head);
        let trimmed_tail = tail.trim();
        if !last {
            let undecided = trimmed_tail.starts_with("```")
                || "```".starts_with(trimmed_tail)
                || (!self.suffix_line.is_empty()
                    && (trimmed_tail.ends_with(&self.suffix_line)
                        || suffix_may_follow(trimmed_tail, &self.suffix_line)));
            // Trailing blanks wait too: a closing fence may follow them.
            return if undecided { head } else { body.trim_end() }.to_string();
        }
        if trimmed_tail.is_empty() || trimmed_tail.starts_with("```") {
            return head.to_string();
        }
        if !self.suffix_line.is_empty() {
            if let Some(kept) = tail.trim_end().strip_suffix(self.suffix_line.as_str()) {
                if kept.trim().is_empty() {
                    return head.to_string();
                }
                return format!("{}{kept}", &body[..tail_start]);
            }
        }
        body.to_string()
    }
}

/// True when the line may still end with the suffix's first line as more text arrives.
fn suffix_may_follow(tail: &str, suffix_line: &str) -> bool {
    (1..suffix_line.len())
        .filter(|&n| suffix_line.is_char_boundary(n))
        .any(|n| tail.ends_with(&suffix_line[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(prefix: &str, suffix: &str, pieces: &[&str]) -> (String, String) {
        let mut c = InsertionCleaner::new(prefix, suffix);
        let mut streamed = String::new();
        for p in pieces {
            if let Some(t) = c.push(p) {
                streamed.push_str(&t);
            }
        }
        let (text, rest) = c.finish();
        streamed.push_str(&rest.unwrap_or_default());
        (text, streamed)
    }

    #[test]
    fn strips_fences() {
        let (text, streamed) = run(
            "def f(",
            "",
            &["```py", "thon\nx):\n", "    return 1\n", "```"],
        );
        assert_eq!(text, "x):\n    return 1");
        assert_eq!(streamed, text);
    }

    #[test]
    fn strips_a_repeated_prefix_line_and_suffix_line() {
        let (text, _) = run(
            "fn main() {\n    let x = ",
            "\n}",
            &["    let x = ", "42;", "\n}"],
        );
        assert_eq!(text, "42;");
    }

    #[test]
    fn strips_a_closing_fence_with_a_line_break_after_it() {
        let (text, streamed) = run("", "", &["```\nx = 1\n", "```", "\n"]);
        assert_eq!(text, "x = 1");
        assert_eq!(streamed, text);
    }

    #[test]
    fn plain_text_streams_at_once() {
        let mut c = InsertionCleaner::new("a = ", "");
        assert_eq!(c.push("foo(1, 2)").as_deref(), Some("foo(1, 2)"));
        assert_eq!(c.push(" + 3").as_deref(), Some(" + 3"));
    }

    proptest! {
        #[test]
        fn pieces_always_join_to_the_final_text(
            raw in "(```[a-z]{0,3}\n)?[a-z =(){}\n`]{0,40}(\n```\n?)?",
            cuts in proptest::collection::vec(0usize..50, 0..6),
            prefix in "[a-z =\n]{0,12}",
            suffix in "[a-z )}\n]{0,12}",
        ) {
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(raw.len())).collect();
            points.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for p in points { pieces.push(&raw[last..p]); last = p; }
            pieces.push(&raw[last..]);
            let (text, streamed) = run(&prefix, &suffix, &pieces);
            prop_assert_eq!(&streamed, &text);
            let (whole, _) = run(&prefix, &suffix, &[raw.as_str()]);
            prop_assert_eq!(text, whole);
        }
    }

    #[test]
    fn stop_sequences_with_a_fence_are_not_sent_to_a_chat_model() {
        let continues = serde_json::json!(["<fim_prefix>", "\n\n", "```", "```python"]);
        assert_eq!(
            chat_stop(&continues),
            Some(serde_json::json!(["<fim_prefix>", "\n\n"]))
        );
        assert_eq!(chat_stop(&serde_json::json!("```")), None);
        assert_eq!(chat_stop(&serde_json::json!(["```"])), None);
        assert_eq!(
            chat_stop(&serde_json::json!("\n")),
            Some(serde_json::json!("\n"))
        );
    }
}
