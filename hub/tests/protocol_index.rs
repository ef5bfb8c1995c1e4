//! The message index at the end of `docs/protocol.md` and the code of `hub/src/protocol/` list
//! the same messages: every row has exactly one builder (`outbound::…`, for hub → terminal) or
//! one arm of `protocol::parse` (terminal → hub), named in the row; every type the code builds
//! or parses has a row; and no outbound `type` is written anywhere else in the hub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

fn hub_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The rows of `## Message index`: type -> (direction, function named in the row).
fn index_rows(doc: &str) -> BTreeMap<String, (Dir, String)> {
    let section = doc
        .split("\n## Message index")
        .nth(1)
        .expect("docs/protocol.md has a `## Message index` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", "`TYPE`", "✓"|"", "✓"|"", "`fn`", ""]
        assert!(cells.len() >= 6, "malformed index row: {line}");
        let ty = cells[1].trim_matches('`').to_string();
        let dir = match (cells[2], cells[3]) {
            ("✓", "") => Dir::In,
            ("", "✓") => Dir::Out,
            _ => panic!("row {ty}: exactly one direction must be ticked: {line}"),
        };
        let f = cells[4].trim_matches('`').to_string();
        let before = rows.insert(ty.clone(), (dir, f));
        assert!(before.is_none(), "{ty} has two rows in the message index");
    }
    rows
}

/// Outbound types named in `protocol/outbound/`, each with the builder it is written in.
fn builders(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    rs_files(&root.join("src/protocol/outbound"), &mut files);
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let text = read(&f);
        for marker in ["\"type\": \"", "\"type\":\"", "ty: \""] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                let ty: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if ty.is_empty() {
                    continue;
                }
                let builder = text[..at]
                    .rsplit("pub fn ")
                    .next()
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                found
                    .entry(ty)
                    .or_default()
                    .push(format!("outbound::{builder}"));
            }
        }
    }
    found
}

/// Inbound types with an arm in `protocol::parse`, each with the function the arm calls.
fn parse_arms(root: &Path) -> BTreeMap<String, Vec<String>> {
    let text = read(&root.join("src/protocol/mod.rs"));
    let body = text
        .split("pub fn parse(")
        .nth(1)
        .expect("protocol/mod.rs has parse()");
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let lines: Vec<&str> = body.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix('"') else {
            continue;
        };
        let Some((ty, after)) = rest.split_once("\" =>") else {
            continue;
        };
        // The called function: `module::name(` on this line, or on the next for a block arm.
        let call = if after.trim() == "{" {
            lines.get(i + 1).copied().unwrap_or("")
        } else {
            after
        };
        let f = ["inbound::", "kitchen::"]
            .iter()
            .find_map(|m| {
                call.find(m).map(|at| {
                    let tail = &call[at..];
                    tail.split('(').next().unwrap_or(tail).to_string()
                })
            })
            .unwrap_or_else(|| "parse".to_string());
        found.entry(ty.to_string()).or_default().push(f);
    }
    found
}

/// Checks the index against the code; returns every disagreement.
fn disagreements(doc: &str, root: &Path) -> Vec<String> {
    let rows = index_rows(doc);
    let built = builders(root);
    let parsed = parse_arms(root);
    let mut bad = Vec::new();
    for (ty, (dir, f)) in &rows {
        let (code, other) = match dir {
            Dir::Out => (built.get(ty), parsed.get(ty)),
            Dir::In => (parsed.get(ty), built.get(ty)),
        };
        match code.map(Vec::as_slice) {
            None | Some([]) => bad.push(format!("{ty}: in the index, but no {dir:?} code for it")),
            Some([one]) if one == f => {}
            Some([one]) => bad.push(format!(
                "{ty}: the index names `{f}`, the code uses `{one}`"
            )),
            Some(many) => bad.push(format!("{ty}: {} places in the code: {many:?}", many.len())),
        }
        if other.is_some() {
            bad.push(format!("{ty}: also handled in the other direction"));
        }
    }
    for ty in built.keys().chain(parsed.keys()) {
        if !rows.contains_key(ty) {
            bad.push(format!(
                "{ty}: built or parsed by the hub, but not in the message index"
            ));
        }
    }
    bad
}

#[test]
fn message_index_matches_the_protocol_module() {
    let root = hub_dir();
    let doc = read(&root.join("../docs/protocol.md"));
    let bad = disagreements(&doc, &root);
    assert!(
        bad.is_empty(),
        "docs/protocol.md message index:\n{}",
        bad.join("\n")
    );
    let rows = index_rows(&doc);
    assert!(
        rows.values().filter(|(d, _)| *d == Dir::In).count() >= 18,
        "{rows:?}"
    );
    assert!(
        rows.values().filter(|(d, _)| *d == Dir::Out).count() >= 32,
        "{rows:?}"
    );
}

#[test]
fn a_missing_or_wrong_row_is_reported() {
    let root = hub_dir();
    let doc = read(&root.join("../docs/protocol.md"));
    let without = doc.replace(
        "| `LEASE_GRANTED` |  | ✓ | `outbound::lease_granted` |\n",
        "",
    );
    assert_ne!(without, doc, "the LEASE_GRANTED row is in the index");
    assert_eq!(
        disagreements(&without, &root),
        ["LEASE_GRANTED: built or parsed by the hub, but not in the message index"]
    );
    let renamed = doc.replace("`kitchen::subscribe`", "`kitchen::subscribed`");
    assert_eq!(
        disagreements(&renamed, &root),
        ["SUBSCRIBE: the index names `kitchen::subscribed`, the code uses `kitchen::subscribe`"]
    );
}

#[test]
fn no_outbound_type_is_written_outside_protocol() {
    let root = hub_dir();
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    let protocol = root.join("src/protocol");
    let bench = root.join("src/bin");
    let mut bad = Vec::new();
    for f in files
        .iter()
        .filter(|f| !f.starts_with(&protocol) && !f.starts_with(&bench))
    {
        for (n, line) in read(f).lines().enumerate() {
            if line.contains("\"type\": \"") {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "build these in protocol::outbound:\n{}",
        bad.join("\n")
    );
}
