"""Directions: planted class-mean shifts recovered, orthogonalization, safetensors round trip and errors."""

import numpy as np
import pytest
import torch

from interp.methods.directions import (DirectionError, class_masks, compute_directions, cosine, load_direction,
                               load_directions, orthogonalize)


def _records(n, rng):
    """Random records: pred 0/1/2, biased 0 or 1, unknown 2; a few unparsed."""
    recs = []
    for i in range(n):
        pred = int(rng.integers(0, 3)) if i % 17 else None
        recs.append(dict(pred=pred, biased_loc=int(rng.integers(0, 2)), unknown_loc=2,
                         context_condition="ambig" if i % 2 else "disambig", category="Age", question_index=str(i % 9)))
    return recs


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(1)
    n, d = 600, 16
    recs = _records(n, rng)
    m = class_masks(recs)
    s_true = np.zeros(d)
    s_true[0] = 2.0
    a_true = np.zeros(d)
    a_true[0], a_true[1] = 1.0, 3.0  # abstention partly shares the stereotype axis
    X = rng.normal(scale=0.3, size=(n, d))
    X += np.outer(m["congruent"], s_true) + np.outer(m["abstain"], a_true)
    acts = {"blocks.0.hook_resid_post": rng.normal(size=(n, d)), "blocks.1.hook_resid_post": X}
    return acts, recs, s_true, a_true


def test_class_masks():
    recs = [dict(pred=0, biased_loc=0, unknown_loc=2, context_condition="ambig"),
            dict(pred=1, biased_loc=0, unknown_loc=2, context_condition="ambig"),
            dict(pred=2, biased_loc=0, unknown_loc=2, context_condition="ambig"),
            dict(pred=None, biased_loc=0, unknown_loc=2, context_condition="ambig"),
            dict(pred=1, biased_loc=None, unknown_loc=2, context_condition="disambig")]
    m = class_masks(recs)
    assert m["congruent"].tolist() == [1, 0, 0, 0, 0]
    assert m["anti"].tolist() == [0, 1, 0, 0, 0]
    assert m["abstain"].tolist() == [0, 0, 1, 0, 0]
    assert m["commit"].tolist() == [1, 1, 0, 0, 1]
    assert class_masks(recs, "ambig")["commit"].tolist() == [1, 1, 0, 0, 0]


def test_planted_directions_recovered(planted):
    acts, recs, s_true, a_true = planted
    ds = compute_directions(acts, recs, "all", {"model": "synthetic"})
    s = ds.get("stereotype", layer=1).vector.numpy()
    a = ds.get("abstention", layer=1).vector.numpy()
    o = ds.get("stereotype_orth", layer=1).vector.numpy()
    assert cosine(s, s_true) > 0.98
    assert np.linalg.norm(s) == pytest.approx(2.0, rel=0.1)
    # commits mix congruent items (which carry s_true), so the abstention difference is a_true - P(cong|commit) s
    assert cosine(a, a_true - 0.5 * s_true) > 0.97
    assert abs(cosine(o, a)) < 1e-6 and cosine(o, s) > 0
    rows = ds.cosine_rows()
    assert [r["layer"] for r in rows] == [0, 1]
    r1 = rows[1]
    assert r1["cos_stereotype_abstention"] == pytest.approx(cosine(s, a), abs=1e-6)
    assert abs(r1["cos_orth_abstention"]) < 1e-6
    assert cosine(ds.get("stereotype", layer=0).vector.numpy(), s_true) < 0.7  # noise layer: no such direction
    m = ds.get("stereotype", layer=1).meta
    assert m["n_pos"] + m["n_neg"] == sum(class_masks(recs)["commit"]) and m["proj_std"] > 0
    assert "difference of means" in m["how"] and m["model"] == "synthetic"


def test_orthogonalize():
    v, a = np.array([1.0, 1.0]), np.array([2.0, 0.0])
    np.testing.assert_allclose(orthogonalize(v, a), [0.0, 1.0])
    np.testing.assert_allclose(orthogonalize(v, np.zeros(2)), v)


def test_save_load_by_name(planted, tmp_path):
    acts, recs, *_ = planted
    ds = compute_directions(acts, recs, "ambig", {"model": "synthetic", "split": "train"})
    p = ds.save(tmp_path / "d.safetensors")
    back = load_directions(p)
    assert back.meta["model"] == "synthetic" and back.meta["condition"] == "ambig"
    for key, d in ds.directions.items():
        assert torch.equal(back.directions[key].vector, d.vector)
        assert back.directions[key].meta["n_pos"] == d.meta["n_pos"]
    d = load_direction(p, "stereotype_orth", layer=1)
    assert d.hook == "blocks.1.hook_resid_post" and d.layer == 1 and d.vector.shape == (16,)
    assert d.meta["hook"] == d.hook and "projection" in d.meta["how"]
    with pytest.raises(DirectionError, match="no direction 'refusal'"):
        load_direction(p, "refusal", layer=1)
    with pytest.raises(DirectionError, match="blocks.5"):
        load_direction(p, "stereotype", layer=5)
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DirectionError, match="not a readable"):
        load_directions(bad)
    with pytest.raises(FileNotFoundError):
        load_directions(tmp_path / "missing.safetensors")


def test_missing_class_is_an_error(planted):
    acts, recs, *_ = planted
    only_abstain = [dict(r, pred=2) for r in recs]
    with pytest.raises(DirectionError, match="class counts"):
        compute_directions(acts, only_abstain)
    with pytest.raises(DirectionError, match="activation rows"):
        compute_directions({"blocks.0.hook_resid_post": np.zeros((3, 4))}, recs)
