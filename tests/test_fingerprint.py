"""The weights fingerprint: read from the files, every tensor counts (the last layer too), and it is what
adapters, stores and resumed runs are matched by."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file


def _change_last_tensor(folder, delta=1e-3):
    """Nudge one value of the alphabetically last tensor (the last layer's) in place in model.safetensors."""
    f = folder / "model.safetensors"
    sd = load_file(str(f))
    last = sorted(k for k in sd if ".layers." in k)[-1]
    sd[last] = sd[last].clone()
    sd[last].view(-1)[-1] += delta
    save_file(sd, str(f), metadata={"format": "pt"})
    return last


def test_fingerprint_sees_every_tensor(tiny_lm_dir, tmp_path):
    from interp.models.loading import fingerprint

    a = tmp_path / "a"
    shutil.copytree(tiny_lm_dir, a)
    assert fingerprint(a) == fingerprint(tiny_lm_dir)  # the same bytes, wherever they are
    name = _change_last_tensor(a)
    assert ".layers.1." in name  # the tiny model's last layer
    assert fingerprint(a) != fingerprint(tiny_lm_dir)


def test_loaded_model_carries_its_files_fingerprint(tiny_lm_dir):
    from interp.models.loading import fingerprint, load_model, weights_hash

    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    assert weights_hash(lm.model) == fingerprint(tiny_lm_dir)
    lm16 = load_model(str(tiny_lm_dir), device="cpu", dtype="bfloat16")
    assert weights_hash(lm16.model) == weights_hash(lm.model)  # the dtype it is loaded in does not matter


def test_in_memory_hash_covers_every_tensor(tiny_lm):
    from interp.models.loading import weights_hash

    model = tiny_lm.model
    del model._interp_fingerprint  # a model built in memory, not loaded from files
    before = weights_hash(model)
    with torch.no_grad():
        list(model.model.layers[-1].parameters())[-1].view(-1)[-1] += 0.05
    assert weights_hash(model) != before


def test_fingerprint_of_a_folder_without_weights_is_named(tmp_path):
    from interp.models.loading import fingerprint

    with pytest.raises(FileNotFoundError, match="holds no weight files"):
        fingerprint(tmp_path)
