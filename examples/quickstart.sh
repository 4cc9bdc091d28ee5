#!/usr/bin/env bash
# Quickstart: the whole dslc workflow on LeNet-5 (specs/lenet5.dl), one command per step.
#
# What it shows
#   1. check    parse the spec and prove every shape fits (exit 1 with located diagnostics if not)
#   2. summary  the per-layer table: symbolic output shapes, parameters (61,706) and MACs
#   3. compile  readable PyTorch source for the model           -> OUT/lenet5.py
#   4. run      a forward pass on NumPy with random inputs (B=2) -> OUT/lenet5_outputs.npz
#               (and the inputs and parameters it used, so you can replay them in PyTorch)
#   5. render   a Graphviz diagram                              -> OUT/lenet5.svg, OUT/lenet5.png
#
# Usage (from the repository root, after `bash .ci/setup`):
#   PATH=$PWD/.venv/bin:$PATH bash examples/quickstart.sh [OUT]      (OUT defaults to ./out)
# The dslc command is taken from $DSLC when set (e.g. DSLC=".venv/bin/python -m dslc.cli"),
# otherwise `dslc` on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ "$ROOT" = "$PWD" ] && ROOT="."   # from the repository root, show short paths
SPEC="$ROOT/specs/lenet5.dl"
OUT="${1:-out}"
read -r -a DSLC_CMD <<< "${DSLC:-dslc}"
if ! command -v "${DSLC_CMD[0]}" >/dev/null 2>&1; then
    echo "quickstart: '${DSLC_CMD[0]}' not found; run .ci/setup, put .venv/bin on PATH" >&2
    exit 2
fi
mkdir -p "$OUT"

# Print each command as a user would type it, then run it with the dslc found above.
step() { printf '\n== %s\n$ dslc %s\n' "$1" "${*:2}"; "${DSLC_CMD[@]}" "${@:2}"; }

step "1. check: parse and check every shape" check "$SPEC"
step "2. summary: shapes, parameters and MACs per layer (batch B bound to 1)" \
    summary "$SPEC" --bind B=1
step "3. compile: PyTorch source" compile "$SPEC" -o "$OUT/lenet5.py"
echo "wrote $OUT/lenet5.py ($(wc -l < "$OUT/lenet5.py") lines)"
step "4. run: one forward pass on NumPy, random inputs and parameters from --seed" \
    run "$SPEC" --bind B=2 --seed 0 --save-inputs "$OUT/lenet5_inputs.npz" \
    --save-params "$OUT/lenet5_params.npz" -o "$OUT/lenet5_outputs.npz"
step "5. render: a diagram of the model (SVG)" render "$SPEC" -o "$OUT/lenet5.svg"
step "5. render: the same as PNG" render "$SPEC" -o "$OUT/lenet5.png"

printf '\nDone. Files in %s:\n' "$OUT"
ls -l "$OUT"
