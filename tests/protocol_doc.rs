//! docs/protocol.md is the contract plugins code against: it must name every method the
//! daemon announces and every error it sends, and nothing that does not exist.

use std::collections::BTreeSet;

use cfgate::error::ErrorKind;
use cfgate::protocol::{DID_CHANGE_STATUS, METHODS};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).unwrap()
}

/// `cfgate/...` methods that have a section of their own (`## `name` — ...`).
fn documented_methods(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.split('`').nth(1))
        .filter(|name| name.starts_with("cfgate/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_method_has_its_section_and_every_section_a_method() {
    let documented = documented_methods(&doc());
    let mut real: BTreeSet<String> = METHODS.iter().map(|m| m.to_string()).collect();
    real.insert(DID_CHANGE_STATUS.to_string());
    assert_eq!(
        documented, real,
        "docs/protocol.md's method sections differ from protocol::METHODS (+ didChangeStatus)"
    );
}

#[cfg(unix)]
#[test]
fn the_endpoints_own_methods_are_documented() {
    let doc = doc();
    for method in [
        cfgate::endpoint::SUBSCRIBE_CHAT,
        cfgate::endpoint::UNSUBSCRIBE_CHAT,
        cfgate::endpoint::CHAT_NOTIFICATION,
    ] {
        assert!(doc.contains(method), "{method} is not in protocol.md");
    }
}

/// `| code | `kind` | ...` rows of the error table.
fn documented_errors(doc: &str) -> BTreeSet<(i64, String)> {
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code: i64 = cells.get(1)?.parse().ok()?;
            let kind = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((code, kind.to_string()))
        })
        .collect()
}

#[test]
fn the_error_table_lists_every_kind_and_nothing_else() {
    let documented = documented_errors(&doc());
    let real: BTreeSet<(i64, String)> = ErrorKind::ALL
        .iter()
        .map(|k| (k.code(), k.name()))
        .collect();
    assert_eq!(
        documented, real,
        "docs/protocol.md's error table differs from error.rs"
    );
}

#[test]
fn every_kind_has_a_status_after_it_documented() {
    let doc = doc();
    let section = doc
        .split("## `cfgate/didChangeStatus`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the didChangeStatus section");
    for kind in ErrorKind::ALL {
        let state = serde_json::to_value(cfgate::clients::state_after(*kind)).unwrap();
        let state = state.as_str().unwrap();
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{state}` |")))
            .unwrap_or_else(|| panic!("no row for state {state}"));
        assert!(
            row.contains(&format!("`{}`", kind.name())),
            "{} leaves the state {state}, but protocol.md's row says: {row}",
            kind.name()
        );
    }
}
