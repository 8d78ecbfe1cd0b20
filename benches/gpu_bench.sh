#!/usr/bin/env bash
# GPU throughput: `edgevae bench --backend wgpu` (Burn's wgpu backend, Vulkan) against the PyTorch
# twin on CUDA, on one machine, alternated ROUNDS times; plus a one-epoch training smoke run on the
# GPU and, for scale, both CPU figures on the same machine.
#   EDGEVAE=path/to/edgevae (built with --features wgpu)  PYTHON=python with torch
#   DATA=folder of Fashion-MNIST idx files (for the training run)  OUT=folder for logs
set -uo pipefail
cd "$(dirname "$0")/.."
EDGEVAE=${EDGEVAE:-target/release/edgevae}
PYTHON=${PYTHON:-python3}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-/tmp/gpu_bench}
mkdir -p "$OUT"
log="$OUT/bench.log"
: >"$log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
nproc | sed 's/^/cpus: /' | tee -a "$log"
for r in $(seq "$ROUNDS"); do
    for b in 128 1024; do
        echo "round $r batch $b" | tee -a "$log"
        timeout 90 "$EDGEVAE" --backend wgpu bench --data /nonexistent --batch $b --infer-batch $((2 * b)) \
            2>&1 | tail -1 | sed "s/^/[batch $b] /" | tee -a "$log"
        timeout 90 "$PYTHON" benches/torch_twin.py --device cuda --batch $b --infer-batch $((2 * b)) \
            2>&1 | tail -1 | sed "s/^/[batch $b] /" | tee -a "$log"
    done
done
echo "cpu, same machine" | tee -a "$log"
timeout 90 "$EDGEVAE" bench --data /nonexistent 2>&1 | tail -1 | tee -a "$log"
timeout 90 "$PYTHON" benches/torch_twin.py --layout channels_last 2>&1 | tail -1 | tee -a "$log"
if [ -n "${DATA:-}" ]; then
    echo "training smoke run on wgpu" | tee -a "$log"
    start=$(date +%s)
    timeout 150 "$EDGEVAE" --backend wgpu train --data "$DATA" --epochs 1 --quiet --out "$OUT/run-wgpu" \
        >"$OUT/train-wgpu.log" 2>&1
    echo "exit $? after $(( $(date +%s) - start )) s" | tee -a "$log"
    tail -8 "$OUT/train-wgpu.log" | tee -a "$log"
fi
