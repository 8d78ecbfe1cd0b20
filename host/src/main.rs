//! `edgevae`: train, evaluate, sample and benchmark the VAE. Errors print as one line on stderr
//! and exit with status 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgevae::Error;

mod cli;

/// mimalloc instead of the system allocator: training allocates and frees multi-megabyte tensors
/// every step, and glibc's malloc returns them to the kernel (munmap) and faults them back in
/// (mmap + page zeroing). On the 2-core bench machine that system time was 5 of 8 seconds of
/// `edgevae bench`; see benches/BENCH.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's C API (linked in by the `mimalloc` crate; its Rust binding of this function sits
// behind a feature that needs another crate).
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (`libmimalloc-sys` 0.1.49).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed memory for a second before mimalloc gives it back to the kernel (its default is
/// 10 ms): a training step frees and re-allocates the same multi-megabyte buffers every few
/// tens of milliseconds, and each purge made the kernel zero them again. Measured on the
/// 2-core machine, interleaved: photo-codec training 147–185 → 247–261 crops/s, inference
/// 583–744 → 1,025–1,164 (benches/BENCH.md). `MIMALLOC_PURGE_DELAY` still overrides it.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's integer options; valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 1000) }
    }
}

#[derive(Parser)]
#[command(version, about = "Train and evaluate the edgevae convolutional VAE")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Compute backend for training, evaluation and benchmarks: the CPU `flex` by default; GPU
    /// backends need a build with their cargo feature (`--features wgpu|vulkan|cuda`).
    #[arg(long, global = true, value_enum)]
    backend: Option<edgevae::Backend>,
    /// How the CPU backend computes convolutions and their gradients: `gemm`, one batched GEMM
    /// each (edgevae's Burn extension, host/src/backend/conv.rs, with the density's `tanh` in
    /// host/src/backend/tanh.rs), or `burn`, Burn's own ops (for comparisons; the results
    /// agree to float rounding).
    #[arg(long, global = true, value_enum, default_value_t = Conv::Gemm)]
    conv: Conv,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Conv {
    Gemm,
    Burn,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model into a run directory, then evaluate it on the test set.
    Train(cli::train::TrainArgs),
    /// Evaluate a trained model on the test set and draw its figures.
    Eval(cli::eval::EvalArgs),
    /// Decode images from the prior into a PNG grid.
    Sample(cli::sample::SampleArgs),
    /// Measure training and inference throughput (images/s).
    Bench(cli::bench::BenchArgs),
    /// Quantize a trained run to an int8 model file (and compare float vs int8 PSNR).
    Quantize(cli::quantize::QuantizeArgs),
    /// Export ONNX graphs (float and int8 QDQ) and check them with tract.
    Export(cli::export::ExportArgs),
    /// Describe a model file: header, layers, sizes, arena, checksum.
    Inspect(cli::inspect::InspectArgs),
    /// Write the encoder-only file a device embeds (no decoder; bitstreams name the full model).
    Cut(cli::cut::CutArgs),
    /// Stream test images through the device app under QEMU and check it byte for byte.
    Hil(cli::hil::HilArgs),
    /// Recover images from compressed, masked or noisy measurements: VAE prior vs Lasso.
    Recover(cli::recover::RecoverArgs),
    /// Compress a PNG/JPEG image (any size) or a folder of them into .evz files.
    Compress(cli::codec::CompressArgs),
    /// Decompress an .evz file or a folder of them into PNG files.
    Decompress(cli::codec::DecompressArgs),
    /// Build the default photo sets (training: gcompris-qt-data; validation: other packages).
    Photos(cli::photos::PhotosArgs),
    /// Decode a board's defmt log from standard input (`firmware/boards/run-qemu.sh` uses it).
    DefmtPrint(cli::defmt_print::DefmtPrintArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgevae: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    if let Some(b) = cli.backend {
        edgevae::backend::select(b)?;
    }
    edgevae::backend::conv::set_enabled(cli.conv == Conv::Gemm);
    match cli.command {
        Command::Train(a) => cli::train::run_train(a),
        Command::Eval(a) => cli::eval::run_eval(a),
        Command::Sample(a) => cli::sample::run_sample(a),
        Command::Bench(a) => cli::bench::run_bench(a),
        Command::Quantize(a) => cli::quantize::run_quantize(a),
        Command::Export(a) => cli::export::run_export(a),
        Command::Inspect(a) => cli::inspect::run_inspect(a),
        Command::Cut(a) => cli::cut::run_cut(a),
        Command::Hil(a) => cli::hil::run_hil(a),
        Command::Recover(a) => cli::recover::run_recover(a),
        Command::Photos(a) => cli::photos::run_photos(a),
        Command::Compress(a) => cli::codec::run_compress(a),
        Command::Decompress(a) => cli::codec::run_decompress(a),
        Command::DefmtPrint(a) => cli::defmt_print::run_defmt_print(a),
    }
}
