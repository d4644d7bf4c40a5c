"""API-level records: collect, probe_layers, diff_means, alpha_curve (generate too), steered replies per backend,
and the RM scorer with neurons."""
import json, sys, pickle
import numpy as np, torch
import interp
O = sys.argv[1]
dev = interp.bbq.load(split="dev", limit=48)
out = {}
for backend in ("hf", "transformer_lens", "nnsight"):
    lm = interp.load("organism", backend=backend, device="cpu")
    acts = interp.collect(lm, dev, layers="all", progress=False)
    d = interp.diff_means(acts, "stereotype", layer=-1)
    ev = interp.evaluate_bbq(lm, dev[:16], mode="generate", progress=False, n_boot=50)
    cur = interp.alpha_curve(lm, dev[:16], d, alphas=[-6, 6], mode="generate", n_boot=50, progress=False)
    out[backend] = dict(acts={k: v for k, v in acts.acts.items()}, records=acts.records, dir=d.vector.numpy(),
                        gen=ev.records, curve=cur.rows)
from interp.methods.steering import steer
from interp.eval.evaluate import EvalConfig, evaluate_items
# steered replies through each backend with from_pos=-1, 6 new tokens
for backend in ("hf", "transformer_lens", "nnsight"):
    lm = interp.load("organism", backend=backend, device="cpu")
    with steer(lm, out["hf"]["dir"], 1, 6.0, from_pos=-1):
        try:  # before issue 28: evaluation through a backend went through eval_model
            from interp.methods.steering import eval_model
            m, tok = eval_model(lm)
            recs = evaluate_items(m, tok, dev[:16], EvalConfig(mode="generate", max_new_tokens=6, progress=False))
        except ImportError:
            recs = evaluate_items(lm, dev[:16], EvalConfig(mode="generate", max_new_tokens=6, progress=False))
    out[backend]["steered_gen"] = recs
# RM scorer
from interp.organisms.rm import ensure_rm_organism, MODEL_DIR
from interp.rm.scoring import load_reward_model, score
org = ensure_rm_organism(small=True, seed=0, bbq_dir=None)
rm = load_reward_model(str(org / MODEL_DIR), device="cpu")
prompts = [f"Question {i}: who is it?" for i in range(10)]
resp = [f"The answer is {'ABC'[i % 3]} because reasons {i}." for i in range(10)]
for pool in (False, True, "mean", "response"):
    r = score(rm.model, rm.tokenizer, prompts, resp, batch_size=4, record_mlp=pool)
    out[f"rm_{pool}"] = (r.rewards, r.mlp)
pickle.dump(out, open(f"{O}/api.pkl", "wb"))
print("ok")
