//! The module floors of `src/lib.rs` hold: no module names one on a higher floor, and the
//! modules form no cycle. The floor list is read from lib.rs's own docs, so the doc and the
//! check cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `0. `a`, `b`: why` lines of lib.rs's docs → module → floor.
fn floors() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut floors = BTreeMap::new();
    let mut current = None;
    for line in lib.lines().filter_map(|l| l.strip_prefix("//!")) {
        let line = line.trim_start();
        if let Some((n, rest)) = line.split_once(". ") {
            if let Ok(n) = n.parse::<usize>() {
                current = Some(n);
                add_names(rest.split(':').next().unwrap_or(""), n, &mut floors);
                continue;
            }
        }
        // A floor's list may go on over the next doc line, up to the colon.
        if let Some(n) = current {
            if line.starts_with('`') {
                add_names(line.split(':').next().unwrap_or(""), n, &mut floors);
            } else {
                current = None;
            }
        }
    }
    floors
}

fn add_names(list: &str, floor: usize, floors: &mut BTreeMap<String, usize>) {
    for name in list.split('`').skip(1).step_by(2) {
        floors.insert(name.to_string(), floor);
    }
}

/// The library's top-level modules, as lib.rs declares them.
fn declared_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

/// The files of a top-level module: `src/m.rs`, or everything under `src/m/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// Top-level modules a source text names through `crate::` (tests left out).
fn named_modules(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}}`: the first segment of each top-level item.
            let mut depth = 1;
            let mut item_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if item_start && depth == 1 {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        continue;
                    }
                    if !name.is_empty() {
                        names.insert(std::mem::take(&mut name));
                        item_start = false;
                    }
                }
            }
            if !name.is_empty() {
                names.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn no_module_names_one_on_a_higher_floor_and_there_is_no_cycle() {
    let floors = floors();
    let modules = declared_modules();
    let unplaced: Vec<&String> = modules
        .iter()
        .filter(|m| !floors.contains_key(*m))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from lib.rs's floor list: {unplaced:?}"
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for module in &modules {
        let mut deps = BTreeSet::new();
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for named in named_modules(&text) {
                if &named == module || !modules.contains(&named) {
                    continue;
                }
                if floors[&named] > floors[module] {
                    upward.push(format!(
                        "{} (floor {}) names {named} (floor {})",
                        file.strip_prefix(src()).unwrap().display(),
                        floors[module],
                        floors[&named]
                    ));
                }
                deps.insert(named);
            }
        }
        graph.insert(module.clone(), deps);
    }
    assert!(upward.is_empty(), "arrows up:\n{}", upward.join("\n"));
    // Kahn: every module must come out once its dependencies have.
    let mut left = graph.clone();
    while let Some(free) = left
        .iter()
        .find(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
        .map(|(m, _)| m.clone())
    {
        left.remove(&free);
    }
    assert!(left.is_empty(), "a cycle among: {:?}", left.keys());
}

#[test]
fn the_reader_finds_grouped_and_nested_uses() {
    let text = "use crate::{a::B, b::{C, D}, c};\nfn f() { crate::d::e(); }\n#[cfg(test)]\nmod tests { use crate::z; }";
    let names: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
}
