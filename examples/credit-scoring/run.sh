#!/usr/bin/env bash
# Credit scoring with the mlp family: German credit (1,000 applicants, 7 numbers and 13 categories each) ->
# an int8 .tflite and an .onnx that take the raw values and category codes a loan system has -> benchmarked on
# LiteRT and ONNX Runtime with their accuracy on the held-out applicants. Offline; about a minute.
#   bash examples/credit-scoring/run.sh [OUTPUT_FOLDER]
set -euo pipefail
out=${1:-out/credit-scoring}
toolkit train mlp --dataset german-credit --epochs "${EPOCHS:-40}" --output "$out"
toolkit quantize "$out/mlp.keras"                  # the mlp family's default scheme for TFLite
toolkit convert "$out/mlp.keras" --to onnx
toolkit quantize "$out/mlp.onnx" --scheme dynamic
toolkit bench "$out"/mlp*.tflite "$out"/mlp*.onnx --dataset german-credit
# Which code each category has is in the manifest: extra.features[i].categories, in code order.
python -c "import json,sys; f=json.load(open(sys.argv[1]))['extra']['features']; print(f[0]['name'], f[0]['categories'])" \
  "$out/mlp.keras.manifest.json"
