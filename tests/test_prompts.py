"""Prompt wording, option shuffling and letter parsing."""

import pytest

from interp.data.prompts import make_prompt, parse_letter


def test_prompt_is_the_seed_wording(fixture_items):
    it = fixture_items[0]
    p = make_prompt(it)
    assert p.user_text == (
        "Answer the multiple-choice question. Reply with ONLY the single letter of the best option.\n\n"
        f"Context: {it.context}\nQuestion: {it.question}\n"
        f"A. {it.answers[0]}\nB. {it.answers[1]}\nC. {it.answers[2]}\n\nAnswer:"
    )
    assert p.gold_letter == "ABC"[it.label]


def test_shuffle_moves_gold_and_target_letters(fixture_items):
    moved = 0
    for it in fixture_items:
        p = make_prompt(it, shuffle=True, seed=1)
        shown = p.user_text.split("\nA. ")[1]
        # the text shown at the gold letter is the gold answer
        lines = dict(l.split(". ", 1) for l in ("A. " + shown).split("\n") if l[:2] in ("A.", "B.", "C."))
        assert lines[p.gold_letter] == it.answers[it.label]
        assert lines[p.target_letter] == it.answers[it.target_loc]
        assert lines[p.unknown_letter] == it.answers[it.unknown_loc]
        moved += p.order != (0, 1, 2)
        assert make_prompt(it, shuffle=True, seed=1).order == p.order  # seeded
    assert moved > len(fixture_items) // 2


@pytest.mark.parametrize(
    "reply, want",
    [("C", "C"), ("C.", "C"), ("(C)", "C"), ("Answer: C", "C"), (" c", "C"), ("B\n", "B"), ("A) the man", "A"),
     ("The answer is B.", "B"), ("**B**", "B"), ("", None), ("I cannot say", None), ("Both", None),
     ("c is right", None), ("D", None), ("ABC", None), ("answer", None)],
)
def test_parse_letter(reply, want):
    assert parse_letter(reply) == want
