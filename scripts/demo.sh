#!/usr/bin/env bash
# The main job, end to end: set up, take the shipped model (or train one with TRAIN=1), quantize
# it to int8 with its entropy coder, export ONNX checked with tract, run it on the emulated
# Cortex-M4 over its UART (raw latents and coded bitstreams), compress and decompress a picture,
# and print quality and size; then the photo codec on held-out photographs against JPEG and WebP.
#
#   bash scripts/demo.sh                 # shipped model (models/default)
#   TRAIN=1 EPOCHS=3 bash scripts/demo.sh  # train a fresh model first (~30 s an epoch here)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --photos

OUT=${OUT:-runs/demo}
RUN=models/default
mkdir -p "$OUT"
edgevae() { cargo run --quiet --release -p edgevae -- "$@"; }

echo "== build (release)"
cargo build --quiet --release -p edgevae

if [ "${TRAIN:-0}" = 1 ] || [ ! -f "$RUN/model.bpk" ]; then
    echo "== train (${EPOCHS:-3} epochs, seed architecture) into $OUT/train"
    edgevae train --epochs "${EPOCHS:-3}" --out "$OUT/train"
    RUN="$OUT/train"
fi

echo "== quantize $RUN to int8 -> $OUT/model.evae"
edgevae quantize --run "$RUN" --out "$OUT/model.evae"

echo "== inspect"
edgevae inspect "$OUT/model.evae"

echo "== export ONNX (float and int8 QDQ), checked with tract"
edgevae export --run "$RUN" --model "$OUT/model.evae" --out "$OUT/onnx"

echo "== hardware in the loop: Cortex-M4 (QEMU mps2-an386) over the emulated UART"
edgevae hil --model "$OUT/model.evae" --machine mps2-an386 --images "${IMAGES:-100}"

echo "== codec: compress a picture of any size (tile by tile) to .evz and back, with the learned entropy coder"
edgevae compress "$RUN/reconstructions.png" -o "$OUT/codec/reconstructions.evz" --model "$OUT/model.evae" --quality 6
edgevae decompress "$OUT/codec/reconstructions.evz" -o "$OUT/codec/reconstructions.png" --model "$OUT/model.evae"

echo "== rate-distortion on 2,000 test images: VAE and codec (float, int8) vs PCA, DCT/Haar top-k, JPEG -> $OUT/eval/rd.md, rd.png"
ALSO=()
for extra in models/*/; do
    extra=${extra%/}
    # Photo models (their config names a "photo" part) have their own table below.
    if [ "$extra" != "$RUN" ] && [ -f "$extra/model.bpk" ] && ! grep -q '"photo"' "$extra/config.json"; then
        ALSO+=(--also "$extra")
    fi
done
edgevae eval --run "$RUN" --model "$OUT/model.evae" "${ALSO[@]}" --out "$OUT/eval" --rd-images 2000

echo "== recovery from 100 Gaussian measurements and from 80% missing pixels (VAE prior vs Lasso)"
edgevae recover --run "$RUN" --task cs --m 100 --images "${RECOVER_IMAGES:-20}" --out "$OUT/recover-cs100"
edgevae recover --run "$RUN" --task inpaint --missing 0.8 --images "${RECOVER_IMAGES:-20}" --out "$OUT/recover-inpaint80"

PHOTO=models/photo-gray
if [ -f "$PHOTO/model.evae" ]; then
    echo "== photo codec: held-out photographs (other packages than the training set) -> runs/photos/val"
    edgevae photos --out runs/photos
    echo "== compress whole photographs with $PHOTO (grey) and compare with JPEG at the same size"
    mkdir -p "$OUT/photo"
    for f in $(ls runs/photos/val/*.png | head -n 3); do
        name=$(basename "$f" .png)
        edgevae compress "$f" -o "$OUT/photo/$name.evz" --model "$PHOTO/model.evae" --quality "${PHOTO_QUALITY:-3}" --vs-jpeg
        edgevae decompress "$OUT/photo/$name.evz" -o "$OUT/photo/$name.png"
    done
    if [ -f models/photo-rgb/model.evae ]; then
        echo "== the same photographs in colour with models/photo-rgb, against JPEG 4:2:0 at the same size"
        for f in $(ls runs/photos/val/*.png | head -n 3); do
            name=$(basename "$f" .png)
            edgevae compress "$f" -o "$OUT/photo/$name-rgb.evz" --model models/photo-rgb/model.evae --quality "${PHOTO_QUALITY:-3}" --vs-jpeg
            edgevae decompress "$OUT/photo/$name-rgb.evz" -o "$OUT/photo/$name-rgb.png"
        done
    fi
    echo "== photo rate-distortion on every validation photograph: edgevae int8 vs JPEG (libjpeg-turbo) and WebP -> $OUT/photo/rd.md, rd.png"
    edgevae eval --photos runs/photos/val --model "$PHOTO/model.evae" --out "$OUT/photo"
fi
