//! Runs one layer of a model file `REPS` times on the dispatched kernels, for counting
//! instructions per layer under `qemu-aarch64 -plugin libinsncount.so` (run with REPS and with 0,
//! subtract, divide; see `boards/BENCH.md`):
//!
//!     layer_bench MODEL_FILE enc|dec INDEX REPS
//!
//! The input is a fixed pseudo-random pattern; the output is discarded. On aarch64 the SDOT
//! kernels run where the CPU has them (`-cpu max`), the plain-NEON ones otherwise
//! (`-cpu cortex-a72`).
use edgevae_firmware::engine::{conv_geom, kernel_shape, layer_scratch, output_stage, Fast};
use edgevae_firmware::kernels::{self, ConvParams, DenseParams, Scratch};
use edgevae_shared::format::Op;
use edgevae_shared::Model;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(section), Some(index), Some(reps)) = (
        args.get(1),
        args.get(2),
        args.get(3).and_then(|s| s.parse::<usize>().ok()),
        args.get(4).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: layer_bench MODEL_FILE enc|dec INDEX REPS");
        std::process::exit(2);
    };
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1)
    });
    let model = Model::from_bytes(&bytes).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1)
    });
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        // SAFETY: the CPU implements FEAT_DotProd (just detected).
        unsafe { kernels::neon::enable_dotprod() };
    }
    let layers = if section == "dec" {
        model.decoder()
    } else {
        model.encoder()
    };
    let Some(l) = layers.get(index) else {
        eprintln!("no layer {index}");
        std::process::exit(2);
    };
    let (i, o) = (kernel_shape(l.input), kernel_shape(l.output));
    let input: Vec<i8> = (0..i.len()).map(|k| (k * 37 % 251) as i8).collect();
    let mut output = vec![0i8; o.len()];
    let mut scratch = vec![0u8; layer_scratch::<Fast>(l)];
    let stage = output_stage(l);
    let zp = l.input_q.zero_point as i32;
    let w = l.weights_i8();
    eprintln!(
        "{section} {index}: {:?} {i:?} -> {o:?}, scratch {} B",
        l.op,
        scratch.len()
    );
    for _ in 0..reps {
        let conv = conv_geom(l.op).map(|geom| ConvParams {
            in_shape: i,
            out_shape: o,
            geom,
            input_zp: zp,
        });
        let r = match (l.op, conv) {
            (Op::Conv2d { .. }, Some(p)) => kernels::conv2d(
                &p,
                &input,
                w,
                &stage,
                &mut output,
                Scratch::new(&mut scratch),
            ),
            (Op::ConvTranspose2d { .. }, Some(p)) => kernels::conv_transpose2d(
                &p,
                &input,
                w,
                &stage,
                &mut output,
                Scratch::new(&mut scratch),
            ),
            (Op::Dense, _) => kernels::dense(
                &DenseParams {
                    n_in: i.len(),
                    n_out: o.len(),
                    input_zp: zp,
                },
                &input,
                w,
                &stage,
                &mut output,
                Scratch::new(&mut scratch),
            ),
            _ => Ok(()),
        };
        if let Err(e) = r {
            eprintln!("kernel: {e:?}");
            std::process::exit(1);
        }
        std::hint::black_box(&mut output);
    }
}
