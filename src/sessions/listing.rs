//! The list of sessions (`cfgate/sessions`, and `cfgate/status` which every plugin asks
//! for) without reading every turn of every session each time.
//!
//! A summary is kept with the length and modification time of the file it was made from;
//! a file that changed since (a turn appended by this daemon or another, a file cut or
//! replaced) is read again, so what another daemon wrote is never missed. Only the files
//! found by the latest listing are kept: the cache is as large as the folder, no larger.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{io_error, read_turns, summarize, validate_name};
use crate::error::Error;
use crate::protocol::SessionSummary;
use crate::sync::lock;

/// What a summary was made from: the file's length and modification time.
type Stamp = (u64, Option<SystemTime>);

#[derive(Default)]
pub(super) struct Summaries {
    by_name: Mutex<HashMap<String, (Stamp, SessionSummary)>>,
}

impl Summaries {
    /// Every session in `dir`, most recently updated first. Blocking: file I/O.
    pub(super) fn list(&self, dir: &Path) -> Result<Vec<SessionSummary>, Error> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_error("list sessions", &e)),
        };
        let mut known = std::mem::take(&mut *lock(&self.by_name));
        let mut found = HashMap::new();
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
            else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().ok());
            let summary = match known.remove(name) {
                Some((was, summary)) if was == stamp && stamp.1.is_some() => summary,
                _ => summarize(name, &read_turns(&path)?),
            };
            out.push(summary.clone());
            found.insert(name.to_string(), (stamp, summary));
        }
        *lock(&self.by_name) = found;
        out.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.name.cmp(&b.name)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SessionStore, Turn};
    use serde_json::Map;

    fn turn(time: u64) -> Turn {
        Turn {
            time,
            messages: vec![crate::protocol::message("user", String::from("hi"))],
            answer: Map::new(),
            model: None,
            usage: None,
        }
    }

    #[tokio::test]
    async fn a_listing_sees_every_change_to_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::at(dir.path().to_path_buf());
        store.append("a", turn(1)).await.unwrap();
        assert_eq!(store.list().await.unwrap()[0].turns, 1);
        // Another daemon (another store on the same folder) appends and adds a session.
        let other = SessionStore::at(dir.path().to_path_buf());
        other.append("a", turn(2)).await.unwrap();
        other.append("b", turn(3)).await.unwrap();
        let listed = store.list().await.unwrap();
        let names: Vec<(&str, usize)> = listed.iter().map(|s| (&*s.name, s.turns)).collect();
        assert_eq!(names, [("b", 1), ("a", 2)]);
        other.delete("a").await.unwrap();
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "b");
    }
}
