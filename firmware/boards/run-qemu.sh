#!/usr/bin/env bash
# Build and run one board binary under QEMU; exit status is the binary's (semihosting exit).
#   firmware/boards/run-qemu.sh <bin> [an386|an500]
# an386 = Cortex-M4F (default), an500 = Cortex-M7. Set PROFILE=dev for an unoptimised build.
set -euo pipefail
bin=${1:?usage: run-qemu.sh <bin> [an386|an500]}
board=${2:-an386}
case "$board" in an386 | an500) ;; *) echo "unknown board $board (an386|an500)" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
# The board crate builds into its own target folder (its .cargo/config.toml picks the target).
unset CARGO_TARGET_DIR
profile=${PROFILE:-release}
flag=--release
[ "$profile" = dev ] && flag=
(cd "$here" && cargo build $flag --bin "$bin" >&2)
dir=release
[ "$profile" = dev ] && dir=debug
elf="$here/target/thumbv7em-none-eabihf/$dir/$bin"
# The cargo runner: QEMU with semihosting and -icount; the app's defmt log decoded.
BOARD=$board exec "$here/qemu-runner.sh" "$elf"
