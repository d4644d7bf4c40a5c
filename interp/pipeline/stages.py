"""The main job's stages, in pipeline order: organism, base evaluation, GRPO sweep, activation caches, probes,
directions, steering, activation patching, adapter comparison, the reward-model study and the report. Each composes library
functions only and returns the files it wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from interp import meter
from interp.errors import InputError
from interp.pipeline.config import section
from interp.pipeline.runner import Context, Stage



# ------------------------------------------------------------------------------------------- helpers


def model_name(ctx: Context) -> str:
    return ctx.cfg["run"]["model"]


def items_for(ctx: Context, part: str):
    """The run's items for one split part, with the configured limit."""
    from interp.data.bbq import split_items

    d = ctx.cfg["data"]
    limit = d.get(f"limit_{part}") or None
    cats = d.get("categories") or None
    items, split = split_items(part, split_file=ctx.path("split.json"), dev_frac=d["dev_frac"],
                               seed=d["split_seed"], categories=cats, limit=limit)
    ctx.n_items[part] = len(items)
    return items, split


def n_items(ctx: Context, part: str) -> int | None:
    """How many items of a split part the run uses: counted once read, else the configured limit (None: unknown
    before the split is read)."""
    return ctx.n_items.get(part) or ctx.cfg["data"].get(f"limit_{part}") or None


def eval_and_record(ctx: Context, tag: str, model, tokenizer, items, info: dict) -> Path:
    """Evaluate and write ``evals/<tag>/`` (per-item predictions, summary CSV and JSON)."""
    from interp.eval.evaluate import EvalConfig, evaluate_items, write_results
    from interp.models.backends import as_lm

    e = ctx.cfg["eval"]
    recs = evaluate_items(as_lm(model, tokenizer), items, EvalConfig(mode=e["mode"], batch_size=e["batch_size"],
                                                              seed=ctx.cfg["run"]["seed"]))
    meter.advance(meter.eval_item(e["mode"]), len(items))
    out = ctx.path("evals", tag)
    write_results(recs, out, n_boot=e["n_boot"], seed=ctx.cfg["run"]["seed"], meta={"tag": tag, **info})
    return out


# ------------------------------------------------------------------------------------------- stages


def stage_organism(ctx: Context) -> dict:
    """Record the run's model: its path, weights fingerprint and, for an organism, its plant record."""
    from interp.models.loading import ORGANISM_NAMES, resolve_model_path

    name = model_name(ctx)
    path = resolve_model_path(name)
    info = {"model": name, "path": str(path), "weights_hash": model_identity(ctx)}
    if name in ORGANISM_NAMES and (Path(path) / "plant.json").exists():
        info["plant"] = json.loads((Path(path) / "plant.json").read_text())
        info["plant"].pop("flipped_ids", None)
    f = ctx.path("organism.json")
    f.write_text(json.dumps(info, indent=1, default=str))
    return {"organism": f}


def model_identity(ctx: Context) -> str:
    """The run model's weights fingerprint: a changed model folder reruns everything downstream."""
    from interp.models.loading import fingerprint, resolve_model_path

    return fingerprint(resolve_model_path(model_name(ctx)))


def stage_base_eval(ctx: Context) -> dict:
    from interp.models.loading import load_model

    r = ctx.cfg["run"]
    items, split = items_for(ctx, "dev")
    lm = load_model(model_name(ctx), device=r["device"], dtype=r["dtype"])
    out = eval_and_record(ctx, "base", lm.model, lm.tokenizer, items,
                          {"model": model_name(ctx), "adapter": "", "lambda": "", "lr": "", "step": 0,
                           "split_hash": split.hash})
    return {"summary": out / "summary.json"}



HOOK = "hook_resid_post"
# [rl] keys the sweep itself reads; the rest go to rl.train.TrainConfig
RL_SWEEP_KEYS = ("lams", "lr", "control_lr", "steps", "scale_rewards", "replicate_seeds", "replicate_scalings")


def _figs(ctx: Context) -> Path:
    p = ctx.out / "figures"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _final_adapters(ctx: Context) -> dict[str, str]:
    """run name -> its last complete checkpoint, from the sweep's record."""
    f = Path(ctx.outputs["rl_sweep"]["adapters"])
    return json.loads(f.read_text())


# ------------------------------------------------------------------------------------------- RL


def stage_rl_sweep(ctx: Context) -> dict:
    from rl.figures import phase1_figure, phase2_figure
    from rl.sweep import sweep
    from rl.train import checkpoint_step, list_checkpoints

    r, e, run = ctx.cfg["rl"], ctx.cfg["eval"], ctx.cfg["run"]
    train_items, _ = items_for(ctx, "train")
    dev_items, _ = items_for(ctx, "dev")
    rl_dir = ctx.out / "rl"
    results = rl_dir / "results_all.csv"
    # every other [rl] key is an rl.train.TrainConfig field, passed as is (the config checks the names)
    train_kw = {k: v for k, v in r.items() if k not in RL_SWEEP_KEYS}
    df = sweep(model_name(ctx), rl_dir, lams=r["lams"], lrs=[r["lr"]], steps=r["steps"],
               control_lrs=[r["control_lr"]] if r.get("control_lr") else [], results_csv=results,
               scale_rewards=r["scale_rewards"], replicate_seeds=r["replicate_seeds"],
               replicate_scalings=r["replicate_scalings"] or None, train_items=train_items, dev_items=dev_items,
               eval_mode=e["mode"], eval_batch_size=e["batch_size"], n_boot=e["n_boot"], eval_seed=run["seed"],
               device=run["device"], seed=run["seed"], **train_kw)
    finals = {}
    for run_dir in sorted(p for p in rl_dir.iterdir() if p.is_dir() and p.name not in ("eval",)):
        cks = [c for c in list_checkpoints(run_dir) if checkpoint_step(c) <= r["steps"]]
        if cks:
            finals[run_dir.name] = str(cks[-1])
    adapters = rl_dir / "final_adapters.json"
    adapters.write_text(json.dumps(finals, indent=1))
    figs = _figs(ctx)
    out = {"results": results, "adapters": adapters}
    out["fig_phase1"] = phase1_figure(df, figs / "phase1_decomposition.png")
    out["fig_phase2"] = phase2_figure(df, figs / "phase2_dose_response.png")
    return out


# ------------------------------------------------------------------------------------------- caches


def stage_cache(ctx: Context) -> dict:
    """Activations at the last prompt token: base on train (probes, directions) and dev (comparison), and
    each run's final adapter on dev, from one copy of the base weights per load."""
    from interp.store.activations import cache_split
    from interp.models.backends import load_hooked
    from interp.models.hooks import hook_names

    c, run = ctx.cfg["cache"], ctx.cfg["run"]
    train_items, split = items_for(ctx, "train")
    dev_items, _ = items_for(ctx, "dev")
    outs = {}
    jobs = [("base_train", None, train_items), ("base_dev", None, dev_items)]
    if "rl_sweep" in ctx.outputs:
        jobs += [(f"{name}_dev", ck, dev_items) for name, ck in _final_adapters(ctx).items()]
    for tag, adapter, items in jobs:
        hooked = load_hooked(model_name(ctx), adapter=adapter, device=run["device"], dtype=run["dtype"])
        names = hook_names(c["layers"], hooked.n_layers, c["hooks"])
        path = ctx.out / "activations" / f"{tag}.h5"
        cache_split(hooked, items, path, names, positions=c["positions"], dtype=c["dtype"],
                    batch_size=c["batch_size"], split_hash=split.hash, seed=run["seed"], overwrite=True)
        meter.advance(meter.CACHE_ITEM, len(items))
        outs[tag] = path
    return outs


# ------------------------------------------------------------------------------------------- probes


def stage_probes(ctx: Context) -> dict:
    """Stereotype and abstention probes by layer on the base model's train and dev stores. ``probe.split``
    (default dev) is the one reported: on an organism trained on the train templates, its train commits are
    memorized (a near-constant label), while dev shows how its lean generalizes. The steering layer is always
    taken from the train sweep, so no choice is made on the split the steering curve is reported on."""
    from interp.methods.probes import (ProbeConfig, abstain_labels, best_layer, plot_probe_accuracy, probe_margin,
                                       probe_sweep, stereotype_labels, Activations, template_groups)
    from interp.eval.score import write_csv

    p = ctx.cfg["probe"]
    if int(p["fold_seeds"]) < 1:
        raise InputError(f"probe.fold_seeds must be >= 1, got {p['fold_seeds']}")
    if p["split"] not in ("train", "dev"):
        raise InputError(f"probe.split must be 'train' or 'dev', not {p['split']!r}")
    seed0 = ctx.cfg["run"]["seed"]

    def sweep(X, y, groups, seed):
        return probe_sweep(X, y, groups, ProbeConfig(n_splits=p["folds"], n_boot=p["n_boot"], seed=seed))

    out, summary = {}, {"split": p["split"]}
    for split in ("train", "dev"):
        got = Activations.from_store(ctx.outputs["cache"][f"base_{split}"], hook=HOOK)
        acts, recs = got.acts, got.records
        groups = template_groups(recs)
        best = {}
        for target, fn in (("stereotype", stereotype_labels), ("abstain", abstain_labels)):
            idx, y = fn(recs, p["condition"] if target == "stereotype" else "all")
            X = {n: a[idx] for n, a in acts.items()}
            rows = sweep(X, y, groups[idx], seed0)
            key = f"{target}_{split}"
            out[f"csv_{key}"] = write_csv(rows, ctx.path("probes", f"probe_{key}.csv"))
            if split == p["split"]:  # the reported split's figure (train's table is in probes/)
                out[f"fig_{target}"] = plot_probe_accuracy(rows, _figs(ctx) / f"phase3_probe_{target}.png",
                                                           title=f"{target} probe by layer, base on {split} (n={len(y)})")
            b = best_layer(rows)
            best[target] = {k: b[k] for k in ("layer", "acc", "acc_lo", "acc_hi", "majority", "shuffled_mean",
                                              "shuffled_max", "n")}
            if split == p["split"] and target == "stereotype":
                # its margin moves with the fold assignment: refit over further fold seeds, report each
                bests = [b] + [best_layer(sweep(X, y, groups[idx], seed0 + k)) for k in range(1, int(p["fold_seeds"]))]
                summary["stereotype_fold_seeds"] = [
                    {"seed": seed0 + k, "layer": int(r["layer"]), "acc": r["acc"], "majority": r["majority"],
                     "shuffled_max": r["shuffled_max"], "margin": probe_margin(r)} for k, r in enumerate(bests)]
        summary[split] = best
    for target in ("stereotype", "abstain"):  # the reported split under the plain keys
        summary[target] = summary[p["split"]][target]
        out[f"csv_{target}"] = out[f"csv_{target}_{p['split']}"]
    f = ctx.path("probes", "summary.json")
    f.write_text(json.dumps(summary, indent=1, default=float))
    out["summary"] = f
    return out


def stage_directions(ctx: Context) -> dict:
    from interp.methods.directions import compute_directions, plot_cosines
    from interp.methods.probes import Activations
    from interp.eval.score import write_csv

    got = Activations.from_store(ctx.outputs["cache"]["base_train"], hook=HOOK)
    acts, recs = got.acts, got.records
    ds = compute_directions(acts, recs, "all", {"model": model_name(ctx), "adapter": "", "split": "train",
                                                 "position": "last prompt token"})
    path = ctx.path("directions", "directions.safetensors")
    ds.save(path)
    cos = ds.cosine_rows()
    csv = write_csv(cos, ctx.path("directions", "direction_cosines.csv"))
    fig = plot_cosines(cos, _figs(ctx) / "phase3_direction_cosines.png", title="direction cosines by layer")
    return {"directions": path, "cosines": csv, "fig": fig}


# ------------------------------------------------------------------------------------------- steering


def steer_layer(ctx: Context) -> tuple[int, str]:
    """The layer steered and why: ``steer.layer`` when set, else the train stereotype probe's best layer, chosen
    on train so nothing is chosen on the dev split the curve reports. A train probe that does not clear its
    chance lines (a near-constant label: every layer ties with the majority) ranks nothing, so the middle
    layer is steered then."""
    from interp.methods.probes import probe_margin
    from interp.pipeline.report import read_csv

    layer = int(ctx.cfg["steer"]["layer"])
    if layer >= 0:
        return layer, "set by steer.layer"
    s = json.loads(Path(ctx.outputs["probes"]["summary"]).read_text())
    t = s["train"]["stereotype"]
    if probe_margin(t) > 0:
        return int(t["layer"]), "the train stereotype probe's best layer"
    layers = sorted({int(float(r["layer"])) for r in read_csv(ctx.outputs["probes"]["csv_stereotype_train"])})
    return layers[len(layers) // 2], ("the middle layer, as the train stereotype probe does not beat its "
                                      "majority rate and so ranks no layer")


def stage_steer(ctx: Context) -> dict:
    from interp.methods.directions import load_direction
    from interp.eval.evaluate import EvalConfig
    from interp.models.loading import load_model
    from interp.eval.score import write_csv
    from interp.methods.steering import alpha_curve, direction_vector, plot_alpha_curves, plot_frontier

    s, e, run = ctx.cfg["steer"], ctx.cfg["eval"], ctx.cfg["run"]
    dev_items, _ = items_for(ctx, "dev")
    layer, why = steer_layer(ctx)
    lm = load_model(model_name(ctx), device=run["device"], dtype=run["dtype"])
    curves, rows = {}, []
    for name in s["directions"]:
        d = load_direction(ctx.outputs["directions"]["directions"], name, layer=layer)
        vec = direction_vector(d, section(ctx.cfg, "steer").units)
        curve = alpha_curve(lm, dev_items, vec, layer, s["alphas"],
                            EvalConfig(mode=e["mode"], batch_size=e["batch_size"], progress=False),
                            n_boot=e["n_boot"], seed=run["seed"], label=name)
        meter.advance(meter.eval_item(e["mode"]), len(dev_items) * len(s["alphas"]))
        curves[name] = curve
        rows += [{"direction": name, "layer": layer, **r} for r in curve]
    csv = write_csv(rows, ctx.path("steer", "alpha_curves.csv"))
    chosen = ctx.path("steer", "layer.json")
    chosen.write_text(json.dumps({"layer": layer, "why": why}))
    f1 = plot_alpha_curves(curves, _figs(ctx) / "phase4_alpha_curves.png", title=f"steering at layer {layer}")
    f2 = plot_frontier(curves, _figs(ctx) / "phase4_frontier.png", title=f"s_AMB frontier, layer {layer}")
    return {"csv": csv, "fig_curves": f1, "fig_frontier": f2, "layer": chosen}


# ------------------------------------------------------------------------------------------- patching


def patch_adapter(ctx: Context) -> tuple[str, str] | None:
    """(run name, final checkpoint) of the sweep's run at ``patch.adapter_lam`` (not the control, not a
    replicate; TRL's default reward scaling first), or None without a sweep or such a run."""
    if "rl_sweep" not in ctx.outputs:
        return None
    lam = float(ctx.cfg["patch"]["adapter_lam"])
    finals = _final_adapters(ctx)
    runs = [n for n in finals if n.startswith(f"lam{lam:g}_") and "_control" not in n and "_seed" not in n]
    if not runs:
        return None
    name = min(runs, key=lambda n: ("_scale-" in n, n))
    return name, finals[name]


def stage_patch(ctx: Context) -> dict:
    """Activation patching (and attribution patching) of dev pairs on the base model and on the lambda-0
    adapter, one weight copy with the adapter switched off and on; per pair kind the layers where the two
    grids differ."""
    import contextlib

    from interp.data.pairs import build_pairs
    from interp.data.bbq import split_items
    from interp.eval.score import write_csv
    from interp.methods.patching import layer_differences, run_patching, write_result
    from interp.models.backends import load_hooked

    p, run, d = ctx.cfg["patch"], ctx.cfg["run"], ctx.cfg["data"]
    # the whole dev part (no limit_dev: a random subset of items would break the pairs); pairs are limited instead
    items, split = split_items("dev", split_file=ctx.path("split.json"), dev_frac=d["dev_frac"],
                               seed=d["split_seed"], categories=d.get("categories") or None)
    adapter = patch_adapter(ctx)
    lm = load_hooked(model_name(ctx), adapter=adapter[1] if adapter else None, device=run["device"],
                     dtype=run["dtype"])
    models = [("base", False)] + ([("adapter", True)] if adapter else [])
    outs: dict[str, Path] = {}
    diffs, summary = [], {"adapter": adapter[0] if adapter else None, "adapter_path": adapter[1] if adapter else None,
                          "threshold": p["diff_threshold"], "grids": []}
    for kind in p["pairs"]:
        pairs = build_pairs(items, kind, limit=p["limit"] or None, seed=run["seed"])
        grids = {}
        for tag, on in models:
            with (lm.adapter_enabled(on) if adapter else contextlib.nullcontext()):
                res = run_patching(lm, pairs, hooks=p["hooks"], positions=p["positions"], attribution=p["attribution"],
                                   batch_size=p["batch_size"])
            label = "base" if tag == "base" else f"adapter {adapter[0]}"
            res.meta.update(model=model_name(ctx), model_label=label, split="dev", split_hash=split.hash)
            files = write_result(res, ctx.out / "patch" / f"{tag}_{kind}", _figs(ctx) / f"patching_{kind}_{tag}.png",
                                 title=f"{label}: {kind} pairs on dev (n={len(pairs)})")
            outs[f"csv_{kind}_{tag}"], outs[f"fig_{kind}_{tag}"] = files["csv"], files["fig"]
            summary["grids"].append({"pairs": kind, "model": tag, "n_pairs": len(pairs),
                                     "attribution_r": json.loads(files["json"].read_text())["attribution_r"]})
            grids[tag] = res
        if adapter:
            diffs += [{"pairs": kind, **r} for r in layer_differences(grids["base"], grids["adapter"],
                                                                       p["diff_threshold"])]
    if diffs:
        names = {"effect_a": "base", "effect_b": "adapter", "gap_a": "gap_base", "gap_b": "gap_adapter"}
        outs["diff"] = write_csv([{names.get(k, k): v for k, v in r.items()} for r in diffs],
                                 ctx.path("patch", "differences.csv"))
    f = ctx.path("patch", "summary.json")
    f.write_text(json.dumps(summary, indent=1))
    outs["summary"] = f
    return outs


# ------------------------------------------------------------------------------------------- compare


def stage_compare(ctx: Context) -> dict:
    from interp.methods.compare import compare_stores

    adapters = {k[: -len("_dev")]: v for k, v in ctx.outputs["cache"].items() if k.endswith("_dev") and k != "base_dev"}
    out = ctx.out / "compare"
    if not adapters:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.csv").write_text("no adapters to compare\n")
        return {"csv": out / "compare.csv"}
    compare_stores(ctx.outputs["cache"]["base_dev"], list(adapters.values()), out, labels=list(adapters),
                   seed=ctx.cfg["run"]["seed"])
    fig = _figs(ctx) / "compare_base_vs_adapters.png"
    if (out / "compare.png").exists():
        shutil.copy(out / "compare.png", fig)
    return {"csv": out / "compare.csv", "fig": fig}


# ------------------------------------------------------------------------------------------- RM


def stage_rm(ctx: Context) -> dict:
    from interp.pipeline.rm_study import run_rm_study

    rm = ctx.cfg["rm"]
    out = ctx.out / "rm"
    if not rm.get("enabled", True):
        out.mkdir(parents=True, exist_ok=True)
        (out / "skipped.txt").write_text("rm.enabled = false\n")
        return {"skipped": out / "skipped.txt"}
    res = run_rm_study(out, small=bool(rm.get("small")), seed=ctx.cfg["run"]["seed"], device=ctx.cfg["run"]["device"])
    summary = out / "study_summary.json"
    summary.write_text(json.dumps(res, indent=1, default=str))
    files = {}
    for name in ("accuracy.csv", "sensitivity.csv", "neurons_per_layer.csv"):
        if (out / name).exists():
            files[name.split(".")[0]] = out / name
    for name in ("accuracy.png", "neurons_per_layer.png"):
        if (out / name).exists():
            dst = _figs(ctx) / f"rm_{name}"
            shutil.copy(out / name, dst)
            files[f"fig_{name.split('.')[0]}"] = dst
    sec = section(ctx.cfg, "rm")
    if sec.backbone:
        files.update(_rm_backbone(ctx, sec, res, out))
    return {"summary": summary, **files}


def _rm_backbone(ctx: Context, sec, organism: dict, out: Path) -> dict:
    """The same study on the shipped backbone RM ``sec.backbone`` (into ``rm/<name>/``) and the side-by-side table."""
    from interp.pipeline.rm_study import run_backbone_study, side_by_side
    from interp.tables import write_table, write_text_atomic

    name, bb_out = sec.backbone, out / sec.backbone
    res = run_backbone_study(bb_out, rm=name, n_val=sec.backbone_n_val, n_test_per_split=sec.backbone_n_test_per_split,
                             seed=ctx.cfg["run"]["seed"], device=ctx.cfg["run"]["device"])
    write_text_atomic(bb_out / "study_summary.json", json.dumps(res, indent=1, default=str))
    files = {"side_by_side": write_table(side_by_side({"organism": organism, name: res}), out / "side_by_side.csv")}
    for stem in ("accuracy", "sensitivity", "neurons_per_layer"):
        if (bb_out / f"{stem}.csv").exists():
            files[f"{name} {stem}"] = bb_out / f"{stem}.csv"
        if (bb_out / f"{stem}.png").exists():
            dst = _figs(ctx) / f"rm_{name}_{stem}.png"
            shutil.copy(bb_out / f"{stem}.png", dst)
            files[f"fig_{name}_{stem}"] = dst
    return files


def stage_report(ctx: Context) -> dict:
    from interp.pipeline.report_build import build_report

    return build_report(ctx)


# ------------------------------------------------------------------------------------------- work (for the ETA)


def _sweep_runs(ctx: Context) -> int:
    """How many GRPO runs the sweep trains."""
    from rl.sweep import plan_runs

    r, seed = ctx.cfg["rl"], ctx.cfg["run"]["seed"]
    return len(plan_runs(r["lams"], [r["lr"]], [r["control_lr"]] if r.get("control_lr") else [], r["scale_rewards"],
                         [s for s in r["replicate_seeds"] if s != seed], r["replicate_scalings"] or None))


def work_base_eval(ctx: Context) -> dict[str, float] | None:
    """Every dev item, evaluated once."""
    n = n_items(ctx, "dev")
    return {meter.eval_item(ctx.cfg["eval"]["mode"]): n} if n else None


def work_rl_sweep(ctx: Context) -> dict[str, float] | None:
    """Each run's steps x completions per step, then the base and each run's checkpoints evaluated on dev."""
    r, n_dev = section(ctx.cfg, "rl"), n_items(ctx, "dev")
    if not n_dev:
        return None
    runs, steps = _sweep_runs(ctx), r.steps
    per_step = r.batch_size * r.grad_accum
    checkpoints = len(set(range(r.save_steps, steps + 1, r.save_steps)) | {steps})
    return {meter.GRPO_COMPLETION: runs * steps * per_step,
            meter.eval_item(ctx.cfg["eval"]["mode"]): n_dev * (1 + runs * checkpoints)}


def work_cache(ctx: Context) -> dict[str, float] | None:
    """The base on train and dev, and each sweep run's final adapter on dev."""
    n_train, n_dev = n_items(ctx, "train"), n_items(ctx, "dev")
    if not (n_train and n_dev):
        return None
    adapters = _sweep_runs(ctx) if "rl_sweep" in ctx.cfg["run"]["stages"] else 0
    return {meter.CACHE_ITEM: n_train + n_dev * (1 + adapters)}


def work_steer(ctx: Context) -> dict[str, float] | None:
    """Every dev item at every alpha, per direction."""
    s, n = ctx.cfg["steer"], n_items(ctx, "dev")
    return {meter.eval_item(ctx.cfg["eval"]["mode"]): n * len(s["alphas"]) * len(s["directions"])} if n else None


# every stage, in pipeline order
STAGES = {
    "organism": Stage("organism", stage_organism, identity=model_identity,
                      describe="the model: its path, weights fingerprint and (organisms) plant record"),
    "base_eval": Stage("base_eval", stage_base_eval, sections=("eval",), after=("organism",), work=work_base_eval,
                       describe="evaluate the base model on dev"),
    "rl_sweep": Stage("rl_sweep", stage_rl_sweep, sections=("rl", "eval"), after=("organism",), work=work_rl_sweep,
                      describe="GRPO lambda sweep + lr control, eval of every checkpoint"),
    "cache": Stage("cache", stage_cache, sections=("cache",), after=("organism", "rl_sweep"), work=work_cache,
                   describe="activations of base and adapters to HDF5"),
    "probes": Stage("probes", stage_probes, sections=("probe",), after=("cache",),
                    describe="per-layer probes for the stereotype lean and abstention"),
    "directions": Stage("directions", stage_directions, after=("cache",),
                        describe="difference-of-means directions and their cosines"),
    "steer": Stage("steer", stage_steer, sections=("steer", "eval"), after=("probes", "directions"), work=work_steer,
                   describe="steering alpha-curves, raw and orthogonalized"),
    "patch": Stage("patch", stage_patch, sections=("patch", "data"), after=("organism", "rl_sweep"),
                   describe="activation patching of dev pairs on the base and the lambda-0 adapter"),
    "compare": Stage("compare", stage_compare, after=("cache",),
                     describe="base vs adapters: CKA, direction cosines, probe transfer"),
    "rm": Stage("rm", stage_rm, sections=("rm",), describe="reward-model neuron intervention study"),
    "report": Stage("report", stage_report, after=("base_eval", "rl_sweep", "probes", "directions", "steer",
                                                   "patch", "compare", "rm"), describe="report.md and report.html"),
}


def build_stages(cfg: dict) -> list[Stage]:
    """The stages named in ``run.stages``, in pipeline order."""
    names = cfg["run"]["stages"]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise InputError(f"unknown stage(s) {unknown} in run.stages; known: {list(STAGES)}")
    return [STAGES[n] for n in names]
