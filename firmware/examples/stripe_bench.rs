//! Runs the stripe engine (`stripe::compress`, or `stripe::encode` without the entropy coding)
//! on a whole grey frame `REPS` times, for counting instructions per frame under
//! `qemu-aarch64 -plugin libinsncount.so` (run with REPS and with 0, subtract, divide; see
//! `boards/BENCH.md`, "Stripe engine (issue 20)"):
//!
//!     stripe_bench fast|scalar compress|encode|decompress WIDTH HEIGHT REPS [LAYERS]
//!
//! `decompress` compresses the frame once, then decodes that stream `REPS` times with the
//! stripe decoder (`stripe_decode::decompress`, the model's decoder, row by row).
//!
//! The model is `synthetic_frame(&FrameSpec::photo(1, 1))` (the shipped photo structure: 5×5/2
//! → 24, 3×3/2 → 32, 48, 64-channel latent, 640 pixels wide at most), the frame a deterministic
//! pseudo-photo (smooth gradients plus a fine texture). `fast` is the compiled fast path (on
//! aarch64 the SDOT kernels where the CPU has them, `-cpu max`; plain NEON otherwise), with the
//! arena its fastest scratch needs; `scalar` the reference kernels in their minimum arena.
//! The Cortex-M twin is `firmware/boards/src/bin/stripe_bench.rs` (same model, same pixels,
//! same bits).
use edgevae_firmware::engine::{Fast, KernelSet, Scalar};
use edgevae_firmware::kernels::neon_scratch;
use edgevae_firmware::stripe::{self, required_arena, required_arena_with, SliceRows};
use edgevae_firmware::stripe_decode::{self, RowSink};
use edgevae_shared::build::{synthetic_frame, FrameSpec, XorShift};
use edgevae_shared::format::Model;

/// Quality level coded.
const LEVEL: u8 = 1;

/// A `rows × cols` grey pseudo-photo: two smooth gradients, a slow ripple and a small texture.
fn pseudo_photo(rows: usize, cols: usize) -> Vec<u8> {
    let mut rng = XorShift(0x5EED_F00D_1234_5679);
    let mut px = Vec::with_capacity(rows * cols);
    for y in 0..rows {
        for x in 0..cols {
            let g = (x * 140 / cols + y * 90 / rows) as i32; // 0..230
            let ripple = (((x / 9 + y / 7) % 16) as i32 - 8) * 2; // ±16, blocky ripple
            let noise = rng.range(-8, 8); // texture ±8
            px.push((g + 12 + ripple + noise).clamp(0, 255) as u8);
        }
    }
    px
}

fn bench<K: KernelSet>(
    model: &Model<'_>,
    coding: bool,
    rows: usize,
    cols: usize,
    reps: usize,
    arena_len: usize,
) {
    let px = pseudo_photo(rows, cols);
    let mut arena = vec![0u8; arena_len];
    let mut out = vec![0u8; rows * cols + 4096];
    let mut last = 0usize;
    for _ in 0..reps {
        let mut src = SliceRows::new(&px, cols, 1);
        let r = if coding {
            stripe::compress::<K, _>(model, LEVEL, rows, cols, &mut src, &mut arena, &mut out)
        } else {
            let mut sum = 0usize;
            stripe::encode::<K, _, _>(model, rows, cols, &mut src, &mut arena, |_, row| {
                sum = sum.wrapping_add(row.len());
            })
            .map(|()| sum)
        };
        match r {
            Ok(b) => last = b,
            Err(e) => {
                eprintln!("stripe: {e}");
                std::process::exit(1);
            }
        }
        std::hint::black_box(&mut out);
    }
    let macs = stripe::encoder_macs(model, rows, cols).unwrap_or(0);
    eprintln!(
        "{cols}x{rows}: {} MACs ({:.1}/pixel), arena {arena_len} B, {}",
        macs,
        macs as f64 / (rows * cols) as f64,
        if !coding {
            format!("encode only: {last} latent values a frame")
        } else if reps > 0 {
            format!(
                "{last} bits ({:.4} bpp, {} bytes)",
                last as f64 / (rows * cols) as f64,
                last.div_ceil(8)
            )
        } else {
            "no frame run".into()
        }
    );
}

/// A sink that folds the decoded rows into a checksum (the frame is never held).
struct Checksum(u32);

impl RowSink for Checksum {
    type Error = core::convert::Infallible;
    fn write_row(&mut self, _: usize, pixels: &[u8]) -> Result<(), Self::Error> {
        for &p in pixels {
            self.0 = self.0.wrapping_mul(31).wrapping_add(p as u32);
        }
        Ok(())
    }
}

fn bench_decode<K: KernelSet>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    reps: usize,
    arena_len: usize,
) {
    let px = pseudo_photo(rows, cols);
    let enc_len = required_arena::<Scalar>(model, cols)
        .into_iter()
        .chain(required_arena::<K>(model, cols))
        .max()
        .unwrap_or(0);
    let mut arena = vec![0u8; enc_len.max(arena_len)];
    let mut out = vec![0u8; rows * cols + 4096];
    let mut src = SliceRows::new(&px, cols, 1);
    let bits = stripe::compress::<K, _>(model, LEVEL, rows, cols, &mut src, &mut arena, &mut out)
        .unwrap_or_else(|e| {
            eprintln!("stripe: {e}");
            std::process::exit(1)
        });
    let stream = &out[..bits.div_ceil(8)];
    let mut sum = 0u32;
    for _ in 0..reps {
        let mut sink = Checksum(0);
        let r = stripe_decode::decompress::<K, _>(
            model,
            LEVEL,
            rows,
            cols,
            stream,
            &mut arena[..arena_len],
            &mut sink,
        );
        if let Err(e) = r {
            eprintln!("stripe_decode: {e}");
            std::process::exit(1);
        }
        sum = std::hint::black_box(sink.0);
    }
    let macs = stripe_decode::decoder_macs(model, rows, cols).unwrap_or(0);
    eprintln!(
        "{cols}x{rows}: decoder {} MACs ({:.1}/pixel), arena {arena_len} B, {bits} bits, frame checksum {sum:08x}",
        macs,
        macs as f64 / (rows * cols) as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut spec = FrameSpec::photo(1, 1);
    if let Some(n) = args.get(6).and_then(|s| s.parse::<usize>().ok()) {
        let n = n.clamp(1, spec.encoder.len());
        spec.encoder.truncate(n);
        spec.decoder.drain(..spec.decoder.len() + 1 - n);
    }
    let model = synthetic_frame(&spec)
        .and_then(|m| m.to_bytes())
        .unwrap_or_else(|e| {
            eprintln!("synthetic model: {e:?}");
            std::process::exit(1)
        });
    let (Some(set), Some(mode), Some(cols), Some(rows), Some(reps)) = (
        args.get(1),
        args.get(2),
        args.get(3).and_then(|s| s.parse::<usize>().ok()),
        args.get(4).and_then(|s| s.parse::<usize>().ok()),
        args.get(5).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: stripe_bench fast|scalar compress|encode|decompress WIDTH HEIGHT REPS [LAYERS]"
        );
        std::process::exit(2);
    };
    let model = Model::from_bytes(&model).unwrap_or_else(|e| {
        eprintln!("synthetic model: {e}");
        std::process::exit(1)
    });
    let coding = mode == "compress";
    let decoding = mode == "decompress";
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if dotprod {
        // SAFETY: the CPU implements FEAT_DotProd (just detected).
        unsafe { edgevae_firmware::kernels::neon::enable_dotprod() };
    }
    #[cfg(not(all(target_arch = "aarch64", target_endian = "little")))]
    let dotprod = false;
    let need = |a: Option<usize>| {
        a.unwrap_or_else(|| {
            eprintln!("the model cannot take a frame {cols} wide");
            std::process::exit(2)
        })
    };
    if set == "scalar" {
        let arena = need(required_arena::<Scalar>(&model, cols));
        eprintln!("scalar kernels, {mode}");
        if decoding {
            let arena = need(stripe_decode::required_arena::<Scalar>(&model, cols));
            bench_decode::<Scalar>(&model, rows, cols, reps, arena);
            return;
        }
        bench::<Scalar>(&model, coding, rows, cols, reps, arena);
    } else {
        let arena = need(required_arena::<Fast>(&model, cols)).max(need(required_arena_with(
            &model,
            cols,
            neon_scratch::conv2d_scratch_size,
        )));
        eprintln!(
            "fast kernels{}, {mode}",
            if dotprod { " (SDOT)" } else { "" }
        );
        if decoding {
            let arena = need(stripe_decode::required_arena::<Fast>(&model, cols)).max(need(
                stripe_decode::required_arena_with(
                    &model,
                    cols,
                    neon_scratch::conv_transpose2d_scratch_size,
                ),
            ));
            bench_decode::<Fast>(&model, rows, cols, reps, arena);
            return;
        }
        bench::<Fast>(&model, coding, rows, cols, reps, arena);
    }
}
