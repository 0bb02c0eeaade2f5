#!/usr/bin/env bash
# Forecasting with the lstm family: next month's Mauna Loa CO2 from the previous 24 months (statsmodels).
# Differencing and the last value are inside the graph, so a device feeds raw ppm. The TFLite converter unrolls
# the LSTM (TFLite has no builtin for a looping LSTM) and says so; full int8 keeps the raw ppm path float.
# Compared with the naive forecast (the last value) in `toolkit train`'s output. Offline; about a minute.
#   bash examples/forecasting/run.sh [OUTPUT_FOLDER]
set -euo pipefail
out=${1:-out/forecasting}
for cell in lstm gru; do
  toolkit train lstm -o cell=$cell --epochs "${EPOCHS:-60}" --output "$out/$cell"
  toolkit quantize "$out/$cell/lstm.keras" --scheme int8
  toolkit convert "$out/$cell/lstm.keras" --to onnx
  toolkit bench "$out/$cell/lstm_int8.tflite" "$out/$cell/lstm.onnx" --dataset co2
done
