"""transformer-lens, nnsight and trl are extras: without them `import interp` and `interp eval` on the organism
work and never import them, and a command that needs one (a backend, rl train, interp run's GRPO stage) fails
with one line naming the extra to install, before it writes anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from interp.errors import MissingExtraError, require_extra

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_BBQ = ROOT / "tests" / "fixtures" / "bbq" / "data"

# A process in which the optional packages look uninstalled (None in sys.modules: importing one raises
# ImportError, find_spec says it is absent). It runs each command given as a JSON list and prints, per command,
# its exit code; at the end, the optional modules some import reached (none may be).
WITHOUT_EXTRAS = textwrap.dedent("""
    import json, sys
    BLOCKED = ("transformer_lens", "nnsight", "trl")
    for name in BLOCKED:
        sys.modules[name] = None
    import interp
    from interp.cli.main import main as interp_main
    from rl.cli import main as rl_main
    for prog, *args in json.loads(sys.argv[1]):
        try:
            (interp_main if prog == "interp" else rl_main)(args)
            code = 0
        except SystemExit as e:
            code = e.code or 0
        print("EXIT", prog, args[0], code, flush=True)
        sys.stderr.write("--- end of command\\n")
        sys.stderr.flush()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None)
    print("LOADED", json.dumps(loaded))
""")


def test_without_the_extras_eval_works_and_a_backend_names_its_extra(tmp_path):
    ev = tmp_path / "ev"
    commands = [
        ["interp", "eval", "--model", "organism", "--bbq-dir", str(FIXTURE_BBQ), "--split", "all", "--limit", "6",
         "--device", "cpu", "--n-boot", "10", "--out", str(ev)],
        ["interp", "cache", "--model", "organism", "--bbq-dir", str(FIXTURE_BBQ), "--split", "all", "--limit", "4",
         "--device", "cpu", "--backend", "nnsight", "--out", str(tmp_path / "nn.h5")],
        ["interp", "cache", "--model", "organism", "--bbq-dir", str(FIXTURE_BBQ), "--split", "all", "--limit", "4",
         "--device", "cpu", "--backend", "transformer_lens", "--out", str(tmp_path / "tl.h5")],
        ["rl", "train", "--model", "organism", "--bbq-dir", str(FIXTURE_BBQ), "--steps", "1",
         "--out", str(tmp_path / "rl")],
        ["interp", "run", "--preset", "test", "--stages", "organism,rl_sweep", "--out", str(tmp_path / "run")],
    ]
    env = {k: v for k, v in os.environ.items() if k != "INTERP_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    res = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, json.dumps(commands)], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    exits = [ln.split()[1:] for ln in res.stdout.splitlines() if ln.startswith("EXIT ")]
    assert exits == [["interp", "eval", "0"], ["interp", "cache", "1"], ["interp", "cache", "1"],
                     ["rl", "train", "1"], ["interp", "run", "1"]], (res.stdout, res.stderr[-3000:])
    loaded = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("LOADED "))[len("LOADED "):])
    assert loaded == []
    # the eval ran on the organism: one record per item, a summary
    assert len((ev / "predictions.jsonl").read_text().splitlines()) == 6
    assert json.loads((ev / "summary.json").read_text())
    errs = res.stderr.split("--- end of command\n")
    want = ["nnsight is not installed: pip install 'interp-bbq[nnsight]'",
            "transformer-lens is not installed: pip install 'interp-bbq[tl]'",
            "trl is not installed: pip install 'interp-bbq[rl]'", "trl is not installed: pip install 'interp-bbq[rl]'"]
    for err, line in zip(errs[1:5], want, strict=True):
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("Warning: ")]
        assert lines and lines[-1].startswith(f"Error: MissingExtraError: {line}"), err
        assert "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["ev"]  # the refused commands wrote nothing


def test_require_extra_names_the_extra(monkeypatch):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    from interp.errors import DIST, EXTRAS

    assert DIST == project["name"]
    for module, extra in EXTRAS.items():  # each extra exists and installs the module's distribution
        dist = {"transformer_lens": "transformer-lens"}.get(module, module)
        assert any(req.startswith(dist) for req in project["optional-dependencies"][extra]), (module, extra)
        assert not any(req.startswith(dist) for req in project["dependencies"])
    monkeypatch.setitem(sys.modules, "nnsight", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"^nnsight is not installed: pip install 'interp-bbq\[nnsight\]'$"):
        require_extra("nnsight")
