#!/usr/bin/env bash
# Train XOR with the train section of specs/mlp_xor.dl, through `dslc train`.
#
# What it shows
#   1. a data file: the four XOR points as x: f32[4, 2] and the targets t: f32[4, 1]  -> OUT/xor.npz
#   2. dslc train   writes OUT/run/train.py (a standalone PyTorch program) and runs it: 300
#                   full-batch Adam steps; OUT/run/metrics.jsonl, params.npz, checkpoint.pt
#   3. dslc run     the trained parameters on NumPy: the outputs round to XOR -> OUT/y.npz
#   With BACKEND=numpy, step 2 trains on dslc's NumPy interpreter instead (`dslc train
#   --backend numpy`: no PyTorch; the same metrics.jsonl and params.npz, checkpoint.npz).
#
# Usage (from the repository root, after `bash .ci/setup`):
#   PATH=$PWD/.venv/bin:$PATH bash examples/train_xor.sh [OUT]      (OUT defaults to ./out/xor)
#   PATH=$PWD/.venv/bin:$PATH BACKEND=numpy bash examples/train_xor.sh [OUT]
# The dslc command is taken from $DSLC when set (e.g. DSLC=".venv/bin/python -m dslc.cli"),
# otherwise `dslc` on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-out/xor}"
DSLC="${DSLC:-dslc}"
if ! command -v "${DSLC%% *}" >/dev/null 2>&1; then
  echo "train_xor.sh: '${DSLC%% *}' not found; run 'bash .ci/setup' and put .venv/bin on PATH" >&2
  exit 1
fi
mkdir -p "$OUT"

python - "$OUT" <<'PY'
import sys
import numpy as np
out = sys.argv[1]
x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
np.savez(f"{out}/xor.npz", x=x, t=np.array([[0], [1], [1], [0]], np.float32))
np.savez(f"{out}/x.npz", x=x)
PY

$DSLC train "$ROOT/specs/mlp_xor.dl" --data "$OUT/xor.npz" --out "$OUT/run" \
  ${BACKEND:+--backend "$BACKEND"}
$DSLC run "$ROOT/specs/mlp_xor.dl" --params "$OUT/run/params.npz" --inputs "$OUT/x.npz" \
  -o "$OUT/y.npz" >/dev/null

python - "$OUT" <<'PY'
import sys
import numpy as np
y = np.load(f"{sys.argv[1]}/y.npz")["y"].ravel()
acc = float(np.mean((y > 0.5) == np.array([False, True, True, False])))
print(f"xor outputs {np.round(y, 3).tolist()}  accuracy {acc:.0%}")
PY
