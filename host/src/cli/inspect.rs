//! `edgevae inspect`: describe a model file.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

#[derive(Args)]
pub struct InspectArgs {
    /// Model file.
    file: PathBuf,
}

pub fn run_inspect(a: InspectArgs) -> Result<(), Error> {
    let bytes = std::fs::read(&a.file).map_err(|e| Error::Io {
        path: a.file.clone(),
        source: e,
    })?;
    let text = edgevae::export::inspect(&bytes).map_err(|e| Error::Data {
        path: a.file.clone(),
        problem: e.to_string(),
    })?;
    print!("{text}");
    Ok(())
}
