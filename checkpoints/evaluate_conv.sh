#!/usr/bin/env bash
# Measures the convolutional checkpoints' cards (conv-mnist, fashion-conv, conv-mnist8): the held-out figures as
# checkpoints/evaluate_all.sh does (1,000 held-out images, ELBO / IWAE / JVI at k = 5,000, and the quick check),
# and AIS against importance sampling as checkpoints/evaluate_ais.sh does, on the first 20 held-out images (AIS
# on a convolutional decoder costs about 4x the MLPs' per evaluation on this machine's CPU).
# Usage: checkpoints/evaluate_conv.sh MNIST_DIR [NAME...]
set -euo pipefail
data=${1:?usage: $0 MNIST_DIR [NAME...]}
shift
names=("${@:-conv-mnist fashion-conv conv-mnist8}")
read -r -a names <<< "${names[*]}"
fashion=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}
py=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
for name in "${names[@]}"; do
  source=$data
  if [ "${name#fashion-}" != "$name" ]; then source=$fashion; fi
  FASHION_DIR=$fashion checkpoints/evaluate_all.sh "$data" "$name"
  "$py" -m logpx.evaluation.evaluate "checkpoints/$name.safetensors" --data "$source" --split valid --limit 20 \
      --estimators iwae:5000 jvi:5000:1 --batch-size 10 --threads "${THREADS:-1}" \
      --ais 500 --ais-chains 16 --ais-leapfrog 10 --ais-limit 20 --bdmc 8 --json "checkpoints/cards/$name.ais.json"
done
