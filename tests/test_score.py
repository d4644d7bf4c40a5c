"""Scoring external predictions (indices, letters, answer text) like the official analysis."""

import json
import subprocess
import sys

import pytest

from interp.eval.score import load_predictions, parse_prediction, score_table


def _write_preds(fixture_bbq_dir, tmp_path, how):
    out = tmp_path / "preds.jsonl"
    with open(out, "w") as fh:
        for cat in ("Age", "Religion"):
            for line in (fixture_bbq_dir / f"{cat}.jsonl").read_text().splitlines():
                r = json.loads(line)
                # a model that always picks answer 0 (the target in unswapped items)
                r["prediction"] = {"index": 0, "letter": "a", "text": r["ans0"].upper() + "."}[how]
                fh.write(json.dumps(r) + "\n")
    return out


@pytest.mark.parametrize("how", ["index", "letter", "text"])
def test_prediction_forms_agree(fixture_bbq_dir, tmp_path, how):
    recs, _ = load_predictions(_write_preds(fixture_bbq_dir, tmp_path, how), templates_dir=fixture_bbq_dir.parent / "templates")
    assert all(r["pred"] == 0 for r in recs)
    rows = score_table(recs)
    overall = {r["context_condition"]: r for r in rows if r["category"] == "overall"}
    # always answering 0 never abstains: ambiguous accuracy is 0, so s_AMB equals the raw ratio
    assert overall["ambig"]["accuracy"] == 0.0
    # answer 0 is the target in half the items; target on neg and non-target on nonneg are biased:
    # biased = half of all items -> ratio 0
    assert overall["ambig"]["bias_score"] == pytest.approx(0.0)
    assert {r["category"] for r in rows} == {"Age", "Religion", "overall"}


def test_parse_prediction_text_rules(fixture_items):
    it = fixture_items[0]
    assert parse_prediction("the grandmother.", it) == 0
    assert parse_prediction(" The Teenager ", it) == 1
    assert parse_prediction("unknown", it) == it.unknown_loc
    assert parse_prediction("a grandmother", it) is None
    assert parse_prediction(2, it) == 2 and parse_prediction(7, it) is None


def test_score_cli(fixture_bbq_dir, tmp_path):
    preds = _write_preds(fixture_bbq_dir, tmp_path, "letter")
    out = tmp_path / "score.csv"
    res = subprocess.run([sys.executable, "-m", "interp.cli", "score", "--predictions", str(preds),
                          "--templates-dir", str(fixture_bbq_dir.parent / "templates"), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    head = out.read_text().splitlines()[0].split(",")
    assert head[:5] == ["category", "context_condition", "n", "accuracy", "bias_score"]
    assert "overall" in res.stdout


def test_missing_pred_field(fixture_bbq_dir, tmp_path):
    from interp.data.bbq import BBQDataError

    p = tmp_path / "p.jsonl"
    p.write_text((fixture_bbq_dir / "Age.jsonl").read_text())
    with pytest.raises(BBQDataError, match="missing prediction field 'prediction'"):
        load_predictions(p)


def test_score_takes_a_folder_and_counts_categories(fixture_bbq_dir, tmp_path):
    """Published predictions come one file per category: a folder (or several files) is scored as one set, and
    the summary counts its categories."""
    import json

    from interp.eval.score import load_predictions

    d = tmp_path / "preds"
    d.mkdir()
    n = 0
    for f in sorted(fixture_bbq_dir.glob("*.jsonl")):
        lines = [dict(json.loads(line), prediction=json.loads(line)["label"]) for line in f.read_text().splitlines()]
        (d / f.name).write_text("\n".join(json.dumps(r) for r in lines) + "\n")
        n += len(lines)
    recs, report = load_predictions(d)
    cats = {r["category"] for r in recs}
    assert len(recs) == n and len(cats) >= 2
    assert report.summary().startswith(f"{n} items in {len(cats)} categories")
    recs2, _ = load_predictions(sorted(d.glob("*.jsonl")))
    assert [r["uid"] for r in recs2] == [r["uid"] for r in recs]
    assert all(r["pred"] == r["label"] for r in recs)


def test_unmatched_predictions_are_dropped_or_counted_wrong(fixture_bbq_dir, tmp_path):
    """A prediction text matching no answer is dropped from every metric by default (the official analysis
    sets its label to NA); ``unmatched="wrong"`` keeps it as a wrong answer. Both count it."""
    rows = [json.loads(line) for line in (fixture_bbq_dir / "Age.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r["prediction"] = "no such answer" if i % 4 == 0 else r["label"]  # every 4th unmatched, the rest gold
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    n_bad = len(rows[::4])
    dropped, rep = load_predictions(p, templates_dir=fixture_bbq_dir.parent / "templates")
    assert rep.unmatched == n_bad and len(dropped) == len(rows) - n_bad
    acc = {r["context_condition"]: r["accuracy"] for r in score_table(dropped) if r["category"] == "overall"}
    assert acc == {"ambig": 1.0, "disambig": 1.0}  # what is left is all gold
    kept, rep2 = load_predictions(p, templates_dir=fixture_bbq_dir.parent / "templates", unmatched="wrong")
    assert rep2.unmatched == n_bad and len(kept) == len(rows)
    table = score_table(kept)
    assert sum(r["n"] for r in table if r["category"] == "overall") == len(rows)
    overall = [r for r in table if r["category"] == "overall"]
    correct = sum(r["accuracy"] * r["n"] for r in overall)
    assert correct == pytest.approx(len(rows) - n_bad)  # the unmatched ones count as wrong
