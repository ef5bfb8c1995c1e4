//! `poshub.env`, read the same way by the hub (`poshub --config`) and the supervisor.
//!
//! Each had its own reader, and they had drifted: only the hub took an `export ` prefix and
//! refused a malformed name, and a key set twice kept its first value in one and its last in
//! the other. A field tech writes one file for both, so both now read it here.
//!
//! The format is systemd's `EnvironmentFile=` as people write it by hand: `KEY=VALUE` lines;
//! blank lines and lines starting with `#` or `;` are skipped; an optional `export ` prefix;
//! spaces around the key and the value are trimmed; one pair of matching single or double
//! quotes around the whole value is removed (no escapes, no expansion). A key set twice keeps
//! its last value, as systemd does.

use std::path::{Path, PathBuf};

/// Why an env-file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line is not `KEY=VALUE`, or its key is not a variable name.
    #[error("{}:{line}: {what}", path.display())]
    Syntax {
        path: PathBuf,
        /// 1-based, as an editor shows it.
        line: usize,
        what: String,
    },
}

/// One `KEY=VALUE` of the file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// Reads and parses the env-file at `path`: every assignment in file order (a key set twice
/// appears twice; [`last_values`] keeps the last).
///
/// # Errors
/// [`Error::Read`] when the file cannot be read, [`Error::Syntax`] for the first bad line.
pub fn read(path: &Path) -> Result<Vec<Entry>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(line, what)| Error::Syntax {
        path: path.to_path_buf(),
        line,
        what,
    })
}

/// Parses env-file text.
///
/// # Errors
/// The first bad line: its 1-based number and what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, "expected KEY=VALUE".to_string()));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err((n + 1, format!("bad variable name {key:?}")));
        }
        out.push(Entry {
            key: key.to_string(),
            value: unquote(value.trim()).to_string(),
        });
    }
    Ok(out)
}

/// The entries with each key once, at its last value, in the order keys first appear.
#[must_use]
pub fn last_values(entries: Vec<Entry>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.iter_mut().find(|o| o.key == e.key) {
            Some(o) => o.value = e.value,
            None => out.push(e),
        }
    }
    out
}

/// A shell variable name: letters, digits and `_`, not starting with a digit.
fn is_name(key: &str) -> bool {
    key.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Removes one pair of matching quotes around the whole value.
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .expect("parses")
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    #[test]
    fn comments_blanks_export_spaces_and_quotes() {
        let text = "# store 12\n\n; old style\nexport HUB_STORE=s12\n  HUB_TENANT = acme  \n\
                    BACKUP_KEY=\"k=v w\"\nNAME='it''s'\nEMPTY=\nHALF=\"open\n";
        assert_eq!(
            pairs(text),
            [
                ("HUB_STORE", "s12"),
                ("HUB_TENANT", "acme"),
                ("BACKUP_KEY", "k=v w"),
                ("NAME", "it''s"),
                ("EMPTY", ""),
                ("HALF", "\"open"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn bad_lines_name_their_line_and_fault() {
        assert_eq!(
            parse("A=1\njust words\n"),
            Err((2, "expected KEY=VALUE".to_string()))
        );
        assert_eq!(
            parse("A=1\n\nB-C=2\n"),
            Err((3, "bad variable name \"B-C\"".to_string()))
        );
        assert_eq!(
            parse("=2\n"),
            Err((1, "bad variable name \"\"".to_string()))
        );
        assert_eq!(
            parse("1A=2\n"),
            Err((1, "bad variable name \"1A\"".to_string()))
        );
    }

    #[test]
    fn a_key_set_twice_keeps_its_last_value_in_first_place() {
        let entries = parse("A=1\nB=2\nA=3\n").expect("parses");
        assert_eq!(entries.len(), 3);
        let last: Vec<(String, String)> = last_values(entries)
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect();
        assert_eq!(
            last,
            [("A", "3"), ("B", "2")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read(&dir.path().join("poshub.env")).expect_err("missing");
        assert!(err.to_string().contains("poshub.env"), "{err}");
    }
}
