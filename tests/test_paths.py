"""Default output folders: under the current folder (never inside the installed package), moved by env vars."""

from interp.paths import default_activations_dir, default_figures_dir


def test_default_output_dirs_follow_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERP_ACTIVATIONS_DIR", raising=False)
    monkeypatch.delenv("INTERP_FIGURES_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_activations_dir() == tmp_path / "activations"
    assert default_figures_dir() == tmp_path / "figures"
    monkeypatch.setenv("INTERP_FIGURES_DIR", str(tmp_path / "elsewhere"))
    assert default_figures_dir() == tmp_path / "elsewhere"
