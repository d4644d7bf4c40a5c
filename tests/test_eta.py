"""The remaining-time estimate of ``interp run``, with a fake clock and fake stages of known per-unit cost:
"unknown" without a basis, a measured time when there is one, and within 2x of the truth once a tenth of a
stage has run."""

import re

import pytest

from interp import meter
from interp.pipeline.runner import Context, Stage, run_pipeline


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _stage(clock, name, kind, units, cost, setup=0.0, reported=True):
    """A stage doing ``units`` of ``kind`` at ``cost`` seconds each (after ``setup`` seconds), reporting each."""
    def run(ctx):
        clock.t += setup
        for _ in range(units):
            clock.t += cost
            meter.advance(kind, 1)
        return {}

    return Stage(name, run, work=(lambda ctx: {kind: units}) if reported else None)


def _left(line: str) -> float:
    """The seconds a progress line says are left ('(elapsed 1m40s, ~10m00s left ...)')."""
    m = re.search(r"~(\d+)m(\d\d)s left", line)
    return int(m.group(1)) * 60 + int(m.group(2))


def _run(tmp_path, stages, clock):
    lines = []
    run_pipeline(stages, Context({"run": {"out": str(tmp_path)}, "data": {}}, tmp_path / "out", log=lines.append),
                 clock=clock)
    return lines


@pytest.fixture(autouse=True)
def _fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))  # no stage measured on this machine yet


def test_unknown_without_a_basis_then_priced_by_the_work_of_stages_run(tmp_path):
    """On a fresh INTERP_HOME nothing is guessed; a stage of a kind of work already timed in this process is
    priced by its work (here 300 units at the 2 s the first stage measured: 10m00s)."""
    clock = Clock()
    stages = [_stage(clock, "a", "widget", 50, 2.0), _stage(clock, "b", "gadget", 20, 5.0),
              _stage(clock, "c", "widget", 300, 2.0), _stage(clock, "d", "widget", 10, 1.0, reported=False)]
    lines = _run(tmp_path, stages, clock)
    starts = {ln.split()[1].rstrip(":"): ln for ln in lines if ln.startswith("[")}
    assert "time left unknown" in starts["a"]
    # after a: b's kind was never timed, c's was; d reports no work and has never been measured
    assert "+ unknown (b, d)" in starts["b"] and _left(starts["b"]) == 300 * 2
    assert "+ unknown (d)" in starts["c"] and _left(starts["c"]) == 300 * 2
    assert "time left unknown" in starts["d"]


def test_a_measured_time_is_used_on_the_next_run(tmp_path):
    clock = Clock()
    _run(tmp_path, [_stage(clock, "a", "widget", 30, 2.0, reported=False)], clock)
    lines = _run(tmp_path / "again", [_stage(clock, "a", "widget", 30, 2.0, reported=False)], clock)
    assert _left(lines[0]) == 60  # measured on the first run, same settings


@pytest.mark.parametrize("cost, setup", [(0.5, 0.0), (3.0, 0.0), (1.0, 20.0)])
def test_within_2x_once_a_tenth_has_run(tmp_path, cost, setup):
    """Each progress line of a stage of constant per-unit cost, from 10% of its work on, estimates the time
    left within 2x of the truth (here exactly, up to rounding and the setup time charged to the first units)."""
    clock = Clock()
    units = 400
    times: dict[str, float] = {}

    stage = _stage(clock, "s", "widget", units, cost, setup=setup)
    run = stage.run

    def timed(ctx):
        out = run(ctx)
        times["end"] = clock.t
        return out

    stage.run = timed
    lines = []
    marks: list[float] = []

    def log(line):
        lines.append(line)
        marks.append(clock.t)

    run_pipeline([stage], Context({"run": {"out": str(tmp_path)}, "data": {}}, tmp_path / "out", log=log), clock=clock)
    progress = [(ln, t) for ln, t in zip(lines, marks) if "of its work done" in ln]
    assert len(progress) >= 9
    assert "time left unknown" in lines[0]
    for ln, t in progress:
        true_left = times["end"] - t
        est = _left(ln)
        assert int(ln.split("%")[0].split()[-1]) >= 10
        assert true_left / 2 - 1 <= est <= 2 * true_left + 1, (ln, true_left)
