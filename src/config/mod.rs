//! Configuration: the file schema (`file`), the validated runtime form (`runtime`) and the
//! errors that tell an operator exactly where their file is wrong.

pub mod file;
mod jwt;
pub mod memcached;
mod mfa;
pub mod oidc;
pub mod redis;
pub mod runtime;

pub use runtime::{AdminConfig, AuthConfig, Config, SameSite, SessionConfig, TlsConfig};

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded. Every variant names the file; parse and
/// validation errors also carry the line and column of the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: {msg}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
}

/// The file being validated, used to turn byte spans into `file:line:col` errors.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at `span`; a span of `0..0` marks a default value that is not in the file,
    /// so the error names only the file.
    pub fn at(&self, span: Range<usize>, msg: impl fmt::Display) -> ConfigError {
        if span == (0..0) {
            return self.file(msg);
        }
        let (line, col) = line_col(self.text, span.start);
        ConfigError::At {
            path: self.path.to_path_buf(),
            line,
            col,
            msg: msg.to_string(),
        }
    }

    pub fn file(&self, msg: impl fmt::Display) -> ConfigError {
        ConfigError::File {
            path: self.path.to_path_buf(),
            msg: msg.to_string(),
        }
    }

    /// Resolve a path written in the config relative to the config file's directory, so
    /// `portcullis run -c /etc/portcullis/gateway.toml` works from any working directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

pub(crate) use crate::position::line_col;

/// Read, parse and validate a config file. Nothing is bound or started here.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_str(path, &text)
}

/// Parse and validate config text; `path` is used for messages and relative paths.
pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let src = Source { path, text };
    let parsed: file::FileConfig = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => src.at(if span == (0..0) { 0..1 } else { span }, msg),
            None => src.file(msg),
        }
    })?;
    runtime::build(&src, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
    }
}
