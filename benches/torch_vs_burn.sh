#!/usr/bin/env bash
# Training and inference throughput of `edgevae bench` (Burn, CPU backend; with edgevae's
# convolution extension and with Burn's own ops) against its PyTorch twin (benches/torch_twin.py)
# on this machine, for the seed network and the photo codec at 64x64 crops: runs alternate,
# ROUNDS of each (default 3), and the medians are printed. PyTorch lives in a throwaway venv ($TORCH_VENV, default
# /tmp/edgevae-torch-venv), never in the project's dependencies; without it the script says so and
# exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TORCH_VENV:-/tmp/edgevae-torch-venv}
ROUNDS=${ROUNDS:-3}
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "torch_vs_burn: installing torch into $VENV (pip)"
    if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch numpy; }; then
        echo "torch_vs_burn: torch cannot be installed here; nothing to compare"
        exit 0
    fi
fi
cargo build --quiet --release --bin edgevae
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The photo codec at 64x64 crops, batch 32 (the same pixels per step as the trainer's 8 x 128x128).
PHOTO=(--photo gray --crop 64 --batch 32 --infer-batch 32 --steps 20)
for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS"
    # --data /nonexistent: the synthetic images the twin uses (throughput does not depend on them).
    # --conv gemm is edgevae's convolution extension (the default), --conv burn Burn's own ops.
    for conv in gemm burn; do
        target/release/edgevae --conv $conv bench --data /nonexistent | tee -a "$log"
    done
    for layout in default channels_last; do
        "$VENV/bin/python" benches/torch_twin.py --layout $layout | tee -a "$log"
    done
    for conv in gemm burn; do
        target/release/edgevae --conv $conv bench "${PHOTO[@]}" | tee -a "$log"
    done
    for layout in default channels_last; do
        "$VENV/bin/python" benches/torch_twin.py --model photo --crop 64 --batch 32 \
            --infer-batch 32 --steps 20 --layout $layout | tee -a "$log"
    done
done
python3 - "$log" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    seed = re.search(r"^backend (\w+), conv (\w+), (\d+) threads: train (\d+) images/s.*infer (\d+) images/s", line)
    photo = re.search(r"^photo (\d+)x\d+, backend (\w+), conv (\w+), (\d+) threads: train ([\d.]+) crops/s.*infer ([\d.]+) crops/s", line)
    if seed:
        key = f"seed network | edgevae ({seed[1]}, conv {seed[2]}, {seed[3]} threads)"
        rows.setdefault(key, []).append((float(seed[4]), float(seed[5])))
    elif photo:
        key = f"photo codec {photo[1]}x{photo[1]} | edgevae ({photo[2]}, conv {photo[3]}, {photo[4]} threads)"
        rows.setdefault(key, []).append((float(photo[5]), float(photo[6])))
    elif line.startswith("{"):
        j = json.loads(line)
        if j.get("model", "seed") == "seed":
            key = f"seed network | {j['impl']} {j['layout']} ({j['threads']} threads)"
            rows.setdefault(key, []).append((j["train_images_per_s"], j["infer_images_per_s"]))
        else:
            key = f"photo codec {j['crop']}x{j['crop']} | {j['impl']} {j['layout']} ({j['threads']} threads)"
            rows.setdefault(key, []).append((j["train_crops_per_s"], j["infer_crops_per_s"]))
print("\n| model | implementation | train per s (median) | infer per s (median) | runs |")
print("|---|---|---:|---:|---:|")
for k, v in rows.items():
    print(f"| {k} | {statistics.median(t for t, _ in v):.1f} | {statistics.median(i for _, i in v):.1f} | {len(v)} |")
PY
