"""Clean/corrupted pairs of BBQ items for activation patching, and the position roles of a pair's prompts.

Three kinds, each built from the items of any split (every variant of a template sits in the same part):

- ``evidence``: the same template, names and question, disambiguated context (clean) against the ambiguous
  one (corrupted). The two letters that matter: the clean gold answer and Unknown.
- ``group_swap``: the same template and question, the two people named in the opposite order (BBQ's own
  swapped item, so a disambiguating sentence swaps too). Letters: each side's answer, the gold one in the
  disambiguated condition, else the person named first.
- ``polarity``: the same context, the negative question (clean) against the non-negative one. Letters: each
  side's gold answer in the disambiguated condition, else each side's stereotype-congruent answer (items
  without a bias target are left out).

Both prompts of a pair show each answer under the same letter (the corrupted side's options are permuted to
match the clean side's), so one pair of letter tokens scores the clean, corrupted and patched runs alike.

Position roles (``ROLES``) align the two prompts of a pair token by token even when their lengths differ:
``name1``/``name2`` (the first mention of the person named first / second), ``context`` (the rest of the
ambiguous context), ``evidence`` (the disambiguating sentence), ``question``, ``options``, ``suffix`` (what
follows the options, through the chat template's assistant header) and ``final`` (the last token).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from interp.data.bbq import BBQItem
from interp.data.prompts import LETTERS, Prompted, format_user_text
from interp.errors import InterpError

PAIR_KINDS = ("evidence", "group_swap", "polarity")
ROLES = ("name1", "name2", "context", "evidence", "question", "options", "suffix", "final")


class PairError(InterpError, ValueError):
    """An unknown pair kind, or a selection of items that makes no pair of the kind asked for."""


@dataclass(frozen=True)
class Pair:
    """A clean and a corrupted BBQ item, with the option order that shows the corrupted side's answers under
    the clean side's letters, the two letters that matter (clean answer, corrupted answer; 0 = A) and where
    each context's disambiguating sentence starts (a character index into the stripped context; its length
    when there is none)."""

    kind: str
    clean: BBQItem
    corrupted: BBQItem
    corrupted_order: tuple[int, int, int]
    letters: tuple[int, int]
    clean_evidence: int
    corrupted_evidence: int

    @property
    def template(self) -> tuple[str, str]:
        """The template both items come from: (category, question_index)."""
        return self.clean.template

    @property
    def uid(self) -> str:
        """``kind:clean uid>corrupted uid``, unique among the pairs of a selection."""
        return f"{self.kind}:{self.clean.uid}>{self.corrupted.uid}"

    @property
    def letter_names(self) -> tuple[str, str]:
        """The two letters that matter, as 'A'/'B'/'C' (clean answer's, corrupted answer's)."""
        return LETTERS[self.letters[0]], LETTERS[self.letters[1]]

    def prompts(self) -> tuple[Prompted, Prompted]:
        """(clean, corrupted) as shown to the model."""
        co = self.corrupted_order
        return (Prompted(self.clean, format_user_text(self.clean, (0, 1, 2)), (0, 1, 2)),
                Prompted(self.corrupted, format_user_text(self.corrupted, co), co))

    def role_spans(self) -> tuple[dict[str, list[tuple[int, int]]], dict[str, list[tuple[int, int]]]]:
        """Character spans of each role in the clean and the corrupted user text (``prompt_role_spans``)."""
        pc, pk = self.prompts()
        return (prompt_role_spans(pc.user_text, self.clean, self.clean_evidence),
                prompt_role_spans(pk.user_text, self.corrupted, self.corrupted_evidence))


# ----------------------------------------------------------------------------------------------
# matching answers and mentions


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("{", "").replace("}", "").split())


def _answer_keys(item: BBQItem) -> list[str]:
    """One identity per answer: 'unknown' for the unknown option, else the answer text (lower case)."""
    return ["<unknown>" if i == item.unknown_loc else _norm(item.answers[i]) for i in range(3)]


def aligned_order(clean: BBQItem, corrupted: BBQItem) -> tuple[int, int, int] | None:
    """The option order for ``corrupted`` that shows, under each letter, the answer the clean item shows there
    in its original order; None when the two items do not offer the same answers."""
    ck, kk = _answer_keys(clean), _answer_keys(corrupted)
    if sorted(ck) != sorted(kk) or len(set(ck)) != 3:
        return None
    return tuple(kk.index(k) for k in ck)  # type: ignore[return-value]


def mention(context: str, item: BBQItem, i: int) -> tuple[int, int] | None:
    """(start, end) of the first mention of answer ``i``'s person in ``context`` (case-insensitive), trying the
    answer_info name, then the answer text with and without a leading article; None when not found."""
    low = context.lower()
    cands = [item.answer_info[i][0], item.answers[i]]
    for art in ("the ", "a ", "an "):
        if item.answers[i].lower().startswith(art):
            cands.append(item.answers[i][len(art):])
    best = None
    for c in cands:
        c = c.replace("{", "").replace("}", "").strip().lower()
        if not c:
            continue
        j = low.find(c)
        if j >= 0 and (best is None or (j + len(c), len(c)) < (best[1], best[1] - best[0])):
            best = (j, j + len(c))  # the earliest end, then the shortest: "child" rather than "the child"
    return best


def _people(item: BBQItem) -> list[int]:
    return [i for i in range(3) if i != item.unknown_loc]


def named_order(item: BBQItem, upto: int | None = None) -> list[int] | None:
    """The two non-unknown answers ordered by first mention in the (ambiguous part of the) context; None when a
    person is not found there."""
    ctx = item.context.strip()[:upto]
    found = [(mention(ctx, item, i), i) for i in _people(item)]
    if any(m is None for m, _ in found):
        return None
    return [i for _, i in sorted(found, key=lambda t: t[0][0])]


# ----------------------------------------------------------------------------------------------
# role spans


def prompt_role_spans(user_text: str, item: BBQItem, evidence_start: int) -> dict[str, list[tuple[int, int]]]:
    """Character spans of each role in a user text made by ``format_user_text`` (``suffix`` and ``final`` are
    token roles, resolved after tokenization: see ``interp.methods.patching``). A role absent from a prompt
    (``evidence`` in an ambiguous context, the names when a person is not found) has no spans."""
    ctx = item.context.strip()
    c0 = user_text.index("Context: ") + len("Context: ")
    if user_text[c0:c0 + len(ctx)] != ctx:
        raise PairError(f"{item.uid}: the user text does not hold the item's context")
    e = min(max(evidence_start, 0), len(ctx))
    spans: dict[str, list[tuple[int, int]]] = {r: [] for r in ROLES}
    order = named_order(item, e)
    names: list[tuple[int, int]] = []
    if order is not None:
        for role, i in zip(("name1", "name2"), order):
            s, t = mention(ctx[:e], item, i)  # type: ignore[misc]
            spans[role] = [(c0 + s, c0 + t)]
            names.append((c0 + s, c0 + t))
    cut = sorted(names)
    pos = c0
    for s, t in cut + [(c0 + e, c0 + e)]:
        if s > pos:
            spans["context"].append((pos, s))
        pos = max(pos, t)
    if e < len(ctx):
        spans["evidence"] = [(c0 + e, c0 + len(ctx))]
    q = item.question.strip()
    q0 = user_text.index("\nQuestion: ", c0 + len(ctx)) + len("\nQuestion: ")
    spans["question"] = [(q0, q0 + len(q))]
    o0 = user_text.index("\nA. ", q0 + len(q)) + 1
    o1 = user_text.rindex("\n\nAnswer:")
    spans["options"] = [(o0, o1)]
    return spans


# ----------------------------------------------------------------------------------------------
# builders


def _ambig_prefix_index(items: Sequence[BBQItem]) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = {}
    for it in items:
        if it.context_condition == "ambig":
            out.setdefault((it.category, it.question_index, tuple(sorted(_answer_keys(it)))), []).append(
                it.context.strip())
    return out


def evidence_start(item: BBQItem, index: dict[tuple, list[str]]) -> int:
    """Where the disambiguating sentence of ``item``'s stripped context begins: the end of the longest ambiguous
    context of the same template and answers that it starts with; its length for an ambiguous item or when no
    such sibling is among the items."""
    ctx = item.context.strip()
    if item.context_condition == "ambig":
        return len(ctx)
    best = 0
    for a in index.get((item.category, item.question_index, tuple(sorted(_answer_keys(item)))), []):
        if len(a) < len(ctx) and ctx.startswith(a) and len(a) > best:
            best = len(a)
    return best if best else len(ctx)


def _make(kind, clean, corrupted, ans_clean, ans_corrupted, index) -> Pair | None:
    order = aligned_order(clean, corrupted)
    if order is None or ans_clean is None or ans_corrupted is None:
        return None
    letters = (ans_clean, order.index(ans_corrupted))  # clean shows answer j at letter j
    if letters[0] == letters[1]:
        return None
    return Pair(kind, clean, corrupted, order, letters, evidence_start(clean, index),
                evidence_start(corrupted, index))


def evidence_pairs(items: Iterable[BBQItem]) -> list[Pair]:
    """Disambiguated (clean) against ambiguous (corrupted): same template, names, polarity and question, the
    ambiguous context a prefix of the disambiguated one."""
    items = list(items)
    index = _ambig_prefix_index(items)
    amb: dict[tuple, list[BBQItem]] = {}
    for it in items:
        if it.context_condition == "ambig":
            amb.setdefault((it.category, it.question_index, it.question_polarity, it.question.strip(),
                            tuple(it.answers)), []).append(it)
    out = []
    for d in items:
        if d.context_condition != "disambig":
            continue
        ctx = d.context.strip()
        for a in amb.get((d.category, d.question_index, d.question_polarity, d.question.strip(),
                          tuple(d.answers)), []):
            if len(a.context.strip()) < len(ctx) and ctx.startswith(a.context.strip()):
                p = _make("evidence", d, a, d.label, a.label, index)
                if p is not None:
                    out.append(p)
                break
    return out


def polarity_pairs(items: Iterable[BBQItem]) -> list[Pair]:
    """Negative question (clean) against the non-negative one on the same context and answers. Letters: the gold
    answers (disambiguated) or the stereotype-congruent ones (ambiguous; items without a target are skipped)."""
    items = list(items)
    index = _ambig_prefix_index(items)
    nonneg: dict[tuple, list[BBQItem]] = {}
    for it in items:
        if it.question_polarity == "nonneg":
            nonneg.setdefault((it.category, it.question_index, it.context_condition, it.context.strip(),
                               tuple(sorted(_answer_keys(it)))), []).append(it)
    out = []
    for n in items:
        if n.question_polarity != "neg":
            continue
        for p in nonneg.get((n.category, n.question_index, n.context_condition, n.context.strip(),
                             tuple(sorted(_answer_keys(n)))), [])[:1]:
            if n.context_condition == "disambig":
                pair = _make("polarity", n, p, n.label, p.label, index)
            else:
                pair = _make("polarity", n, p, n.biased_loc, p.biased_loc, index)
            if pair is not None:
                out.append(pair)
    return out


def group_swap_pairs(items: Iterable[BBQItem]) -> list[Pair]:
    """The same template, polarity, condition and question with the two people named in the opposite order
    (each unordered pair once, the lower example id clean). Letters: gold answers (disambiguated) or the person
    each side names first (ambiguous)."""
    items = list(items)
    index = _ambig_prefix_index(items)
    groups: dict[tuple, list[BBQItem]] = {}
    for it in items:
        people = tuple(sorted(_answer_keys(it)))
        groups.setdefault((it.category, it.question_index, it.question_polarity, it.context_condition,
                           it.question.strip(), people), []).append(it)
    out = []
    for group in groups.values():
        group = sorted(group, key=lambda it: it.example_id)
        used: set[str] = set()
        for i, x in enumerate(group):
            if x.uid in used:
                continue
            ox = named_order(x, evidence_start(x, index))
            if ox is None:
                continue
            kx = _answer_keys(x)
            for y in group[i + 1:]:
                if y.uid in used or y.context.strip() == x.context.strip():
                    continue
                oy = named_order(y, evidence_start(y, index))
                if oy is None:
                    continue
                ky = _answer_keys(y)
                if [kx[j] for j in ox] != [ky[j] for j in reversed(oy)]:
                    continue
                if x.context_condition == "disambig":
                    pair = _make("group_swap", x, y, x.label, y.label, index)
                else:
                    pair = _make("group_swap", x, y, ox[0], oy[0], index)
                if pair is not None:
                    out.append(pair)
                    used.update((x.uid, y.uid))
                    break
    return out


_BUILDERS = {"evidence": evidence_pairs, "group_swap": group_swap_pairs, "polarity": polarity_pairs}


def build_pairs(items: Iterable[BBQItem], kind: str = "evidence", limit: int | None = None,
                seed: int = 0) -> list[Pair]:
    """Pairs of one kind (``PAIR_KINDS``) from BBQ items; ``limit`` keeps a seeded subset (in item order).
    PairError when the kind is unknown or the items make no pair of it."""
    kind = kind.replace("-", "_")
    if kind not in _BUILDERS:
        raise PairError(f"pair kind must be one of {', '.join(PAIR_KINDS)}, not {kind!r}")
    if limit is not None and limit < 1:
        raise PairError(f"limit must be at least 1, got {limit}")
    items = list(items)
    pairs = _BUILDERS[kind](items)
    if not pairs:
        raise PairError(f"the {len(items)} items make no "
                        f"{kind} pair (a pair needs both variants of a template: select whole templates, "
                        f"not a random subset of items)")
    if limit is not None and limit < len(pairs):
        keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
        pairs = [pairs[i] for i in keep]
    return pairs
