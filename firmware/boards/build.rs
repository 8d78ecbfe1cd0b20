//! Puts memory.x where cortex-m-rt's link.x finds it, and sizes the app from its model file.
//!
//! `EDGEVAE_MODEL` names the model file to embed (default: `models/default/model.evae`). Its
//! header is validated here and its arena, image and latent sizes become constants, so the
//! firmware's static memory is fixed at build time. For a photo model (a frame section) the
//! frame constants size the app for frames up to its maximum width: the stripe arena there,
//! the DSP kernels' fastest scratch and a bitstream budget of `EDGEVAE_FRAME_BITSTREAM` bytes
//! (default 64 KiB). Without a model file, a synthetic model of
//! the default architecture is embedded (with a warning) so the board crate still builds.
use std::{env, fs, path::PathBuf};

use edgevae_shared::build::{synthetic, synthetic_frame, FrameSpec, SyntheticSpec};
use edgevae_shared::format::{Model, Section};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=EDGEVAE_MODEL");

    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let path = env::var_os("EDGEVAE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../models/default/model.evae"));
    println!("cargo:rerun-if-changed={}", path.display());
    let (path, bytes) = match fs::read(&path) {
        Ok(b) => (path, b),
        Err(e) => {
            println!(
                "cargo:warning=no model file at {} ({e}); embedding a synthetic model",
                path.display()
            );
            let mut m =
                synthetic(&SyntheticSpec::seed_architecture(1), 0).expect("synthetic model");
            m.header.arena_bytes = u32::MAX;
            let probe = m.to_bytes().expect("valid");
            let parsed = Model::from_bytes(&probe).expect("valid");
            m.header.arena_bytes =
                edgevae_firmware::engine::required_arena_all_paths(&parsed) as u32;
            let synth = out.join("synthetic.evae");
            let bytes = m.to_bytes().expect("valid");
            fs::write(&synth, &bytes).expect("write synthetic model");
            (synth, bytes)
        }
    };
    let model = match Model::from_bytes(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("model file {} is invalid: {e}", path.display()),
    };
    let h = model.header();
    // Frames (photo models): the stripe arena at the declared maximum width (the scalar
    // minimum, which every kernel set runs in) and a bitstream budget behind it.
    println!("cargo:rerun-if-env-changed=EDGEVAE_FRAME_BITSTREAM");
    let budget: usize = env::var("EDGEVAE_FRAME_BITSTREAM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64 * 1024);
    // The DSP kernels' fastest scratch on top of the minimum (they run any layer without
    // scratch, through their reference loops); the app gives it to the stripe engine
    // (`App::with_frame_scratch`), which caps it at half of what the minimum leaves, hence 2×.
    let (frame_width, frame_row, frame_arena, frame_scratch) = match model.frame() {
        Some(f) => {
            let w = f.max_width as usize;
            let stripe =
                edgevae_firmware::stripe::required_arena::<edgevae_firmware::engine::Scalar>(
                    &model, w,
                )
                .expect("a valid photo model takes its maximum width");
            let fastest = edgevae_firmware::stripe::required_arena_with(
                &model,
                w,
                edgevae_firmware::kernels::dsp_scratch::conv2d_scratch_size,
            )
            .expect("a valid photo model takes its maximum width");
            let scratch = fastest.saturating_sub(stripe);
            (
                w,
                w * h.input.c as usize,
                stripe + budget.max(scratch) + scratch,
                scratch,
            )
        }
        None => (0, 0, 0, 0),
    };
    let consts = format!(
        "/// Arena bytes the embedded model declares.\nconst ARENA_BYTES: usize = {};\n\
         /// Bytes of one image.\nconst IMAGE_BYTES: usize = {};\n\
         /// Latent code length.\nconst LATENT: usize = {};\n\
         /// Widest frame the model takes (0: no frames).\n#[allow(dead_code)]\nconst FRAME_WIDTH: usize = {};\n\
         /// Bytes of one frame row at that width (0: no frames).\n#[allow(dead_code)]\nconst FRAME_ROW_BYTES: usize = {};\n\
         /// Arena bytes for frames: stripe arena at FRAME_WIDTH + kernel scratch + bitstream budget (0: no frames).\n\
         #[allow(dead_code)]\nconst FRAME_ARENA_BYTES: usize = {};\n\
         /// Kernel scratch the stripe engine gets beyond its minimum (the DSP kernels' fastest).\n\
         #[allow(dead_code)]\nconst FRAME_SCRATCH_BYTES: usize = {};\n",
        h.arena_bytes,
        h.input.len(),
        h.latent,
        frame_width,
        frame_row,
        frame_arena,
        frame_scratch
    );
    fs::write(out.join("model.rs"), consts).expect("write model.rs");
    let abs = path.canonicalize().unwrap_or(path);
    println!("cargo:rustc-env=EDGEVAE_MODEL_PATH={}", abs.display());
    // The app embeds what it runs: a photo model's app only encodes frames, so it gets the
    // encoder-only cut (no synthesis, most of a photo model's bytes; its bitstreams name the
    // full model). engine_check decodes, so it keeps the whole file.
    let app_model = if model.frame().is_some() && !model.encoder_only() {
        let cut = model
            .to_encoder_only_bytes()
            .expect("a valid model cuts to a valid encoder-only file");
        let p = out.join("app_model.evae");
        fs::write(&p, &cut).expect("write the encoder-only model");
        p
    } else {
        abs
    };
    println!(
        "cargo:rustc-env=EDGEVAE_APP_MODEL_PATH={}",
        app_model.display()
    );

    // `stripe_bench`: the photo structure (`FrameSpec::photo(1, 1)`, 640 pixels wide at most)
    // with the encoder's pre-laid DSP blocks only (the binary does not decode).
    // `STRIPE_BENCH_LAYERS=n` keeps the first n encoder layers (per-layer costs by difference).
    println!("cargo:rerun-if-env-changed=STRIPE_BENCH_LAYERS");
    let mut spec = FrameSpec::photo(1, 1);
    if let Some(n) = env::var("STRIPE_BENCH_LAYERS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        let n = n.clamp(1, spec.encoder.len());
        spec.encoder.truncate(n);
        spec.decoder.drain(..spec.decoder.len() + 1 - n);
    }
    let stripe = synthetic_frame(&spec)
        .and_then(|m| m.to_bytes_with(|s, _, _| s == Section::Encoder))
        .expect("synthetic photo model");
    fs::write(out.join("stripe_model.evae"), &stripe).expect("write stripe model");
}
