#!/usr/bin/env bash
# The CUDA path, checked in one short run (about 8 minutes on one GPU) where a GPU is at hand:
#   1. ML-1M, the auto recipe, on cuda in fp32 and in bf16 for the same epochs: seconds per epoch and test
#      NDCG@10 (compare with a CPU run of the same epochs: within +-2 %);
#   2. one run through the NCCL code (--nproc 1 starts a worker with torch.distributed over NCCL);
#   3. the service's torch backend on cuda: a model folder served, one recommendation and one batch.
# Usage: bash benchmarks/gpu_check.sh [DATA] [EPOCHS]   (DATA defaults to ../shared/data/ml-1m/ml-1m.txt)
# Prints one line per step and the table at the end; writes under ${OUT:-/tmp/seqrec-gpu-check}.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ml-1m/ml-1m.txt}
EPOCHS=${2:-10}
OUT=${OUT:-/tmp/seqrec-gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

run() {  # name, extra flags
  local name=$1; shift
  local t0=$(date +%s.%N)
  $PY -m seqrec train "$DATA" --out "$OUT/$name" --epochs "$EPOCHS" --patience 0 --device cuda --quiet "$@" \
    > "$OUT/$name.log" 2>&1
  local t1=$(date +%s.%N)
  $PY - "$OUT/$name" "$name" "$t0" "$t1" <<'EOF'
import json, sys
from pathlib import Path
folder, name, t0, t1 = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rows = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines() if l.strip()]
test = json.loads((folder / "metrics.json").read_text())["test"]
per_epoch = sum(r["seconds"] for r in rows) / max(len(rows), 1)
print(f"| {name} | {len(rows)} | {per_epoch:.2f} | {test['NDCG@10']:.4f} | {test['HR@10']:.4f} | {t1 - t0:.0f} |")
EOF
}

echo "| run | epochs | s/epoch | test NDCG@10 | test HR@10 | wall s |" > "$OUT/table.md"
echo "|---|---:|---:|---:|---:|---:|" >> "$OUT/table.md"
run cuda-fp32 --precision fp32 | tee -a "$OUT/table.md"
run cuda-bf16 --precision bf16 | tee -a "$OUT/table.md"
run cuda-nccl --precision fp32 --nproc 1 | tee -a "$OUT/table.md"

# the service's torch backend on cuda: one request and one batch
$PY - "$OUT/cuda-fp32" <<'EOF' || echo "service torch backend on cuda: FAILED (traceback above)"
import sys, time, torch
from seqrec.serving.recommender import Recommender
rec = Recommender.from_folder(sys.argv[1], backend="torch")
rec.scorer.to("cuda")
hist = rec.dataset.item_ids.to_raw(rec.dataset.sequence(0))[-50:]
t = time.perf_counter(); one = rec.recommend(hist, k=10); single = time.perf_counter() - t
t = time.perf_counter(); many = rec.recommend_many([hist] * 256, k=10); batch = time.perf_counter() - t
assert len(one.items) == 10 and all(len(r.items) == 10 for r in many)
print(f"service torch backend on {torch.cuda.get_device_name()}: one {single * 1000:.1f} ms, 256 histories {batch * 1000:.1f} ms")
EOF
cat "$OUT/table.md"
