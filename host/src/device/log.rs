//! The boards' logs: the firmware logs with `defmt` (frames over semihosting, the strings left in
//! the ELF's `.defmt` table), and the host turns those frames back into text with
//! `defmt-decoder`, so the device spends neither flash on format strings nor cycles formatting.
//! A binary without a `.defmt` table (the Linux `stdio_app`) logs plain text, passed through.

use std::path::Path;

use super::HilError;

/// The text of the log `bytes` written by the firmware `elf`: one line a defmt frame, as
/// `LEVEL message` (the message alone for `defmt::println!`). A malformed frame becomes a line
/// saying so (and decoding goes on after it); a truncated last frame is dropped.
pub fn decode(elf: &Path, bytes: &[u8]) -> Result<String, HilError> {
    let mut out = Vec::new();
    print_stream(elf, bytes, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Decodes a live log: reads `input` until it ends and writes each frame as a line to `out` as
/// soon as it is whole (`edgevae defmt-print`, which `firmware/boards/run-qemu.sh` pipes QEMU
/// through). Without a `.defmt` table the bytes are copied through.
pub fn print_stream(
    elf: &Path,
    mut input: impl std::io::Read,
    mut out: impl std::io::Write,
) -> Result<(), HilError> {
    let Some(table) = load_table(elf)? else {
        std::io::copy(&mut input, &mut out)?;
        return Ok(());
    };
    let mut decoder = table.new_stream_decoder();
    let mut buf = [0u8; 4096];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        decoder.received(&buf[..n]);
        // Every malformed frame consumes at least its terminator; stop if one does not.
        let mut malformed = 0usize;
        loop {
            match decoder.decode() {
                Ok(frame) => writeln!(out, "{}", line(&frame))?,
                Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
                Err(defmt_decoder::DecodeError::Malformed) => {
                    writeln!(out, "(malformed defmt frame)")?;
                    malformed += 1;
                    if malformed > n {
                        break;
                    }
                }
            }
        }
        out.flush()?;
    }
}

/// The defmt table of `elf`; `None` for a binary that does not log with defmt.
fn load_table(elf: &Path) -> Result<Option<defmt_decoder::Table>, HilError> {
    let image = std::fs::read(elf)?;
    defmt_decoder::Table::parse(&image).map_err(|e| {
        HilError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: defmt table: {e}", elf.display()),
        ))
    })
}

/// One frame as a line: `LEVEL message`, or the message alone for `defmt::println!`.
fn line(frame: &defmt_decoder::Frame<'_>) -> String {
    match frame.level() {
        Some(l) => format!("{} {}", l.as_str().to_uppercase(), frame.display_message()),
        None => frame.display_message().to_string(),
    }
}
