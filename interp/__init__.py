"""interp: mechanistic interpretability of bias in language models (BBQ abstention, RM debiasing).

The notebook API::

    import interp
    lm = interp.load("organism")
    dev = interp.data.bbq.load(split="dev")
    acts = interp.collect(lm, dev, layers="all")             # or interp.ActivationStore(path)
    sweep = interp.probe_layers(acts, label="stereotype")     # .table .best .plot()
    d = interp.diff_means(acts, "stereotype_orth", layer=sweep.best)
    curve = interp.alpha_curve(lm, dev, d, alphas=[-8, -4, 0, 4, 8])
"""

__version__ = "0.1.0"

from interp.data import bbq  # noqa: E402
from interp.store.activations import ActivationStore  # noqa: E402
from interp.api import (  # noqa: E402
    Activations,
    AlphaCurve,
    Comparison,
    EvalResult,
    ProbeSweep,
    alpha_curve,
    collect,
    compare,
    diff_means,
    evaluate_bbq,
    load,
    probe_layers,
)
from interp.methods.directions import Direction  # noqa: E402
from interp.rm.evaluate import DebiasConfig, DebiasResult, run_debias  # noqa: E402
from interp.rm.intervention import NeuronIntervention  # noqa: E402

__all__ = [
    "__version__",
    "bbq",
    "load",
    "collect",
    "Activations",
    "ActivationStore",
    "probe_layers",
    "ProbeSweep",
    "diff_means",
    "Direction",
    "alpha_curve",
    "AlphaCurve",
    "compare",
    "Comparison",
    "evaluate_bbq",
    "EvalResult",
    "run_debias",
    "DebiasConfig",
    "DebiasResult",
    "NeuronIntervention",
]
