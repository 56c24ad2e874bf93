#!/usr/bin/env bash
# Re-measures every model card figure (checkpoints/cards/*.json) with the evaluation command.
# Usage: checkpoints/evaluate_all.sh MNIST_DIR [NAME...]   (MNIST_DIR holds train-images-idx3-ubyte.gz;
#        NAMEs default to every shipped checkpoint)
# Held-out figures: the first 1,000 of the 10,000 held-out training images (BBB: the first 200), seed 0.
# Quick-check figures: tests/data/mnist-valid200 (committed), which tests/test_cards.py re-runs.
set -euo pipefail
data=${1:?usage: $0 MNIST_DIR [NAME...]}
shift
names=("${@:-vae1-elbo vae1-iwae50 vae1-jvi50 vae2-iwae50 vae2d-iwae50 lg4 bbb-mlp400 fashion-vae1-iwae50}")
fashion=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}  # Debian's dataset-fashion-mnist
read -r -a names <<< "${names[*]}"
py=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
mkdir -p checkpoints/cards
for name in "${names[@]}"; do
  if [ "$name" = bbb-mlp400 ]; then
    "$py" -m logpx.evaluation.evaluate checkpoints/bbb-mlp400.safetensors --data "$data" --split valid --limit 200 \
        --estimators iwae:10000 --small-k 2 5 10 20 --batch-size 50 --json checkpoints/cards/bbb-mlp400.json
    continue
  fi
  source=$data quick=tests/data/mnist-valid200
  if [ "${name#fashion-}" != "$name" ]; then source=$fashion quick=tests/data/fashion-valid200; fi
  "$py" -m logpx.evaluation.evaluate "checkpoints/$name.safetensors" --data "$source" --split valid --limit 1000 \
      --estimators elbo:5000 iwae:5000 jvi:5000:1 --threads "${THREADS:-0}" --json "checkpoints/cards/$name.json"
  "$py" -m logpx.evaluation.evaluate "checkpoints/$name.safetensors" --data "$quick" --split valid200 --limit 50 \
      --estimators iwae:1000 --threads "${THREADS:-0}" --json "checkpoints/cards/$name.quick.json"
done
