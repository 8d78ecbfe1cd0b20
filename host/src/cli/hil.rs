//! `edgevae hil`: the device app under QEMU, checked byte for byte.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

use super::*;
use edgevae::data::Split;

#[derive(Args)]
pub struct HilArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long, default_value = "runs/model.evae")]
    model: PathBuf,
    /// QEMU machine: mps2-an386 (Cortex-M4F) or mps2-an500 (Cortex-M7).
    #[arg(long, default_value = "mps2-an386")]
    machine: String,
    #[arg(long, default_value_t = 100)]
    images: usize,
}

pub fn run_hil(a: HilArgs) -> Result<(), Error> {
    let test = edgevae::data::load(a.data.data.as_deref(), Split::Test)?;
    edgevae::data::check_shape(&test, "test")?;
    let r = edgevae::device::run(&a.model, &a.machine, &test, a.images)?;
    println!(
        "{}: {} test images streamed over the emulated UART, {} mismatches vs the host fixed-point reference",
        r.machine, r.images, r.mismatches
    );
    println!(
        "latent {} bits/image; device reconstruction PSNR {:.2} dB; {:.1} frames/s through the link",
        r.bits_per_image, r.device_psnr, r.frames_per_s
    );
    if let (Some(e), Some(d)) = (r.encode_instructions, r.decode_instructions) {
        println!("instructions per inference (QEMU -icount): encode {e}, decode {d}");
        if let (Some(c), Some(u)) = (r.code_instructions, r.uncode_instructions) {
            println!(
                "entropy coding at the finest level adds {c} instructions to the encode ({:.2} %) and {u} to the decode",
                100.0 * c as f64 / e.max(1) as f64
            );
        }
    }
    for (level, n, bits, bytes, psnr) in &r.codec {
        println!(
            "codec quality {}: {n} images, {bits:.1} bits ({bytes:.1} bytes) per image over the link, device PSNR {psnr:.2} dB",
            level + 1
        );
    }
    println!(
        "firmware: flash {} bytes (model file {} bytes), RAM {} bytes static (arena {} bytes) + {} bytes stack",
        r.flash_bytes,
        r.model_bytes,
        r.static_ram_bytes,
        r.arena_bytes,
        r.stack_bytes.map_or("?".to_string(), |s| s.to_string())
    );
    if r.mismatches > 0 {
        return Err(Error::Invalid(format!(
            "{} mismatches between device and reference",
            r.mismatches
        )));
    }
    Ok(())
}
