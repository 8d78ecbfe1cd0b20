#!/usr/bin/env bash
# Cargo runner of the board crate (`cargo run --release --bin <bin>` in firmware/boards): runs the
# ELF under QEMU (BOARD=an386 Cortex-M4F by default, an500 Cortex-M7) with semihosting and
# -icount. Every board binary logs with defmt: the log is decoded with `edgevae defmt-print`
# (built by the workspace) or knurling's `defmt-print`, whichever is found. Binaries other than
# the app (which serves requests until stopped) run under a timeout (QEMU_TIMEOUT, 600 s).
set -euo pipefail
elf=${1:?usage: qemu-runner.sh <elf>}
board=${BOARD:-an386}
here=$(cd "$(dirname "$0")" && pwd)
qemu=(qemu-system-arm -M "mps2-$board" -nographic -semihosting-config enable=on,target=native
      -icount shift=5 -kernel "$elf")
if [ "$(basename "$elf")" != app ]; then
    qemu=(timeout "${QEMU_TIMEOUT:-600}" "${qemu[@]}")
fi
for d in "$here/../../target/release/edgevae" "$here/../../target/debug/edgevae"; do
    if [ -x "$d" ]; then
        "${qemu[@]}" | "$d" defmt-print --elf "$elf"
        exit "${PIPESTATUS[0]}"
    fi
done
if command -v defmt-print >/dev/null; then
    "${qemu[@]}" | defmt-print -e "$elf"
    exit "${PIPESTATUS[0]}"
fi
echo "qemu-runner: no defmt decoder (build the workspace: cargo build --release -p edgevae," >&2
echo "or cargo install defmt-print); the log below is raw defmt frames" >&2
exec "${qemu[@]}"
