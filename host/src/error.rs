//! The crate's one error type. Every message names the file or input and what is wrong with it.

use std::path::PathBuf;

/// Errors of the edgevae host crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A data, config or weights file exists but its content is unusable.
    #[error("{}: {problem}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An argument or setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn data(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Error::Data {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}
