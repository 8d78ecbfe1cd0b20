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
    /// A model file failed validation.
    #[error("model file: {0}")]
    Format(#[from] edgevae_shared::FormatError),
    /// A model file could not be assembled.
    #[error("model file: {0}")]
    Build(#[from] edgevae_shared::build::BuildError),
    /// A trained model could not be quantized.
    #[error("quantization: {0}")]
    Quantize(#[from] crate::quantize::int8::QuantError),
    /// The fixed-point engine refused a model or a buffer.
    #[error("fixed-point engine: {0}")]
    Engine(#[from] edgevae_firmware::engine::EngineError),
    /// The entropy coder ran out of room or read an impossible stream.
    #[error("entropy coding: {0}")]
    Coding(#[from] edgevae_shared::entropy::CodingError),
    /// A `.evz` file is unusable.
    #[error("{0}")]
    Evz(#[from] crate::codec::EvzError),
    /// An emulated device failed.
    #[error("device: {0}")]
    Device(#[from] crate::device::HilError),
}

impl Error {
    /// Maps an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// A data error: `path` and what is wrong with it.
    pub fn data(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Error::Data {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}
