//! The config file: where it is, reading it, and saying exactly what is wrong with it.
//!
//! A file that cannot be used is an error, never a warning followed by defaults: a user
//! whose `modle = ...` was skipped would otherwise be told about something unrelated (a
//! missing account id) and never learn that the file was not read. The error names the
//! file, the line and the key, from the spans TOML's errors carry. A missing file is fine
//! at the default path (most users configure through the environment), but not when
//! `CFGATE_CONFIG` names it: that is a typo.
//!
//! No error shows the text of a line or a secret's value: the file may hold the token.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{ENV_CONFIG, Layer, project_dirs};

/// Keys whose value never appears in an error.
const SECRET_KEYS: &[&str] = &["api_token", "gateway_token"];

/// The config file and what was learned reading it.
pub struct ConfigFile {
    pub path: Option<PathBuf>,
    pub layer: Layer,
    /// Worth telling the user although the file is usable: a token others can read.
    pub warnings: Vec<String>,
}

/// A config file that cannot be used, and where in it the problem is. A shared daemon's
/// client sends it as it is (see `client_layers.rs`), so it is serializable.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// The key as a dotted path (`gateway.cache_ttl`), when the problem has one.
    pub key: Option<String>,
    pub reason: String,
    /// `CFGATE_CONFIG` names a file that is not there.
    #[serde(default)]
    missing: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// What to do about it, for the hint line of an error.
    pub fn hint(&self) -> String {
        if self.missing {
            return format!("create it, or unset {ENV_CONFIG} to use the default path");
        }
        format!(
            "fix or remove {} (`cfgate status` checks it), then restart the editor's cfgate",
            self.path.display()
        )
    }
}

/// `$CFGATE_CONFIG`, else `config.toml` in the platform config dir.
pub fn config_path() -> Option<PathBuf> {
    explicit_path().or_else(|| project_dirs().map(|d| d.config_dir().join("config.toml")))
}

fn explicit_path() -> Option<PathBuf> {
    std::env::var_os(ENV_CONFIG)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Reads the config file: `Ok` with an empty layer when there is none at the default path.
pub fn load_config_file() -> Result<ConfigFile, ConfigError> {
    let explicit = explicit_path();
    let Some(path) = explicit.clone().or_else(config_path) else {
        return Ok(ConfigFile {
            path: None,
            layer: Layer::default(),
            warnings: vec![],
        });
    };
    let error = |reason: String| ConfigError {
        path: path.clone(),
        line: None,
        key: None,
        reason,
        missing: false,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(ConfigFile {
                path: Some(path),
                layer: Layer::default(),
                warnings: vec![],
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError {
                missing: true,
                ..error(format!("it does not exist ({ENV_CONFIG} names it)"))
            });
        }
        Err(e) => return Err(error(format!("cannot read it: {e}"))),
    };
    let layer = parse(&path, &text)?;
    let mut warnings = Vec::new();
    if layer.api_token.is_some() {
        warnings.extend(check_private(&path));
    }
    Ok(ConfigFile {
        path: Some(path),
        layer,
        warnings,
    })
}

/// The file's layer, or what is wrong with it: the line and key from the error's span.
pub fn parse(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let err = match toml::from_str::<Layer>(text) {
        Ok(layer) => return Ok(layer),
        Err(err) => err,
    };
    let span = err.span();
    let key = span
        .as_ref()
        .and_then(|span| key_at(text, span.start).or_else(|| key_on_line(text, span.start)));
    let secret = key
        .as_deref()
        .is_some_and(|k| SECRET_KEYS.contains(&k.rsplit('.').next().unwrap_or(k)));
    let reason = if secret {
        // The message may quote the value.
        "not a usable value (it must be a string; the value is not shown)".to_string()
    } else {
        err.message().trim_end().to_string()
    };
    Err(ConfigError {
        path: path.to_path_buf(),
        line: span.map(|span| line_of(text, span.start)),
        key,
        reason,
        missing: false,
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key whose name or value holds `offset`, innermost first found.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(table.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Depth first: a table's span from a `[header]` does not cover the keys under it.
fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    table.iter().any(|(key, value)| {
        path.push(key.get_ref().to_string());
        let found = contains(&key.span(), offset) || find_in_value(value, offset, path);
        if !found {
            path.pop();
        }
        found
    })
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => {
            find_in_table(table, offset, path) || contains(&value.span(), offset)
        }
        DeValue::Array(items) => items.iter().any(|item| find_in_value(item, offset, path)),
        _ => contains(&value.span(), offset),
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.is_empty() && offset == span.start)
}

/// For a file that does not parse at all: the bare key a `key = value` line starts with.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let line = text.lines().nth(line_of(text, offset) - 1)?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    bare.then(|| key.to_string())
}

#[cfg(unix)]
fn check_private(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "config file {} holds api_token but can be read by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Option<String> {
    None
}

impl From<&ConfigError> for crate::error::Error {
    fn from(err: &ConfigError) -> Self {
        crate::error::Error::new(crate::error::ErrorKind::InvalidSetting, err.to_string())
            .with_hint(err.hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> ConfigError {
        parse(Path::new("/c/config.toml"), text).unwrap_err()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let e = error("model = \"a/b\"\n\nmodle = \"x\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("modle")), "{e}");
        assert!(e.reason.contains("unknown field"), "{e}");
        assert!(
            e.to_string()
                .starts_with("config file /c/config.toml, line 3, key `modle`: ")
        );
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line_even_in_a_table() {
        let e = error("model = \"a/b\"\nmax_tokens = \"many\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("max_tokens")),
            "{e}"
        );
        let e = error("model = \"a/b\"\n[gateway]\ncache_ttl = \"soon\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("gateway.cache_ttl")),
            "{e}"
        );
        let e = error("endpoint = \"grpc\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(1), Some("endpoint")),
            "{e}"
        );
    }

    #[test]
    fn a_syntax_error_gives_the_line_and_the_key_it_is_on() {
        let e = error("model = \"a/b\"\nmax_tokens = 5 6\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("max_tokens"), "{e}");
    }

    #[test]
    fn a_secret_value_is_never_quoted() {
        let e = error("api_token = 1234567890987\n");
        assert_eq!(e.key.as_deref(), Some("api_token"));
        assert!(!e.to_string().contains("1234567890987"), "{e}");
        let e = error("api_token = \"cf-secret-value\nmodel = \"x\"\n");
        assert!(!e.to_string().contains("cf-secret-value"), "{e}");
    }
}
