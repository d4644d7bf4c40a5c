"""The stage runner: skip fresh stages, rerun on changed inputs or outputs, resume after a crash, --force."""

import pytest

from interp.pipeline.config import load_config
from interp.pipeline.runner import Context, Stage, run_pipeline


def _stages(calls, fail_at=None):
    def a(ctx):
        calls.append("a")
        p = ctx.path("a.txt")
        p.write_text(str(ctx.cfg["eval"]["n_boot"]))
        return {"a": p}

    def b(ctx):
        calls.append("b")
        if fail_at == "b":
            raise RuntimeError("crash in b")
        p = ctx.path("b.txt")
        p.write_text(open(ctx.outputs["a"]["a"]).read() + "!")
        return {"b": p}

    return [Stage("a", a, sections=("eval",)), Stage("b", b, after=("a",))]


def test_skip_resume_force_and_invalidate(tmp_path):
    cfg = load_config(preset="test")
    calls = []
    with pytest.raises(RuntimeError):
        run_pipeline(_stages(calls, fail_at="b"), Context(cfg, tmp_path, log=lambda m: None))
    assert calls == ["a", "b"]
    calls.clear()
    run_pipeline(_stages(calls), Context(cfg, tmp_path, log=lambda m: None))
    assert calls == ["b"]  # a was complete: resumed at b
    calls.clear()
    run_pipeline(_stages(calls), Context(cfg, tmp_path, log=lambda m: None))
    assert calls == []  # everything fresh
    run_pipeline(_stages(calls), Context(cfg, tmp_path, log=lambda m: None), force=("b",))
    assert calls == ["b"]
    calls.clear()
    (tmp_path / "b.txt").write_text("tampered")
    run_pipeline(_stages(calls), Context(cfg, tmp_path, log=lambda m: None))
    assert calls == ["b"]  # an output changed on disk: rerun
    calls.clear()
    cfg2 = load_config(preset="test", overrides=["eval.n_boot=7"])
    run_pipeline(_stages(calls), Context(cfg2, tmp_path, log=lambda m: None))
    assert calls == ["a", "b"]  # a's inputs changed, so b's upstream hash changed too
    assert (tmp_path / "b.txt").read_text() == "7!"
    with pytest.raises(ValueError, match="unknown stage"):
        run_pipeline(_stages(calls), Context(cfg2, tmp_path, log=lambda m: None), force=("zzz",))


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        load_config(preset="nope")
    bad = tmp_path / "c.toml"
    bad.write_text("[nosuch]\nx = 1\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_config(bad)
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(overrides=["steps=3"])


@pytest.mark.parametrize("override, match", [
    ("rl.stpes=80", r"unknown key in \[rl\]: 'stpes'; did you mean 'steps'\?"),
    ("rll.steps=80", r"unknown section 'rll'; did you mean 'rl'\?"),
    ("steer.alfas=[1]", r"did you mean 'alphas'\?"),
    ("compare.layers=3", r"unknown section 'compare'"),
])
def test_config_typos_name_the_closest_key(override, match):
    from interp.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=match):
        load_config(preset="quick", overrides=[override])


def test_config_file_typo_and_train_options_pass_through(tmp_path):
    from interp.pipeline.config import ConfigError

    f = tmp_path / "c.toml"
    f.write_text("[rl]\nsteps = 3\nmax_completion_lenght = 6\n")
    with pytest.raises(ConfigError, match="did you mean 'max_completion_length'"):
        load_config(f, preset="quick")
    f.write_text("[rl]\nmax_completion_length = 6\nscale_rewards = [\"none\"]\n")
    cfg = load_config(f, preset="quick")
    assert cfg["rl"]["max_completion_length"] == 6 and cfg["rl"]["scale_rewards"] == ["none"]


def test_report_html_from_markdown():
    """The report's HTML is rendered by markdown-it-py: headings, pipe tables, images, code, no raw HTML."""
    from interp.pipeline.report import markdown_to_html

    h = markdown_to_html("# T\n\n`x` **y** <script>z</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cap](f/x.png)\n")
    assert "<h1>T</h1>" in h and "<code>x</code>" in h and "<strong>y</strong>" in h
    assert h.count("<td>") == 2 and '<img src="f/x.png" alt="cap"' in h
    assert "<script>" not in h  # raw HTML in a cell or caption is escaped
