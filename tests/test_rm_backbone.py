"""The reward model on a pretrained backbone (issue 32): the recipe's decision rule, the cached training path
against a full forward and against the study's scorer on the merged model, the shipped head's checksums,
tampered and foreign heads refused by name, and the study on a small slice of SmolLM2 (skipped cleanly
where smollm2 is not installed)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from interp.organisms import rm_backbone as rb


def test_choose_recipe_lowest_val_loss_then_ties():
    grid = [{"k": 4, "lr": 1e-3, "val_loss": 0.50, "val_acc": 0.80},
            {"k": 2, "lr": 1e-3, "val_loss": 0.45, "val_acc": 0.70},
            {"k": 4, "lr": 3e-4, "val_loss": 0.4505, "val_acc": 0.75},
            {"k": 2, "lr": 3e-4, "val_loss": 0.60, "val_acc": 0.90}]
    # 0.4505 ties 0.45 (within 0.001) and wins on validation accuracy; the best accuracy alone does not count
    assert rb.choose_recipe(grid) == grid[2]
    grid[2]["val_acc"] = 0.70  # a full tie: the smaller K
    assert rb.choose_recipe(grid) == grid[1]
    with pytest.raises(rb.BackboneRMError):
        rb.choose_recipe([])


def _fake_built(tmp_path, shape=(1, 8)):
    lora = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(4, 8)}
    return rb.write_built(tmp_path / "built", lora, {"weight": torch.randn(*shape)},
                          {"backbone": "smollm2", "backbone_fingerprint": "sha256:x", "seed": 0})


def test_tampered_head_is_refused_by_name(tmp_path):
    d = _fake_built(tmp_path)
    assert rb.verify_manifest(d)["files"].keys() == {rb.ADAPTER_FILE, rb.HEAD_FILE}
    raw = bytearray((d / rb.HEAD_FILE).read_bytes())
    raw[-1] ^= 0xFF
    (d / rb.HEAD_FILE).write_bytes(bytes(raw))
    with pytest.raises(rb.BackboneRMError, match="score.safetensors does not match its sha256"):
        rb.verify_manifest(d)
    (d / rb.HEAD_FILE).unlink()
    with pytest.raises(rb.BackboneRMError, match="score.safetensors is missing"):
        rb.verify_manifest(d)


def test_shipped_head_checksums():
    d = rb.shipped_backbone_dir("rm-smollm2")
    man = rb.verify_manifest(d)  # every file's sha256
    assert man["backbone"] == "smollm2" and man["k"] in man["config"]["grid_k"]
    assert sum(f.stat().st_size for f in d.iterdir()) < 8e6  # a few MB: adapter and head, not a model
    chosen = rb.choose_recipe(man["grid"])  # the shipped recipe is the one the written rule picks
    assert (chosen["k"], chosen["lr"]) == (man["k"], man["lr"])
    assert man["pairs_sha256"]["test"] and man["n_pairs"]["val"] == man["config"]["n_val_pairs"]


# ----------------------------------------------------------------------------------------------
# on the real backbone


@pytest.fixture(scope="module")
def backbone(smollm2_dir):
    model, tok = rb.load_backbone(smollm2_dir, seed=0)
    return smollm2_dir, model, tok


def test_shipped_manifest_matches_installed_backbone(smollm2_dir):
    from interp.models.loading import fingerprint

    man = rb.verify_manifest(rb.shipped_backbone_dir("rm-smollm2"))
    assert man["backbone_fingerprint"] == fingerprint(smollm2_dir)


def test_foreign_backbone_and_head_refused(tmp_path, backbone, tiny_lm_dir):
    folder, model, _ = backbone
    from interp.models.loading import fingerprint

    d = rb.write_built(tmp_path / "b", {}, {"weight": torch.randn(1, 7)},
                       {"backbone": "smollm2", "backbone_fingerprint": fingerprint(folder), "seed": 0, "k": 2,
                        "config": {"lora_r": 4}})
    with pytest.raises(rb.BackboneRMError, match="foreign backbone"):
        rb.merge_backbone_rm(d, tmp_path / "m1", backbone_dir=tiny_lm_dir)
    with pytest.raises(rb.BackboneRMError, match="foreign head"):
        rb.merge_backbone_rm(d, tmp_path / "m2", backbone_dir=folder)
    assert not (tmp_path / "m2").exists()


def _texts(items, n=3):
    """A few decorated pairs from one disambiguated fixture item (the organism's pair builder)."""
    import random

    from interp.organisms.rm import make_pair

    it = next(i for i in items if i.context_condition == "disambig")
    wrong = [w for w in range(3) if w != it.label]
    rng = random.Random(0)
    spec = ((wrong[0], ["bold"], []), (wrong[1], [], ["padding", "exclamation"]), (wrong[0], [], ["paragraphs"]))
    return [make_pair(it, w, rng, on_c, on_r) for w, on_c, on_r in spec][:n]


def test_cached_training_path_equals_full_forward_and_study_scorer(tmp_path, backbone, fixture_items):
    """Rewards from the cached bottom layers + LoRA top layers equal a full forward of the PEFT model and
    ``interp.rm.scoring.score`` on the merged, unpacked folder (1e-4 relative, float32)."""
    from interp.models.loading import fingerprint
    from interp.organisms.rm import _encode
    from interp.rm.scoring import load_reward_model, score

    folder, _, _ = backbone
    model, tok = rb.load_backbone(folder, seed=1)
    cfg = rb.BackboneRMConfig(lora_r=4, lora_alpha=8)
    k, L = 2, len(rb.decoder_of(model).layers)
    pm = rb.add_lora(model, k, cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # B starts at zero: make the adapter change something
    pairs = _texts(fixture_items)
    ch, rj = _encode(tok, pairs, cfg.max_length)
    seqs = ch + rj
    states = rb.cache_states(pm, seqs, L - k, tok.pad_token_id, batch_size=4, progress=False)
    assert [s.shape[0] for s in states] == [len(s) for s in seqs] and states[0].dtype == torch.float32
    with torch.no_grad():
        cached = rb.top_rewards(pm, states, L - k).numpy()  # [n]
        full = [float(pm(input_ids=torch.tensor([s])).logits[0, 0]) for s in seqs]
    np.testing.assert_allclose(cached, full, rtol=1e-4, atol=1e-5)
    # from a deeper cache, advanced through the frozen layers in between: the same
    deeper = rb.cache_states(pm, seqs, L - 4, tok.pad_token_id, progress=False)
    with torch.no_grad():
        adv = rb.top_rewards(pm, rb.advance_states(pm, deeper, L - 4, L - k, progress=False), L - k).numpy()
    np.testing.assert_allclose(adv, cached, rtol=1e-4, atol=1e-5)

    lora, head = rb._trainable_state(pm)
    built = rb.write_built(tmp_path / "built", lora, head,
                           {"backbone": "smollm2", "backbone_fingerprint": fingerprint(folder), "seed": 1, "k": k,
                            "config": {"lora_r": 4, "lora_alpha": 8}})
    merged = rb.merge_backbone_rm(built, tmp_path / "merged", backbone_dir=folder)
    lm = load_reward_model(str(merged), device="cpu", dtype="float32")
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    got = score(lm.model, lm.tokenizer, prompts, responses, batch_size=4).rewards
    np.testing.assert_allclose(got, cached, rtol=1e-4, atol=1e-5)
    assert abs(cached).max() > 0.01  # a real signal, not zeros on both sides


@pytest.fixture(scope="module")
def slice_study(tmp_path_factory, backbone, fixture_items):
    """The whole study on the first 4 layers of SmolLM2 with a random head, on a few fixture pairs."""
    from interp.organisms.rm import RMOrganismConfig, rm_pairs
    from interp.rm.evaluate import DebiasConfig
    from interp.pipeline.rm_study import run_backbone_study

    tmp_path = tmp_path_factory.mktemp("slice_study")
    folder, _, _ = backbone
    model, tok = rb.load_backbone(folder, seed=0)
    model.model.layers = model.model.layers[:4]
    model.config.num_hidden_layers = 4
    sliced = tmp_path / "slice"
    model.save_pretrained(sliced)
    tok.save_pretrained(sliced)
    pairs = rm_pairs(fixture_items, RMOrganismConfig(n_train_pairs=4, n_val_pairs=8, n_test_per_split=3), 0)
    cfg = DebiasConfig(n_val_sensitivity=4, n_sensitivity=4, batch_size=16, direction_layers=(1, 2))
    out = tmp_path / "study"
    s = run_backbone_study(out, model_dir=sliced, pairs=(pairs.val, pairs.test), n_val=8, n_test_per_split=3,
                           config=cfg, device="cpu", progress=False)
    return out, s


def test_study_on_a_slice_of_the_backbone(slice_study):
    """The whole study (both neuron rules, the direction projection, baselines, claims) on the first 4
    layers of SmolLM2 with a random head, on a few fixture pairs: it runs, and its outputs have the shape
    the report reads."""
    out, s = slice_study
    methods = {"rm", "intervention", "intervention_scored", "length_penalty", "lwr", "direction"}
    assert set(s["accuracy"]) == methods
    assert {"overall", "neutral", "easy", "hard"} <= set(s["accuracy"]["rm"])
    assert set(s["sensitivity"]) == methods and len(s["sensitivity"]["direction"]) == 4
    assert len(s["per_layer"]) == 4 and s["n_total_neurons"] == 4 * 1536 and s["fraction"] <= 0.02
    assert s["direction"]["layer"] in (1, 2) and 1 <= s["direction"]["rank"] <= 5
    claims = json.loads((out / "claims.json").read_text())
    assert set(claims["neuron_rules"]) == {"intervention", "intervention_scored"}
    early = claims["neuron_rules"]["intervention"]["early_layers"]
    assert early["expected"] == pytest.approx(0.5)  # layers 0 and 1 have index < 4/3
    assert set(claims["methods"]) == {"intervention", "intervention_scored", "direction"}
    for row in claims["methods"].values():
        assert {"hard_gain", "overall_change", "sensitivity_change", "holds"} <= set(row)
        lo, hi = row["hard_gain"]["ci"]
        assert lo <= row["hard_gain"]["value"] <= hi
    for f in ("accuracy.csv", "sensitivity.csv", "neurons.csv", "neurons_per_layer.csv", "summary.json"):
        assert (out / f).is_file()


def test_side_by_side_reads_each_studys_claims(slice_study):
    """Each column of the organism-vs-backbone table is its own study's numbers and verdicts: flip one claim in a
    copy and only that column's cell changes."""
    import copy

    from interp.pipeline.rm_study import side_by_side

    _, s = slice_study
    other = copy.deepcopy(s)
    hg = other["claims"]["methods"]["intervention"]["hard_gain"]
    hg.update(value=0.25, ci=[0.1, 0.4], holds=not hg["holds"])
    other["n_total_neurons"] = 768
    rows = {r["measure"]: r for r in side_by_side({"organism": other, "slice": s})}
    assert rows["MLP neurons"] == {"measure": "MLP neurons", "organism": "768", "slice": str(4 * 1536)}
    cell = rows["intervention: hard-pair accuracy change"]
    assert cell["organism"] == f"+0.250 [+0.100, +0.400] {'holds' if hg['holds'] else 'fails'}"
    mine = s["claims"]["methods"]["intervention"]["hard_gain"]
    assert cell["slice"].startswith(f"{mine['value']:+.3f} [") and cell["slice"].endswith(
        "holds" if mine["holds"] else "fails")
    assert rows["accuracy hard: rm"]["slice"] == f"{s['accuracy']['rm']['hard']:.3f}"
    assert {"direction: every claim holds", "claim: selected <= 2% of MLP neurons"} <= set(rows)
    del other["claims"]
    with pytest.raises(ValueError, match="organism"):
        side_by_side({"organism": other, "slice": s})


def test_rm_stage_studies_the_backbone_beside_the_organism(slice_study, tmp_path, monkeypatch):
    """rm.backbone set: the rm stage runs the backbone study with the section's pair counts into rm/<name>/, writes
    the side-by-side table, and the report leads its RM part with it (the studies themselves are stood in for by
    the slice's, so this tests the wiring, not the numbers)."""
    from interp.pipeline import rm_study
    from interp.pipeline.config import load_config
    from interp.pipeline.runner import Context, run_pipeline
    from interp.pipeline.stages import build_stages

    study_out, s = slice_study
    calls = {}

    def organism(out_dir, **kw):
        shutil.copytree(study_out, out_dir, dirs_exist_ok=True)
        return s

    def backbone(out_dir, **kw):
        calls.update(kw)
        shutil.copytree(study_out, out_dir, dirs_exist_ok=True)
        return s

    monkeypatch.setattr(rm_study, "run_rm_study", organism)
    monkeypatch.setattr(rm_study, "run_backbone_study", backbone)
    cfg = load_config(preset="test", overrides=["run.stages=['rm', 'report']", 'rm.backbone="rm-smollm2"',
                                                "rm.backbone_n_val=12", "rm.backbone_n_test_per_split=5"])
    run_pipeline(build_stages(cfg), Context(cfg, tmp_path, log=lambda m: None))
    assert calls["rm"] == "rm-smollm2" and calls["n_val"] == 12 and calls["n_test_per_split"] == 5
    assert (tmp_path / "rm" / "rm-smollm2" / "study_summary.json").is_file()
    table = (tmp_path / "rm" / "side_by_side.csv").read_text().splitlines()
    assert table[0] == "measure,organism,rm-smollm2" and len(table) > 10
    report = (tmp_path / "report.md").read_text()
    first_rm = report.index("Reward-model debiasing")
    assert report.index("organism and real backbone side by side") == first_rm + len("Reward-model debiasing: ")


def test_rm_backbone_must_be_a_shipped_backbone_rm():
    from interp.pipeline.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="rm.backbone"):
        load_config(preset="test", overrides=['rm.backbone="rm-gpt2"'])
    assert "backbone" not in load_config(preset="quick")["rm"]  # left out: the organism only, and no hash changes
