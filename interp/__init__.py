"""interp: mechanistic interpretability of bias in language models (BBQ abstention, RM debiasing).

The notebook API::

    import interp
    lm = interp.load("organism")
    dev = interp.bbq.load(split="dev")
    acts = interp.collect(lm, dev, layers="all")             # or interp.ActivationStore(path)
    sweep = interp.probe_layers(acts, label="stereotype")     # .table .best .plot()
    d = interp.diff_means(acts, "stereotype_orth", layer=sweep.best)
    curve = interp.alpha_curve(lm, dev, d, alphas=[-8, -4, 0, 4, 8])
    grid = interp.patch(lm, interp.pairs.build_pairs(dev, "evidence", limit=64))  # .table .plot()
"""

from interp.version import __version__

# name -> module that defines it; imported on first use, so ``import interp`` (and the CLI) start fast
_API = {
    "bbq": "interp.data.bbq", "pairs": "interp.data.pairs",
    "load": "interp.api", "collect": "interp.api", "Activations": "interp.api", "probe_layers": "interp.api",
    "ProbeSweep": "interp.api", "diff_means": "interp.api", "alpha_curve": "interp.api", "AlphaCurve": "interp.api",
    "compare": "interp.api", "Comparison": "interp.api", "evaluate_bbq": "interp.api", "EvalResult": "interp.api",
    "patch": "interp.api", "PatchResult": "interp.methods.patching",
    "ActivationStore": "interp.store.activations",
    "Direction": "interp.methods.directions",
    "run_debias": "interp.rm.evaluate", "DebiasConfig": "interp.rm.evaluate", "DebiasResult": "interp.rm.evaluate",
    "NeuronIntervention": "interp.rm.intervention",
    "InterpError": "interp.errors",  # the base of every error the toolkit raises on purpose
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    import importlib

    if name not in _API:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    mod = importlib.import_module(_API[name])
    value = mod if _API[name].endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
