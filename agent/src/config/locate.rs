//! Where a configuration problem is: key paths (`links[2].local_interface`) and, when the value
//! came from the file, its line (found with toml_edit's spans).

use std::fmt;
use std::path::Path;

use super::Problem;

/// One segment of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a configuration value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    pub(crate) fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    fn from_strings(parts: &[String]) -> KeyPath {
        KeyPath(
            parts
                .iter()
                .map(|p| match p.parse::<usize>() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key(p.clone()),
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The line where the value at `path` is written in `text`, if it is there.
fn find_line(text: &str, path: &KeyPath) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best: Option<usize> = None;
    for seg in &path.0 {
        let next = match seg {
            Seg::Key(k) => {
                if let Some(table) = item.as_table_like()
                    && let Some((key, _)) = table.get_key_value(k)
                    && let Some(span) = key.span()
                {
                    best = Some(span.start);
                }
                item.get(k.as_str())
            }
            Seg::Index(i) => {
                if let Some(tables) = item.as_array_of_tables()
                    && let Some(table) = tables.get(*i)
                    && let Some(span) = table.span()
                {
                    best = Some(span.start);
                }
                item.get(*i)
            }
        };
        match next {
            Some(n) => {
                if let Some(span) = n.span() {
                    best = Some(span.start);
                }
                item = n;
            }
            None => break,
        }
    }
    best.map(|offset| line_of_offset(text, offset))
}

/// `file:line: key` (or less, when the file or the line is unknown).
pub(crate) fn place(file: Option<&Path>, text: Option<&str>, path: &KeyPath) -> String {
    let line = text.and_then(|t| find_line(t, path));
    match (file, line) {
        (Some(f), Some(l)) => format!("{}:{l}: {path}", f.display()),
        (Some(f), None) => format!("{}: {path}", f.display()),
        _ => path.to_string(),
    }
}

/// A figment extraction error as a [`Problem`].
pub(crate) fn problem_of_figment(
    err: figment::Error,
    file: Option<&Path>,
    text: Option<&str>,
) -> Problem {
    let path = KeyPath::from_strings(&err.path);
    let from_env = err.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
    if from_env {
        // The variable as the operator wrote it: `QKDN_` and the key path joined by `__`.
        let variable = format!("QKDN_{}", err.path.join("__").to_uppercase());
        let value = std::env::var(&variable).ok();
        let place = format!("environment variable {variable} ({path})");
        let message = match value {
            Some(value) => format!("{value:?}: {}", kind_message(&err.kind)),
            None => kind_message(&err.kind),
        };
        return Problem { place, message };
    }
    let place = if path.0.is_empty() {
        file.map(|f| f.display().to_string()).unwrap_or_else(|| "configuration".to_owned())
    } else {
        place(file, text, &path)
    };
    Problem { place, message: kind_message(&err.kind) }
}

/// figment's message, reworded where it reads poorly (unknown keys list the valid ones).
fn kind_message(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownField(found, expected) => {
            format!("unknown key `{found}`; expected one of: {}", expected.join(", "))
        }
        other => other.to_string(),
    }
}
