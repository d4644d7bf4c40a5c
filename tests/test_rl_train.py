"""A few GRPO steps (TRL GRPOTrainer + LoRA) on a tiny model: checkpoints are PEFT adapters with their run
config and base hash, they change predictions, reload bit-identically, and a killed run resumes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from interp.models.backends import as_lm

FAST = dict(save_steps=2, logging_steps=1, device="cpu", max_completion_length=1, progress=False, threads=1)
LR = 3e-3


def _letter_logits(model, tok, items) -> torch.Tensor:
    """A/B/C logits at the answer position for every item, on the CPU in float32 (the model may be on a GPU).
    [n_items, 3]"""
    from interp.eval.evaluate import encode_batch, letter_token_ids, render_prompts
    from interp.data.prompts import make_prompt

    enc = encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in items]), next(model.parameters()).device)
    with torch.no_grad():
        return model(**enc).logits[:, -1, letter_token_ids(tok)].float().cpu()  # [batch, 3]


@pytest.fixture(scope="session")
def letter_lm_dir(tmp_path_factory, tiny_tokenizer, fixture_items) -> Path:
    """A tiny random Qwen2 whose output head is aimed so A/B/C carry most of the next-token mass (a random
    model almost never samples a letter, so GRPO would see no reward variance)."""
    from interp.eval.evaluate import encode_batch, letter_token_ids, render_prompts
    from interp.data.prompts import make_prompt
    from interp.organisms.tiny import build_causal_lm

    torch.manual_seed(0)
    model = build_causal_lm(tiny_tokenizer, seed=0, tie_word_embeddings=False)
    enc = encode_batch(tiny_tokenizer, render_prompts(tiny_tokenizer, [make_prompt(it) for it in fixture_items]),
                       "cpu")
    with torch.no_grad():
        h = model.model(**enc).last_hidden_state[:, -1]  # [batch, d_model]
        mu = h.mean(0)
        g = torch.Generator().manual_seed(0)
        for t in letter_token_ids(tiny_tokenizer):
            model.lm_head.weight[t] = 1.5 * mu / mu.norm() + 0.3 * torch.randn(mu.shape, generator=g)
    d = tmp_path_factory.mktemp("letter_lm")
    model.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def train_dev(fixture_items):
    """Template-disjoint train (Age) and dev (Religion) items from the fixture."""
    return ([it for it in fixture_items if it.category == "Age"],
            [it for it in fixture_items if it.category == "Religion"])


@pytest.fixture(scope="session")
def trained(tmp_path_factory, letter_lm_dir, train_dev):
    """One 4-step lambda-0 run through build_trainer, with the in-memory model's letter logits after training."""
    from rl.train import TrainConfig, build_trainer, list_checkpoints

    out = tmp_path_factory.mktemp("rl") / "lam0"
    cfg = TrainConfig(model=str(letter_lm_dir), out_dir=str(out), lam=0.0, lr=LR, steps=4, **FAST)
    trainer, _ = build_trainer(cfg, items=train_dev[0])
    trainer.train()
    trainer.model.eval()
    logits = _letter_logits(trainer.model, trainer.processing_class, train_dev[1])
    return {"out": out, "cfg": cfg, "logits": logits, "checkpoints": list_checkpoints(out)}


def test_checkpoints_are_peft_adapters_with_config(trained, letter_lm_dir):
    from interp.models.loading import load_model, weights_hash
    from rl.train import checkpoint_step, read_run_config

    cks = trained["checkpoints"]
    assert [checkpoint_step(c) for c in cks] == [2, 4]
    base = load_model(str(letter_lm_dir), device="cpu", dtype="float32")
    for ck in cks:
        assert (ck / "adapter_config.json").exists() and (ck / "adapter_model.safetensors").exists()
        rc = read_run_config(ck)
        assert rc["step"] == checkpoint_step(ck)
        assert rc["config"]["lam"] == 0.0 and rc["config"]["lr"] == LR and rc["config"]["lora_r"] == 16
        assert json.loads((ck / "interp_base.json").read_text())["weights_hash"] == weights_hash(base.model)
        acfg = json.loads((ck / "adapter_config.json").read_text())
        assert acfg["r"] == 16 and acfg["lora_alpha"] == 32
        targets = acfg["target_modules"]
        targets = [targets] if isinstance(targets, str) else targets
        assert targets == sorted(targets)  # one order every run, so identical trainings hash equal
        assert {t.rsplit(".", 1)[-1] for t in targets} == \
            {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # all linear, no lm_head


def test_adapter_changes_predictions_and_reloads_bit_identically(trained, letter_lm_dir, train_dev):
    from peft import PeftModel

    from interp.models.loading import load_model

    base = load_model(str(letter_lm_dir), device="cpu", dtype="float32")
    before = _letter_logits(base.model, base.tokenizer, train_dev[1])
    reloaded = PeftModel.from_pretrained(base.model, str(trained["checkpoints"][-1])).eval()
    after = _letter_logits(reloaded, base.tokenizer, train_dev[1])
    assert torch.equal(after, trained["logits"]), "reloaded adapter differs from the trained model"
    changed = int((after.argmax(-1) != before.argmax(-1)).sum())
    assert changed >= 1, "four GRPO steps at a large lr changed no prediction"
    assert not torch.allclose(after, before, atol=1e-3)


def test_adapter_for_another_base_is_refused(trained, tiny_lm_dir):
    from interp.models.loading import load_model

    with pytest.raises(ValueError, match="weights hash"):
        load_model(str(tiny_lm_dir), adapter=str(trained["checkpoints"][-1]), device="cpu", dtype="float32")


def test_resume_after_kill_matches_uninterrupted_run(trained, letter_lm_dir, train_dev, tmp_path):
    """Stop after step 2, leave a half-written checkpoint-3 behind (a kill mid-save), resume to step 4:
    the final adapter equals the uninterrupted run's."""
    from safetensors.torch import load_file

    from rl.train import checkpoint_step, train

    out = tmp_path / "lam0"
    first = train(str(letter_lm_dir), out, lam=0.0, lr=LR, steps=2, items=train_dev[0], **FAST)
    assert [checkpoint_step(c) for c in first] == [2]
    partial = out / "checkpoint-3"
    shutil.copytree(first[0], partial)
    (partial / "run_config.json").unlink()  # run_config.json is written last: this save was cut off
    cks = train(str(letter_lm_dir), out, lam=0.0, lr=LR, steps=4, items=train_dev[0], **FAST)
    assert [checkpoint_step(c) for c in cks] == [2, 4]
    assert not partial.exists() and list(out.glob("incomplete-checkpoint-3-*"))
    state = json.loads((cks[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    a = load_file(str(cks[-1] / "adapter_model.safetensors"))
    b = load_file(str(trained["checkpoints"][-1] / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    # a finished run is not trained again, and other settings in the same folder are refused
    assert train(str(letter_lm_dir), out, lam=0.0, lr=LR, steps=4, items=train_dev[0], **FAST) == cks
    with pytest.raises(ValueError, match="lam"):
        train(str(letter_lm_dir), out, lam=1.5, lr=LR, steps=6, items=train_dev[0], **FAST)
    with pytest.raises(ValueError, match="scale_rewards: saved 'group' vs now 'none'"):
        train(str(letter_lm_dir), out, lam=0.0, lr=LR, steps=6, items=train_dev[0], scale_rewards="none", **FAST)


def test_resume_refuses_a_changed_base_or_other_items(letter_lm_dir, train_dev, tmp_path):
    """The base is matched by the fingerprint of its files (a change in the last layer counts), and the training
    items by their ids: either differing is refused before anything trains."""
    from safetensors.torch import load_file, save_file

    from rl.train import train

    base = tmp_path / "base"
    shutil.copytree(letter_lm_dir, base)
    out = tmp_path / "run"
    train(str(base), out, lam=0.0, lr=LR, steps=2, items=train_dev[0], **FAST)
    with pytest.raises(ValueError, match="training items: saved"):
        train(str(base), out, lam=0.0, lr=LR, steps=4, items=train_dev[0][:-4], **FAST)
    sd = load_file(str(base / "model.safetensors"))
    last = sorted(k for k in sd if ".layers." in k)[-1]
    sd[last] = sd[last] + 1e-3
    save_file(sd, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="base weights: saved sha256:"):
        train(str(base), out, lam=0.0, lr=LR, steps=4, items=train_dev[0], **FAST)


def test_progress_is_one_line_not_raw_dicts(letter_lm_dir, train_dev, tmp_path, capfd):
    from rl.train import train

    kw = {**FAST, "progress": True}
    train(str(letter_lm_dir), tmp_path / "p", lam=0.5, lr=LR, steps=2, items=train_dev[0], **kw)
    err = capfd.readouterr()
    text = err.out + err.err
    assert "GRPO lam=0.5" in text and "2/2" in text
    assert "{'loss'" not in text and "'reward'" not in text, text[-2000:]  # TRL's raw log dicts
    assert "is_gradient_checkpointing" not in text
    train(str(letter_lm_dir), tmp_path / "q", lam=0.0, lr=LR, steps=2, items=train_dev[0], **FAST)
    quiet = capfd.readouterr()
    assert "{'loss'" not in quiet.out + quiet.err  # progress=False prints no per-step dicts either


def test_bad_settings_are_named(letter_lm_dir, tmp_path, train_dev):
    from rl.train import train

    with pytest.raises(ValueError, match="divisible by num_generations"):
        train(str(letter_lm_dir), tmp_path, steps=2, items=train_dev[0], batch_size=6, num_generations=4)
    with pytest.raises(TypeError, match="unknown training option"):
        train(str(letter_lm_dir), tmp_path, steps=2, items=train_dev[0], lora_rank=8)
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        train(str(letter_lm_dir), tmp_path, steps=2, items=train_dev[0], scale_rewards="std")


# ----------------------------------------------------------------------------------------------
# the sweep, results_all.csv and figures


@pytest.fixture(scope="session")
def swept(tmp_path_factory, trained, letter_lm_dir, train_dev):
    """A sweep over lambda 0 at LR (the run above, copied in: not retrained) and the lr 1e-6 control."""
    from rl.sweep import RunSpec, sweep

    out = tmp_path_factory.mktemp("sweep")
    shutil.copytree(trained["out"], out / RunSpec(0.0, LR).name)
    kw = {k: v for k, v in FAST.items() if k not in ("device", "progress")}
    df = sweep(str(letter_lm_dir), out, lams=[0.0], lrs=[LR], control_lrs=[1e-6], steps=4, train_items=train_dev[0],
               dev_items=train_dev[1], n_boot=50, device="cpu", progress=False, **kw)
    return out, df


def test_sweep_rows_and_control(swept, letter_lm_dir, train_dev):
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import METRICS, summarize
    from interp.models.loading import load_model

    out, df = swept
    o = df[df["group"] == "overall"]
    assert sorted(zip(o["run"], o["step"])) == [("base", 0), ("lam0_lr0.003", 2), ("lam0_lr0.003", 4),
                                                 ("lam0_lr1e-06_control", 2), ("lam0_lr1e-06_control", 4)]
    assert set(df["group"]) == {"overall", "Religion"}
    for c in ("model", "adapter", "lambda", "lr", "step") + tuple(f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")):
        assert c in df.columns, c
    # the base row is what `interp eval` computes
    lm = load_model(str(letter_lm_dir), device="cpu", dtype="float32")
    want = summarize(evaluate_items(as_lm(lm.model, lm.tokenizer), train_dev[1], EvalConfig(progress=False)), n_boot=50)[0]
    base = o[o["run"] == "base"].iloc[0]
    for m in METRICS:
        assert base[m] == pytest.approx(want[m]) and base[f"{m}_lo"] == pytest.approx(want[f"{m}_lo"])
    # the lr 1e-6 control stays at base; the lr 3e-3 run moves
    ctrl = o[o["run"] == "lam0_lr1e-06_control"]
    main = o[o["run"] == "lam0_lr0.003"]
    for m in ("acc_ambig", "acc_disambig", "abstain_ambig", "amb_commit_bias"):
        assert (ctrl[m] == base[m]).all(), m
    assert any((main[m] != base[m]).any() for m in ("acc_ambig", "acc_disambig", "abstain_ambig", "amb_commit_bias"))
    assert (out / "eval" / "lam0_lr0.003" / "step-4" / "predictions.jsonl").exists()


def test_sweep_is_idempotent(swept, letter_lm_dir, train_dev):
    from rl.sweep import read_results, sweep

    out, df = swept
    again = sweep(str(letter_lm_dir), out, lams=[0.0], lrs=[LR], control_lrs=[1e-6], steps=4,
                  train_items=train_dev[0], dev_items=train_dev[1], n_boot=50, device="cpu", progress=False,
                  skip_train=True)
    assert len(again) == len(df) == len(read_results(out / "results_all.csv"))


def test_sweep_refuses_overlapping_templates(letter_lm_dir, train_dev, tmp_path):
    from interp.data.split import SplitLeakageError
    from rl.sweep import sweep

    with pytest.raises(SplitLeakageError):
        sweep(str(letter_lm_dir), tmp_path, lams=[0.0], steps=1, train_items=train_dev[0],
              dev_items=train_dev[0][:4], skip_train=True)


def test_figures_and_decomposition(swept, tmp_path):
    from click.testing import CliRunner

    from rl.cli import main
    from rl.figures import phase1_table

    out, df = swept
    t = phase1_table(df)
    assert list(t["run"]) == ["base", "lam0_lr0.003", "lam0_lr1e-06_control"]
    for _, r in t.iterrows():  # s_AMB = coverage x amb_commit_bias, coverage = 1 - acc_ambig
        assert r["coverage"] == pytest.approx(1 - r["acc_ambig"])
        assert r["s_AMB"] == pytest.approx(r["coverage"] * r["amb_commit_bias"])
    res = CliRunner().invoke(main, ["figures", "--results-csv", str(out / "results_all.csv"),
                                    "--out-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for f in ("rl_phase1_decomposition.png", "rl_phase2_dose_response.png"):
        assert (tmp_path / f).stat().st_size > 10_000


def test_plan_runs_repeats_every_lambda_run_per_replicate_seed():
    from rl.sweep import plan_runs

    runs = plan_runs([0.0, 1.5], [3e-4], [1e-6], ["group", "none"], replicate_seeds=[1, 2, 1])
    names = [r.name for r in runs]
    assert names[:4] == ["lam0_lr0.0003", "lam1.5_lr0.0003", "lam0_lr0.0003_scale-none", "lam1.5_lr0.0003_scale-none"]
    assert "lam1.5_lr0.0003_scale-none_seed2" in names and names[-1] == "lam0_lr1e-06_control"
    assert len(runs) == 4 * 3 + 1  # the duplicate seed is dropped; the control is not repeated
    assert {r.seed for r in runs if r.name.endswith("_seed1")} == {1}
    only_none = plan_runs([0.0, 1.5], [3e-4], [], ["group", "none"], [1, 2], replicate_scalings=["none"])
    assert [r.name for r in only_none if r.seed is not None] == [
        "lam0_lr0.0003_scale-none_seed1", "lam1.5_lr0.0003_scale-none_seed1",
        "lam0_lr0.0003_scale-none_seed2", "lam1.5_lr0.0003_scale-none_seed2"]
    for bad in ("1,2", 1, [1, -2], [1.5]):
        with pytest.raises(ValueError, match="replicate_seeds must be a list of non-negative integers"):
            plan_runs([0.0], [3e-4], [], ["group"], bad)
    with pytest.raises(ValueError, match="replicate_scalings \\['batch'\\] are not among"):
        plan_runs([0.0], [3e-4], [], ["group"], [1], replicate_scalings=["batch"])


def test_replicate_run_trains_with_its_own_seed(swept, letter_lm_dir, train_dev, tmp_path):
    from rl.sweep import sweep
    from rl.train import read_run_config

    out = tmp_path / "sweep"
    shutil.copytree(swept[0], out)  # the shared sweep stays as it was
    kw = {k: v for k, v in FAST.items() if k not in ("device", "progress")}
    df = sweep(str(letter_lm_dir), out, lams=[0.0], lrs=[LR], control_lrs=[1e-6], steps=4, train_items=train_dev[0],
               dev_items=train_dev[1], n_boot=50, device="cpu", progress=False, replicate_seeds=[0, 5], **kw)
    o = df[df["group"] == "overall"]
    rep = o[o["run"] == "lam0_lr0.003_seed5"]
    assert sorted(rep["step"]) == [2, 4] and set(rep["train_seed"]) == {5}
    assert set(o[o["run"] == "lam0_lr0.003"]["train_seed"].dropna()) == {0}  # the sweep's own seed: no replicate
    assert read_run_config(out / "lam0_lr0.003_seed5" / "checkpoint-4")["config"]["seed"] == 5


def _phase2_results(path, biases: dict) -> None:
    """A results_all.csv with a base row and, per (lambda, seed), one none-scaled run at step 100."""
    import pandas as pd

    from interp.eval.metrics import METRICS

    def row(run, lam, seed, bias, **kw):
        r = {"run": run, "lambda": lam, "lr": 3e-4, "step": 100, "control": False, "group": "overall",
             "scale_rewards": "none", "train_seed": seed, "model": "m", "adapter": f"{run}/checkpoint-100"}
        for m in METRICS:
            r[m], r[f"{m}_lo"], r[f"{m}_hi"] = 0.5, 0.4, 0.6
        r["amb_commit_bias"] = bias
        return {**r, **kw}

    rows = [row("base", float("nan"), float("nan"), 0.3, step=0)]
    for (lam, seed), b in biases.items():
        rows.append(row(f"lam{lam:g}_lr0.0003_scale-none" + (f"_seed{seed}" if seed else ""), lam, seed, b))
    pd.DataFrame(rows).to_csv(path, index=False)


def test_phase2_check_pairs_lambda_by_training_seed(tmp_path):
    from interp.pipeline.report_build import study_checks
    from rl.figures import lambda_effect
    from rl.sweep import read_results

    f = tmp_path / "results_all.csv"
    # seed 0 alone misses the goal (+0.09); the mean over three seeds, -0.21, meets it
    _phase2_results(f, {(0.0, 0): -0.41, (1.5, 0): -0.32, (0.0, 1): -0.10, (1.5, 1): -0.36,
                        (0.0, 2): 0.08, (1.5, 2): -0.37})
    eff = lambda_effect(read_results(f), "none")
    assert eff.lam_low == 0.0 and eff.lam_high == 1.5 and eff.step == 100
    assert eff.diffs == pytest.approx({0: 0.09, 1: -0.26, 2: -0.45})
    assert eff.mean == pytest.approx(-0.2067, abs=1e-3)
    lo, hi = eff.interval()  # t(2) interval: mean -/+ 4.303 * sd / sqrt(3), sd 0.2739
    assert (lo, hi) == pytest.approx((-0.2067 - 0.6805, -0.2067 + 0.6805), abs=2e-3)
    (check,) = [c for c in study_checks({"rl_sweep": {"results": f}}) if "scale_rewards none" in c["check"]]
    assert check["holds"] == "yes" and "mean over 3 training seeds" in check["check"]
    assert "seed 0 +0.090" in check["measured"] and "mean -0.207" in check["measured"]
    from rl.figures import phase2_figure

    assert phase2_figure(read_results(f), tmp_path / "p2.png").stat().st_size > 10_000  # per-seed lines + mean
    _phase2_results(f, {(0.0, 0): -0.41, (1.5, 0): -0.32})
    (check,) = [c for c in study_checks({"rl_sweep": {"results": f}}) if "scale_rewards none" in c["check"]]
    assert check["holds"] == "NO" and "seed 0 +0.090" in check["measured"]
    assert lambda_effect(read_results(f), "group") is None  # no group-scaled runs


def test_cli_help_shows_seed_defaults():
    from click.testing import CliRunner

    from rl.cli import main

    res = CliRunner().invoke(main, ["train", "--help"])
    assert res.exit_code == 0
    for s in ("--lam", "--lr", "5e-06", "--beta", "0.04", "--temperature", "1.3", "--num-generations", "--lora-r",
              "--save-steps", "--report-to", "--resume / --no-resume", "--scale-rewards"):
        assert s in res.output, s


@pytest.mark.slow
def test_grpo_raises_acc_ambig_on_the_small_organism(bbq_dir, tmp_path):
    """Ground truth on the small organism (seed 3, its three categories): 100 GRPO steps at lambda 0 on train
    templates raise dev acc_ambig above base with non-overlapping 95% intervals (measured 0.448 [0.402, 0.492]
    -> 0.800 [0.762, 0.837], 49 s on one core), while the lr 1e-6 control stays at base; the adapter reloads
    bit-identically."""
    from peft import PeftModel

    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import item_arrays, compute_metrics
    from interp.models.loading import load_model
    from interp.organisms.causal_lm import SMALL_CONFIG, shipped_dir
    from interp.data.bbq import split_items
    from rl.train import TrainConfig, build_trainer, list_checkpoints

    path = str(shipped_dir("organism-small"))
    train, _ = split_items("train", bbq_dir, categories=SMALL_CONFIG.categories)
    dev, _ = split_items("dev", bbq_dir, categories=SMALL_CONFIG.categories)

    def acc_ambig(model, tok) -> dict:
        recs = evaluate_items(as_lm(model, tok), dev, EvalConfig(batch_size=64, progress=False))
        return compute_metrics(item_arrays(recs)[0], n_boot=1000)

    runs = {}
    for name, lr in (("rl", 3e-4), ("control", 1e-6)):
        cfg = TrainConfig(model=path, out_dir=str(tmp_path / name), lam=0.0, lr=lr, steps=100, batch_size=16,
                          **{**FAST, "save_steps": 100, "logging_steps": 50, "max_completion_length": 4})
        trainer, _ = build_trainer(cfg, items=train)
        trainer.train()
        runs[name] = trainer.model.eval()
    tok = trainer.processing_class
    base = load_model(path, device="cpu", dtype="float32")
    m_base = acc_ambig(base.model, base.tokenizer)
    m_rl, m_ctrl = acc_ambig(runs["rl"], tok), acc_ambig(runs["control"], tok)
    assert m_rl["acc_ambig_lo"] > m_base["acc_ambig_hi"], (m_base["acc_ambig"], m_rl["acc_ambig"])
    assert abs(m_ctrl["acc_ambig"] - m_base["acc_ambig"]) < 0.03, (m_base["acc_ambig"], m_ctrl["acc_ambig"])
    trained = _letter_logits(runs["rl"], tok, dev[:64])
    reloaded = PeftModel.from_pretrained(base.model, str(list_checkpoints(tmp_path / "rl")[-1])).eval()
    assert torch.equal(_letter_logits(reloaded, base.tokenizer, dev[:64]), trained), "reloaded adapter differs"
