#!/usr/bin/env bash
# Trains the shipped checkpoints in two single-threaded queues (this project's machine has 2 cores).
# Usage: checkpoints/train_all.sh MNIST_DIR   (logs go to checkpoints/logs/)
set -euo pipefail
data=${1:?usage: $0 MNIST_DIR}
py=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
run() { name=$1; shift; "$py" -m logpx.training.train --data "$data" --threads 1 --out "checkpoints/$name.safetensors" "$@" > "checkpoints/logs/$name.log" 2>&1; }
(
  run vae1-iwae50 --layers 1 --objective iwae --k 50 --epochs 1000 --max-minutes 38
  run vae2-iwae50 --layers 2 --objective iwae --k 50 --epochs 1000 --max-minutes 42
) &
(
  run lg4 --family linear_gaussian --latent 4
  run vae2d-iwae50 --layers 1 --latent 2 --objective iwae --k 50 --epochs 1000 --max-minutes 12
  run vae1-elbo --layers 1 --objective elbo --k 1 --epochs 1000 --max-minutes 20
  run vae1-jvi50 --layers 1 --objective jvi --k 50 --order 1 --epochs 1000 --max-minutes 38
) &
wait
# Trained afterwards, alone on the machine (2 threads), from Debian's dataset-fashion-mnist:
fashion=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}
"$py" -m logpx.training.train --data "$fashion" --layers 1 --objective iwae --k 50 --epochs 1000 --max-minutes 14 \
    --out checkpoints/fashion-vae1-iwae50.safetensors > checkpoints/logs/fashion-vae1-iwae50.log 2>&1
