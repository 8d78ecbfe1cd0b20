//! The quantized model run on the host with the device's exact integer arithmetic (the
//! firmware's scalar kernels and engine): what every host-side int8 figure and every codec
//! bitstream is computed with.

use edgevae_firmware::engine::{Engine, EngineError, Scalar};
use edgevae_shared::format::Model;

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
    fn engine(&mut self) -> Result<Engine<'m, '_, Scalar>, EngineError> {
        Engine::<Scalar>::new(self.model, &mut self.arena)
    }
    /// One image (uint8 pixels) → int8 latent code.
    pub fn encode(&mut self, pixels: &[u8]) -> Result<Vec<i8>, EngineError> {
        let mut z = vec![0i8; self.model.header().latent as usize];
        self.engine()?.encode(pixels, &mut z)?;
        Ok(z)
    }
    /// One latent code → uint8 pixels.
    pub fn decode(&mut self, z: &[i8]) -> Result<Vec<u8>, EngineError> {
        let mut px = vec![0u8; self.model.header().input.len() as usize];
        self.engine()?.decode(z, &mut px)?;
        Ok(px)
    }
}
