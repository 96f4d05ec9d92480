//! Golden files: compare a rendered text with the committed file, write it
//! when it is missing or a regeneration is asked for, and explain a
//! difference with a line diff. The diagrams' only contact with the disk.

use super::diff;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The environment variable that makes golden-file checks write the drawn
/// text instead of comparing it: `UPDATE_DIAGRAMS=1 cargo test`.
pub const UPDATE_ENV: &str = "UPDATE_DIAGRAMS";

/// What checking a golden file did when it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileStatus {
    /// The file holds exactly the drawn text (line endings aside).
    Unchanged,
    /// The file did not exist and was written.
    Created,
    /// The file differed and was rewritten, because `UPDATE_DIAGRAMS` was set.
    Updated,
}

/// Why a golden-file check failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileError {
    /// The committed file differs from the drawn text.
    Differs {
        /// The file.
        path: PathBuf,
        /// A line diff from the file to the drawn text.
        diff: String,
    },
    /// The file does not exist and, because `CI` is set, was not written: a
    /// golden file created on a CI machine would pass once and be lost.
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Differs { path, diff } => write!(
                f,
                "{} differs from what the tests drew:\n{diff}\
                 If the change is intended, run the tests with {UPDATE_ENV}=1 and commit the file.",
                path.display()
            ),
            Self::Missing { path } => write!(
                f,
                "{} does not exist; it is not written when CI is set. Run the tests locally \
                 (or with {UPDATE_ENV}=1) and commit the file.",
                path.display()
            ),
            Self::Io { path, source } => write!(f, "cannot access {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// When a check may write the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// Rewrite a differing file (`UPDATE_DIAGRAMS`).
    pub(crate) update: bool,
    /// Create a missing file (unless `CI`).
    pub(crate) create: bool,
}

impl Mode {
    /// From `UPDATE_DIAGRAMS` and `CI`: a variable counts as set unless it is
    /// empty, `0`, `false` or `no`.
    pub(crate) fn from_env() -> Self {
        let set = |name: &str| {
            std::env::var(name).is_ok_and(|value| {
                let value = value.trim().to_ascii_lowercase();
                !matches!(value.as_str(), "" | "0" | "false" | "no")
            })
        };
        let update = set(UPDATE_ENV);
        Self { update, create: update || !set("CI") }
    }
}

/// Compares `text` with the file at `path`, writing it as `mode` allows.
/// Line endings are normalised before comparing, so a checkout that turned
/// `\n` into `\r\n` still matches.
pub(crate) fn check(path: &Path, text: &str, mode: Mode) -> Result<FileStatus, FileError> {
    let io_error = |source| FileError::Io { path: path.to_owned(), source };
    let committed = match std::fs::read_to_string(path) {
        Ok(committed) => Some(committed),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error(error)),
    };
    match committed {
        Some(committed) if committed.replace("\r\n", "\n") == text => Ok(FileStatus::Unchanged),
        Some(_) if mode.update => write(path, text).map(|()| FileStatus::Updated).map_err(io_error),
        Some(committed) => Err(FileError::Differs {
            path: path.to_owned(),
            diff: diff::lines(&committed.replace("\r\n", "\n"), text, "committed", "drawn", diff::CONTEXT),
        }),
        None if mode.create => write(path, text).map(|()| FileStatus::Created).map_err(io_error),
        None => Err(FileError::Missing { path: path.to_owned() }),
    }
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh path under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("machine-golden-{}-{n}", std::process::id())).join(name)
    }

    const LOCAL: Mode = Mode { update: false, create: true };
    const CI: Mode = Mode { update: false, create: false };
    const UPDATE: Mode = Mode { update: true, create: true };

    #[test]
    fn creates_a_missing_file_then_matches_it() {
        let path = scratch("nested/dir/a.mmd");
        assert_eq!(check(&path, "x\n", LOCAL).unwrap(), FileStatus::Created);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");
        assert_eq!(check(&path, "x\n", LOCAL).unwrap(), FileStatus::Unchanged);
    }

    #[test]
    fn refuses_to_create_a_file_under_ci() {
        let path = scratch("b.mmd");
        let error = check(&path, "x\n", CI).unwrap_err();
        assert!(matches!(error, FileError::Missing { .. }), "{error:?}");
        assert!(!path.exists());
    }

    #[test]
    fn a_difference_fails_with_a_diff_and_leaves_the_file() {
        let path = scratch("c.mmd");
        check(&path, "same\nold\n", LOCAL).unwrap();
        let error = check(&path, "same\nnew\n", LOCAL).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--- committed\n+++ drawn\n  same\n- old\n+ new\n"), "{message}");
        assert!(message.contains("UPDATE_DIAGRAMS=1"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "same\nold\n");
    }

    #[test]
    fn update_mode_rewrites_a_differing_file() {
        let path = scratch("d.mmd");
        check(&path, "old\n", LOCAL).unwrap();
        assert_eq!(check(&path, "new\n", UPDATE).unwrap(), FileStatus::Updated);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(check(&path, "new\n", UPDATE).unwrap(), FileStatus::Unchanged);
    }

    #[test]
    fn crlf_checkouts_match() {
        let path = scratch("e.mmd");
        write(&path, "a\r\nb\r\n").unwrap();
        assert_eq!(check(&path, "a\nb\n", CI).unwrap(), FileStatus::Unchanged);
    }
}
