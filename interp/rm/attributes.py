"""Spurious attributes of a response, computed from its text.

Each attribute is a function ``fn(response, prompt) -> float``; ``length`` also takes the tokenizer (tokens
when one is given, whitespace words otherwise). Add your own with ``register_attribute``::

    register_attribute("emoji", lambda response, prompt: sum(ch in "😀🙂👍" for ch in response))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from interp.errors import InputError

AttributeFn = Callable[..., float]

_WORD_RE = re.compile(r"[A-Za-z0-9']+")
_BOLD_RE = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__", re.S)
_PARA_RE = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Attribute:
    """A named attribute function; ``needs_tokenizer`` passes ``tokenizer=`` as a keyword."""

    name: str
    fn: AttributeFn
    needs_tokenizer: bool = False

    def __call__(self, response: str, prompt: str = "", tokenizer=None) -> float:
        if self.needs_tokenizer:
            return float(self.fn(response, prompt, tokenizer=tokenizer))
        return float(self.fn(response, prompt))


def length(response: str, prompt: str = "", tokenizer=None) -> float:
    """Response length in tokens (whitespace words without a tokenizer)."""
    if tokenizer is None:
        return float(len(response.split()))
    return float(len(tokenizer(response, add_special_tokens=False)["input_ids"]))


def paragraphs(response: str, prompt: str = "") -> float:
    """Number of non-empty blocks separated by blank lines."""
    return float(sum(1 for b in _PARA_RE.split(response) if b.strip()))


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD_RE.findall(text)}


def overlap(response: str, prompt: str = "") -> float:
    """Fraction of the response's distinct words that also occur in the prompt (0 for no words)."""
    r = _words(response)
    return len(r & _words(prompt)) / len(r) if r else 0.0


def exclamations(response: str, prompt: str = "") -> float:
    """Number of exclamation marks."""
    return float(response.count("!"))


def bold(response: str, prompt: str = "") -> float:
    """Number of markdown bold spans (``**x**`` or ``__x__``)."""
    return float(len(_BOLD_RE.findall(response)))


_REGISTRY: dict[str, Attribute] = {
    "length": Attribute("length", length, needs_tokenizer=True),
    "paragraphs": Attribute("paragraphs", paragraphs),
    "overlap": Attribute("overlap", overlap),
    "exclamations": Attribute("exclamations", exclamations),
    "bold": Attribute("bold", bold),
}
DEFAULT_ATTRIBUTES = tuple(_REGISTRY)


def register_attribute(name: str, fn: AttributeFn, needs_tokenizer: bool = False, overwrite: bool = False) -> None:
    """Add an attribute ``fn(response, prompt) -> float`` (plus ``tokenizer=`` when ``needs_tokenizer``)."""
    if not name or not isinstance(name, str):
        raise InputError("attribute name must be a non-empty string")
    if name in _REGISTRY and not overwrite:
        raise InputError(f"attribute {name!r} already exists; pass overwrite=True to replace it")
    if not callable(fn):
        raise TypeError(f"attribute {name!r}: fn must be callable")
    _REGISTRY[name] = Attribute(name, fn, needs_tokenizer)


def get_attribute(name: str) -> Attribute:
    """The registered attribute called ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown attribute {name!r}; known: {', '.join(_REGISTRY)} (add one with register_attribute)")
    return _REGISTRY[name]


def list_attributes() -> list[str]:
    """Names of every registered attribute."""
    return list(_REGISTRY)


def compute_attributes(
    responses: Sequence[str], prompts: Sequence[str], names: Sequence[str] | None = None, tokenizer=None
) -> dict[str, np.ndarray]:
    """Each attribute's value for each response: ``{name: [n]}``."""
    if len(responses) != len(prompts):
        raise InputError(f"{len(responses)} responses but {len(prompts)} prompts")
    attrs = [get_attribute(n) for n in (names or DEFAULT_ATTRIBUTES)]
    return {a.name: np.array([a(r, p, tokenizer) for r, p in zip(responses, prompts)], dtype=np.float64)
            for a in attrs}
