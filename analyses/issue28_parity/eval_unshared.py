"""The logits-mode eval of record.sh with the shared-prefix pass off (EvalConfig.share_prefix=False): the answer
pass alone, to compare with a record made before the shared prefix landed. usage: eval_unshared.py RECORD_DIR"""
import json
import sys

from interp.data.bbq import split_items
from interp.eval.evaluate import EvalConfig, evaluate_items
from interp.models.backends import as_lm
from interp.models.loading import load_model

items, _ = split_items("dev", limit=300)
recs = evaluate_items(as_lm(load_model("organism")), items, EvalConfig(batch_size=16, share_prefix=False, progress=False))
before = [json.loads(line) for line in open(f"{sys.argv[1]}/eval/predictions.jsonl")]
same = [a == b for a, b in zip(recs, before)]
print(f"{sum(same)}/{len(before)} records identical (letter logits to 5 decimals) with share_prefix=False")
