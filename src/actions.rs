//! The AI code actions an LSP editor offers on a selection: what each asks the model, and
//! how its answer becomes text for the document.
//!
//! They are plain LSP commands so that an editor with no cfgate plugin can run them: the
//! code action names a command, `workspace/executeCommand` runs it, and the result comes
//! back as an edit the client applies or a message it shows.

use serde_json::{Map, Value};

use crate::complete::InsertionCleaner;
use crate::protocol::message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Explain,
    Fix,
    AddDocs,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Explain, Action::Fix, Action::AddDocs];

    /// The `workspace/executeCommand` name.
    pub fn command(self) -> &'static str {
        match self {
            Action::Explain => "cfgate.explain",
            Action::Fix => "cfgate.fix",
            Action::AddDocs => "cfgate.addDocs",
        }
    }

    pub fn from_command(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.command() == name)
    }

    pub fn title(self) -> &'static str {
        match self {
            Action::Explain => "cfgate: explain",
            Action::Fix => "cfgate: fix",
            Action::AddDocs => "cfgate: add docs",
        }
    }

    /// The LSP code action kind; `None` for explain, which changes nothing.
    pub fn kind(self) -> Option<&'static str> {
        match self {
            Action::Explain => None,
            Action::Fix => Some("quickfix"),
            Action::AddDocs => Some("refactor.rewrite"),
        }
    }

    /// True when the action's result is an edit of the selection.
    pub fn edits(self) -> bool {
        !matches!(self, Action::Explain)
    }

    /// Offered when the client asked for these kinds only (`CodeActionContext.only`):
    /// LSP kinds are hierarchical, so `refactor` covers `refactor.rewrite`.
    pub fn wanted_by(self, only: Option<&[String]>) -> bool {
        let Some(only) = only else { return true };
        let Some(kind) = self.kind() else {
            return false;
        };
        only.iter()
            .any(|o| kind == o || kind.starts_with(&format!("{o}.")))
    }

    /// The chat messages for the selected `code`.
    pub fn prompt(self, language: &str, code: &str) -> Vec<Map<String, Value>> {
        let system = match self {
            Action::Explain => {
                "You explain code to a programmer. Be brief and concrete: what the code does, \
                 then anything surprising or wrong in it. Plain text, no code fences."
            }
            Action::Fix => {
                "You fix bugs in code. Reply with only the corrected code that replaces the \
                 code you were given: same language, same indentation, no explanation, no \
                 code fences. If nothing is wrong, reply with the code unchanged."
            }
            Action::AddDocs => {
                "You add documentation comments to code. Reply with only the code you were \
                 given, unchanged, with idiomatic doc comments added for the language: same \
                 indentation, no explanation, no code fences."
            }
        };
        let lang = if language.is_empty() {
            "text"
        } else {
            language
        };
        vec![
            message("system", system),
            message("user", format!("Language: {lang}\n```\n{code}\n```")),
        ]
    }

    /// The text that replaces `selected`, from the model's `answer`: fences dropped, and
    /// the selection's own trailing line break kept, so the line after it stays put.
    pub fn replacement(self, selected: &str, answer: &str) -> String {
        let mut cleaner = InsertionCleaner::new("", "");
        cleaner.push(answer);
        let (mut text, _) = cleaner.finish();
        let ending = if selected.ends_with("\r\n") {
            "\r\n"
        } else if selected.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        while text.ends_with(['\n', '\r']) {
            text.pop();
        }
        text.push_str(ending);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::from_command(a.command()), Some(a));
        }
        assert_eq!(Action::from_command("cfgate.other"), None);
    }

    #[test]
    fn kinds_filter_hierarchically() {
        let only = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Action::AddDocs.wanted_by(Some(&only(&["refactor"]))));
        assert!(!Action::AddDocs.wanted_by(Some(&only(&["quickfix"]))));
        assert!(Action::Fix.wanted_by(Some(&only(&["quickfix"]))));
        assert!(!Action::Fix.wanted_by(Some(&only(&["quick"]))));
        assert!(!Action::Explain.wanted_by(Some(&only(&["refactor"]))));
        assert!(Action::Explain.wanted_by(None));
    }

    #[test]
    fn replacement_drops_fences_and_keeps_the_line_break() {
        let r = Action::Fix.replacement("x = 1 +\n", "```python\nx = 1 + 2\n```\n");
        assert_eq!(r, "x = 1 + 2\n");
        let r = Action::Fix.replacement("x = 1 +", "x = 1 + 2\n");
        assert_eq!(r, "x = 1 + 2");
    }
}
