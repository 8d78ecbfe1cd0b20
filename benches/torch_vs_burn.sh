#!/usr/bin/env bash
# Training and inference throughput of `edgevae bench` (Burn, CPU backend) against its PyTorch
# twin (benches/torch_twin.py) on this machine: runs alternate, ROUNDS of each (default 3), and the
# medians are printed. PyTorch lives in a throwaway venv ($TORCH_VENV, default
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
for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS"
    # --data /nonexistent: the synthetic images the twin uses (throughput does not depend on them).
    target/release/edgevae bench --data /nonexistent | tee -a "$log"
    "$VENV/bin/python" benches/torch_twin.py --layout default | tee -a "$log"
    "$VENV/bin/python" benches/torch_twin.py --layout channels_last | tee -a "$log"
done
python3 - "$log" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.search(r"backend (\w+), (\d+) threads: train (\d+) images/s.*infer (\d+) images/s", line)
    if m:
        key = f"edgevae bench ({m[1]}, {m[2]} threads)"
        rows.setdefault(key, []).append((int(m[3]), int(m[4])))
    elif line.startswith("{"):
        j = json.loads(line)
        key = f"{j['impl']} {j['layout']} ({j['threads']} threads)"
        rows.setdefault(key, []).append((j["train_images_per_s"], j["infer_images_per_s"]))
print("\n| implementation | train images/s (median) | infer images/s (median) | runs |")
print("|---|---:|---:|---:|")
for k, v in rows.items():
    print(f"| {k} | {statistics.median(t for t, _ in v):.0f} | {statistics.median(i for _, i in v):.0f} | {len(v)} |")
PY
