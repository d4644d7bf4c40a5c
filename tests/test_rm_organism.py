"""The small RM organism, trained here: it leans on the planted attributes (through a few planted MLP
neurons), and the median intervention on the attribute neurons the study selects (without knowing which were
planted) raises hard-split accuracy and lowers sensitivity while overall accuracy moves by less than 2 points
(measured, not assumed). Also the `interp rm debias` command end to end."""

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_rm(tmp_path_factory, bbq_dir):
    from interp.organisms.rm import build_rm_organism

    return build_rm_organism(tmp_path_factory.mktemp("rm") / "small", small=True, seed=0, bbq_dir=bbq_dir,
                             progress=False)


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
    from interp.rm.study import ground_truth

    for method in ("intervention", "intervention_scored"):
        gt = ground_truth(result, method=method)
        assert gt["hard_gain"] > 0.05, gt
        assert gt["sensitivity_drop"] > 0.4, gt
        assert result.acc(method, "easy") < result.acc("rm", "easy"), gt


def test_intervention_ground_truth(result):
    """The issue's claim: hard up, sensitivity down, |overall change| < 2 points (balanced test set)."""
    from interp.rm.study import ground_truth

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
