//! `edgevae inspect`: describe a model file.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

#[derive(Args)]
pub struct InspectArgs {
    /// Model file.
    file: PathBuf,
    /// Fully convolutional models: the stripe engine's arena for frames this many pixels wide
    /// [default: 320 and the widest the file declares].
    #[arg(long)]
    width: Option<usize>,
}

pub fn run_inspect(a: InspectArgs) -> Result<(), Error> {
    let bytes = std::fs::read(&a.file).map_err(|e| Error::Io {
        path: a.file.clone(),
        source: e,
    })?;
    let text = edgevae::export::inspect_at(&bytes, a.width).map_err(|e| Error::Data {
        path: a.file.clone(),
        problem: e.to_string(),
    })?;
    print!("{text}");
    Ok(())
}
