"""The README's Python blocks run as written (in a fresh folder, with the adapter the main job would leave)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.fixture()
def main_job_adapter(tmp_path, monkeypatch, bbq_dir):
    """A 2-step GRPO adapter on the shipped organism at the path the README names (the quick main job writes
    one there)."""
    from rl.train import list_checkpoints, train

    m = re.search(r'adapter="([^"]+)"', "\n".join(BLOCKS))
    assert m, "the README's compare block names no adapter"
    bbq_dir = Path(bbq_dir).resolve()  # the blocks run in a fresh folder
    monkeypatch.setenv("INTERP_BBQ_DIR", str(bbq_dir))
    monkeypatch.chdir(tmp_path)
    from interp.data.bbq import split_items

    items, _ = split_items("train", bbq_dir, limit=16)
    cks = train("organism", tmp_path / "scratch", lam=0.0, lr=1e-3, steps=2, items=items, batch_size=8,
                num_generations=4, save_steps=2, logging_steps=1, device="cpu", progress=False, threads=1)
    dest = tmp_path / m.group(1)
    dest.parent.mkdir(parents=True)
    shutil.copytree(list_checkpoints(tmp_path / "scratch")[-1], dest)
    return dest


@pytest.mark.slow
def test_readme_python_blocks_run_as_written(main_job_adapter):
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), {"__name__": f"readme_{i}"})
    assert Path("figures/alpha_curve.png").stat().st_size > 10_000
