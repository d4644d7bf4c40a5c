"""Pair builders (``interp.data.pairs``): which items pair up, which letters matter, and where each role is."""

from __future__ import annotations

import random

import pytest

from interp.data.pairs import (PAIR_KINDS, ROLES, PairError, build_pairs, evidence_pairs, group_swap_pairs,
                               named_order, polarity_pairs)
from interp.data.prompts import LETTERS


def _shown(prompted, letter: int) -> str:
    """The answer text a prompt shows under a letter ('<unknown>' for the unknown option)."""
    idx = prompted.order[letter]
    return "<unknown>" if idx == prompted.item.unknown_loc else prompted.item.answers[idx].lower()


def _check_common(p):
    pc, pk = p.prompts()
    assert p.template == p.clean.template == p.corrupted.template
    for j in range(3):  # every letter shows the same answer in both prompts
        assert _shown(pc, j) == _shown(pk, j)
    assert p.letters[0] != p.letters[1]
    assert pc.user_text != pk.user_text
    for j, line in zip(range(3), ("A. ", "B. ", "C. ")):
        assert f"\n{line}" in pk.user_text


def test_evidence_pairs(fixture_items):
    pairs = evidence_pairs(fixture_items)
    assert len(pairs) == sum(it.context_condition == "disambig" for it in fixture_items)
    for p in pairs:
        _check_common(p)
        assert (p.clean.context_condition, p.corrupted.context_condition) == ("disambig", "ambig")
        assert p.clean.question == p.corrupted.question and p.clean.answers == p.corrupted.answers
        assert p.clean.question_polarity == p.corrupted.question_polarity
        assert p.clean.context.strip().startswith(p.corrupted.context.strip())
        assert p.letters == (p.clean.label, p.corrupted.unknown_loc)  # gold vs Unknown, same option order
        assert p.corrupted_order == (0, 1, 2)
        assert p.clean_evidence == len(p.corrupted.context.strip())
        assert p.corrupted_evidence == len(p.corrupted.context.strip())


def test_polarity_pairs(fixture_items):
    pairs = polarity_pairs(fixture_items)
    assert pairs
    for p in pairs:
        _check_common(p)
        assert (p.clean.question_polarity, p.corrupted.question_polarity) == ("neg", "nonneg")
        assert p.clean.context == p.corrupted.context and p.clean.question != p.corrupted.question
        if p.clean.context_condition == "disambig":
            assert p.letters == (p.clean.label, p.corrupted.label)
        else:  # the stereotype-congruent answer of each question: the target, then the other person
            assert p.letters == (p.clean.biased_loc, p.corrupted.biased_loc)
            assert p.letters[0] == p.clean.target_loc


def test_group_swap_pairs(fixture_items):
    pairs = group_swap_pairs(fixture_items)
    assert pairs
    seen = set()
    for p in pairs:
        _check_common(p)
        pc, pk = p.prompts()
        oc = named_order(p.clean, p.clean_evidence)
        ok = named_order(p.corrupted, p.corrupted_evidence)
        # the people are named in the opposite order
        assert [pc.item.answers[i].lower() for i in oc] == [pk.item.answers[i].lower() for i in reversed(ok)]
        if p.clean.context_condition == "ambig":
            assert _shown(pc, p.letters[0]) == p.clean.answers[oc[0]].lower()  # who the clean side names first
            assert _shown(pk, p.letters[1]) == p.corrupted.answers[ok[0]].lower()
        else:
            assert _shown(pc, p.letters[0]) == p.clean.answers[p.clean.label].lower()
            assert _shown(pk, p.letters[1]) == p.corrupted.answers[p.corrupted.label].lower()
        assert p.clean.uid not in seen and p.corrupted.uid not in seen  # each item in one pair
        seen |= {p.clean.uid, p.corrupted.uid}


def test_role_spans_cover_names_evidence_question_and_options(fixture_items):
    p = evidence_pairs(fixture_items)[0]
    (pc, pk), (sc, sk) = p.prompts(), p.role_spans()
    text = lambda t, spans: "".join(t[a:b] for a, b in spans)  # noqa: E731
    oc = named_order(p.clean, p.clean_evidence)
    assert text(pc.user_text, sc["name1"]).lower() in p.clean.answers[oc[0]].lower()
    assert text(pc.user_text, sc["name2"]).lower() in p.clean.answers[oc[1]].lower()
    assert text(pc.user_text, sc["evidence"]) == p.clean.context.strip()[len(p.corrupted.context.strip()):]
    assert sk["evidence"] == []  # the ambiguous context has none
    assert text(pk.user_text, sk["question"]) == p.corrupted.question.strip()
    assert text(pk.user_text, sk["options"]).startswith("A. ") and text(pk.user_text, sk["options"]).count("\n") == 2
    # the context role is the ambiguous context without the names: the three pieces rebuild it
    pieces = sorted(sc["context"] + sc["name1"] + sc["name2"])
    assert "".join(pc.user_text[a:b] for a, b in pieces) == p.corrupted.context.strip()
    assert set(sc) == set(ROLES)


def test_build_pairs_limits_and_errors(fixture_items):
    for kind in PAIR_KINDS:
        assert build_pairs(fixture_items, kind)
    full = build_pairs(fixture_items, "evidence")
    a = build_pairs(fixture_items, "evidence", limit=5, seed=1)
    assert len(a) == 5 and [p.uid for p in a] == [p.uid for p in build_pairs(fixture_items, "evidence", limit=5,
                                                                              seed=1)]
    assert {p.uid for p in a} <= {p.uid for p in full}
    assert build_pairs(fixture_items, "group-swap") == build_pairs(fixture_items, "group_swap")
    with pytest.raises(PairError, match="pair kind must be one of"):
        build_pairs(fixture_items, "gender")
    only_ambig = [it for it in fixture_items if it.context_condition == "ambig"]
    with pytest.raises(PairError, match="make no evidence pair"):
        build_pairs(only_ambig, "evidence")
    shuffled = list(fixture_items)
    random.Random(0).shuffle(shuffled)  # item order does not change which pairs are made
    assert {p.uid for p in build_pairs(shuffled, "polarity")} == {p.uid for p in build_pairs(fixture_items, "polarity")}
    assert all(LETTERS[i] in "ABC" for p in full for i in p.letters)
