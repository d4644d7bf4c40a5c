#!/bin/bash
# Issue 28 parity: record eval, probe, directions, steering (logits and generate, three backends), a store and the
# RM scorer on the shipped organism. usage: record.sh OUTDIR (from a checkout's root, PYTHONPATH=$PWD); compare two
# folders with compare.py A B.
set -e
O=$1; mkdir -p $O
: "${INTERP_BBQ_DIR:?set INTERP_BBQ_DIR to the official BBQ data folder}"
N="nice -n 19"
$N interp eval --model organism --split dev --limit 300 --out $O/eval > $O/eval.log 2>&1
$N interp eval --model organism --split dev --limit 60 --mode generate --out $O/eval_gen > $O/eval_gen.log 2>&1
$N interp probe --model organism --split dev --limit 300 --layers all --target stereotype --out $O/probe/probe.csv --figures $O/fig > $O/probe.log 2>&1
$N interp directions --model organism --split train --limit 400 --out $O/directions.safetensors > $O/dir.log 2>&1
$N interp steer --model organism --split dev --limit 200 --directions $O/directions.safetensors --direction stereotype,stereotype_orth --layer 2 --alphas -8,0,8 --units sigma --out $O/steer/alpha_curve.csv --figures $O/fig > $O/steer.log 2>&1
$N interp steer --model organism --split dev --limit 40 --directions $O/directions.safetensors --direction stereotype --layer 2 --alphas -8,8 --mode generate --out $O/steer_gen/alpha_curve.csv --figures $O/fig > $O/steer_gen.log 2>&1
for b in transformer_lens nnsight; do
$N interp steer --model organism --split dev --limit 24 --directions $O/directions.safetensors --direction stereotype --layer 1 --alphas -8,8 --from-pos -1 --mode generate --backend $b --out $O/steer_gen_$b/alpha_curve.csv --figures $O/fig > $O/steer_gen_$b.log 2>&1
done
$N interp cache --model organism --split dev --limit 64 --layers all --hooks hook_resid_post,mlp.hook_post --out $O/cache.h5 > $O/cache.log 2>&1
$N python "$(dirname "$0")/api.py" $O > $O/api.log 2>&1
echo done
