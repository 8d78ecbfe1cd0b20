//! The device app on a Linux target, serving the wire protocol over stdin/stdout: how the NEON
//! build runs under `qemu-aarch64` in the hardware-in-the-loop tests (and how to run the app on an
//! aarch64 board with a camera pipeline feeding it).
//!
//!     cargo build -p edgevae-firmware --example stdio_app --target aarch64-unknown-linux-gnu
//!     qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max target/.../stdio_app models/default/model.evae
use std::convert::Infallible;
use std::io::{Read as _, Write as _};

use edgevae_firmware::app::{kernel_path, App};
use edgevae_shared::wire::frame_capacity;
use edgevae_shared::Model;
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{ErrorType, Read, Write};

struct Stdio {
    /// Bytes written and not yet flushed: `obuf[..olen]` (flushed when full and on `flush`).
    obuf: [u8; 4096],
    olen: usize,
    /// Bytes read from stdin and not yet handed out: `buf[pos..len]`. One `read` call takes
    /// whatever the pipe holds (up to 4 KiB), instead of one system call per byte.
    buf: [u8; 4096],
    pos: usize,
    len: usize,
}

impl Stdio {
    /// The next chunk of stdin (out of line: the per-byte path stays a leaf).
    #[cold]
    #[inline(never)]
    fn refill(&mut self) {
        match std::io::stdin().read(&mut self.buf) {
            Ok(n) if n > 0 => (self.pos, self.len) = (0, n),
            _ => std::process::exit(0), // host closed the link
        }
    }

    /// Writes out the pending bytes (out of line, like `refill`).
    #[cold]
    #[inline(never)]
    fn drain(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(self.obuf.get(..self.olen).unwrap_or(&[]));
        let _ = out.flush();
        self.olen = 0;
    }
}

impl ErrorType for Stdio {
    type Error = Infallible;
}
impl Read<u8> for Stdio {
    #[inline]
    fn read(&mut self) -> nb::Result<u8, Infallible> {
        if self.pos >= self.len {
            self.refill();
        }
        let b = self.buf.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        Ok(b)
    }
}
impl Write<u8> for Stdio {
    #[inline]
    fn write(&mut self, b: u8) -> nb::Result<(), Infallible> {
        if self.olen >= self.obuf.len() {
            self.drain();
        }
        if let Some(slot) = self.obuf.get_mut(self.olen) {
            *slot = b;
        }
        self.olen += 1;
        Ok(())
    }
    fn flush(&mut self) -> nb::Result<(), Infallible> {
        self.drain();
        Ok(())
    }
}

const FRAME: usize = frame_capacity(64 * 64 * 3);

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: stdio_app MODEL_FILE");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let model = match Model::from_bytes(&bytes) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    // Photo models also stream frames (`Request::FrameBegin`): the arena then holds the stripe
    // engine at the model's maximum width, the NEON kernels' fastest scratch and 1 MiB of
    // bitstream behind it.
    let (stripe, scratch) = model
        .frame()
        .and_then(|f| {
            let w = f.max_width as usize;
            let need = edgevae_firmware::stripe::required_arena::<edgevae_firmware::engine::Fast>(
                &model, w,
            )?;
            let fastest = edgevae_firmware::stripe::required_arena_with(
                &model,
                w,
                edgevae_firmware::kernels::neon_scratch::conv2d_scratch_size,
            )?;
            Some((need, fastest.saturating_sub(need)))
        })
        .unwrap_or((0, 0));
    let frames = if stripe > 0 {
        stripe + 2 * scratch + (1 << 20)
    } else {
        0
    };
    let mut arena = vec![0u8; (model.header().arena_bytes as usize).max(frames)];
    let serial = Stdio {
        obuf: [0; 4096],
        olen: 0,
        buf: [0; 4096],
        pos: 0,
        len: 0,
    };
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if dotprod {
        // SAFETY: the CPU implements FEAT_DotProd (just detected).
        unsafe { edgevae_firmware::kernels::neon::enable_dotprod() };
    }
    #[cfg(not(all(target_arch = "aarch64", target_endian = "little")))]
    let dotprod = false;
    let mut app = match App::<'_, '_, Stdio, FRAME>::new(&model, &mut arena, serial) {
        Ok(a) => a.with_frame_scratch(scratch),
        Err(e) => {
            eprintln!("{path}: {e:?}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "stdio_app: serving {} with {:?} kernels{}",
        model.header().name.as_str(),
        kernel_path(),
        if dotprod { " (SDOT)" } else { "" }
    );
    loop {
        let _ = app.poll();
    }
}
