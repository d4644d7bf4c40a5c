"""Adapter comparison: linear CKA against planted ground truth, direction cosines and probe transfer on
planted signals, and base vs LoRA adapters of the tiny model end to end (zero adapter = base, CKA falling
with the perturbation size)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.methods.compare import (
    CSV_COLUMNS,
    compare_acts,
    linear_cka,
    probe_transfer,
    unit_direction,
)
from interp.methods.probes import Activations
from interp.models.backends import as_lm


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _cka_reference(X, Y) -> float:
    """The textbook formula with the centering matrix H, for cross-checking."""
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


# ----------------------------------------------------------------------------------------------
# linear CKA


def test_cka_identity_and_invariances():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 24)) @ rng.normal(size=(24, 24))  # anisotropic
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    Y = 3.7 * X @ _orthogonal(24, 1) + 50.0  # rotation, isotropic scale, translation
    assert linear_cka(X, Y) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(1.0, abs=1e-10)
    # a different width on the other side: an isometric embedding into more dimensions keeps CKA at 1
    Z = np.concatenate([X, np.zeros((200, 10))], axis=1) @ _orthogonal(34, 2)
    assert linear_cka(X, Z) == pytest.approx(1.0, abs=1e-10)


def test_cka_invertible_but_not_orthogonal_is_below_one():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 16))
    W = rng.normal(size=(16, 16))  # invertible (a.s.), far from orthogonal
    c = linear_cka(X, X @ W)
    assert 0.5 < c < 0.99
    assert linear_cka(X, X @ _orthogonal(16, 3)) == pytest.approx(1.0, abs=1e-12)


def test_cka_planted_subspace_equals_sqrt_k_over_d():
    """X with centered orthonormal columns; Y = k of them: CKA = sqrt(k / d) exactly."""
    rng = np.random.default_rng(2)
    A = rng.normal(size=(300, 20))
    Q, _ = np.linalg.qr(A - A.mean(0))  # centered (Q's columns span centered vectors), orthonormal
    for k in (1, 5, 20):
        assert linear_cka(Q, Q[:, :k]) == pytest.approx(np.sqrt(k / 20), abs=1e-10)


def test_cka_independent_is_small_and_debiased_fixes_wide():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    assert linear_cka(X, Y) < 0.03
    # few items, many features: plain CKA of independent data is far from 0, the debiased one is not
    X, Y = rng.normal(size=(40, 400)), rng.normal(size=(40, 400))
    assert linear_cka(X, Y) > 0.5
    assert abs(linear_cka(X, Y, debiased=True)) < 0.1


def test_cka_matches_reference_both_paths_and_is_stable():
    rng = np.random.default_rng(4)
    for n, d1, d2 in ((50, 200, 120), (300, 10, 7)):  # Gram path (n < d) and feature path (n > d)
        X, Y = rng.normal(size=(n, d1)), rng.normal(size=(n, d2))
        Y[:, :5] += X[:, :5]
        assert linear_cka(X, Y) == pytest.approx(_cka_reference(X, Y), abs=1e-10)
    # residual-stream-like float32 input: a huge shared offset and an outlier dimension
    X = rng.normal(size=(256, 64)).astype(np.float32)
    X[:, 3] *= 300.0
    X += 1e5
    Y = (X - 1e5) @ _orthogonal(64, 5).astype(np.float32)
    assert linear_cka(X, Y) == pytest.approx(1.0, abs=1e-5)


def test_cka_bad_input():
    X = np.ones((10, 3))
    assert np.isnan(linear_cka(X, np.random.default_rng(0).normal(size=(10, 2))))  # constant side
    with pytest.raises(ValueError, match="same rows"):
        linear_cka(np.zeros((10, 3)), np.zeros((9, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        linear_cka(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(np.zeros(10), np.zeros(10))


# ----------------------------------------------------------------------------------------------
# directions and probe transfer on planted data


def _planted(n=240, d=16, n_templates=12, seed=0):
    """Activations with the stereotype lean along e0 and abstention along e2, and matching records."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, size=n)  # 0 anti-congruent commit, 1 congruent commit, 2 abstain
    X = rng.normal(size=(n, d))
    X[:, 0] += np.where(kind == 1, 2.5, np.where(kind == 0, -2.5, 0.0))
    X[:, 2] += np.where(kind == 2, 3.0, 0.0)
    recs = [
        {"uid": f"T:{i}", "category": "T", "question_index": str(i % n_templates), "context_condition": "ambig",
         "pred": {0: 1, 1: 0, 2: 2}[int(k)], "biased_loc": 0, "unknown_loc": 2}
        for i, k in enumerate(kind)
    ]
    return X, recs, kind


def _rotation(d: int, i: int, j: int, theta: float) -> np.ndarray:
    R = np.eye(d)
    c, s = np.cos(theta), np.sin(theta)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, s, -s, c
    return R


def test_unit_direction_recovers_planted_axis():
    X, recs, kind = _planted()
    y = np.where(kind == 1, 1.0, np.where(kind == 0, 0.0, np.nan))
    v = unit_direction(X, y)
    assert abs(np.linalg.norm(v) - 1) < 1e-12 and v[0] > 0.97
    assert unit_direction(X, np.where(kind == 1, 1.0, np.nan)) is None  # one class only


@pytest.mark.parametrize("theta", [0.0, np.pi / 3, np.pi / 2])
def test_rotated_adapter_cka_one_cosine_cos_theta(theta):
    """Rotating the stereotype axis toward e1 by theta keeps CKA at 1, the stereotype cosine is cos(theta),
    the abstention axis (e2, untouched) keeps cosine 1, and probe transfer falls to chance at 90 degrees."""
    X, recs, _ = _planted()
    base = Activations({"blocks.0.hook_resid_post": X}, recs, label="base")
    other = Activations({"blocks.0.hook_resid_post": X @ _rotation(16, 0, 1, theta)}, recs, label="rot")
    (row,) = compare_acts(base, other)
    assert list(row)[: len(CSV_COLUMNS)] == list(CSV_COLUMNS)
    assert row["cka"] == pytest.approx(1.0, abs=1e-10)
    assert row["cos_stereo"] == pytest.approx(np.cos(theta), abs=0.08)
    assert row["cos_abstain"] == pytest.approx(1.0, abs=0.02)
    assert row["probe_base_acc"] > 0.9
    if theta == 0.0:
        assert row["probe_transfer_acc"] == row["probe_base_acc"]
    if theta == np.pi / 2:
        assert abs(row["probe_transfer_acc"] - 0.5) < 0.15


def test_probe_transfer_uses_adapter_labels():
    """Same activations, the adapter's answers flipped (congruent <-> anti): transfer = 1 - base accuracy."""
    X, recs, kind = _planted(seed=1)
    yb = np.where(kind == 1, 1.0, np.where(kind == 0, 0.0, np.nan))
    groups = np.array([r["question_index"] for r in recs])
    pt = probe_transfer(X, yb, X, 1 - yb, groups)
    assert pt.base_acc > 0.9 and pt.transfer_acc == pytest.approx(1 - pt.base_acc)
    assert pt.n_base == pt.n_adapter == int((kind < 2).sum()) and pt.folds == 5
    none = probe_transfer(X, np.where(kind == 1, 1.0, np.nan), X, yb, groups)  # base has one class only
    assert np.isnan(none.base_acc) and np.isnan(none.transfer_acc)
    with pytest.raises(ValueError, match="hidden size"):
        probe_transfer(X, yb, X[:, :8], yb, groups)


def test_compare_acts_refuses_different_items():
    X, recs, _ = _planted()
    base = Activations({"blocks.0.hook_resid_post": X}, recs)
    other = Activations({"blocks.0.hook_resid_post": X[::-1].copy()}, recs[::-1], label="rev")
    with pytest.raises(ValueError, match="same items"):
        compare_acts(base, other)
    with pytest.raises(ValueError, match="expected"):
        Activations({"blocks.0.hook_resid_post": X[:5]}, recs)


# ----------------------------------------------------------------------------------------------
# end to end: LoRA adapters on the tiny model

SCALES = (0.0, 0.01, 0.03, 0.1)


@pytest.fixture(scope="module")
def lora_adapters(tiny_lm_dir, tmp_path_factory) -> list[str]:
    """LoRA adapters on the tiny model whose B matrices are one fixed random draw times each scale
    (scale 0 is PEFT's default initialisation: the adapter changes nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_lm_dir), dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                     target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    pm = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(1)
    draws = {n: torch.randn(p.shape, generator=g) for n, p in pm.named_parameters() if "lora_B" in n}
    root = tmp_path_factory.mktemp("adapters")
    out = []
    for s in SCALES:
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if n in draws:
                    p.copy_(draws[n] * s)
        d = root / f"lora_{s}"
        pm.save_pretrained(d)
        out.append(str(d))
    return out


@pytest.fixture(scope="module")
def compared(tiny_lm_dir, lora_adapters, fixture_items, tmp_path_factory):
    from interp.methods.compare import compare_adapters
    from interp.models.loading import load_model

    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    out = tmp_path_factory.mktemp("compare")
    # shuffled options: the random tiny model's favourite letter then lands on every answer kind
    df = compare_adapters(lm, lora_adapters, fixture_items, out, shuffle_options=True, progress=False,
                          labels=[f"s={s}" for s in SCALES])
    return df, out


def test_compare_writes_table_and_figure(compared, tiny_lm_dir):
    import pandas as pd

    df, out = compared
    csv = pd.read_csv(out / "compare.csv")
    assert list(csv.columns[: len(CSV_COLUMNS)]) == list(CSV_COLUMNS)
    assert len(csv) == len(SCALES) * 2  # 2 layers in the tiny model
    assert sorted(csv["layer"].unique()) == [0, 1]
    assert (out / "compare.png").stat().st_size > 10_000


def test_zero_adapter_is_the_base(compared):
    df, _ = compared
    z = df[df.adapter == "s=0.0"]
    np.testing.assert_allclose(z["cka"], 1.0, atol=1e-6)
    np.testing.assert_allclose(z["cos_stereo"], 1.0, atol=1e-6)
    np.testing.assert_allclose(z["cos_abstain"], 1.0, atol=1e-6)
    assert z["probe_base_acc"].notna().all()
    np.testing.assert_array_equal(z["probe_transfer_acc"], z["probe_base_acc"])


def test_cka_falls_with_perturbation_size(compared):
    df, _ = compared
    for layer, g in df.groupby("layer"):
        cka = g.set_index("adapter").loc[[f"s={s}" for s in SCALES], "cka"].to_numpy()
        assert cka[1] < 1 - 1e-4, f"layer {layer}: a perturbed adapter should move the activations"
        assert np.all(np.diff(cka) < 0), f"layer {layer}: CKA {cka} should fall as the perturbation grows"


def test_disable_adapter_gives_plain_base_activations(tiny_lm_dir, lora_adapters, fixture_items):
    from interp.methods.compare import attach_adapters
    from interp.methods.probes import collect
    from interp.models.loading import load_model

    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    items = fixture_items[:8]
    plain = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    ref = collect(plain, items, names, progress=False)
    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    pm, pnames = attach_adapters(lm.model, lora_adapters[-1:], str(tiny_lm_dir))
    with pm.disable_adapter():
        base = collect(as_lm(pm, lm.tokenizer), items, names, progress=False)
    pm.set_adapter(pnames[0])
    on = collect(as_lm(pm, lm.tokenizer), items, names, progress=False)
    for n in names:
        np.testing.assert_allclose(base.acts[n], ref.acts[n], atol=1e-5)
        assert not np.allclose(on.acts[n], ref.acts[n], atol=1e-3)


def test_bad_layer_and_bad_adapter(tiny_lm_dir, fixture_items, tmp_path):
    from interp.methods.compare import compare_adapters
    from interp.layers import LayerSpecError
    from interp.models.loading import load_model

    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    with pytest.raises(LayerSpecError, match="out of range"):
        compare_adapters(lm, [str(tmp_path)], fixture_items, tmp_path / "o", layers="0,7", progress=False)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        compare_adapters(lm, [str(tmp_path)], fixture_items, tmp_path / "o", progress=False)


def test_cli_compare(tiny_lm_dir, lora_adapters, fixture_bbq_dir, tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from interp.cli import main

    out = tmp_path / "cmp"
    res = CliRunner().invoke(main, [
        "compare", "--model", str(tiny_lm_dir), "--adapter", lora_adapters[0], "--adapter", lora_adapters[2],
        "--label", "zero", "--label", "mid", "--device", "cpu", "--dtype", "float32", "--bbq-dir",
        str(fixture_bbq_dir), "--split", "all", "--layers", "1", "--shuffle-options", "--out", str(out)])
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(out / "compare.csv")
    assert list(csv["adapter"]) == ["zero", "mid"] and list(csv["layer"]) == [1, 1]
    assert csv["cka"].iloc[0] == pytest.approx(1.0, abs=1e-6) and csv["cka"].iloc[1] < 1
    assert (out / "compare.png").exists() and (out / "compare.json").exists()


def test_compare_from_activation_stores_matches_in_process(compared, tiny_lm_dir, lora_adapters, fixture_items,
                                                           tmp_path):
    """Base and adapter stores written by `interp cache` give the same table as running the models here."""
    from interp.store.activations import cache_split
    from interp.models.backends import load_hooked
    from interp.methods.compare import compare_stores

    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    paths = {}
    for key, adapter in (("base", None), ("zero", lora_adapters[0]), ("mid", lora_adapters[2])):
        h = load_hooked(str(tiny_lm_dir), adapter=adapter, device="cpu", dtype="float32")
        paths[key] = cache_split(h, fixture_items, tmp_path / f"{key}.h5", names, dtype="float32",
                                 shuffle_options=True, progress=False)
    df = compare_stores(paths["base"], [paths["zero"], paths["mid"]], tmp_path / "out",
                        labels=[f"s={SCALES[0]}", f"s={SCALES[2]}"])
    ref = compared[0].set_index(["adapter", "layer"]).loc[df.set_index(["adapter", "layer"]).index]
    for col in CSV_COLUMNS[2:]:
        np.testing.assert_allclose(df[col].to_numpy(), ref[col].to_numpy(), atol=1e-5, err_msg=col)
    assert (tmp_path / "out" / "compare.csv").exists()
    from click.testing import CliRunner

    from interp.cli import main

    res = CliRunner().invoke(main, ["compare", "--base-store", str(paths["base"]), "--store", str(paths["mid"]),
                                    "--layers", "1", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "blocks.1" not in res.output and (tmp_path / "cli" / "compare.json").exists()
    # a store of other prompts (options in their original order) is refused, naming what differs
    h = load_hooked(str(tiny_lm_dir), adapter=lora_adapters[2], device="cpu", dtype="float32")
    other = cache_split(h, fixture_items, tmp_path / "keep.h5", names, dtype="float32", progress=False)
    with pytest.raises(ValueError, match="shuffle_options"):
        compare_stores(paths["base"], [other], tmp_path / "out2")


def test_adapter_from_other_base_is_refused(tiny_lm_dir, lora_adapters, fixture_items, tmp_path):
    import json
    import shutil

    from interp.methods.compare import compare_adapters
    from interp.models.loading import load_model

    bad = tmp_path / "other_base"
    shutil.copytree(lora_adapters[1], bad)
    (bad / "interp_base.json").write_text(json.dumps({"weights_hash": "0123456789abcdef"}))
    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    with pytest.raises(ValueError, match="weights hash"):
        compare_adapters(lm, [str(bad)], fixture_items, tmp_path / "o", progress=False)


def test_compare_adapters_leaves_the_callers_model_as_it_was(tiny_lm_dir, lora_adapters, fixture_items, tmp_path):
    """Comparing attaches the adapters to one weight copy and removes them again: afterwards the model holds no
    LoRA module and gives bit-identical logits."""
    from interp.methods.compare import compare_adapters
    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.models.loading import load_model
    from interp.data.prompts import make_prompt

    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    enc = encode_batch(lm.tokenizer, render_prompts(lm.tokenizer, [make_prompt(it) for it in fixture_items[:6]]), "cpu")
    with torch.no_grad():
        before = lm.model(**enc).logits.clone()
    compare_adapters(lm, lora_adapters, fixture_items, tmp_path / "o", progress=False)
    assert not [n for n, _ in lm.model.named_modules() if "lora" in n.lower()]
    with torch.no_grad():
        assert torch.equal(lm.model(**enc).logits, before)
