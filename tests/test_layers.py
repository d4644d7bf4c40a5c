"""One layer-spec parser for every command and function (``interp.layers``)."""

import pytest

from interp.layers import LayerSpecError, resolve_layers
from interp.models.hooks import hook_names


@pytest.mark.parametrize("spec, want", [
    ("all", [0, 1, 2, 3]), (None, [0, 1, 2, 3]), ("", [0, 1, 2, 3]), (2, [2]), (-1, [3]), ("-1", [3]),
    ("0,2", [0, 2]), ("1-3", [1, 2, 3]), ("3,1-2,3", [3, 1, 2]), ([0, -1], [0, 3]), ("-2--1", [2, 3]),
])
def test_specs(spec, want):
    assert resolve_layers(spec, 4) == want


@pytest.mark.parametrize("spec, match", [
    ("2-1", "runs backwards"), ("7", "out of range"), (-5, "out of range"), ("a,b", "comma-separated"),
    (",", "selects no layer"), ([], "selects no layer"), (True, "not True"),
])
def test_bad_specs_are_named(spec, match):
    with pytest.raises(LayerSpecError, match=match):
        resolve_layers(spec, 4)


def test_against_stored_layers():
    """'-1' means the model's last layer; a store holding other layers says which it has."""
    assert resolve_layers("all", 4, available=[1, 3]) == [1, 3]
    assert resolve_layers(-1, 4, available=[1, 3]) == [3]
    with pytest.raises(LayerSpecError, match=r"not among the stored layers \[1, 3\]"):
        resolve_layers(2, 4, available=[1, 3])
    assert hook_names("0-1", 3, ("hook_resid_post", "mlp.hook_post")) == [
        "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"]


def test_pipeline_cache_layers_spec_goes_through_the_layer_parser(monkeypatch, tmp_path):
    """The pipeline's ``cache.layers = "0-1"`` is a layer spec, as ``interp cache --layers 0-1`` is (it was once
    iterated character by character)."""
    from types import SimpleNamespace

    import interp.models.backends as backends
    import interp.pipeline.stages as stages
    import interp.store.activations as store
    from interp.pipeline.runner import Context

    seen = []
    monkeypatch.setattr(stages, "items_for", lambda ctx, part: ([], SimpleNamespace(hash="h")))
    monkeypatch.setattr(backends, "load_hooked", lambda *a, **k: SimpleNamespace(n_layers=4))
    monkeypatch.setattr(store, "cache_split", lambda hooked, items, path, names, **k: seen.append(list(names)))
    cfg = {"cache": {"hooks": ["hook_resid_post", "mlp.hook_post"], "layers": "0-1", "positions": "-1",
                     "dtype": "float16", "batch_size": 2},
           "run": {"model": "organism", "device": "cpu", "dtype": "float32", "seed": 0}}
    stages.stage_cache(Context(cfg=cfg, out=tmp_path))
    assert seen and all(names == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post",
                                  "blocks.1.mlp.hook_post"] for names in seen)
    cfg["cache"]["layers"] = "-1"
    seen.clear()
    stages.stage_cache(Context(cfg=cfg, out=tmp_path))
    assert seen[0] == ["blocks.3.hook_resid_post", "blocks.3.mlp.hook_post"]
