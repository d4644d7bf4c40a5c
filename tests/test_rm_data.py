"""Preference JSONL: both layouts load, RM-Bench records expand with RM-Bench's split rule, bad input fails clearly."""

import json

import pytest

from interp.rm.data import PreferenceDataError, PreferencePair, load_preferences, save_preferences


def _write(path, lines):
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def test_rewardbench_style_roundtrip(tmp_path):
    p = _write(tmp_path / "a.jsonl", [{"prompt": "Q?", "chosen": "yes", "rejected": "no", "id": "x"},
                                      {"prompt": "R?", "chosen": "a", "rejected": "b", "split": "hard"}])
    pairs = load_preferences(p)
    assert [(q.id, q.split) for q in pairs] == [("x", None), ("2", "hard")]
    out = save_preferences(pairs, tmp_path / "b.jsonl")
    again = load_preferences(out)
    assert [(q.prompt, q.chosen, q.rejected, q.id, q.split) for q in again] == \
        [(q.prompt, q.chosen, q.rejected, q.id, q.split) for q in pairs]


def test_rmbench_style_expands_to_style_matrix(tmp_path):
    rec = {"id": "r1", "prompt": "P", "chosen": ["c0", "c1", "c2"], "rejected": ["r0", "r1", "r2"]}
    pairs = load_preferences(_write(tmp_path / "a.jsonl", [rec]))
    assert len(pairs) == 9
    by = {(q.meta["chosen_style"], q.meta["rejected_style"]): q for q in pairs}
    assert by[(0, 2)].split == "hard" and by[(0, 2)].chosen == "c0" and by[(0, 2)].rejected == "r2"
    assert by[(1, 1)].split == "normal" and by[(2, 0)].split == "easy"
    assert sum(q.split == "hard" for q in pairs) == 3


@pytest.mark.parametrize("line, msg", [
    ({"prompt": "P", "chosen": "c"}, "missing field"),
    ('{"prompt": "P", "chosen": "c", "rej', "malformed JSON"),
    ({"prompt": "P", "chosen": ["a", "b"], "rejected": ["c"]}, "equal"),
    ({"prompt": "P", "chosen": 3, "rejected": "r"}, "strings"),
    ({"prompt": "", "chosen": "c", "rejected": "r"}, "empty"),
    ([1, 2], "not a JSON object"),
])
def test_bad_records_name_file_and_line(tmp_path, line, msg):
    p = _write(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, line])
    with pytest.raises(PreferenceDataError, match=rf"bad\.jsonl:2: .*{msg}"):
        load_preferences(p)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(PreferenceDataError, match="no preference records"):
        load_preferences(tmp_path / "e.jsonl")
    with pytest.raises(FileNotFoundError):
        load_preferences(tmp_path / "nope.jsonl")


def test_duplicate_ids(tmp_path):
    p = _write(tmp_path / "d.jsonl", [{"prompt": "P", "chosen": "a", "rejected": "b", "id": 1},
                                      {"prompt": "P", "chosen": "a", "rejected": "b", "id": 1}])
    with pytest.raises(PreferenceDataError, match="duplicate id"):
        load_preferences(p)
    q = _write(tmp_path / "u.jsonl", [{"prompt": "P", "chosen": "a", "rejected": "b", "id": 1},
                                      {"prompt": "P", "chosen": "a", "rejected": "b", "id": 2}])
    assert [x.id for x in load_preferences(q)] == ["1", "2"]  # the same texts under distinct ids are two pairs
