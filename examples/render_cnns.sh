#!/usr/bin/env bash
# Render two classic CNNs of the model zoo, VGG-16 and ResNet-18, as SVG and PNG diagrams.
#
# What it shows
#   `dslc render` draws a checked model with Graphviz: one box per layer with its output shape
#   and parameter count, blocks (ResNet's basic_block) as clusters, and each `repeat` collapsed
#   to its first iteration in a box marked "x n". `--expand` draws every iteration instead
#   (written here as *_expanded.svg). The output format follows the file suffix.
#
# Usage (from the repository root, after `bash .ci/setup`):
#   PATH=$PWD/.venv/bin:$PATH bash examples/render_cnns.sh [OUT]      (OUT defaults to ./out)
# The dslc command is taken from $DSLC when set, otherwise `dslc` on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ "$ROOT" = "$PWD" ] && ROOT="."   # from the repository root, show short paths
SPECS="$ROOT/specs"
OUT="${1:-out}"
read -r -a DSLC_CMD <<< "${DSLC:-dslc}"
if ! command -v "${DSLC_CMD[0]}" >/dev/null 2>&1; then
    echo "render_cnns: '${DSLC_CMD[0]}' not found; run .ci/setup, put .venv/bin on PATH" >&2
    exit 2
fi
mkdir -p "$OUT"

for name in vgg16 resnet18; do
    for fmt in svg png; do
        "${DSLC_CMD[@]}" render "$SPECS/$name.dl" -o "$OUT/$name.$fmt"
        echo "wrote $OUT/$name.$fmt ($(wc -c < "$OUT/$name.$fmt") bytes)"
    done
    "${DSLC_CMD[@]}" render "$SPECS/$name.dl" --expand -o "$OUT/${name}_expanded.svg"
    echo "wrote $OUT/${name}_expanded.svg ($(wc -c < "$OUT/${name}_expanded.svg") bytes)"
done
