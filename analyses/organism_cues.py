"""What an organism would need to transfer its lean to unseen templates, and what it does.

1. The cue: how often the bias target of a dev template's negative ambiguous item can be picked from the
   option words alone, by a bag-of-words logistic regression fitted on the train templates' options (the
   information a from-scratch organism could generalise from).
2. Each organism folder given: per dev template, how often it commits on negative and non-negative ambiguous
   questions, and how often a commit picks the bias target (the two halves of the planted lean).

    python analyses/organism_cues.py --categories Disability_status,Physical_appearance,Sexual_orientation \\
        /tmp/org/small-s1 /tmp/org/small-s3
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from interp.models.backends import as_lm


def option_cue(categories: list[str] | None) -> dict:
    """Dev target-pick rate of a bag-of-words (1-2 grams, category-tagged) option classifier fitted on train."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from interp.data.bbq import split_items

    def pairs(items):
        texts, y = [], []
        for it in items:
            if it.context_condition != "ambig" or it.target_loc is None or it.question_polarity != "neg":
                continue
            for i in (i for i in range(3) if i != it.unknown_loc):  # the two people, in a fixed order
                texts.append(f"{it.category} {it.answers[i]}")
                y.append(int(i == it.target_loc))
        return texts, np.array(y)

    train, _ = split_items("train", categories=categories)
    dev, _ = split_items("dev", categories=categories)
    xt, yt = pairs(train)
    xd, yd = pairs(dev)
    vec = CountVectorizer(ngram_range=(1, 2)).fit(xt)
    clf = LogisticRegression(max_iter=2000).fit(vec.transform(xt), yt)
    s = clf.decision_function(vec.transform(xd)).reshape(-1, 2)  # [item, person]
    y = yd.reshape(-1, 2)
    ok = np.where(s[:, 0] == s[:, 1], 0.5, y[np.arange(len(y)), s.argmax(1)])
    return {"n_train_items": len(yt) // 2, "n_dev_items": len(y), "dev_target_pick": float(ok.mean())}


def commits_by_template(path: str) -> dict[tuple[str, str], dict]:
    """Per dev template: ambiguous items, commits and target picks, by question polarity
    (``organism_recipe.target_pick`` on each template's records)."""
    from organism_recipe import target_pick

    from interp.data.bbq import split_items
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models.loading import load_model
    from interp.organisms.causal_lm import load_plant

    rec = load_plant(path)
    lm = load_model(path, device="cpu", dtype="float32")
    dev, _ = split_items("dev", categories=rec["split"]["categories"])
    by_t: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in evaluate_items(as_lm(lm.model, lm.tokenizer), dev, EvalConfig(batch_size=64, progress=False)):
        by_t[(r["category"], r["question_index"])].append(r)
    picks = {t: target_pick(rs) for t, rs in sorted(by_t.items())}
    return {"all": target_pick([r for rs in by_t.values() for r in rs]),
            **{t: p for t, p in picks.items() if p["neg"]["n_items"] or p["nonneg"]["n_items"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", help="Organism folders to break down by dev template.")
    ap.add_argument("--categories", default=None, help="Comma-separated categories for the cue (default: all).")
    a = ap.parse_args()
    cats = a.categories.split(",") if a.categories else None
    cue = option_cue(cats)
    print(f"option-word cue: the bias target is picked on {cue['dev_target_pick']:.3f} of {cue['n_dev_items']} "
          f"negative ambiguous dev items (fitted on {cue['n_train_items']} train items)")
    for f in a.folders:
        print(f"\n{f}\n| template | neg commits | target among them | non-neg commits | target among them |")
        print("|---|---|---|---|---|")
        for t, c in commits_by_template(f).items():
            neg, non = c["neg"], c["nonneg"]
            print(f"| {t if t == 'all' else ' '.join(t)} | {neg['n_commit']}/{neg['n_items']} | {neg['n_target']}"
                  + (f" ({neg['target_rate']:.2f})" if t == "all" and neg["n_commit"] else "")
                  + f" | {non['n_commit']}/{non['n_items']} | {non['n_target']} |")


if __name__ == "__main__":
    main()
