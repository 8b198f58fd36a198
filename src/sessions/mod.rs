//! Conversations kept by the daemon: one JSON Lines file per session, one line per turn.
//!
//! Why one line per *turn* (the user's messages and the answer together): a turn is then
//! written with a single `write` of a whole line followed by `fsync`, so a crash can only
//! leave a torn *last* line, which loading ignores and the next append cuts off. Earlier
//! turns are never rewritten, so they cannot be corrupted.
//!
//! Why an exclusive `flock` on the file rather than an in-process mutex: writers may be
//! two requests of one daemon or two daemons (a private `cfgate serve` beside the shared
//! one). `flock` on separately opened descriptors excludes both, so every append (and the
//! torn-tail repair before it) runs alone; all file work runs on the blocking pool, so no
//! lock is ever held across an `.await`.
//!
//! Why the lock is not held across the model call: a slow answer would stall every other
//! tool on that session. Concurrent turns of one session are each answered from the
//! history as it stood when they started, and each is stored whole, in the order they
//! finish: N turns in, N turns stored, none interleaved.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod listing;

use listing::Summaries;

use crate::error::{Error, ErrorKind};
use crate::protocol::Usage;
pub use crate::protocol::{
    SessionDeleteResult, SessionParams, SessionResult, SessionSummary, SessionsResult,
};

/// Overrides where sessions are kept (tests, portable setups).
pub const ENV_DATA_DIR: &str = "CFGATE_DATA_DIR";
/// Longest session name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// History kept in front of a new turn, in estimated tokens, unless set otherwise.
pub const DEFAULT_BUDGET_TOKENS: u64 = 8192;

/// One stored turn: what the user sent and what the model answered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Turn {
    /// Unix seconds when the turn was stored.
    pub time: u64,
    pub messages: Vec<Map<String, Value>>,
    pub answer: Map<String, Value>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl SessionResult {
    pub fn new(name: &str, turns: Vec<Turn>) -> SessionResult {
        let summary = summarize(name, &turns);
        let mut messages = Vec::new();
        for turn in turns {
            messages.extend(turn.messages);
            messages.push(turn.answer);
        }
        SessionResult { summary, messages }
    }
}

pub struct SessionStore {
    dir: Option<PathBuf>,
    /// The summary of each session file as last read, for `cfgate/sessions` and status.
    summaries: Arc<Summaries>,
}

impl SessionStore {
    /// `$CFGATE_DATA_DIR/sessions`, else `sessions` in the platform data dir.
    pub fn from_env() -> SessionStore {
        let root = std::env::var_os(ENV_DATA_DIR)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| crate::config::project_dirs().map(|d| d.data_dir().to_path_buf()));
        SessionStore {
            dir: root.map(|r| r.join("sessions")),
            summaries: Arc::default(),
        }
    }

    pub fn at(dir: PathBuf) -> SessionStore {
        SessionStore {
            dir: Some(dir),
            summaries: Arc::default(),
        }
    }

    fn dir(&self) -> Result<&Path, Error> {
        self.dir.as_deref().ok_or_else(|| {
            Error::internal(format!(
                "no data directory for sessions (set {ENV_DATA_DIR} or HOME)"
            ))
        })
    }

    fn path(&self, name: &str) -> Result<PathBuf, Error> {
        validate_name(name)?;
        Ok(self.dir()?.join(format!("{name}.jsonl")))
    }

    /// Every stored turn of a session; none for a session never written.
    pub async fn load(&self, name: &str) -> Result<Vec<Turn>, Error> {
        let path = self.path(name)?;
        blocking(move || read_turns(&path)).await
    }

    /// Appends one whole turn and makes it durable before returning.
    pub async fn append(&self, name: &str, turn: Turn) -> Result<(), Error> {
        let path = self.path(name)?;
        let dir = self.dir()?.to_path_buf();
        let mut line = serde_json::to_vec(&turn)
            .map_err(|e| Error::internal(format!("cannot encode the turn: {e}")))?;
        line.push(b'\n');
        blocking(move || append_line(&dir, &path, &line)).await
    }

    /// Removes a session; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, Error> {
        let path = self.path(name)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("delete the session", &e)),
        })
        .await
    }

    /// Every session, most recently updated first. A session file unchanged since the
    /// last listing is not read again (see `listing.rs`).
    pub async fn list(&self) -> Result<Vec<SessionSummary>, Error> {
        let dir = self.dir()?.to_path_buf();
        let summaries = self.summaries.clone();
        blocking(move || summaries.list(&dir)).await
    }
}

pub fn summarize(name: &str, turns: &[Turn]) -> SessionSummary {
    let mut usage = Usage::default();
    for u in turns.iter().filter_map(|t| t.usage) {
        usage.prompt_tokens += u.prompt_tokens;
        usage.completion_tokens += u.completion_tokens;
        usage.total_tokens += u.total_tokens;
    }
    SessionSummary {
        name: name.to_string(),
        turns: turns.len(),
        updated: turns.last().map(|t| t.time).unwrap_or(0),
        usage,
    }
}

/// A name is a file name on every platform: letters, digits, `.`, `_`, `-`; not starting
/// with `.`; at most [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidParams,
            format!(
                "invalid params: session name must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', not starting with '.'"
            ),
        ))
    }
}

/// The messages sent for a new turn: the system messages (the request's, else the latest
/// stored ones), then as much history as fits the budget (whole turns, newest kept), then
/// the request's other messages.
pub fn with_history(
    turns: &[Turn],
    request: Vec<Map<String, Value>>,
    budget_tokens: u64,
) -> Vec<Map<String, Value>> {
    let is_system =
        |m: &Map<String, Value>| m.get("role").and_then(Value::as_str) == Some("system");
    let (mut system, new): (Vec<_>, Vec<_>) = request.into_iter().partition(|m| is_system(m));
    if system.is_empty() {
        if let Some(t) = turns
            .iter()
            .rev()
            .find(|t| t.messages.iter().any(is_system))
        {
            system = t
                .messages
                .iter()
                .filter(|m| is_system(m))
                .cloned()
                .collect();
        }
    }
    let mut used: u64 = system.iter().chain(&new).map(estimate_tokens).sum();
    let mut kept: Vec<Vec<Map<String, Value>>> = Vec::new();
    for turn in turns.iter().rev() {
        let mut messages: Vec<_> = turn
            .messages
            .iter()
            .filter(|m| !is_system(m))
            .cloned()
            .collect();
        messages.push(turn.answer.clone());
        let cost: u64 = messages.iter().map(estimate_tokens).sum();
        if used + cost > budget_tokens {
            break;
        }
        used += cost;
        kept.push(messages);
    }
    let mut out = system;
    for messages in kept.into_iter().rev() {
        out.extend(messages);
    }
    out.extend(new);
    out
}

/// About four bytes of JSON per token: an estimate good enough for a budget, and the same
/// for every model.
fn estimate_tokens(message: &Map<String, Value>) -> u64 {
    let bytes = serde_json::to_string(message).map(|s| s.len()).unwrap_or(0);
    (bytes as u64).div_ceil(4)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::internal(format!("session storage task failed: {e}"))))
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::internal(format!("cannot {what}: {e}"))
}

/// Whole lines only: a last line without its newline is a write a crash cut short.
fn read_turns(path: &Path) -> Result<Vec<Turn>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_error("read the session", &e)),
    };
    let whole = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..=end],
        None => &[][..],
    };
    let mut turns = Vec::new();
    for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Turn>(line) {
            Ok(turn) => turns.push(turn),
            Err(e) => tracing::warn!("{}: unreadable turn skipped: {e}", path.display()),
        }
    }
    Ok(turns)
}

fn append_line(dir: &Path, path: &Path, line: &[u8]) -> Result<(), Error> {
    create_private_dir(dir).map_err(|e| io_error("create the sessions folder", &e))?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_error("open the session", &e))?;
    FileExt::lock_exclusive(&file).map_err(|e| io_error("lock the session", &e))?;
    let result = (|| {
        cut_torn_tail(&mut file)?;
        file.write_all(line)?;
        file.sync_data()
    })();
    let _ = FileExt::unlock(&file);
    result.map_err(|e| io_error("write the session", &e))
}

/// Drops a partial last line left by a crash, so the next line starts on its own.
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(
        "session file had a torn last line ({} bytes); cut",
        len - keep as u64
    );
    file.set_len(keep as u64)?;
    Ok(())
}

pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Map<String, Value> {
        crate::protocol::message(role, content)
    }

    fn turn(user: &str, answer: &str) -> Turn {
        Turn {
            time: 1,
            messages: vec![msg("user", user)],
            answer: msg("assistant", answer),
            model: None,
            usage: None,
        }
    }

    #[test]
    fn names_are_checked() {
        for ok in ["a", "my-chat_1.2", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a\\b",
            "a b",
            "é",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_is_trimmed_oldest_first_keeping_the_system_message() {
        let mut first = turn("one", "1");
        first.messages.insert(0, msg("system", "Be brief."));
        let turns = vec![first, turn("two", "2"), turn("three", "3")];
        let all = with_history(&turns, vec![msg("user", "four")], 10_000);
        let contents: Vec<_> = all.iter().map(|m| m["content"].as_str().unwrap()).collect();
        assert_eq!(
            contents,
            ["Be brief.", "one", "1", "two", "2", "three", "3", "four"]
        );
        // Room for the new message, the system message and one turn (each message ~10 tokens).
        let tight = with_history(&turns, vec![msg("user", "four")], 50);
        let contents: Vec<_> = tight
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, ["Be brief.", "three", "3", "four"]);
        // A system message in the request replaces the stored one.
        let replaced = with_history(
            &turns,
            vec![msg("system", "New."), msg("user", "x")],
            10_000,
        );
        assert_eq!(replaced[0]["content"], "New.");
        assert_eq!(replaced.iter().filter(|m| m["role"] == "system").count(), 1);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::at(dir.path().join("sessions"));
        store.append("s", turn("one", "1")).await.unwrap();
        let path = dir.path().join("sessions/s.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"time":2,"messages":[{"role":"us"#)
            .unwrap();
        drop(f);
        assert_eq!(store.load("s").await.unwrap(), vec![turn("one", "1")]);
        store.append("s", turn("two", "2")).await.unwrap();
        assert_eq!(
            store.load("s").await.unwrap(),
            vec![turn("one", "1"), turn("two", "2")]
        );
        let list = store.list().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].turns, 2);
        assert!(store.delete("s").await.unwrap());
        assert!(!store.delete("s").await.unwrap());
        assert!(store.load("s").await.unwrap().is_empty());
    }
}
