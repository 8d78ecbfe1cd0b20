//! `edgevae cut`: the encoder-only file a device embeds.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;
use edgevae_shared::format::Model;

#[derive(Args)]
pub struct CutArgs {
    /// Model file (a full model: encoder, decoder and entropy tables).
    file: PathBuf,
    /// Where to write the encoder-only file (written atomically).
    #[arg(long)]
    out: PathBuf,
}

/// Writes `file` without its decoder (`FLAG_ENCODER_ONLY`): the encoder, its pre-laid blocks,
/// the entropy tables and the frame, with the full model's CRC, so a device embedding it
/// writes the same bitstreams, which name the full model that decodes them.
pub fn run_cut(a: CutArgs) -> Result<(), Error> {
    let bytes = std::fs::read(&a.file).map_err(Error::io(&a.file))?;
    let model = Model::from_bytes(&bytes).map_err(|e| Error::data(&a.file, e))?;
    let cut = model
        .to_encoder_only_bytes()
        .map_err(|e| Error::data(&a.file, format!("cannot write its encoder-only file: {e}")))?;
    edgevae::files::write_atomic(&a.out, &cut)?;
    println!(
        "wrote {} ({} bytes, {} without the decoder; encoder-only, names model CRC-32 {:#010x})",
        a.out.display(),
        cut.len(),
        bytes.len() - cut.len().min(bytes.len()),
        model.crc()
    );
    Ok(())
}
