#!/usr/bin/env bash
# Trains the shipped convolutional checkpoints (networks described by data, checkpoints/arch/*.json) in two
# single-threaded queues (this project's machine has 2 cores); logs go to checkpoints/logs/.
# Usage: checkpoints/train_conv.sh MNIST_DIR   (Fashion-MNIST from FASHION_DIR, Debian's dataset-fashion-mnist)
set -euo pipefail
data=${1:?usage: $0 MNIST_DIR}
fashion=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}
py=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
run() { name=$1; shift; "$py" -m logpx.training.train --threads 1 --out "checkpoints/$name.safetensors" "$@" > "checkpoints/logs/$name.log" 2>&1; }
(
  run conv-mnist --data "$data" --arch checkpoints/arch/conv-mnist.json --objective elbo --k 1 --epochs 1000 --max-minutes 12
  run fashion-conv --data "$fashion" --arch checkpoints/arch/conv-mnist.json --objective elbo --k 1 --epochs 1000 --max-minutes 12
) &
(
  run conv-mnist8 --data "$data" --arch checkpoints/arch/conv-mnist8.json --objective elbo --k 1 --epochs 1000 --max-minutes 14
) &
wait
