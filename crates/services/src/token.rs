//! Where a shared secret comes from, so it never has to be on the command line (where `ps`
//! shows it): `--token` > `--token-file PATH` > the `KEEL_TOKEN` environment variable. Shared
//! by every `keel` command that connects to a server (`client`, `admin`, `bench net`) and by
//! `keel serve`.

use std::path::{Path, PathBuf};

/// The environment variable read when neither `--token` nor `--token-file` is given.
pub const TOKEN_ENV: &str = "KEEL_TOKEN";

/// Why no token could be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read the token file {path}: {source} (check the path and its permissions)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file holds nothing but whitespace.
    #[error("the token file {0} is empty")]
    Empty(PathBuf),
}

/// The token to use: `flag` if given, else the first line of `file` (trailing whitespace and
/// line ending removed), else `KEEL_TOKEN` if set and not empty, else none.
pub fn resolve(flag: Option<&str>, file: Option<&Path>) -> Result<Option<String>, TokenError> {
    resolve_with(flag, file, std::env::var(TOKEN_ENV).ok())
}

fn resolve_with(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<String>,
) -> Result<Option<String>, TokenError> {
    if let Some(token) = flag {
        return Ok(Some(token.to_string()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim_end();
        if token.is_empty() {
            return Err(TokenError::Empty(path.to_path_buf()));
        }
        return Ok(Some(token.to_string()));
    }
    Ok(env.filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = || Some("from-env".to_string());
        let got = |flag, file| resolve_with(flag, file, env()).unwrap();
        assert_eq!(
            got(Some("from-flag"), Some(&file)).as_deref(),
            Some("from-flag")
        );
        assert_eq!(got(None, Some(&file)).as_deref(), Some("from-file"));
        assert_eq!(got(None, None).as_deref(), Some("from-env"));
        assert_eq!(resolve_with(None, None, None).unwrap(), None);
        assert_eq!(resolve_with(None, None, Some(String::new())).unwrap(), None);
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = resolve_with(None, Some(&missing), None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            resolve_with(None, Some(&empty), None),
            Err(TokenError::Empty(_))
        ));
    }
}
