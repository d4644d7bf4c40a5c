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
    describe: str = ""
    # what else the stage's inputs are, beyond config and upstream outputs (e.g. the model's weights fingerprint)
    identity: Callable[["Context"], str] | None = None
    # the work it will do, {interp.meter kind: units} (None: cannot say), for the remaining-time estimate
    work: Callable[["Context"], dict[str, float] | None] | None = None


@dataclass
class Context:
    cfg: dict
    out: Path
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> {name: path}
    log: Callable[[str], None] = print
    n_items: dict[str, int] = field(default_factory=dict)  # split part -> items the run uses, once read

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
    """Measured seconds of earlier runs on this machine, by stage and settings (``_time_key``)."""
    try:
        return json.loads(_times_file().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_time(times: dict[str, float], key: str, seconds: float) -> None:
    times[key] = round(seconds, 2)
    try:
        f = _times_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
        tmp.replace(f)
    except OSError:
        pass  # an estimate is not worth failing a run for


class Eta:
    """Remaining-time estimates. A stage's time is, in order: once it has reported work (``interp.meter``), the
    units it has left at the per-unit cost measured in this process; its measured time with the same settings on
    this machine; the work it will do at per-unit costs measured in this process; else unknown (None). Time
    between two reports of work is charged to the kind reported, so a kind's cost is seconds per unit."""

    def __init__(self, times: dict[str, float], clock: Callable[[], float]):
        self.times, self.clock = times, clock
        self.spent: dict[str, float] = {}  # kind -> seconds, this process
        self.done: dict[str, float] = {}  # kind -> units, this process
        self.stage_done: dict[str, float] = {}  # kind -> units, the running stage
        self.last = self.stage_t0 = clock()

    def start_stage(self) -> None:
        self.stage_done, self.last = {}, self.clock()
        self.stage_t0 = self.last

    def advance(self, kind: str, n: float) -> None:
        """Charge the time since the last report to ``n`` units of ``kind``."""
        now = self.clock()
        self.spent[kind] = self.spent.get(kind, 0.0) + now - self.last
        self.done[kind] = self.done.get(kind, 0.0) + n
        self.stage_done[kind] = self.stage_done.get(kind, 0.0) + n
        self.last = now

    def cost(self, kind: str) -> float | None:
        """Seconds per unit of ``kind`` measured in this process, or None."""
        return self.spent[kind] / self.done[kind] if self.done.get(kind) else None

    def _priced(self, units: dict[str, float]) -> float | None:
        costs = {k: self.cost(k) for k, u in units.items() if u > 0}
        return None if None in costs.values() else sum(units[k] * c for k, c in costs.items())

    def stage_left(self, stage: Stage, ctx: Context, running: bool = False) -> float | None:
        """Seconds ``stage`` has left (all of it unless ``running``), or None when there is no basis."""
        work = stage.work(ctx) if stage.work else None
        if running and work and self.stage_done:
            left = self._priced({k: max(u - self.stage_done.get(k, 0.0), 0.0) for k, u in work.items()})
            if left is not None:
                return left
        measured = self.times.get(_time_key(stage, ctx))
        if measured is not None:
            return max(measured - (self.clock() - self.stage_t0), 0.0) if running else measured
        return None if running or not work else self._priced(work)

    def remaining(self, running: Stage | None, later: list[Stage], ctx: Context) -> str:
        """'~3m10s left', '~3m10s left + unknown (rl_sweep, rm)' or 'time left unknown'."""
        parts = ([(running, self.stage_left(running, ctx, running=True))] if running else [])
        parts += [(s, self.stage_left(s, ctx)) for s in later]
        unknown = [s.name for s, t in parts if t is None]
        if parts and len(unknown) == len(parts):
            return "time left unknown"
        known = f"~{_fmt(sum(t for _, t in parts if t is not None))} left"
        return known + (f" + unknown ({', '.join(unknown)})" if unknown else "")


def _fmt(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_pipeline(stages: list[Stage], ctx: Context, force: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> dict[str, dict]:
    """Run stages in order, skipping fresh ones; prints progress with elapsed and remaining time (``Eta``), and
    again at each tenth of a running stage's work."""
    from interp import meter

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
    eta = Eta(times, clock)
    t_start = clock()
    now: dict = {}  # the running stage, its work and the next tenth of it to report at

    def heard(kind: str, n: float) -> None:
        eta.advance(kind, n)
        if not now.get("total"):
            return
        frac = sum(min(eta.stage_done.get(k, 0.0), u) for k, u in now["work"].items()) / now["total"]
        if frac >= now["next"]:
            now["next"] = (int(frac * 10) + 1) / 10
            ctx.log(f"      {now['stage'].name}: {frac:.0%} of its work done  "
                    f"(elapsed {_fmt(clock() - t_start)}, {eta.remaining(now['stage'], now['later'], ctx)})")

    with meter.listening(heard):
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
            elapsed = clock() - t_start
            if fresh:
                ctx.outputs[s.name] = rec["outputs"]
                ctx.log(f"[{i}/{len(stages)}] {s.name}: up to date, skipped  (elapsed {_fmt(elapsed)})")
                continue
            later = stages[i:]
            ctx.log(f"[{i}/{len(stages)}] {s.name}: {s.describe or 'running'}  (elapsed {_fmt(elapsed)}, "
                    f"{eta.remaining(None, [s, *later], ctx)})")
            work = s.work(ctx) if s.work else None
            now.update(stage=s, later=later, work=work or {}, total=sum((work or {}).values()), next=0.1)
            eta.start_stage()
            t0 = clock()
            outputs = {k: str(v) for k, v in s.run(ctx).items()}
            dt = clock() - t0
            now.clear()
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
            _save_time(times, _time_key(s, ctx), dt)
            ctx.log(f"      {s.name} done in {_fmt(dt)}")
    ctx.log(f"pipeline finished in {_fmt(clock() - t_start)}; outputs in {ctx.out}")
    return records
