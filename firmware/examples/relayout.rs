//! Rewrites a model file with the current writer, weights unchanged (same payload, same CRC):
//! the pre-laid DSP section with the blocks the Cortex-M kernels read in the file's declared
//! arena (`engine::prelaid_pays`, what `edgevae quantize` writes), or none with `--canonical`
//! (flags 0, the file before the section existed).
//!
//! `cargo run -p edgevae-firmware --example relayout -- IN OUT [--canonical]`
use edgevae_firmware::engine::prelaid_pays;
use edgevae_shared::build::OwnedModel;
use edgevae_shared::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(output)) = (args.first(), args.get(1)) else {
        return Err("usage: relayout IN OUT [--canonical]".into());
    };
    let canonical = args.iter().any(|a| a == "--canonical");
    let bytes = std::fs::read(input)?;
    let model = Model::from_bytes(&bytes)?;
    let owned = OwnedModel::from_model(&model);
    let scratch = (model.header().arena_bytes as u64).saturating_sub(model.activation_bytes());
    let out = if canonical {
        owned.to_bytes_canonical()?
    } else {
        owned.to_bytes_with(|_, _, l| prelaid_pays(l, scratch as usize))?
    };
    let again = Model::from_bytes(&out)?;
    if again.body() != model.body() || again.crc() != model.crc() {
        return Err("the rewritten file holds a different model".into());
    }
    std::fs::write(output, &out)?;
    println!(
        "{input} ({} bytes) -> {output} ({} bytes, flags {}), payload crc {:#010x}",
        bytes.len(),
        out.len(),
        u16::from_le_bytes([out[6], out[7]]),
        again.crc()
    );
    Ok(())
}
