#!/usr/bin/env bash
# The classic Keras CIFAR-10 script, unchanged, then its saved model through the toolkit: convert, quantize
# (calibrated on CIFAR-10's training images) and bench with accuracy on the 10,000 test images. Needs the
# network for CIFAR-10 (about 170 MB, once); offline it stops with a clear message.
#   bash examples/cifar10/run.sh [OUTPUT_FOLDER]
set -euo pipefail
out=${1:-out/cifar10}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
cd "$out"
if ! python -c "import keras; keras.datasets.cifar10.load_data()" >/dev/null 2>&1; then
  echo "CIFAR-10 cannot be downloaded here (this machine looks offline). Online, run this again; offline, try" \
       "examples/credit-scoring or 'toolkit quickstart' (Fashion-MNIST or digits, no network)." >&2
  exit 1
fi
python "$here/cifar10_cnn.py"
toolkit convert cifar10_cnn.keras --to tflite --dataset cifar10
toolkit convert cifar10_cnn.keras --to onnx --dataset cifar10
toolkit quantize cifar10_cnn.keras --scheme int8 --calibration cifar10
toolkit quantize cifar10_cnn.onnx --scheme int8 --calibration cifar10
toolkit bench cifar10_cnn.tflite cifar10_cnn_int8.tflite cifar10_cnn.onnx cifar10_cnn_int8.onnx --dataset cifar10
