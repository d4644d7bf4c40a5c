"""Probes: labels, template-grouped folds (no template-level leak), a planted linear signal recovered at its
layer, chance lines, and in-process activations that match the hook core and evaluate_items."""

import numpy as np
import pytest
import torch

from interp.methods.probes import (ProbeConfig, abstain_labels, best_layer, cluster_bootstrap_acc, collect,
                           group_folds, probe_sweep, records_from_meta, resid_hooks, stereotype_labels,
                           template_groups)
from interp.models.backends import as_lm


def _rec(pred, biased=0, unknown=2, cond="ambig", cat="Age", qi="1"):
    return dict(pred=pred, biased_loc=biased, unknown_loc=unknown, context_condition=cond, category=cat,
                question_index=qi)


def test_labels_follow_the_definitions():
    recs = [_rec(0), _rec(1), _rec(2), _rec(None), _rec(0, biased=None), _rec(1, cond="disambig")]
    idx, y = stereotype_labels(recs, "all")
    assert idx.tolist() == [0, 1, 5] and y.tolist() == [1, 0, 0]  # unknown, unparsed, no target left out
    idx, y = stereotype_labels(recs, "ambig")
    assert idx.tolist() == [0, 1]
    idx, y = abstain_labels(recs, "all")
    assert idx.tolist() == [0, 1, 2, 4, 5] and y.tolist() == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="condition"):
        stereotype_labels(recs, "both")


def test_group_folds_keep_templates_apart():
    groups = np.array([f"t{i % 13}" for i in range(200)])
    folds = group_folds(groups, 5, seed=3)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    assert set(folds) == set(range(5))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= np.bincount(np.unique(groups, return_inverse=True)[1]).max()  # balanced
    assert not np.array_equal(group_folds(groups, 5, seed=0), group_folds(groups, 5, seed=1))  # seeded ties
    assert np.array_equal(group_folds(groups, 5, seed=1), group_folds(groups, 5, seed=1))
    assert group_folds(groups[:20], 50).max() == 12  # capped at the number of templates
    with pytest.raises(ValueError, match="at least 2 templates"):
        group_folds(np.array(["a"] * 5))


@pytest.fixture(scope="module")
def planted():
    """Four layers of noise; layer 2 carries the label along a fixed direction, with a template offset
    (a nuisance a non-grouped CV could exploit) on every layer."""
    rng = np.random.default_rng(0)
    L, n, d = 4, 480, 24
    groups = np.array([f"Age:{i % 24}" for i in range(n)])
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(L, n, d)).astype(np.float32)
    v = rng.normal(size=d)
    v /= np.linalg.norm(v)
    X[2] += 1.2 * np.outer(2 * y - 1, v).astype(np.float32)
    offsets = rng.normal(size=(24, d)).astype(np.float32)
    X += offsets[np.arange(n) % 24][None]
    return {f"blocks.{l}.hook_resid_post": X[l] for l in range(L)}, y, groups


def test_planted_signal_recovered_at_its_layer(planted):
    acts, y, groups = planted
    rows = probe_sweep(acts, y, groups, ProbeConfig(n_shuffles=3, n_boot=300))
    b = best_layer(rows)
    assert b["layer"] == 2 and b["best"]
    assert b["acc"] > 0.75 and b["acc_lo"] > b["shuffled_max"] and b["acc_lo"] > b["majority"]
    for r in rows:
        assert r["acc_lo"] <= r["acc"] <= r["acc_hi"]
        assert abs(r["shuffled_mean"] - 0.5) < 0.1
        if r["layer"] != 2:
            assert r["acc"] < 0.6


def test_grouped_folds_do_not_leak_a_template_label():
    """A label fixed per template and read off template offsets: a CV that split templates would memorize the
    offsets (near 1.0); grouped folds leave the probe at chance."""
    rng = np.random.default_rng(1)
    n, d, T = 480, 24, 24
    groups = np.array([f"Age:{i % T}" for i in range(n)])
    y = (np.arange(n) % T) % 2  # the template decides the label
    offsets = rng.normal(size=(T, d)).astype(np.float32) * 3
    X = (rng.normal(size=(n, d)) * 0.3).astype(np.float32) + offsets[np.arange(n) % T]
    rows = probe_sweep({"blocks.0.hook_resid_post": X}, y, groups, ProbeConfig(n_shuffles=1, n_boot=50))
    assert rows[0]["acc"] < 0.75 and rows[0]["backend"] == "sklearn"
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    assert cross_val_score(LogisticRegression(max_iter=1000), X, y, cv=5).mean() > 0.95  # the leak it avoids


def test_probe_input_errors(planted):
    acts, y, groups = planted
    with pytest.raises(ValueError, match="one class"):
        probe_sweep(acts, np.zeros_like(y), groups)
    with pytest.raises(ValueError, match="labels"):
        probe_sweep(acts, y[:-1], groups[:-1])
    with pytest.raises(ValueError, match="backend"):
        probe_sweep(acts, y, groups, ProbeConfig(backend="torch"))  # the removed solver


def test_cluster_bootstrap_interval():
    correct = np.array([[1, 1, 0, 0, 1, 1, 1, 0]], bool)
    groups = np.array(list("aabbccdd"))
    lo, hi = cluster_bootstrap_acc(correct, groups, n_boot=2000, seed=0)
    assert lo[0] < correct.mean() < hi[0]
    lo2, hi2 = cluster_bootstrap_acc(np.ones((1, 8), bool), groups)
    assert lo2[0] == hi2[0] == 1.0


def test_records_from_meta():
    import pandas as pd

    meta = pd.DataFrame(dict(uid=["Age:1", "Age:2"], category=["Age", "Age"], question_index=["3", "4"],
                             context_condition=["ambig", "disambig"], pred=[0, -1], biased_loc=[1, -1],
                             unknown_loc=[2, 0], target_loc=[1, -1], label=[2, 1], example_id=[1, 2]))
    r = records_from_meta(meta)
    assert r[0]["pred"] == 0 and r[0]["biased_loc"] == 1 and r[0]["question_index"] == "3"
    assert r[1]["pred"] is None and r[1]["biased_loc"] is None
    assert template_groups(r).tolist() == ["Age:3", "Age:4"]


def test_collect_matches_hooks_and_eval(tiny_lm, fixture_items):
    from interp.eval.evaluate import EvalConfig, encode_batch, evaluate_items, render_prompts
    from interp.models.hooks import run_with_cache
    from interp.data.prompts import make_prompt

    items = fixture_items[:12]
    names = resid_hooks(tiny_lm.model)
    got = collect(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, names, batch_size=5, progress=False)
    acts, recs = got.acts, got.records
    assert set(acts) == set(names) and acts[names[0]].shape == (12, tiny_lm.model.config.hidden_size)
    ev = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, EvalConfig(batch_size=5, progress=False))
    assert [r["pred"] for r in recs] == [r["pred"] for r in ev]
    enc = encode_batch(tiny_lm.tokenizer, render_prompts(tiny_lm.tokenizer, [make_prompt(it) for it in items[:5]]), "cpu")
    _, cache = run_with_cache(tiny_lm.model, enc, names)
    np.testing.assert_allclose(acts[names[1]][:5], cache[names[1]][:, -1].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        resid_hooks(tiny_lm.model, layers=[7])


def test_probe_margin_clears_every_chance_line():
    from interp.methods.probes import probe_margin

    row = {"acc": 0.70, "majority": 0.60, "shuffled_mean": 0.55, "shuffled_max": 0.65}
    assert probe_margin(row) == pytest.approx(0.05)  # the shuffled max is the highest line here
    assert probe_margin({**row, "majority": 0.72}) == pytest.approx(-0.02)
    assert probe_margin({"acc": 0.7, "majority": 0.6}) == pytest.approx(0.1)  # no shuffled control recorded
