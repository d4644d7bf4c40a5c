"""Fault injection for the two long commands, as test_faults.py does for ``interp cache`` and ``interp eval``:
SIGKILL and SIGINT at chosen points of ``rl train`` (mid-step, mid-checkpoint, at the checkpoint's publish, in the
run's own config file) and of ``interp run`` (inside base_eval, cache and rl_sweep, before a stage's record). The
command runs in a fresh process under a wrapper that sends the signal to itself at the k-th event; the next run of
the same command must end equal to an uninterrupted one (or refuse by name), and nothing partial is ever taken as
done."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from test_faults import FIXTURE_BBQ, ROOT, _env, flag

# ---- rl train ---------------------------------------------------------------------------------------------

# the small organism on the fixture's train templates: 4 steps, a checkpoint at every step
RL = ["train", "--model", "organism-small", "--bbq-dir", str(FIXTURE_BBQ), "--steps", "4", "--save-steps", "1",
      "--num-generations", "2", "--batch-size", "4", "--max-completion-length", "1", "--threads", "1",
      "--device", "cpu", "--lr", "3e-3", "--logging-steps", "1"]
# events, counted in one process:
#   torch-save     every torch.save (training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth per checkpoint)
#   publish-before the rename that publishes a checkpoint's run_config.json (written last), just before it
#   publish-after  the same rename, just after it (a complete checkpoint, killed before the next step)
#   torn-config    the run folder's own run_config.json, killed with half of it written
RL_KILLER = textwrap.dedent("""
    import os, pathlib, signal, sys
    import torch
    sig, event, at = getattr(signal, sys.argv[1]), sys.argv[2], int(sys.argv[3])
    seen = [0]
    def hit():
        seen[0] += 1
        return seen[0] == at
    def die():
        os.kill(os.getpid(), sig)
    real_replace, real_write, real_save = pathlib.Path.replace, pathlib.Path.write_text, torch.save
    def replace(self, target):
        t = pathlib.Path(target)
        if event.startswith("publish") and t.name == "run_config.json" and t.parent.name.startswith("checkpoint-") \\
                and hit():
            if event == "publish-before":
                die()
            r = real_replace(self, target)
            die()
            return r
        return real_replace(self, target)
    def write_text(self, data, *a, **k):
        if event == "torn-config" and "run_config.json" in self.name and not self.parent.name.startswith(
                "checkpoint-") and hit():
            real_write(self, data[: len(data) // 2], *a, **k)
            die()
        return real_write(self, data, *a, **k)
    def save(obj, f, *a, **k):
        if event == "torch-save" and hit():
            die()
        return real_save(obj, f, *a, **k)
    pathlib.Path.replace, pathlib.Path.write_text, torch.save = replace, write_text, save
    from rl.cli import main
    main(sys.argv[4:], prog_name="rl")
""")


def run_rl(out: Path, killer: tuple = ()) -> subprocess.CompletedProcess:
    """``rl train`` in a fresh process, optionally under RL_KILLER with (signal, event, k)."""
    head = [sys.executable, "-c", RL_KILLER, *killer] if killer else [sys.executable, "-m", "rl.cli"]
    return subprocess.run([*head, *RL, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=_env(),
                          timeout=300)


def adapter(ck: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ck / "adapter_model.safetensors"))


def assert_same_adapter(a: dict, b: dict) -> None:
    """Bit-equal tensors: on one CPU thread a resumed run repeats the uninterrupted one exactly (TRL restores the
    optimizer, scheduler and RNG states), stricter than test_rl_train's in-process rtol 1e-4."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def rl_reference(tmp_path_factory) -> dict:
    """An uninterrupted run: step -> its adapter tensors."""
    from rl.train import checkpoint_step, list_checkpoints

    out = tmp_path_factory.mktemp("rlref") / "run"
    res = run_rl(out)
    assert res.returncode == 0, res.stderr[-3000:]
    return {checkpoint_step(c): adapter(c) for c in list_checkpoints(out)}


@pytest.mark.parametrize("sig, event, at", [
    ("SIGKILL", "publish-after", 2),   # between steps: checkpoints 1 and 2 complete
    ("SIGKILL", "publish-before", 3),  # checkpoint-3 has everything but its run_config.json
    ("SIGKILL", "torch-save", 6),      # checkpoint-2 cut off mid-save (adapter written, optimizer state not)
    ("SIGKILL", "torn-config", 1),     # before the first step, the run's config half written
    ("SIGINT", "torch-save", 10),      # Ctrl-C mid-save of checkpoint-3
    ("SIGINT", "publish-after", 1),
])
def test_killed_rl_train_resumes_to_the_uninterrupted_adapter(tmp_path, rl_reference, sig, event, at):
    from rl.train import checkpoint_step, is_complete_checkpoint, list_checkpoints

    out = tmp_path / "run"
    res = run_rl(out, (sig, event, str(at)))
    if sig == "SIGKILL":
        assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    else:  # click's one-line "Aborted!", no traceback
        assert res.returncode == 1 and "Aborted!" in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    # nothing partial passes as done: every checkpoint taken as complete holds the uninterrupted run's adapter
    done = list_checkpoints(out)
    assert [checkpoint_step(c) for c in done] == list(range(1, len(done) + 1))
    assert len(done) < 4
    for c in done:
        assert_same_adapter(adapter(c), rl_reference[checkpoint_step(c)])
    cut = [p for p in out.glob("checkpoint-*") if not is_complete_checkpoint(p)] if out.exists() else []
    if event in ("publish-before", "torch-save"):
        assert len(cut) == 1, sorted(p.name for p in out.iterdir())  # the save the signal cut off
    res = run_rl(out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 checkpoint(s)" in res.stdout
    final = list_checkpoints(out)
    assert [checkpoint_step(c) for c in final] == [1, 2, 3, 4]
    for c in final:
        assert_same_adapter(adapter(c), rl_reference[checkpoint_step(c)])
    assert json.loads((final[-1] / "trainer_state.json").read_text())["global_step"] == 4
    assert sorted(p.name.rsplit("-", 1)[0] for p in out.glob("incomplete-*")) == [f"incomplete-{c.name}" for c in cut]
    assert run_rl(out).returncode == 0 and {checkpoint_step(c) for c in list_checkpoints(out)} == {1, 2, 3, 4}


def test_a_torn_run_config_is_refused_by_name(tmp_path):
    """A run folder whose run_config.json was cut off (by a version that wrote it in place) is one named error
    that leaves the folder as it was, not a JSON traceback."""
    from test_faults import assert_one_named_error

    out = tmp_path / "run"
    out.mkdir()
    (out / "run_config.json").write_text('{"config": {"model": "organ')
    res = run_rl(out)
    assert_one_named_error(res, "InputError")
    assert "run_config.json is not valid JSON" in res.stderr and "--no-resume" in res.stderr
    assert [p.name for p in out.iterdir()] == ["run_config.json"]


# ---- interp run -------------------------------------------------------------------------------------------

STAGES = ("organism", "base_eval", "cache")
# events: h5 (every HDF5 dataset write: inside the cache stage), eval (every rename that publishes an eval
# file: inside base_eval), record (the rename that publishes a stage's record, just before it), ckpt (the rename
# that publishes an rl checkpoint's run_config.json, just before it: inside rl_sweep)
RUN_KILLER = textwrap.dedent("""
    import os, pathlib, signal, sys, h5py
    sig, event, at = getattr(signal, sys.argv[1]), sys.argv[2], int(sys.argv[3])
    seen = [0]
    def maybe(kind):
        if kind == event:
            seen[0] += 1
            if seen[0] == at:
                os.kill(os.getpid(), sig)
    ds_set, real_replace = h5py.Dataset.__setitem__, pathlib.Path.replace
    def ds_setitem(self, key, value):
        maybe("h5")
        return ds_set(self, key, value)
    def replace(self, target):
        t = pathlib.Path(target)
        if t.parent.name == "stages":
            maybe("record")
        elif t.name == "run_config.json" and t.parent.name.startswith("checkpoint-"):
            maybe("ckpt")
        elif "evals" in t.parts:
            maybe("eval")
        return real_replace(self, target)
    h5py.Dataset.__setitem__, pathlib.Path.replace = ds_setitem, replace
    from interp.cli.main import main
    main(sys.argv[4:])
""")


def run_run(out: Path, killer: tuple = (), *extra: str, stages: tuple = STAGES) -> subprocess.CompletedProcess:
    """``interp run --preset test`` on three stages, on the fixture's BBQ items, in a fresh process."""
    head = [sys.executable, "-c", RUN_KILLER, *killer] if killer else [sys.executable, "-m", "interp.cli"]
    env = dict(_env(), INTERP_BBQ_DIR=str(FIXTURE_BBQ))
    return subprocess.run([*head, "run", "--preset", "test", "--stages", ",".join(stages), "--out", str(out),
                           *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def records(out: Path) -> dict:
    d = out / "stages"
    return {f.stem: json.loads(f.read_text()) for f in d.glob("*.json")} if d.is_dir() else {}


@pytest.fixture(scope="module")
def run_reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("runref") / "run"
    res = run_run(out)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = records(out)
    assert sorted(recs) == sorted(STAGES)
    return recs


def assert_equal_to_reference(recs: dict, reference: dict) -> None:
    """Stage records and what they point at equal the uninterrupted run's: byte-equal files (by the record's
    output hash), and activation stores equal by content (an HDF5 file's bytes differ from run to run)."""
    from interp.pipeline.runner import _outputs_hash
    from interp.store.activations import stores_equal

    for name, rec in recs.items():
        assert rec["output_hash"] == _outputs_hash(rec["outputs"]), name  # what the record says is what is there
        if name == "cache":
            assert sorted(rec["outputs"]) == sorted(reference["cache"]["outputs"])
            for k, p in rec["outputs"].items():
                assert stores_equal(reference["cache"]["outputs"][k], p) == [], k
        else:
            assert rec["output_hash"] == reference[name]["output_hash"], name
            assert rec["input_hash"] == reference[name]["input_hash"], name


@pytest.mark.parametrize("sig, event, at, killed", [
    ("SIGKILL", "eval", 2, "base_eval"),   # predictions published, summary not
    ("SIGKILL", "h5", 3, "cache"),         # the first batch of the first store
    ("SIGKILL", "h5", 20, "cache"),        # the second store
    ("SIGKILL", "record", 3, "cache"),     # every output written, the record not yet
    ("SIGINT", "h5", 10, "cache"),
])
def test_killed_run_skips_finished_stages_and_reruns_the_killed_one(tmp_path, run_reference, sig, event, at, killed):
    out = tmp_path / "run"
    res = run_run(out, (sig, event, str(at)))
    if sig == "SIGKILL":
        assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    else:
        assert res.returncode == 1 and "Aborted!" in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    before = records(out)
    finished = list(STAGES[:STAGES.index(killed)])
    if event == "h5":  # the second store is begun only once the first is complete
        assert [flag(out / "activations" / f"base_{p}.h5") for p in ("train", "dev")] == \
            ([False, None] if at < 20 else [True, False])  # 2 batches of base_train, then base_dev
    assert sorted(before) == sorted(finished)  # no record for the stage the signal cut off
    assert_equal_to_reference(before, run_reference)
    res = run_run(out)
    assert res.returncode == 0, res.stderr[-3000:]
    for s in STAGES:
        assert (f"{s}: up to date, skipped" in res.stdout) == (s in finished), res.stdout
    after = records(out)
    assert sorted(after) == sorted(STAGES)
    assert all(after[s] == before[s] for s in finished)  # the finished stages were not touched
    assert_equal_to_reference(after, run_reference)


def test_a_forced_rerun_cut_off_midway_is_not_taken_as_done(tmp_path, run_reference):
    """Killed while ``--force cache`` rewrites a finished stage: the old record stays but no longer matches the
    files, so the next run (without --force) reruns the stage rather than trusting the record."""
    from interp.pipeline.runner import _outputs_hash

    out = tmp_path / "run"
    assert run_run(out).returncode == 0
    res = run_run(out, ("SIGKILL", "h5", "3"), "--force", "cache")
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    old = records(out)["cache"]
    assert _outputs_hash(old["outputs"]) != old["output_hash"]  # the stores it points at were cut off
    res = run_run(out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cache: up to date" not in res.stdout and "base_eval: up to date, skipped" in res.stdout
    assert_equal_to_reference(records(out), run_reference)


def sweep_results(out: Path):
    """The sweep's results_all.csv without its timings, adapter paths relative to the run folder, by row id."""
    import pandas as pd

    df = pd.read_csv(out / "rl" / "results_all.csv").drop(columns=["eval_seconds", "train_minutes"])
    df["adapter"] = df["adapter"].fillna("").astype(str).str.replace(str(out), "<out>", regex=False)
    return df.sort_values(["run", "step", "group"]).reset_index(drop=True)


def test_killed_rl_sweep_stage_resumes_to_the_uninterrupted_results(tmp_path):
    """``interp run`` killed inside rl_sweep while the lambda 1.5 unscaled run saves its last checkpoint (after
    its steps 3 and 4 were logged): the rerun resumes that run from checkpoint-2, and results_all.csv
    (lambda_active included: the resumed steps are logged twice) and every adapter equal an uninterrupted run's."""
    ref, out = tmp_path / "ref", tmp_path / "run"
    stages, log_every_step = ("organism", "rl_sweep"), ("--set", "rl.logging_steps=1")
    res = run_run(ref, (), *log_every_step, stages=stages)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_run(out, ("SIGKILL", "ckpt", "8"), *log_every_step, stages=stages)  # 4th run, 2nd checkpoint
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    assert sorted(records(out)) == ["organism"]
    res = run_run(out, (), *log_every_step, stages=stages)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "organism: up to date, skipped" in res.stdout
    assert list((out / "rl" / "lam1.5_lr0.0005_scale-none").glob("incomplete-checkpoint-4-*"))
    import pandas as pd

    a, b = sweep_results(ref), sweep_results(out)
    active = a.loc[a["run"] == "lam1.5_lr0.0005_scale-none", "lambda_active"]
    assert active.notna().all() and (active > 0).any()  # the column the duplicated log lines would shift
    pd.testing.assert_frame_equal(a, b)
    for ck in sorted((ref / "rl").glob("*/checkpoint-*")):
        assert_same_adapter(adapter(ck), adapter(out / ck.relative_to(ref)))


def test_lambda_active_counts_each_step_once(tmp_path):
    """A run resumed from checkpoint-2 after steps 3 and 4 were logged logs them again: the mean is over steps."""
    from rl.sweep import lambda_active_mean

    lines = [{"step": 1, "lambda_active": 0.0}, {"step": 2, "lambda_active": 0.0}, {"step": 3, "lambda_active": 0.5},
             {"step": 4, "lambda_active": 0.5}, {"step": 3, "lambda_active": 0.5}, {"step": 4, "lambda_active": 0.5},
             {"event": "finished", "step": 4, "minutes": 0.1}]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert lambda_active_mean(tmp_path, 4) == 0.25
    assert lambda_active_mean(tmp_path, 3) == pytest.approx(1 / 6)
