//! Table look-up and pixel quantisation.

use super::super::KernelError;

/// `x -> table[x + 128]` reinterpreted as i8, in place (the decoder's last table yields uint8
/// pixels, whose bytes the caller reads back as u8).
pub fn apply_lut(buf: &mut [i8], table: &[u8; 256]) {
    for x in buf.iter_mut() {
        // x + 128 as an index is the byte with its top bit flipped.
        *x = table[((*x as u8) ^ 0x80) as usize] as i8;
    }
}

/// uint8 pixels to int8 `p - 128` (scale 1/255, zero point -128). `out` may be longer than
/// `pixels` (the prefix is written).
pub fn quantize_pixels(pixels: &[u8], out: &mut [i8]) -> Result<(), KernelError> {
    let out = out
        .get_mut(..pixels.len())
        .ok_or(KernelError::BufferTooSmall)?;
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = (p ^ 0x80) as i8;
    }
    Ok(())
}
