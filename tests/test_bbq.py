"""BBQ loading, validation and the official target rule."""

import json

import pytest

from interp.data.bbq import BBQDataError, derive_target_loc, load_bbq


def test_official_counts_and_targets(bbq_dir):
    items, rep = load_bbq(bbq_dir)
    assert rep.per_category == {
        "Age": 3680, "Disability_status": 1556, "Nationality": 3080,
        "Physical_appearance": 1576, "Religion": 1200, "Sexual_orientation": 864,
    }
    assert sum(rep.no_target.values()) == 0
    by = {(it.category, it.example_id): it for it in items}
    # (category, example_id) -> (target_loc, biased_loc), checked by hand against answer_info and the
    # templates' Known_stereotyped_groups
    expected = {
        ("Age", 0): (0, 0),  # grandfather (old) vs grandson; KSG old; negative question
        ("Age", 1841): (1, 1),  # middle-aged guy is 'old' in BBQ's labels
        ("Disability_status", 0): (2, 2),  # wheelchair (disabled)
        ("Disability_status", 779): (0, 2),  # nonneg question: biased answer is the non-target sibling
        ("Nationality", 0): (0, 0),  # matched by answer text "British"
        ("Nationality", 1541): (2, 2),  # Syrian in the Middle-East list
        ("Physical_appearance", 0): (2, 2),  # fat (obese)
        ("Religion", 0): (2, 2),  # Muslim
        ("Sexual_orientation", 433): (1, 1),  # lesbian
    }
    for key, (t, b) in expected.items():
        assert (by[key].target_loc, by[key].biased_loc) == (t, b), key


def test_templates_and_jsonl_groups_agree(bbq_dir):
    a, _ = load_bbq(bbq_dir, categories=["Religion", "Age"])
    b, rep = load_bbq(bbq_dir, categories=["Religion", "Age"], use_templates=False)
    assert rep.target_source.startswith("jsonl")
    assert [x.target_loc for x in a] == [x.target_loc for x in b]


@pytest.mark.parametrize(
    "category, info, ksg, want",
    [
        ("Age", [["old man", "old"], ["kid", "nonOld"], ["?", "unknown"]], '["nonOld"]', 1),  # 'old' inside 'nonold'
        ("Age", [["kid", "nonOld"], ["old man", "old"], ["?", "unknown"]], '["old"]', 1),
        ("Nationality", [["?", "unknown"], ["Irish", "Europe"], ["Thai", "AsiaPacific"]], '["Irish"]', 1),
        ("Race_ethnicity", [["African", "African"], ["African American", "African American"], ["?", "unknown"]],
         '["Black", "African American"]', 1),  # "African" is not "African American"
        ("Gender_identity", [["trans woman", "trans_F"], ["cis woman", "nonTrans_F"], ["?", "unknown"]],
         '["transgender women", "transgender men"]', 0),  # "trans" prefix rule
        ("Gender_identity", [["?", "unknown"], ["man", "M"], ["woman", "F"]], '["F"]', 2),
        ("SES", [["?", "unknown"], ["poor", "lowSES"], ["rich", "highSES"]], '["low SES"]', 1),
        ("Religion", [["Catholic", "Catholic"], ["Mormon", "Mormon"], ["?", "unknown"]], '["Mormon", "Catholic"]', None),  # both match: NA (official)
        ("Religion", [["Sikh", "Sikh"], ["Hindu", "Hindu"], ["?", "unknown"]], '["Muslim"]', None),
    ],
)
def test_target_rule_special_cases(category, info, ksg, want):
    got, n = derive_target_loc(category, info, ksg)
    assert got == want


def test_more_than_one_match_is_dropped_as_the_official_analysis_does():
    info = [["Catholic", "Catholic"], ["Mormon", "Mormon"], ["?", "unknown"]]
    assert derive_target_loc("Religion", info, '["Mormon", "Catholic"]') == (None, 2)  # NA: no bias target
    assert derive_target_loc("Religion", info, '["Mormon", "Catholic"]', multi_match="first") == (0, 2)
    with pytest.raises(ValueError, match="multi_match must be one of"):
        derive_target_loc("Religion", info, '["Mormon"]', multi_match="last")


def _write(tmp_path, lines, name="Age.jsonl"):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    (d / name).write_text("\n".join(lines) + "\n")
    return d


def _rec(fixture_bbq_dir, **over):
    rec = json.loads((fixture_bbq_dir / "Age.jsonl").read_text().splitlines()[0])
    rec.update(over)
    return rec


def test_malformed_line_names_file_and_line(tmp_path, fixture_bbq_dir):
    good = json.dumps(_rec(fixture_bbq_dir))
    d = _write(tmp_path, [good, "{not json"])
    with pytest.raises(BBQDataError, match=r"Age\.jsonl:2: malformed JSON"):
        load_bbq(d)


def test_missing_field(tmp_path, fixture_bbq_dir):
    rec = _rec(fixture_bbq_dir)
    del rec["question"]
    d = _write(tmp_path, [json.dumps(rec)])
    with pytest.raises(BBQDataError, match=r"Age\.jsonl:1: missing field\(s\) question"):
        load_bbq(d)


@pytest.mark.parametrize(
    "over, msg",
    [({"category": "Cooking"}, "unknown category 'Cooking'"), ({"label": 3}, "label 3 out of range"),
     ({"context_condition": "vague"}, "context_condition 'vague'")],
)
def test_bad_values_reported(tmp_path, fixture_bbq_dir, over, msg):
    d = _write(tmp_path, [json.dumps(_rec(fixture_bbq_dir, **over))])
    with pytest.raises(BBQDataError, match=msg):
        load_bbq(d)


def test_duplicate_example_id(tmp_path, fixture_bbq_dir):
    r = json.dumps(_rec(fixture_bbq_dir))
    d = _write(tmp_path, [r, r])
    with pytest.raises(BBQDataError, match=r"Age\.jsonl:2: duplicate example_id 0 \(first at Age\.jsonl:1\)"):
        load_bbq(d)


def test_missing_folder_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="INTERP_BBQ_DIR"):
        load_bbq(tmp_path / "nowhere")


def test_cli_input_errors_are_one_line(fixture_bbq_dir, tmp_path, monkeypatch):
    """A bad category on the command line is an 'Error:' line naming it (exit 1), not a traceback, and
    INTERP_DEBUG=1 keeps the traceback (tests/test_errors.py: other exceptions keep theirs)."""
    from click.testing import CliRunner

    from interp.cli import main
    from rl.cli import main as rl_main

    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    for cli, args in ((main, ["data", "split", "--bbq-dir", str(fixture_bbq_dir), "--categories", "Nope",
                              "--out", str(tmp_path / "s.json")]),
                      (rl_main, ["train", "--bbq-dir", str(fixture_bbq_dir), "--lr", "-1", "--steps", "1",
                                 "--out", str(tmp_path / "rl")])):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1, r.output
        assert r.output.startswith("Error: ") and ("Nope" in r.output or "lr must be > 0" in r.output), r.output
        assert isinstance(r.exception, SystemExit)
    assert not (tmp_path / "s.json").exists()
    monkeypatch.setenv("INTERP_DEBUG", "1")
    r = CliRunner().invoke(main, ["data", "split", "--bbq-dir", str(fixture_bbq_dir), "--categories", "Nope"])
    assert r.exit_code != 0 and type(r.exception).__name__ == "BBQDataError"
