#!/usr/bin/env bash
# Re-measures the model cards' AIS figures (checkpoints/cards/*.ais.json): on the first 50 of the
# held-out training images, IWAE-5000 and JVI-5000 (m=1) and AIS (16 chains, 500 steps, leapfrog 10,
# encoder start, sigmoid schedule) on the same binarised images, and BDMC on 8 inputs simulated from
# each model with the same AIS setting.
# Usage: checkpoints/evaluate_ais.sh MNIST_DIR [NAME...]
set -euo pipefail
data=${1:?usage: $0 MNIST_DIR [NAME...]}
shift
names=("${@:-vae1-elbo vae1-iwae50 vae1-jvi50 vae2-iwae50 vae2d-iwae50 lg4}")
read -r -a names <<< "${names[*]}"
py=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
for name in "${names[@]}"; do
  "$py" -m logpx.evaluation.evaluate "checkpoints/$name.safetensors" --data "$data" --split valid --limit 50 \
      --estimators iwae:5000 jvi:5000:1 --batch-size 10 --threads "${THREADS:-1}" \
      --ais 500 --ais-chains 16 --ais-leapfrog 10 --ais-limit 50 --bdmc 8 --json "checkpoints/cards/$name.ais.json"
done
