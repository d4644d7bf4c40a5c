"""The public API (``interp.__all__``): every name resolves, and the typed results recover a planted signal."""

from __future__ import annotations

import numpy as np
import pytest

import interp


def test_every_public_name_resolves():
    for name in interp.__all__:
        assert getattr(interp, name) is not None, name
    import importlib

    importlib.import_module("interp.methods.compare")  # a submodule import must not shadow the function
    assert callable(interp.compare) and callable(interp.bbq.load)


@pytest.fixture(scope="module")
def planted_acts():
    """Three layers of noise over 40 templates; layer 1 carries the stereotype lean of the model's commits along
    a known direction, layer 2 its abstention."""
    rng = np.random.default_rng(0)
    n, d = 600, 16
    recs, congruent, abstain = [], [], []
    for i in range(n):
        u = int(rng.random() < 0.4)
        c = int(rng.random() < 0.5)
        # pred: 0 = unknown, 1 = biased, 2 = the other person
        pred = 0 if u else (1 if c else 2)
        recs.append({"uid": f"Age:{i}", "category": "Age", "question_index": str(i % 40), "pred": pred,
                     "unknown_loc": 0, "biased_loc": 1, "target_loc": 1, "label": 0,
                     "context_condition": "ambig" if i % 2 else "disambig"})
        congruent.append(pred == 1)
        abstain.append(pred == 0)
    v_st, v_ab = rng.normal(size=d), rng.normal(size=d)
    X = rng.normal(size=(3, n, d)).astype(np.float32)
    X[1] += 2.0 * np.outer(np.array(congruent, float) - np.array([p == 2 for p in [r["pred"] for r in recs]], float),
                           v_st / np.linalg.norm(v_st)).astype(np.float32)
    X[2] += 2.0 * np.outer(np.array(abstain, float), v_ab / np.linalg.norm(v_ab)).astype(np.float32)
    acts = {f"blocks.{l}.hook_resid_post": X[l] for l in range(3)}
    return interp.Activations(acts, recs), v_st / np.linalg.norm(v_st)


def test_probe_layers_finds_the_planted_layer(planted_acts, tmp_path):
    acts, _ = planted_acts
    sweep = interp.probe_layers(acts, label="stereotype", n_boot=200)
    assert sweep.best == 1
    row = sweep.best_row
    assert row["acc_lo"] > max(row["majority"], row["shuffled_max"]) + 0.1
    assert list(sweep.table["layer"]) == [0, 1, 2]
    assert interp.probe_layers(acts, label="abstain", n_boot=100).best == 2
    assert sweep.plot(tmp_path / "p.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match="label must be one of"):
        interp.probe_layers(acts, label="gender")


def test_diff_means_carries_its_layer_and_recovers_the_direction(planted_acts):
    acts, v = planted_acts
    d = interp.diff_means(acts, "stereotype", layer=-2)  # -2 of 3 layers is layer 1
    assert (d.layer, d.hook) == (1, "blocks.1.hook_resid_post")
    cos = float(np.dot(d.unit.numpy(), v))
    assert cos > 0.9, cos
    orth = interp.diff_means(acts, "stereotype_orth", layer=1)
    ab = interp.diff_means(acts, "abstention", layer=1)
    assert abs(float(np.dot(orth.unit.numpy(), ab.unit.numpy()))) < 1e-5  # orthogonal to abstention
    with pytest.raises(ValueError, match="out of range"):
        interp.diff_means(acts, "stereotype", layer=5)


def test_empty_selection_is_refused(tiny_lm):
    with pytest.raises(ValueError, match="no items selected"):
        interp.evaluate_bbq(tiny_lm, [])


def test_compare_needs_an_adapter(tiny_lm_dir, fixture_items):
    lm = interp.load(str(tiny_lm_dir), device="cpu", dtype="float32")
    with pytest.raises(ValueError, match="loaded with an adapter"):
        interp.compare(lm, fixture_items)
