"""The main job's stages, composed from the library's modules. Each returns the files it wrote."""

from __future__ import annotations

import json
from pathlib import Path

from interp.pipeline.runner import Context, Stage



# ------------------------------------------------------------------------------------------- helpers


def model_name(ctx: Context) -> str:
    return ctx.cfg["run"]["model"]


def items_for(ctx: Context, part: str):
    """The run's items for one split part, with the configured limit."""
    from interp.data.split import split_items

    d = ctx.cfg["data"]
    limit = d.get(f"limit_{part}") or None
    cats = d.get("categories") or None
    return split_items(part, split_file=ctx.path("split.json"), dev_frac=d["dev_frac"], seed=d["split_seed"],
                       categories=cats, limit=limit)


def eval_and_record(ctx: Context, tag: str, model, tokenizer, items, info: dict) -> Path:
    """Evaluate and write ``evals/<tag>/`` (per-item predictions, summary CSV and JSON)."""
    from interp.eval.evaluate import EvalConfig, evaluate_items, write_results

    e = ctx.cfg["eval"]
    recs = evaluate_items(model, tokenizer, items, EvalConfig(mode=e["mode"], batch_size=e["batch_size"],
                                                              seed=ctx.cfg["run"]["seed"]))
    out = ctx.path("evals", tag)
    write_results(recs, out, n_boot=e["n_boot"], seed=ctx.cfg["run"]["seed"], meta={"tag": tag, **info})
    return out


# ------------------------------------------------------------------------------------------- stages


def stage_organism(ctx: Context) -> dict:
    """Build (or reuse) the built-in organism when the run's model names it."""
    from interp.models.loading import ORGANISM_NAMES, resolve_model_path

    from interp.models.loading import fingerprint

    name = model_name(ctx)
    path = resolve_model_path(name)
    info = {"model": name, "path": str(path), "weights_hash": fingerprint(path)}
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


def build_stages(cfg: dict) -> list[Stage]:
    """The stages named in ``run.stages``, in pipeline order."""
    from interp.pipeline import stages_extra

    table = {
        "organism": Stage("organism", stage_organism, weight=0.1, identity=model_identity,
                          describe="the model: its path, weights fingerprint and (organisms) plant record"),
        "base_eval": Stage("base_eval", stage_base_eval, sections=("eval",), after=("organism",), weight=1,
                           describe="evaluate the base model on dev"),
        **stages_extra.STAGES,
    }
    names = cfg["run"]["stages"]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} in run.stages; known: {list(table)}")
    return [table[n] for n in names]
