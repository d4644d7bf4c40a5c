"""The main job's stage runner: each stage is skipped when its outputs exist and its inputs are unchanged.

A stage's input hash covers its config sections and the content hashes of the upstream outputs it reads;
its record (``<out>/stages/<name>.json``) holds that hash and the hash of what it wrote. A rerun after a crash
therefore resumes at the first stage whose record is missing or stale; ``force`` reruns named stages.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from interp.errors import InputError
from interp.pipeline.config import dump_toml


@dataclass
class Stage:
    """One step of the pipeline. ``run(ctx)`` returns {output name: path} under ``ctx.out``."""

    name: str
    run: Callable[["Context"], dict[str, str]]
    sections: tuple[str, ...] = ()  # config sections that define this stage's inputs
    after: tuple[str, ...] = ()  # upstream stages whose outputs it reads
    weight: float = 1.0  # expected relative duration, for the remaining-time estimate
    describe: str = ""
    # what else the stage's inputs are, beyond config and upstream outputs (e.g. the model's weights fingerprint)
    identity: Callable[["Context"], str] | None = None


@dataclass
class Context:
    cfg: dict
    out: Path
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> {name: path}
    log: Callable[[str], None] = print

    def path(self, *parts: str) -> Path:
        p = self.out.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def hash_path(p: Path) -> str:
    """Content hash of a file, or of a folder's files (names and bytes), for change detection."""
    h = hashlib.sha256()
    p = Path(p)
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _input_hash(stage: Stage, ctx: Context, records: dict[str, dict]) -> str:
    payload = {
        "stage": stage.name,
        "cfg": {s: ctx.cfg.get(s) for s in ("run", "data", *stage.sections)},
        "upstream": {u: records.get(u, {}).get("output_hash") for u in stage.after},
        "identity": stage.identity(ctx) if stage.identity else None,
    }
    payload["cfg"]["run"] = {k: v for k, v in ctx.cfg["run"].items() if k not in ("stages", "out")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _outputs_hash(outputs: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(outputs):
        p = Path(outputs[k])
        h.update(k.encode())
        h.update(hash_path(p).encode() if p.exists() else b"missing")
    return h.hexdigest()[:16]


def _time_key(stage: Stage, ctx: Context) -> str:
    """What a stage's duration depends on: its name, the run and data settings and its own config sections."""
    cfg = {sec: ctx.cfg.get(sec) for sec in ("run", "data", *stage.sections)}
    cfg["run"] = {k: v for k, v in ctx.cfg["run"].items() if k not in ("out", "stages")}
    return stage.name + ":" + hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _times_file() -> Path:
    from interp.paths import home

    return home() / "stage_times.json"


def _load_times() -> dict[str, float]:
    """Measured seconds of earlier runs, by stage and settings (``_time_key``) and by stage name alone."""
    try:
        return json.loads(_times_file().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_time(times: dict[str, float], key: str, name: str, seconds: float) -> None:
    times[key] = times[name] = round(seconds, 2)
    try:
        f = _times_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
        tmp.replace(f)
    except OSError:
        pass  # an estimate is not worth failing a run for


def _remaining(stages: list[Stage], ctx: Context, times: dict[str, float], ran_t: float, ran_w: float) -> float:
    """Seconds left for ``stages``: each one's measured time with these settings, else its last measured time,
    else its weight at the pace of the stages run so far (NaN when nothing is known)."""
    total = 0.0
    for s in stages:
        t = times.get(_time_key(s, ctx), times.get(s.name))
        if t is None:
            if ran_w <= 0:
                return float("nan")
            t = ran_t / ran_w * s.weight
        total += t
    return total


def _fmt(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_pipeline(stages: list[Stage], ctx: Context, force: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run stages in order, skipping fresh ones; prints progress with elapsed and remaining time."""
    unknown = set(force) - {s.name for s in stages} - {"all"}
    if unknown:
        raise InputError(f"--force names unknown stage(s) {sorted(unknown)}; stages: {[s.name for s in stages]}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / "config.toml").write_text(dump_toml(ctx.cfg))
    rec_dir = ctx.out / "stages"
    rec_dir.mkdir(exist_ok=True)
    records: dict[str, dict] = {}
    for s in stages:
        f = rec_dir / f"{s.name}.json"
        if f.exists():
            try:
                records[s.name] = json.loads(f.read_text())
            except json.JSONDecodeError:
                pass  # a torn record means the stage did not finish: rerun it
    times = _load_times()
    t_start, ran_w, ran_t = time.time(), 0.0, 0.0
    for i, s in enumerate(stages, 1):
        ih = _input_hash(s, ctx, records)
        rec = records.get(s.name)
        fresh = (
            rec is not None
            and s.name not in force
            and "all" not in force
            and rec.get("input_hash") == ih
            and all(Path(p).exists() for p in rec.get("outputs", {}).values())
            and _outputs_hash(rec.get("outputs", {})) == rec.get("output_hash")
        )
        elapsed = time.time() - t_start
        todo = [x for x in stages[i - 1:] if not (x is s and fresh)]
        remaining = _remaining(todo, ctx, times, ran_t, ran_w)
        eta = _fmt(remaining) if remaining == remaining else "?"
        if fresh:
            ctx.outputs[s.name] = rec["outputs"]
            ctx.log(f"[{i}/{len(stages)}] {s.name}: up to date, skipped  (elapsed {_fmt(elapsed)})")
            continue
        ctx.log(f"[{i}/{len(stages)}] {s.name}: {s.describe or 'running'}  (elapsed {_fmt(elapsed)}, ~{eta} left)")
        t0 = time.time()
        outputs = {k: str(v) for k, v in s.run(ctx).items()}
        dt = time.time() - t0
        ctx.outputs[s.name] = outputs
        records[s.name] = {
            "input_hash": ih,
            "outputs": outputs,
            "output_hash": _outputs_hash(outputs),
            "seconds": round(dt, 2),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        rec_file = rec_dir / f"{s.name}.json"
        tmp = rec_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(records[s.name], indent=1))
        tmp.replace(rec_file)  # the record appears only once the stage is complete
        ran_w += s.weight
        ran_t += dt
        _save_time(times, _time_key(s, ctx), s.name, dt)
        ctx.log(f"      {s.name} done in {_fmt(dt)}")
    ctx.log(f"pipeline finished in {_fmt(time.time() - t_start)}; outputs in {ctx.out}")
    return records
