#!/usr/bin/env bash
# Installs everything edgevae needs on a fresh Debian machine (idempotent; `--photos` adds the
# photographs the photo codec trains and is validated on):
# apt packages for the emulated devices and the data set, and the pinned Rust toolchain with its
# targets (rust-toolchain.toml lists them; rustup installs them on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# A C compiler for the crates that build C (mimalloc).
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
[ -d /usr/aarch64-linux-gnu/lib ] || need+=(libc6-dev-arm64-cross)
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
# Photo codec: cmake and nasm to build libjpeg-turbo (the JPEG reference), the photographs the
# photo models train on (gcompris-qt-data) and the held-out validation photographs of other
# packages (mate-backgrounds, opencv-doc), never trained on.
command -v cmake >/dev/null || need+=(cmake)
command -v nasm >/dev/null || need+=(nasm)
# The photographs (~400 MB installed) only with --photos (the demo and photo training; the
# tests do not need them).
if [ "${1:-}" = "--photos" ]; then
    [ -d /usr/share/gcompris-qt/rcc ] || need+=(gcompris-qt-data)
    [ -d /usr/share/backgrounds/mate/nature ] || need+=(mate-backgrounds)
    [ -d /usr/share/doc/opencv-doc/examples/data ] || need+=(opencv-doc)
fi
# Text in the figures (plot axes, panel labels); figures are drawn without text if it is missing.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Installs the pinned toolchain, its components and targets if missing.
rustup toolchain install >/dev/null 2>&1 || rustup show active-toolchain >/dev/null
rustup target list --installed | grep -q thumbv7em-none-eabihf
rustup target list --installed | grep -q aarch64-unknown-linux-gnu
echo "setup: ok ($(rustc --version))"
