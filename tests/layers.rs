//! The crate's layers and the directions they may import in, as
//! `docs/architecture.md` draws them. A module that imports against them
//! (a `crate::` path to a module it may not use, outside its unit tests)
//! fails this test, so import cycles cannot come back.
//!
//! Names re-exported at the crate root (`crate::Lsn`, `crate::Substrate`)
//! count as the module they come from, read off `src/lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module and the modules it may import (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("lsn", &[]),
    ("error", &["lsn"]),
    ("format", &[]),
    ("compress", &["format", "error", "lsn"]),
    ("gate", &["error", "lsn"]),
    ("storage", &["error", "lsn"]),
    ("substrate", &["storage", "error", "lsn"]),
    ("segment", &["compress", "format", "storage", "error", "lsn"]),
    ("recovery", &["segment", "format", "storage", "error", "lsn"]),
    ("read", &["segment", "compress", "format", "gate", "error", "lsn"]),
    ("stats", &["substrate", "error", "lsn"]),
    ("bulk", &["storage", "substrate", "error", "lsn"]),
    ("backup", &["read", "segment", "storage", "format", "error", "lsn"]),
    (
        "journal",
        &[
            "backup",
            "read",
            "recovery",
            "segment",
            "stats",
            "substrate",
            "storage",
            "gate",
            "compress",
            "format",
            "error",
            "lsn",
        ],
    ),
    ("streams", &["journal", "read", "segment", "storage", "gate", "format", "error", "lsn"]),
    // Test seams wrap the library from outside; nothing imports them.
    (
        "testing",
        &[
            "streams",
            "backup",
            "journal",
            "read",
            "recovery",
            "segment",
            "stats",
            "substrate",
            "storage",
            "gate",
            "compress",
            "format",
            "error",
            "lsn",
        ],
    ),
];

/// The module a root re-export comes from: `pub use journal::{Journal, ..};`.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let flat = lib.replace('\n', " ");
    for stmt in flat.split(';') {
        let stmt = stmt.trim();
        let Some(rest) = stmt.strip_prefix("pub use ").or_else(|| stmt.strip_prefix("pub(crate) use ")) else {
            continue;
        };
        let module = rest.split("::").next().unwrap_or_default().trim().to_string();
        let items = match (rest.find('{'), rest.rfind('}')) {
            (Some(a), Some(b)) => rest[a + 1..b].to_string(),
            _ => rest.rsplit("::").next().unwrap_or_default().to_string(),
        };
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            names.insert(item.to_string(), module.clone());
        }
    }
    names
}

/// The first segments of every `crate::` path in `code`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first segment of each item.
            let (mut depth, mut item, mut first) = (0, String::new(), true);
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if first && !item.is_empty() {
                            out.insert(item.clone());
                        }
                        first = true;
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if first && depth == 0 {
                    if ch.is_alphanumeric() || ch == '_' {
                        item.push(ch);
                    } else if !item.is_empty() {
                        out.insert(item.clone());
                        first = false;
                    }
                }
            }
            if first && !item.is_empty() {
                out.insert(item);
            }
        } else {
            let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() {
                out.insert(ident);
            }
        }
    }
    out
}

/// The code of a source file without comments and without its unit tests
/// (a `#[cfg(test)]` or `#[cfg(all(test, ...))]` module, last in a file).
fn code_of(source: &str) -> String {
    let end = source.find("#[cfg(test)]\nmod tests").or_else(|| source.find("#[cfg(all(test")).unwrap_or(source.len());
    source[..end].lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let reexports = root_reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let Some(allowed) = layers.get(module.as_str()) else {
            panic!("{}: module `{module}` is in no layer: add it to LAYERS (and docs/architecture.md)", rel.display());
        };
        checked += 1;
        for path in crate_paths(&code_of(&std::fs::read_to_string(&file).unwrap())) {
            let target = reexports.get(&path).cloned().unwrap_or(path.clone());
            if target != module && !allowed.contains(&target.as_str()) {
                violations.push(format!("{} imports crate::{path} (module `{target}`)", rel.display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} files checked: the scan is broken");
    assert!(violations.is_empty(), "imports against the layers:\n{}", violations.join("\n"));
}

#[test]
fn the_path_scanner_sees_groups_and_nested_groups() {
    let found =
        crate_paths("use crate::{format::{self, X}, gate::Level, Error, Lsn};\nlet x = crate::storage::os::f();");
    let want: BTreeSet<String> = ["format", "gate", "Error", "Lsn", "storage"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
}
