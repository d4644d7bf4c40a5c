"""``interp score``: score a BBQ-format JSONL of external predictions like the official analysis."""

from __future__ import annotations

import click


@click.command("score")
@click.option("--predictions", required=True, multiple=True, type=click.Path(exists=True),
              help="BBQ-format JSONL whose records carry a predicted answer, or a folder of them (one per "
                   "category); repeat for several.")
@click.option("--pred-field", default="prediction", show_default=True,
              help="Record field holding the prediction: index 0-2, letter A-C, or answer text (an index or letter is "
                   "taken as its answer's text under --rules official, as the official script does).")
@click.option("--templates-dir", type=click.Path(), default=None,
              help="BBQ template CSVs for the official target rule (default: the JSONL's stereotyped_groups, "
                   "or templates/ beside $INTERP_BBQ_DIR).")
@click.option("--n-boot", type=click.IntRange(min=0), default=0, show_default=True, help="Bootstrap resamples (0: no intervals).")
@click.option("--multi-match", type=click.Choice(["drop", "first"]), default="drop", show_default=True,
              help="Items whose answers both match a stereotyped group: drop them from the bias score (the "
                   "official analysis) or take the first match.")
@click.option("--unmatched", type=click.Choice(["drop", "wrong"]), default="drop", show_default=True,
              help="Predictions that match no answer: drop them (the official analysis) or count them wrong.")
@click.option("--rules", type=click.Choice(["official", "legacy"]), default="official", show_default=True,
              help="How a prediction is matched to an answer: 'official' ports BBQ_calculate_bias_score.R (its "
                   "answer-text repairs, the two-word fallback, '<category> (names)' rows); 'legacy' is this "
                   "toolkit's rule before 2026-12-02.")
@click.option("--out", type=click.Path(), default="results/score.csv", show_default=True)
def cmd(predictions, pred_field, templates_dir, n_boot, multi_match, unmatched, rules, out):
    """Per-category accuracy and bias score (x100) for ambiguous and disambiguated contexts."""
    import os
    from pathlib import Path

    from interp.eval.score import format_score_table, load_predictions, score_table, write_csv

    if templates_dir is None and os.environ.get("INTERP_BBQ_DIR"):
        from interp.data.bbq import resolve_templates_dir

        d = Path(os.environ["INTERP_BBQ_DIR"])
        templates_dir = resolve_templates_dir(d if d.name == "data" else d / "data")
    recs, report = load_predictions(list(predictions), pred_field, templates_dir, multi_match, unmatched, rules)
    rows = score_table(recs, n_boot=n_boot, rules=rules)
    write_csv(rows, out)
    click.echo(format_score_table(rows))
    fate = "dropped" if unmatched == "drop" else "counted wrong"
    if report.matching is not None:
        click.echo(report.matching.summary())
    click.echo(f"{len(recs)} predictions scored ({report.unmatched} unmatched, {fate}; {rules} rules); "
               f"{report.summary()}; wrote {out}")
