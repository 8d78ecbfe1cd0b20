//! Model files on the host: writing them atomically, describing them (`inspect`), and running
//! them with the device's exact integer arithmetic (the firmware's scalar kernels).

use std::fmt::Write as _;
use std::path::Path;

use edgevae_firmware::engine::{required_arena, Engine, Scalar};
use edgevae_shared::build::OwnedModel;
use edgevae_shared::format::{Activation, Model, Op};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (created with the
/// folder if missing, removed on failure), then a rename. The host's one way to write a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), crate::Error> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = crate::Error::io;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.persist(path)
        .map_err(|e| crate::Error::io(path)(e.error))?;
    Ok(())
}

/// The arena every kernel set needs: the largest of the scalar reference, this host's fast path
/// and the Cortex-M DSP path (whose scratch the firmware states through its size functions).
pub fn declare_arena(m: &mut OwnedModel) -> Result<u32, String> {
    m.header.arena_bytes = u32::MAX;
    let bytes = m.to_bytes().map_err(|e| e.to_string())?;
    let parsed = Model::from_bytes(&bytes).map_err(|e| e.to_string())?;
    let need = edgevae_firmware::engine::required_arena_all_paths(&parsed);
    let need = u32::try_from(need).map_err(|_| "arena larger than 4 GiB".to_string())?;
    m.header.arena_bytes = need;
    Ok(need)
}

/// A human-readable description of a model file; an invalid file is described as far as it goes.
pub fn inspect(bytes: &[u8]) -> Result<String, edgevae_shared::FormatError> {
    let m = Model::from_bytes(bytes)?;
    let h = m.header();
    let mut s = String::new();
    let _ = writeln!(s, "model      {}", h.name);
    let _ = writeln!(
        s,
        "format     v{}, {} bytes, CRC-32 {:#010x} (ok)",
        u16::from_le_bytes([bytes[4], bytes[5]]),
        bytes.len(),
        m.crc()
    );
    let _ = writeln!(
        s,
        "input      {}x{}x{} uint8 (scale {:.6}, zp {})",
        h.input.h, h.input.w, h.input.c, h.input_q.scale, h.input_q.zero_point
    );
    let _ = writeln!(
        s,
        "latent     {} x int8 = {} bits (scale {:.6}, zp {})",
        h.latent,
        8 * h.latent as u32,
        h.latent_q.scale,
        h.latent_q.zero_point
    );
    let _ = writeln!(
        s,
        "arena      {} bytes declared (activations {}, scalar needs {}, DSP needs {})",
        h.arena_bytes,
        m.activation_bytes(),
        required_arena::<Scalar>(&m),
        edgevae_firmware::engine::required_arena_all_paths(&m)
    );
    let mut weights = 0usize;
    let mut macs = 0u64;
    for (section, layers) in [("encoder", m.encoder()), ("decoder", m.decoder())] {
        let _ = writeln!(s, "{section}:");
        for (i, l) in layers.iter().enumerate() {
            let op = match l.op {
                Op::Conv2d {
                    kh, stride, pad, ..
                } => format!("conv{kh}x{kh}/s{stride}p{pad}"),
                Op::ConvTranspose2d {
                    kh, stride, pad, ..
                } => format!("convT{kh}x{kh}/s{stride}p{pad}"),
                Op::Dense => "dense".into(),
                Op::Reshape => "reshape".into(),
            };
            let act = match l.activation {
                Activation::None => "",
                Activation::Relu => "+relu",
                Activation::Lut { .. } => "+lut",
            };
            let _ = writeln!(
                s,
                "  {i:2} {:<16} {:>3}x{:<3}x{:<4} -> {:>3}x{:<3}x{:<4} weights {:>7} MACs {:>8} out scale {:.5} zp {}",
                format!("{op}{act}"),
                l.input.h, l.input.w, l.input.c, l.output.h, l.output.w, l.output.c,
                l.weights.len(), l.macs(), l.output_q.scale, l.output_q.zero_point
            );
            weights += l.weights.len() + l.bias.len() + l.multiplier.len() + l.shift.len();
            macs += l.macs();
        }
    }
    let _ = writeln!(
        s,
        "parameters {weights} bytes; {macs} MACs per encode + decode"
    );
    match m.entropy() {
        None => {
            let _ = writeln!(s, "entropy    none (raw int8 latents only)");
        }
        Some(e) => {
            let table_bytes: usize = e.levels.iter().map(|l| l.steps.len() + l.cdfs.len()).sum();
            let _ = writeln!(
                s,
                "entropy    {} quality levels, {table_bytes} bytes of steps and 16-bit CDF tables",
                e.levels.len()
            );
            for (i, l) in e.levels.iter().enumerate() {
                let _ = writeln!(s, "  level {i:2} steps {:?}", l.steps);
            }
        }
    }
    Ok(s)
}

/// Runs a model file with the scalar reference kernels: images → latent codes → images.
pub struct Reference<'m> {
    model: &'m Model<'m>,
    arena: Vec<u8>,
}

impl<'m> Reference<'m> {
    pub fn new(model: &'m Model<'m>) -> Self {
        Reference {
            model,
            arena: vec![0; model.header().arena_bytes as usize],
        }
    }
    fn engine(&mut self) -> Engine<'m, '_, Scalar> {
        Engine::<Scalar>::new(self.model, &mut self.arena)
            .expect("a parsed model declares its arena")
    }
    /// One image (uint8 pixels) → int8 latent code.
    pub fn encode(
        &mut self,
        pixels: &[u8],
    ) -> Result<Vec<i8>, edgevae_firmware::engine::EngineError> {
        let mut z = vec![0i8; self.model.header().latent as usize];
        self.engine().encode(pixels, &mut z)?;
        Ok(z)
    }
    /// One latent code → uint8 pixels.
    pub fn decode(&mut self, z: &[i8]) -> Result<Vec<u8>, edgevae_firmware::engine::EngineError> {
        let mut px = vec![0u8; self.model.header().input.len() as usize];
        self.engine().decode(z, &mut px)?;
        Ok(px)
    }
}

/// PSNR in dB between two uint8 images (peak 255).
pub fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    if mse == 0.0 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
