//! `edgevae defmt-print`: the boards' defmt log (standard input) as text.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

#[derive(Args)]
pub struct DefmtPrintArgs {
    /// The firmware ELF that wrote the log (its `.defmt` table holds the strings).
    #[arg(long, short)]
    elf: PathBuf,
}

pub fn run_defmt_print(a: DefmtPrintArgs) -> Result<(), Error> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    edgevae::device::log::print_stream(&a.elf, stdin, stdout)?;
    Ok(())
}
