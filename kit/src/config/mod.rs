//! The one configuration loader of every qkdn service.
//!
//! Sources, later ones winning: a TOML file, environment variables (`QKDN_` and the key path
//! joined by `__`: `QKDN_API__LISTEN`; only variables naming one of the service's top-level
//! keys count, so `QKDN_CONFIG` and other tools' variables are not configuration), and values
//! given on the command line. Loading gives either a configuration that passed the service's
//! checks or every problem found, each naming the key, what is wrong and what was expected,
//! with the file and line when the value came from the file.

mod place;

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use place::{KeyPath, Seg};

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "QKDN_";

/// One thing wrong with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `file:line: key` when known, else the key.
    pub place: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// A service's checks: problems of a configuration that deserialized, each at its key path.
pub type Problems = Vec<(KeyPath, String)>;

/// Splits `key: message` lines (as older checks write them) into [`Problems`].
pub fn problems_of_lines(lines: impl IntoIterator<Item = String>) -> Problems {
    lines
        .into_iter()
        .map(|line| match line.split_once(": ") {
            Some((key, message)) => (KeyPath::parse(key), message.to_owned()),
            None => (KeyPath::default(), line),
        })
        .collect()
}

/// Where a service's configuration comes from.
pub struct Loader<'a> {
    file: Option<&'a Path>,
    top_level_keys: &'static [&'static str],
    environment: bool,
    overrides: Figment,
}

impl<'a> Loader<'a> {
    /// The configuration of a service whose top-level keys are `top_level_keys`, from `file`
    /// (if any) and the environment.
    pub fn new(file: Option<&'a Path>, top_level_keys: &'static [&'static str]) -> Loader<'a> {
        Loader { file, top_level_keys, environment: true, overrides: Figment::new() }
    }

    /// The file alone (`check-config` checks a file, not the environment it runs in).
    pub fn file_only(file: &'a Path, top_level_keys: &'static [&'static str]) -> Loader<'a> {
        Loader { environment: false, ..Loader::new(Some(file), top_level_keys) }
    }

    /// Sets the value at dotted `key` (a command-line flag), when there is one.
    pub fn set<T: serde::Serialize>(mut self, key: &str, value: Option<T>) -> Loader<'a> {
        if let Some(value) = value {
            self.overrides = self.overrides.merge(Serialized::default(key, value));
        }
        self
    }

    /// Reads, deserializes and checks the configuration: `check` may complete it (read a file
    /// it names) and gives its problems.
    pub fn load<T: serde::de::DeserializeOwned>(
        self,
        check: impl FnOnce(&mut T) -> Problems,
    ) -> Result<T, ConfigError> {
        let file = self.file;
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
                problems: vec![Problem {
                    place: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                }],
            })?),
            None => None,
        };
        let mut figment = Figment::new();
        if let (Some(path), Some(text)) = (file, &text) {
            if let Err(e) = text.parse::<toml_edit::DocumentMut>() {
                let line = e.span().map(|s| place::line_of_offset(text, s.start)).unwrap_or(0);
                return Err(ConfigError {
                    problems: vec![Problem {
                        place: format!("{}:{line}", path.display()),
                        message: format!("not valid TOML: {}", e.message()),
                    }],
                });
            }
            figment = figment.merge(Toml::string(text));
        }
        if self.environment {
            let keys = self.top_level_keys;
            figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").filter(move |key| {
                let first = key.as_str().split('.').next().unwrap_or_default();
                keys.iter().any(|k| k.eq_ignore_ascii_case(first))
            }));
        }
        let mut config: T = figment.merge(self.overrides).extract().map_err(|err| ConfigError {
            problems: err
                .into_iter()
                .map(|e| place::problem_of_figment(e, ENV_PREFIX, file, text.as_deref()))
                .collect(),
        })?;
        let problems = check(&mut config);
        if problems.is_empty() {
            return Ok(config);
        }
        Err(ConfigError {
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    place: place::place(file, text.as_deref(), &key),
                    message,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        api: Api,
        #[serde(default)]
        links: Vec<Link>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Api {
        listen: String,
        #[serde(default)]
        port: u16,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Link {
        name: String,
    }

    const KEYS: [&str; 2] = ["api", "links"];

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn flags_win_over_the_file_and_the_check_sees_the_result() {
        let f = file("[api]\nlisten = \"a\"\nport = 1\n");
        let loaded: Sample = Loader::file_only(f.path(), &KEYS)
            .set("api.listen", Some("b"))
            .set("api.port", None::<u16>)
            .load(|s: &mut Sample| {
                s.api.port += 1;
                Vec::new()
            })
            .unwrap();
        assert_eq!((loaded.api.listen.as_str(), loaded.api.port), ("b", 2));
    }

    #[test]
    fn every_problem_names_the_file_the_line_and_the_key() {
        let f = file("[api]\nlisten = \"a\"\nport = \"high\"\n");
        let e = Loader::file_only(f.path(), &KEYS).load(|_: &mut Sample| Vec::new()).unwrap_err();
        let at = format!("{}:3: api.port", f.path().display());
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].place, at, "{e}");

        let f =
            file("[api]\nlisten = \"a\"\n\n[[links]]\nname = \"x\"\n\n[[links]]\nname = \"y\"\n");
        let e = Loader::file_only(f.path(), &KEYS)
            .load(|s: &mut Sample| {
                let i = s.links.iter().position(|l| l.name == "y").unwrap();
                vec![(KeyPath::default().key("links").index(i).key("name"), "taken".into())]
            })
            .unwrap_err();
        assert_eq!(e.to_string(), format!("{}:8: links[1].name: taken", f.path().display()));

        let f = file("[api]\nlisten = \"a\"\nlisten_on = 1\n");
        let e = Loader::file_only(f.path(), &KEYS).load(|_: &mut Sample| Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("unknown key `listen_on`; expected one of: listen, port"),
            "{e}"
        );

        let f = file("[api\nlisten = 1\n");
        let e = Loader::file_only(f.path(), &KEYS).load(|_: &mut Sample| Vec::new()).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{}:1: not valid TOML", f.path().display())),
            "{e}"
        );
    }
}
