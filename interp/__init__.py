"""interp: mechanistic interpretability of bias in language models (BBQ abstention, RM debiasing)."""

__version__ = "0.1.0"
