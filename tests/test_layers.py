"""One layer-spec parser for every command and function (``interp.layers``)."""

import pytest

from interp.layers import LayerSpecError, hook_names, resolve_layers


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
