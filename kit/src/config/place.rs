//! Where a configuration problem is: key paths (`links[2].local_interface`) and, when the value
//! came from the file, its line (found with toml_edit's spans, so a key is found by its whole
//! path, never by a like-named key elsewhere in the file).

use std::fmt;
use std::path::Path;

use super::Problem;

/// One segment of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A table's key.
    Key(String),
    /// An array's index.
    Index(usize),
}

/// A path to a configuration value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The path of key `k` below this one.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    /// The path of item `i` of the array at this one.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// A path written as [`Display`](fmt::Display) writes it (`links[2].local_interface`).
    pub fn parse(text: &str) -> KeyPath {
        let mut path = KeyPath::default();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
            if !name.is_empty() {
                path = path.key(name);
            }
            while let Some((index, after)) = rest.split_once(']') {
                match index.parse() {
                    Ok(i) => path = path.index(i),
                    Err(_) => path = path.key(index),
                }
                rest = after.strip_prefix('[').unwrap_or(after);
            }
        }
        path
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
pub(super) fn line_of_offset(text: &str, offset: usize) -> usize {
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
pub(super) fn place(file: Option<&Path>, text: Option<&str>, path: &KeyPath) -> String {
    let line = text.and_then(|t| find_line(t, path));
    match (file, line) {
        (Some(f), Some(l)) => format!("{}:{l}: {path}", f.display()),
        (Some(f), None) => format!("{}: {path}", f.display()),
        _ => path.to_string(),
    }
}

/// A figment extraction error as a [`Problem`] (a value from the environment named by its
/// variable, `prefix` and the path joined by `__`).
pub(super) fn problem_of_figment(
    err: figment::Error,
    prefix: &str,
    file: Option<&Path>,
    text: Option<&str>,
) -> Problem {
    let path = KeyPath::from_strings(&err.path);
    let from_env = err.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
    if from_env {
        // The variable as the operator wrote it: `QKDN_` and the key path joined by `__`.
        let variable = format!("{prefix}{}", err.path.join("__").to_uppercase());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_reads_back_as_it_is_written() {
        for text in ["data_dir", "links[2].local_interface", "api.tokens[0].sha256", "a[1][3].b"] {
            assert_eq!(KeyPath::parse(text).to_string(), text);
        }
        assert_eq!(KeyPath::parse("links[2].x"), KeyPath::default().key("links").index(2).key("x"));
    }

    #[test]
    fn a_key_is_found_by_its_whole_path_not_by_its_name() {
        let text = "[api]\nlisten = \"a\"\n\n[management]\nlisten = \"b\"\n";
        let file = Path::new("c.toml");
        assert_eq!(
            place(Some(file), Some(text), &KeyPath::parse("management.listen")),
            "c.toml:5: management.listen"
        );
        assert_eq!(
            place(Some(file), Some(text), &KeyPath::parse("api.listen")),
            "c.toml:2: api.listen"
        );
        assert_eq!(place(None, None, &KeyPath::parse("api.listen")), "api.listen");
    }
}
