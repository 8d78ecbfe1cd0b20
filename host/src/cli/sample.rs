//! `edgevae sample`: images decoded from the prior.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

#[derive(Args)]
pub struct SampleArgs {
    /// Run directory of the model.
    #[arg(long)]
    run: PathBuf,
    /// PNG file to write (an 8-column grid).
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run_sample(a: SampleArgs) -> Result<(), Error> {
    let (_, model) = edgevae::inference::load_model(&a.run)?;
    edgevae::eval::samples_figure(&model, a.seed, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}
