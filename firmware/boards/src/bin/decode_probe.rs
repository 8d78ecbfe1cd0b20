//! Link-time proof for the stripe decoder (`stripe_decode::decompress`): a binary that decodes
//! a bitstream of any bytes, at a frame size and quality level it reads at run time, through
//! the DSP kernels, with nothing about its input known when it is compiled. `scripts/test.sh`
//! builds it with the feature `panic-never` (the panic handler calls a symbol no object
//! defines), so it links only if no panic path is reachable from untrusted streams and sizes.
//! Run, it decodes an empty stream at 320 × 240 and exits with success.
//!
//!     cd firmware/boards && cargo build --release --features panic-never --bin decode_probe
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use edgevae_boards::{exit, ChecksumSink};
use edgevae_firmware::engine::Fast;
use edgevae_firmware::stripe_decode;
use edgevae_shared::Model;

/// The stripe bench's model (the photo structure with its decoder), 8-aligned.
static MODEL: &[u8] = &edgevae_boards::Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/stripe_model.evae"
)))
.0;

const ARENA: usize = 128 * 1024;
static mut ARENA_BUF: [u8; ARENA] = [0; ARENA];
/// The "received" stream and frame header, read with volatile loads: untrusted at run time.
static mut STREAM: [u8; 4096] = [0; 4096];
static mut HEADER: [u32; 4] = [240, 320, 1, 0];


#[entry]
fn main() -> ! {
    // SAFETY: single-threaded; the only references to these statics are taken here, once.
    let (arena, stream, header) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(ARENA_BUF),
            &*core::ptr::addr_of!(STREAM),
            core::ptr::addr_of!(HEADER),
        )
    };
    // SAFETY: an aligned, initialised static.
    let [rows, cols, level, len] = unsafe { core::ptr::read_volatile(header) };
    let Ok(model) = Model::from_bytes(MODEL) else {
        exit(false)
    };
    let bits = stream.get(..len as usize).unwrap_or(&[]);
    let mut sink = ChecksumSink(0);
    let r = stripe_decode::decompress::<Fast, _>(
        &model,
        level as u8,
        rows as usize,
        cols as usize,
        bits,
        arena,
        &mut sink,
    );
    match r {
        Ok(()) => {
            defmt::println!("decoded, pixels {=u32:x}", sink.0);
            exit(true)
        }
        Err(e) => {
            defmt::println!("stripe_decode: {}", e);
            exit(false)
        }
    }
}
