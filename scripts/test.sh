#!/usr/bin/env bash
# Sets up the machine and runs every test: host (unit, property, integration, tiny training),
# no_std builds for Cortex-M, NEON kernels under qemu-aarch64, DSP kernels under QEMU Cortex-M4/M7.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Each step prints how long the one before it took (CI's budget is a wish of 30 minutes).
last=$SECONDS
step() { echo; echo "== (previous step: $((SECONDS - last)) s) $*"; last=$SECONDS; }

step "gates: cargo fmt --check, cargo clippy -D warnings (workspace and boards)"
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
(cd firmware/boards && cargo clippy --locked --release -- -D warnings)

step "gates: cargo doc with warnings denied; the ndarray backend builds"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --workspace
cargo check --locked -p edgevae --no-default-features --features ndarray

step "GPU backend builds: cargo check -p edgevae --features wgpu (the GPU is chosen at run time)"
cargo check --locked -p edgevae --features wgpu
# A training step on a software Vulkan device (lavapipe), opt-in: see scripts/gpu_smoke.sh.
if [ "${EDGEVAE_GPU_SMOKE:-0}" = 1 ]; then bash scripts/gpu_smoke.sh; fi

step "host: cargo test --workspace"
cargo test --workspace --locked

step "no_std: shared without std or alloc, firmware library (plain and with defmt), for thumbv7em-none-eabihf"
cargo build --locked -p edgevae-shared --target thumbv7em-none-eabihf --no-default-features
cargo build --locked -p edgevae-firmware --target thumbv7em-none-eabihf
cargo build --locked -p edgevae-firmware --target thumbv7em-none-eabihf --features defmt

step "NEON: firmware kernels and engine under qemu-aarch64 (bit-exact with scalar)"
cargo test --locked -p edgevae-firmware --target aarch64-unknown-linux-gnu

if [ -x firmware/boards/run-qemu.sh ]; then
    step "Cortex-M DSP kernels under QEMU (bit-exact with scalar): M4 (mps2-an386), M7 (mps2-an500)"
    firmware/boards/run-qemu.sh kernel_check an386
    firmware/boards/run-qemu.sh kernel_check an500
    firmware/boards/run-qemu.sh engine_check an386

    step "no panics: the device app and the stripe decoder's probe (mps2-an386) link with a panic handler that cannot link"
    (cd firmware/boards && cargo build --locked --release --features panic-never --bin app \
        --bin decode_probe --target-dir target/panic-never)
fi
echo
echo "all tests passed (last step: $((SECONDS - last)) s, in all: $SECONDS s)"
