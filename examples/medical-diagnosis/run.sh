#!/usr/bin/env bash
# Medical diagnosis with the mlp family: Wisconsin breast cancer (569 tumours, 30 raw measurements from 0.001 to
# 4000). The scaling is inside the graph, so the int8 file keeps it float and takes the raw measurements; the
# parity gate shows what quantizing the scaling too would do (it is refused). Offline; under a minute.
#   bash examples/medical-diagnosis/run.sh [OUTPUT_FOLDER]
set -euo pipefail
out=${1:-out/medical-diagnosis}
toolkit train mlp --dataset breast-cancer --epochs "${EPOCHS:-40}" --output "$out"
toolkit quantize "$out/mlp.keras" --scheme int8
toolkit convert "$out/mlp.keras" --to onnx
toolkit bench "$out/mlp_int8.tflite" "$out/mlp.onnx" --dataset breast-cancer
echo "Quantizing the in-graph scaling as well (expected: refused by the parity gate, exit 1):"
toolkit quantize "$out/mlp.keras" --scheme int8 -o float_preprocessing=false --output "$out/mlp_all_int8.tflite" || true
