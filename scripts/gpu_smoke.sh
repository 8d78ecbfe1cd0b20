#!/usr/bin/env bash
# One training step and one inference batch on Burn's `wgpu` backend, on a software Vulkan device
# (Mesa's lavapipe) when the machine has no GPU. Not part of scripts/test.sh by default: the run
# takes seconds, but a release build with `--features wgpu` adds the whole CubeCL/wgpu stack to
# the build (`cargo check --features wgpu` alone is ≈ 6 of CI's minutes); set EDGEVAE_GPU_SMOKE=1
# to run it from scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && [ ! -f /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ]; then
    echo "gpu_smoke: installing mesa-vulkan-drivers (lavapipe)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        mesa-vulkan-drivers libvulkan1 >/dev/null
fi
cargo build --quiet --release --bin edgevae --features wgpu
# Vulkan loaders want a runtime directory; a container often has none.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR=$(mktemp -d)
    export XDG_RUNTIME_DIR
fi
# bench trains (forward, backward, Adam step) and infers on synthetic images; it fails on any
# backend error.
target/release/edgevae --backend wgpu bench --data /nonexistent --steps 1 --repeats 1 \
    --batch 16 --infer-batch 16
echo "gpu_smoke: wgpu ran a training step and an inference batch"
