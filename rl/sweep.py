"""The lambda sweep: train one GRPO run per (lambda, lr) plus the low-lr negative control, then evaluate the
base model and every checkpoint on the dev split in process (``interp.eval.evaluate.evaluate_items`` and
``interp.eval.metrics.summarize``, what ``interp eval`` runs) and append the rows to ``results_all.csv``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from interp import meter
from interp.errors import InputError
from rl.train import checkpoint_step, list_checkpoints, read_run_config, run_minutes, train

RESULTS_CSV = "results_all.csv"
ID_COLUMNS = ("model", "adapter", "run", "lambda", "lr", "step", "control", "split", "split_hash", "mode",
              "n_items", "group")
DEFAULT_LAMS = (0.0, 0.5, 1.5)
DEFAULT_LRS = (5e-6,)
DEFAULT_CONTROL_LRS = (1e-6,)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep."""

    lam: float
    lr: float
    control: bool = False
    scale_rewards: str = "group"  # TRL's reward scaling; "group" (TRL's default and the seed's) adds no suffix
    seed: int | None = None  # a replicate's training seed; None: the sweep's own seed, and no suffix

    @property
    def name(self) -> str:
        return (f"lam{self.lam:g}_lr{self.lr:g}" + ("_control" if self.control else "")
                + ("" if self.scale_rewards == "group" else f"_scale-{self.scale_rewards}")
                + ("" if self.seed is None else f"_seed{self.seed}"))


def _check_seeds(seeds) -> list[int]:
    """Replicate seeds as a list of non-negative ints; anything else is refused by name."""
    if not isinstance(seeds, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                     for x in seeds):
        raise InputError(f"replicate_seeds must be a list of non-negative integers, got {seeds!r}")
    return list(seeds)


def plan_runs(lams: Iterable[float], lrs: Iterable[float], control_lrs: Iterable[float] = (),
              scale_rewards: Sequence[str] = ("group",), replicate_seeds: Iterable[int] = (),
              replicate_scalings: Sequence[str] | None = None) -> list[RunSpec]:
    """Every lambda at every lr under each reward scaling, then lambda 0 at each control lr (the negative
    control, under the first scaling). Each ``replicate_seeds`` entry repeats every non-control run under the
    ``replicate_scalings`` (default: every scaling) with that training seed (named ``..._seed{S}``), so a lambda
    effect is measured against training noise."""
    scalings = list(scale_rewards) or ["group"]
    rep = scalings if replicate_scalings is None else list(replicate_scalings)
    unknown = sorted(set(rep) - set(scalings))
    if unknown:
        raise InputError(f"replicate_scalings {unknown} are not among the sweep's scale_rewards {scalings}")
    seeds: list[int | None] = [None, *dict.fromkeys(_check_seeds(replicate_seeds))]
    runs = [RunSpec(float(lam), float(lr), scale_rewards=sc, seed=sd)
            for sd in seeds for sc in scalings for lr in lrs for lam in lams if sd is None or sc in rep]
    runs += [RunSpec(0.0, float(lr), control=True, scale_rewards=scalings[0]) for lr in control_lrs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate runs in the sweep: {names}")
    return runs


# ----------------------------------------------------------------------------------------------
# evaluation


def evaluate_model(
    model: str,
    items: Sequence,
    adapter: str | os.PathLike | None = None,
    mode: str = "logits",
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float32",
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[dict]:
    """Evaluate the base model or base + adapter on items, as ``interp eval`` does; return summary rows
    (overall first, then per category). With ``out_dir``, also write predictions and summaries there."""
    from interp.eval.evaluate import EvalConfig, evaluate_items, write_results
    from interp.eval.metrics import summarize
    from interp.models.backends import as_lm
    from interp.models.loading import load_model

    lm = load_model(model, adapter=str(adapter) if adapter else None, device=device, dtype=dtype)
    recs = evaluate_items(as_lm(lm), items,
                          EvalConfig(mode=mode, batch_size=batch_size, seed=seed, progress=progress))
    if out_dir is not None:
        return write_results(recs, out_dir, n_boot=n_boot, seed=seed,
                             meta=dict(model=model, adapter=str(adapter) if adapter else None, mode=mode))
    return summarize(recs, n_boot=n_boot, seed=seed)


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """results_all.csv as a DataFrame (empty when absent)."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    df = pd.read_csv(p, keep_default_na=True)
    df["adapter"] = df["adapter"].fillna("")
    return df


def append_results(rows: Sequence[dict], path: str | os.PathLike) -> pd.DataFrame:
    """Append rows to the CSV (new columns are added), written atomically; return the whole table."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    old = read_results(p)
    new = pd.DataFrame(list(rows))
    df = new if old.empty else pd.concat([old, new], ignore_index=True)
    cols = [c for c in ID_COLUMNS if c in df.columns] + [c for c in df.columns if c not in ID_COLUMNS]
    df = df[cols]
    tmp = p.with_suffix(".csv.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(p)
    return df


def _done(df: pd.DataFrame, model: str, adapter: str, mode: str, split_hash: str | None,
          weights: str | None = None) -> bool:
    """Whether this evaluation is already in the table: same model name, base weights (fingerprint),
    adapter, mode and split."""
    if df.empty:
        return False
    m = (df["model"] == model) & (df["adapter"].astype(str) == adapter) & (df["mode"] == mode)
    if weights is not None:
        m &= df["weights_hash"].astype(str) == weights if "weights_hash" in df.columns else False
    if split_hash is not None and "split_hash" in df.columns:
        m &= df["split_hash"].astype(str) == str(split_hash)
    return bool(m.any())


def lambda_active_mean(run_dir: str | os.PathLike, step: int) -> float | None:
    """The mean logged ``lambda_active`` share (groups whose advantages the penalty changes) of a run up to
    ``step``, from its train_log.jsonl; None when the run logged none (lambda 0)."""
    import json

    f = Path(run_dir) / "train_log.jsonl"
    if not f.exists():
        return None
    by_step: dict[int, list[float]] = {}
    for line in f.read_text().splitlines():
        d = json.loads(line)
        got = [float(v) for k, v in d.items() if k.endswith("lambda_active")]
        if got and d.get("step", 0) <= step:
            # a run resumed after a kill logs again the steps after its checkpoint: the last log of a step counts
            by_step[d.get("step", 0)] = got
    vals = [v for got in by_step.values() for v in got]
    return sum(vals) / len(vals) if vals else None


def eval_rows(summary: Sequence[dict], **ids) -> list[dict]:
    """Summary rows with the identifying columns in front."""
    return [{**ids, **r} for r in summary]


# ----------------------------------------------------------------------------------------------
# the sweep


def _check_disjoint(train_items: Sequence, dev_items: Sequence) -> None:
    from interp.data.split import SplitLeakageError

    shared = {it.template for it in train_items} & {it.template for it in dev_items}
    if shared:
        raise SplitLeakageError(f"train and dev share {len(shared)} template(s), e.g. {sorted(shared)[:3]}")


def sweep(
    model: str,
    out_dir: str | os.PathLike,
    lams: Iterable[float] = DEFAULT_LAMS,
    lrs: Iterable[float] = DEFAULT_LRS,
    steps: int = 500,
    control_lrs: Iterable[float] = DEFAULT_CONTROL_LRS,
    results_csv: str | os.PathLike | None = None,
    train_items: Sequence | None = None,
    dev_items: Sequence | None = None,
    eval_mode: str = "logits",
    eval_batch_size: int = 16,
    n_boot: int = 1000,
    eval_seed: int = 0,
    device: str = "auto",
    dtype: str = "float32",
    bbq_dir: str | None = None,
    templates_dir: str | None = None,
    split_file: str | None = None,
    dev_frac: float = 0.2,
    split_seed: int = 0,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
    dev_limit: int | None = None,
    skip_train: bool = False,
    progress: bool = True,
    scale_rewards: str | Sequence[str] = ("group",),
    replicate_seeds: Iterable[int] = (),
    replicate_scalings: Sequence[str] | None = None,
    seed: int = 0,
    **train_kw,
) -> pd.DataFrame:
    """Train every run of ``plan_runs(lams, lrs, control_lrs, scale_rewards, replicate_seeds, replicate_scalings)``
    into ``out_dir/<run>/`` (resuming what a kill left), then evaluate the base and each checkpoint on dev and
    append to ``results_csv`` (default ``out_dir/results_all.csv``); evaluations already in the CSV are skipped.
    Runs train with ``seed`` unless they are replicates; each row records its ``train_seed``. Returns the table."""
    from interp.data.bbq import split_items

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_csv = Path(results_csv) if results_csv else out_dir / RESULTS_CSV
    cats = list(categories) if categories else None
    split_hash = None
    if train_items is None or dev_items is None:
        tr, split = split_items("train", bbq_dir, split_file, dev_frac, split_seed, cats, limit, templates_dir)
        dv, _ = split_items("dev", bbq_dir, split_file, dev_frac, split_seed, cats, dev_limit, templates_dir)
        train_items = tr if train_items is None else train_items
        dev_items = dv if dev_items is None else dev_items
        split_hash = split.hash
        split.save(out_dir / "split.json")
    _check_disjoint(train_items, dev_items)
    replicate_seeds = [s for s in _check_seeds(replicate_seeds) if s != int(seed)]
    runs = plan_runs(lams, lrs, control_lrs, [scale_rewards] if isinstance(scale_rewards, str) else scale_rewards,
                     replicate_seeds, replicate_scalings)

    # 1. train
    ckpts: dict[RunSpec, list[Path]] = {}
    for spec in runs:
        run_dir = out_dir / spec.name
        if skip_train:
            ckpts[spec] = [p for p in list_checkpoints(run_dir) if checkpoint_step(p) <= steps]
            continue
        ckpts[spec] = train(model, run_dir, lam=spec.lam, lr=spec.lr, steps=steps, items=train_items,
                            device=device, dtype=dtype, progress=progress, scale_rewards=spec.scale_rewards,
                            seed=seed if spec.seed is None else spec.seed, **train_kw)

    # 2. evaluate base and every checkpoint on dev
    from interp.models.loading import fingerprint, resolve_model_path

    df = read_results(results_csv)
    base_fp = fingerprint(resolve_model_path(model))
    common = dict(model=model, split="dev", split_hash=split_hash, mode=eval_mode, n_items=len(dev_items),
                  weights_hash=base_fp)
    ev = dict(mode=eval_mode, batch_size=eval_batch_size, n_boot=n_boot, seed=eval_seed, device=device,
              dtype=dtype, progress=progress)
    todo: list[tuple[dict, str | None, Path]] = []
    if not _done(df, model, "", eval_mode, split_hash, base_fp):
        todo.append((dict(adapter="", run="base", **{"lambda": float("nan")}, lr=float("nan"), step=0,
                          control=False), None, out_dir / "eval" / "base"))
    for spec, cks in ckpts.items():
        for ck in cks:
            if _done(df, model, str(ck), eval_mode, split_hash, base_fp):
                continue
            ids = dict(adapter=str(ck), run=spec.name, **{"lambda": spec.lam}, lr=spec.lr,
                       step=checkpoint_step(ck), control=spec.control, scale_rewards=spec.scale_rewards,
                       train_seed=seed if spec.seed is None else spec.seed)
            todo.append((ids, str(ck), out_dir / "eval" / spec.name / f"step-{checkpoint_step(ck)}"))
    for ids, adapter, eval_dir in todo:
        t0 = time.time()
        summary = evaluate_model(model, dev_items, adapter=adapter, out_dir=eval_dir, **ev)
        meter.advance(meter.eval_item(eval_mode), len(dev_items))
        extra = {"eval_seconds": round(time.time() - t0, 2)}
        if adapter:
            extra["train_minutes"] = run_minutes(Path(adapter).parent)
            trained_on = read_run_config(adapter).get("weights_hash")
            if trained_on and trained_on != base_fp:
                raise InputError(f"adapter {adapter} was trained on base weights {trained_on}, but {model} is now "
                                 f"{base_fp}; use a fresh output folder after changing the base")
            extra["lambda_active"] = lambda_active_mean(Path(adapter).parent, int(ids["step"]))
        df = append_results(eval_rows(summary, **common, **ids, **extra), results_csv)
    return read_results(results_csv)
