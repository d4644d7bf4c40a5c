#!/usr/bin/env bash
# The redesign's behaviour check (issue 28): run the study's steps on the shipped organism and keep what they
# write, so that two commits' snapshots can be compared (python analyses/compare_snapshots.py A B).
#     INTERP_BBQ_DIR=... bash analyses/behaviour_snapshot.sh OUT
set -euo pipefail
OUT=${1:?usage: behaviour_snapshot.sh OUT}
mkdir -p "$OUT"
export INTERP_ACTIVATIONS_DIR="$OUT/activations"
interp eval --model organism --split dev --limit 400 --out "$OUT/eval"
interp probe --model organism --split dev --limit 600 --layers all --target stereotype --out "$OUT/probe/probe.csv"
interp directions --model organism --split train --limit 600 --out "$OUT/directions.safetensors"
interp steer --model organism --split dev --limit 200 --directions "$OUT/directions.safetensors" \
  --direction stereotype,stereotype_orth --layer 2 --alphas -8,0,8 --units sigma --out "$OUT/steer/alpha_curve.csv"
rl train --model organism --lam 0.5 --lr 1e-4 --steps 4 --batch-size 8 --save-steps 4 --seed 0 --threads 1 \
  --out "$OUT/rl" --no-resume
