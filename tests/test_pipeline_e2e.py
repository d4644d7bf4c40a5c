"""The main job end to end on the small organisms: every stage runs, the report shows every table and figure,
and a second run skips everything."""

import pytest

@pytest.mark.slow
def test_pipeline_on_small_organisms(bbq_dir, tmp_path):
    from interp.pipeline.config import load_config
    from interp.pipeline.runner import Context, run_pipeline
    from interp.pipeline.stages import build_stages

    cfg = load_config(preset="test", overrides=[f'run.out="{tmp_path}"'])
    cfg["run"]["preset"] = "test"
    logs = []
    ctx = Context(cfg, tmp_path, log=logs.append)
    run_pipeline(build_stages(cfg), ctx)
    report = (tmp_path / "report.md").read_text()
    for title in ("Base model on dev", "Base vs adapters", "Phase 1", "Phase 2", "stereotype probe by layer",
                  "direction cosines", "alpha-curves", "Activation patching", "Base vs adapter representations",
                  "Reward-model debiasing"):
        assert title in report, title
    figs = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    for f in ("phase1_decomposition.png", "phase2_dose_response.png", "phase3_probe_stereotype.png",
              "phase4_alpha_curves.png", "phase4_frontier.png", "compare_base_vs_adapters.png",
              "patching_evidence_base.png", "patching_evidence_adapter.png"):
        assert f in figs
    assert any(f.startswith("rm_") for f in figs)
    for f in figs:  # every figure is referenced by the report
        assert f"figures/{f}" in report
    assert (tmp_path / "report.html").read_text().count("<img") == len(figs)
    import json

    summ = json.loads((tmp_path / "probes" / "summary.json").read_text())
    assert summ["split"] == "dev" and summ["stereotype"] == summ["dev"]["stereotype"]  # dev is reported
    assert (tmp_path / "probes" / "probe_stereotype_train.csv").is_file()
    fs = summ["stereotype_fold_seeds"]
    assert [s["seed"] for s in fs] == list(range(cfg["run"]["seed"], cfg["run"]["seed"] + cfg["probe"]["fold_seeds"]))
    assert fs[0]["acc"] == summ["stereotype"]["acc"]  # fold seed run.seed is the reported sweep
    assert "median over" in report
    steered = json.loads((tmp_path / "steer" / "layer.json").read_text())  # chosen on train, never on dev
    assert steered["why"] in report and f"(at layer {steered['layer']}" in report
    rows = (tmp_path / "results_all.csv").read_text().splitlines()
    assert len(rows) > 7  # base + checkpoints of three runs, overall and per category
    logs.clear()
    run_pipeline(build_stages(cfg), Context(cfg, tmp_path, log=logs.append))
    assert sum("up to date, skipped" in m for m in logs) == len(cfg["run"]["stages"])


def _probe_rows(path, accs, majority):
    path.write_text("layer,acc,majority\n" + "".join(f"{i},{a},{majority}\n" for i, a in enumerate(accs)))


@pytest.mark.parametrize("accs, layer_cfg, want, why", [
    ([0.70, 0.90, 0.80, 0.75, 0.72], -1, 1, "best layer"),  # a train probe with signal picks its best layer
    ([0.98, 0.98, 0.98, 0.98, 0.98], -1, 2, "middle layer"),  # a constant label ranks nothing: the middle one
    ([0.70, 0.90, 0.80, 0.75, 0.72], 3, 3, "steer.layer"),  # the config's layer wins
])
def test_steer_layer_rule(tmp_path, accs, layer_cfg, want, why):
    import json

    from interp.pipeline.config import load_config
    from interp.pipeline.runner import Context
    from interp.pipeline.stages import steer_layer

    cfg = load_config(preset="test", overrides=[f'run.out="{tmp_path}"', f"steer.layer={layer_cfg}"])
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))
    summ = {"train": {"stereotype": {"layer": best, "acc": accs[best], "majority": 0.98 if accs[0] == 0.98 else 0.6,
                                     "shuffled_max": 0.5, "shuffled_mean": 0.5}}}
    (tmp_path / "summary.json").write_text(json.dumps(summ))
    _probe_rows(tmp_path / "train.csv", accs, summ["train"]["stereotype"]["majority"])
    ctx = Context(cfg, tmp_path, log=lambda m: None)
    ctx.outputs["probes"] = {"summary": tmp_path / "summary.json", "csv_stereotype_train": tmp_path / "train.csv"}
    layer, reason = steer_layer(ctx)
    assert layer == want and why in reason


def test_report_on_a_model_with_nothing_planted(tiny_lm_dir, bbq_dir, tmp_path):
    """On a model other than the organism the checks speak of its lean (not a planted one), and the report shows
    the built-in real models' zero-shot numbers, each with its source, beside the seed's; the organism's report
    does not."""
    from interp.pipeline.config import load_config
    from interp.pipeline.report_build import ZERO_SHOT_REAL, _zero_shot_section
    from interp.pipeline.runner import Context, run_pipeline
    from interp.pipeline.stages import build_stages

    cfg = load_config(preset="test", overrides=[f'run.model="{tiny_lm_dir}"', "data.limit_dev=24", "eval.n_boot=20",
                                                "run.stages=['organism', 'base_eval', 'report']", 'run.dtype="float32"'])
    run_pipeline(build_stages(cfg), Context(cfg, tmp_path, log=lambda m: None))
    report = (tmp_path / "report.md").read_text()
    assert "checks on the model's lean)" in report and "planted lean" not in report
    assert "Nothing was planted in this model" in report
    zs = report.index("Zero-shot real models")
    assert report.index("Seed study, as reported") < zs < report.index("Base model on dev")
    assert "SmolLM2-135M-Instruct" in report[zs:] and "Qwen2.5-Coder-0.5B-Instruct" in report[zs:]
    (sec,) = _zero_shot_section(Context(cfg, tmp_path, log=lambda m: None))
    assert all(r["source"] for r in sec.table) and len(sec.table) >= 4
    org = load_config(preset="test")
    assert _zero_shot_section(Context(org, tmp_path, log=lambda m: None)) == []
    assert ZERO_SHOT_REAL.endswith(".csv")
