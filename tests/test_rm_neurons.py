"""Neuron finding recovers planted attribute neurons, ignores a quality-only neuron under the label control,
and respects the budget; the length baselines remove the length trend they are fitted on."""

import numpy as np
import pytest

from interp.rm.baselines import LengthPenalty, LWRCorrection
from interp.rm.neurons import correlations, select_neurons


def _planted(n=400, L=3, d=50, seed=0):
    rng = np.random.default_rng(seed)
    label = np.r_[np.ones(n // 2), np.zeros(n // 2)]
    length = rng.normal(size=n) + 0.8 * label  # attributes travel with quality in natural data
    bold = rng.poisson(1.0, size=n).astype(float)
    acts = rng.normal(size=(n, L, d)) * 0.5
    acts[:, 0, 7] += 2 * length
    acts[:, 1, 3] -= 2 * bold
    acts[:, 2, 9] += 3 * label  # tracks quality only
    return acts, {"length": length, "bold": bold}, label


def test_recovers_planted_neurons():
    acts, attrs, label = _planted()
    corr = correlations(acts, attrs, control=label)
    assert corr.shape == (2, 3, 50)
    assert np.unravel_index(np.abs(corr[0]).argmax(), (3, 50)) == (0, 7)
    assert np.unravel_index(np.abs(corr[1]).argmax(), (3, 50)) == (1, 3)
    assert corr[1, 1, 3] < -0.8
    sel = select_neurons(corr, ["length", "bold"], budget_frac=2 / 150)
    assert {(n.layer, n.index) for n in sel.neurons} == {(0, 7), (1, 3)}
    assert sel.per_layer() == [1, 1, 0] and sel.fraction == pytest.approx(2 / 150)


def test_label_control_drops_quality_neuron():
    acts, attrs, label = _planted()
    raw = correlations(acts, attrs)
    part = correlations(acts, attrs, control=label)
    assert abs(raw[0, 2, 9]) > 0.25  # length and quality travel together, so the raw r is large
    assert abs(part[0, 2, 9]) < 0.15


def test_budget_and_threshold():
    acts, attrs, label = _planted()
    corr = correlations(acts, attrs, control=label)
    sel = select_neurons(corr, ["length", "bold"], budget_frac=0.02)
    assert len(sel.neurons) == sel.budget == 3
    assert len({(n.layer, n.index) for n in sel.neurons}) == 3
    assert select_neurons(corr, ["length", "bold"], budget_frac=0.5, min_abs_corr=0.5).per_attribute() == \
        {"length": 1, "bold": 1}
    with pytest.raises(ValueError, match="budget_frac"):
        select_neurons(corr, ["length", "bold"], budget_frac=0.0)
    with pytest.raises(ValueError, match="n_attr"):
        select_neurons(corr, ["length"])


def test_length_baselines():
    rng = np.random.default_rng(1)
    n = np.linspace(5, 200, 300)
    quality = rng.normal(size=300)
    r = quality + 0.02 * n + 3 * np.sin(n / 30)  # nonlinear length trend
    lp = LengthPenalty.fit(n, r)
    assert lp.alpha == pytest.approx(np.polyfit(n, r, 1)[0])
    assert abs(np.corrcoef(lp.apply(n, r), n)[0, 1]) < 1e-6
    lwr = LWRCorrection.fit(n, r, frac=0.2)
    resid = lwr.apply(n, r)
    # LWR removes the nonlinear trend; the linear penalty leaves the wiggle
    assert np.corrcoef(resid, quality)[0, 1] > 0.9 > np.corrcoef(lp.apply(n, r), quality)[0, 1]
    with pytest.raises(ValueError, match="at least 3"):
        LengthPenalty.fit(np.array([1.0]), np.array([2.0]))
