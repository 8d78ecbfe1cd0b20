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
    /// Test images (Fashion-MNIST), or photographs with --photos.
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Stream the photographs of this folder (PNG/JPEG/WebP) row by row instead, at 320×240 and
    /// 173×97 each (the model must be a photo model; --machine may also be aarch64, the NEON app
    /// under qemu-aarch64).
    #[arg(long)]
    photos: Option<PathBuf>,
}

pub fn run_hil(a: HilArgs) -> Result<(), Error> {
    if let Some(dir) = &a.photos {
        return run_hil_photos(&a, dir);
    }
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

/// `hil --photos DIR`: camera frames over the link, bitstreams checked against the host's.
fn run_hil_photos(a: &HilArgs, dir: &std::path::Path) -> Result<(), Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| edgevae::codec::is_image(p))
        .collect();
    files.sort();
    files.truncate(a.images);
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no photographs (PNG, JPEG or WebP) to stream",
            dir.display()
        )));
    }
    let photos = files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            edgevae::data::photos::Photo::load(f, 3).map(|p| (name, p))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let r = edgevae::device::run_photos(&a.model, &a.machine, &photos)?;
    for f in &r.frames {
        println!(
            "{}: {} {}x{} quality {}: {} bits ({:.4} bpp), {}, PSNR {:.2} dB",
            r.machine,
            f.name,
            f.width,
            f.height,
            f.level + 1,
            f.bits,
            f64::from(f.bits) / (f.width * f.height) as f64,
            if f.exact {
                "byte-exact with the host"
            } else {
                "DIFFERS from the host"
            },
            f.psnr
        );
    }
    println!(
        "{}: {} frames streamed row by row, {} mismatches vs the host's codec; {:.0} pixels/s through the emulated link",
        r.machine,
        r.frames.len(),
        r.mismatches,
        r.pixels_per_s
    );
    if let Some(c) = &r.cost {
        println!(
            "{}: a {}x{} frame (built-in pseudo-photo, finest level, {} bits): {} instructions (QEMU -icount), {:.0} per pixel, {:.3} per MAC ({} MACs); encode only {}; entropy coding {:.1} %",
            r.machine,
            c.width,
            c.height,
            c.bits,
            c.instructions,
            c.per_pixel(),
            c.per_mac(),
            c.macs,
            c.encode_instructions,
            100.0 * c.coding_share()
        );
    }
    if let Some(s) = r.size {
        let stack = r.cost.as_ref().map_or(String::new(), |c| {
            format!(
                " + stack {} bytes (frame self-test {} bytes)",
                c.stack_bytes.map_or("?".into(), |b| b.to_string()),
                c.self_test_stack_bytes
            )
        });
        println!(
            "firmware: flash {} bytes, RAM {} bytes static{stack}",
            s.flash, s.ram
        );
    }
    if r.mismatches > 0 {
        return Err(Error::Invalid(format!(
            "{} frames differ between device and host",
            r.mismatches
        )));
    }
    Ok(())
}
