"""The shipped small RM organism (weights in the package, pairs drawn again from BBQ): it leans on the planted
attributes (through a few planted MLP neurons), and the median intervention on the attribute neurons the study
selects (without knowing which were planted) raises hard-split accuracy and lowers sensitivity while overall
accuracy moves by less than 2 points (measured, not assumed). Also the `interp rm debias` command end to end,
and the ship / unpack round trip of a recipe build."""

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_rm(tmp_path_factory, bbq_dir):
    from interp.organisms.rm import shipped_rm_dir, unpack_shipped_rm

    shipped = shipped_rm_dir(small=True, seed=0)
    assert shipped is not None, "the small RM organism is not shipped"
    return unpack_shipped_rm(shipped, tmp_path_factory.mktemp("rm") / "small", bbq_dir=bbq_dir)


@pytest.fixture(scope="module")
def result(small_rm):
    from interp.rm.evaluate import DebiasConfig, run_debias
    from interp.organisms.rm import MODEL_DIR, load_rm_organism_data
    from interp.rm.scoring import load_reward_model

    lm = load_reward_model(str(small_rm / MODEL_DIR), device="cpu", dtype="float32")
    val, test = load_rm_organism_data(small_rm)
    return run_debias(lm.model, lm.tokenizer, val, test, DebiasConfig(), methods=("rm", "intervention",
                                                                                  "intervention_scored"))


def test_organism_leans_on_planted_attributes(result):
    assert result.acc("rm", "easy") > result.acc("rm", "neutral") + 0.1
    assert result.acc("rm", "neutral") > result.acc("rm", "hard") + 0.1
    assert result.acc("rm", "neutral") > 0.65  # it also learned the real signal
    for edit in ("padding", "exclamation", "bold", "paragraphs"):
        assert result.sens("rm", edit) > 0.05, edit


def test_selection_within_budget(result):
    sel = result.selection
    assert 0 < len(sel.neurons) <= 0.02 * sel.n_total
    assert sum(sel.per_layer()) == len(sel.neurons)
    assert result.intervention.positions == "all"


def test_selection_finds_planted_neurons(result, small_rm):
    """Chance would put ~0.1 of the planted neurons among so few picks out of 384."""
    planted = json.loads((small_rm / "organism.json").read_text())["planted_neurons"]
    planted = {(int(l), i) for l, idx in planted.items() for i in idx}
    picked = {(n.layer, n.index) for n in result.selection.neurons}
    assert len(planted & picked) >= 1, (sorted(planted), sorted(picked))


def test_intervention_cuts_the_lean(result):
    from interp.pipeline.rm_study import ground_truth

    for method in ("intervention", "intervention_scored"):
        gt = ground_truth(result, method=method)
        assert gt["hard_gain"] > 0.05, gt
        assert gt["sensitivity_drop"] > 0.4, gt
        assert result.acc(method, "easy") < result.acc("rm", "easy"), gt


def test_intervention_ground_truth(result):
    """The issue's claim: hard up, sensitivity down, |overall change| < 2 points (balanced test set)."""
    from interp.pipeline.rm_study import ground_truth

    gt = ground_truth(result)
    assert gt["hard_gain"] > 0 and gt["sensitivity_after"] < gt["sensitivity_before"], gt
    assert abs(gt["overall_change"]) < 0.02, gt


def test_cli_debias_writes_outputs(small_rm, tmp_path):
    from click.testing import CliRunner

    from interp.cli.commands.rm import cmd

    out = tmp_path / "out"
    r = CliRunner().invoke(cmd, ["debias", "--rm", str(small_rm), "--out", str(out), "--limit", "60",
                                 "--n-sensitivity", "20", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for f in ("results.csv", "accuracy.csv", "sensitivity.csv", "neurons.csv", "neurons_per_layer.csv",
              "summary.json", "intervention.json", "accuracy.png", "neurons_per_layer.png"):
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    assert set(s["accuracy"]) == {"rm", "intervention", "intervention_scored", "length_penalty", "lwr"}
    assert "hard" in s["accuracy"]["rm"] and "overall" in s["accuracy"]["rm"]


def test_shipped_rm_pairs_match_the_build_and_nothing_is_trained(small_rm, bbq_dir, monkeypatch):
    """The unpacked folder's pair files are byte for byte the ones the shipped model was built from, and
    ``ensure_rm_organism`` unpacks the shipped one instead of training."""
    import interp.organisms.rm as rm
    from interp.data.download import sha256

    rec = json.loads((small_rm / rm.INFO_FILE).read_text())
    for part, f in (("train", rm.TRAIN_FILE), ("val", rm.VAL_FILE), ("test", rm.TEST_FILE)):
        assert sha256(small_rm / f) == rec["pairs_sha256"][part], part
    assert rec["shipped"] == "rm-organism-small" and rec["variant"] == "small" and rec["seed"] == 0
    monkeypatch.setattr(rm, "build_rm_organism", lambda *a, **k: pytest.fail("trained instead of unpacking"))
    got = rm.ensure_rm_organism(small=True, seed=0, bbq_dir=bbq_dir)
    assert got.name.startswith("shipped-rm-organism-small-") and rm.is_complete(got)
    assert rm.ensure_rm_organism(small=True, seed=0, bbq_dir=bbq_dir) == got  # once


@pytest.mark.parametrize("small", [True, False], ids=["small", "full"])
def test_both_shipped_rm_organisms_unpack_from_the_official_bbq(small, bbq_dir, tmp_path):
    """Both shipped RM organisms pass their checksums and draw their recorded pairs from the official files."""
    import interp.organisms.rm as rm

    shipped = rm.shipped_rm_dir(small=small, seed=0)
    out = rm.unpack_shipped_rm(shipped, tmp_path / "rm", bbq_dir=bbq_dir)
    rec = json.loads((out / rm.INFO_FILE).read_text())
    assert rec["variant"] == ("small" if small else "full") and rm.is_complete(out)
    assert rm.shipped_rm_dir(small=small, seed=1) is None  # only seed 0 ships


def test_ship_and_unpack_round_trip_and_foreign_bbq(fixture_items, tmp_path, monkeypatch):
    """A recipe build, shipped and unpacked again, has the same model files and pairs; BBQ files that draw other
    pairs are refused by name, and nothing is left behind."""
    from dataclasses import replace

    import interp.organisms.causal_lm as clm
    import interp.organisms.rm as rm
    from interp.data.download import sha256

    cfg = replace(rm.SMALL_CONFIG, hidden_size=16, intermediate_size=32, num_layers=1, vocab_size=300,
                  n_train_pairs=40, n_val_pairs=20, n_test_per_split=10, epochs=1, planted_neurons=2,
                  planted_epochs=1, threads=1)
    built = rm.build_rm_organism(tmp_path / "built", small=True, seed=0, config=cfg, items=fixture_items,
                                 progress=False)
    monkeypatch.setattr(clm, "SHIPPED_ROOT", tmp_path / "weights")
    rm.ship_rm(built)
    shipped = rm.shipped_rm_dir(small=True, seed=0)
    assert shipped == tmp_path / "weights" / "rm-organism-small"
    assert not any(f.suffix == ".jsonl" for f in shipped.iterdir())  # no BBQ text in the package
    out = rm.unpack_shipped_rm(shipped, tmp_path / "unpacked", items=fixture_items)
    for f in (rm.TRAIN_FILE, rm.VAL_FILE, rm.TEST_FILE, f"{rm.MODEL_DIR}/model.safetensors",
              f"{rm.MODEL_DIR}/tokenizer.json"):
        assert sha256(out / f) == sha256(built / f), f
    dis = next(i for i, it in enumerate(fixture_items) if it.context_condition == "disambig")
    other = list(fixture_items)
    other[dis] = replace(other[dis], context=other[dis].context + " It rained.")
    with pytest.raises(rm.RMPairsMismatch, match=r"other (train|val|test) pairs"):
        rm.unpack_shipped_rm(shipped, tmp_path / "other", items=other)
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".other.tmp-*"))
    (shipped / "model.safetensors").write_bytes(b"changed")
    with pytest.raises(clm.OrganismError, match="model.safetensors does not match"):
        rm.shipped_rm_dir(small=True, seed=0)


def test_cli_study_refuses_a_folder_that_is_no_rm_organism(tmp_path):
    from click.testing import CliRunner

    from interp.cli import main

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(main, ["rm", "study", "--organism", str(tmp_path / "mine"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "is not a built RM organism" in r.output, r.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and not (tmp_path / "out").exists()
