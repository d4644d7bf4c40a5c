"""Attributes measure what they say; each attribute-only edit moves its own attribute and leaves the others."""

import pytest

from interp.rm.attributes import compute_attributes, get_attribute, list_attributes, register_attribute
from interp.rm.edits import EDIT_ATTRIBUTE, EDITS

BASE = "The answer is the grandson. That is what the context says."
PROMPT = "The grandson was struggling with the app. Who was not comfortable using the phone?"


def test_attribute_values():
    text = "**Yes** it is!\n\nReally!! And **bold** too.\n\n\n  \nEnd."
    v = compute_attributes([text], [""], ["paragraphs", "exclamations", "bold", "length"])
    assert v["paragraphs"][0] == 3 and v["exclamations"][0] == 3 and v["bold"][0] == 2
    assert v["length"][0] == len(text.split())  # no tokenizer: whitespace words
    ov = compute_attributes(["grandson app banana"], [PROMPT], ["overlap"])["overlap"][0]
    assert ov == pytest.approx(2 / 3)


def test_length_uses_tokenizer(tiny_tokenizer):
    n = compute_attributes([BASE], [""], ["length"], tokenizer=tiny_tokenizer)["length"][0]
    assert n == len(tiny_tokenizer(BASE, add_special_tokens=False)["input_ids"])


def test_register_custom_attribute():
    name = "question_marks_test"
    register_attribute(name, lambda response, prompt: response.count("?"))
    assert name in list_attributes()
    assert compute_attributes(["a? b?"], [""], [name])[name][0] == 2
    with pytest.raises(ValueError, match="already exists"):
        register_attribute(name, lambda r, p: 0)
    with pytest.raises(KeyError, match="unknown attribute"):
        get_attribute("no_such_attribute")


@pytest.mark.parametrize("edit", list(EDITS))
def test_edit_moves_only_its_attribute(edit):
    names = ["length", "paragraphs", "exclamations", "bold"]
    before = compute_attributes([BASE], [PROMPT], names)
    after = compute_attributes([EDITS[edit](BASE)], [PROMPT], names)
    target = EDIT_ATTRIBUTE[edit]
    assert after[target][0] > before[target][0]
    for a in names:
        if a != target:
            assert after[a][0] == before[a][0], (edit, a)
