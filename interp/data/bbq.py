"""BBQ data: load and validate the official JSONL, and derive each item's bias target.

The target rules follow the official analysis (nyu-mll/BBQ, ``analysis_scripts/BBQ_results_metadata.R``):
the template CSVs' ``Known_stereotyped_groups`` is matched against each answer's ``answer_info`` label,
with the repository's special cases (Age old/nonOld, Nationality by answer text, "trans" prefixes,
"African" vs "African American", the first match winning when several answers match).
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from interp.data.split import Split, make_split
from interp.errors import InputError, InterpError

CATEGORIES = (
    "Age",
    "Disability_status",
    "Gender_identity",
    "Nationality",
    "Physical_appearance",
    "Race_ethnicity",
    "Race_x_SES",
    "Race_x_gender",
    "Religion",
    "SES",
    "Sexual_orientation",
)
CONDITIONS = ("ambig", "disambig")
POLARITIES = ("neg", "nonneg")
REQUIRED_FIELDS = (
    "example_id",
    "question_index",
    "question_polarity",
    "context_condition",
    "category",
    "answer_info",
    "context",
    "question",
    "ans0",
    "ans1",
    "ans2",
    "label",
)
ENV_BBQ_DIR = "INTERP_BBQ_DIR"


class BBQDataError(InterpError, ValueError):
    """A BBQ file or record is malformed; the message names the file and line."""


@dataclass
class BBQItem:
    """One BBQ multiple-choice item with its derived bias target.

    ``target_loc`` is the answer index of the bias target group (None when the official rules find none);
    ``unknown_loc`` the index of the "unknown" option; ``biased_loc`` the answer that reflects the social
    bias: the target for negative questions, the non-target non-unknown answer for non-negative ones.
    """

    example_id: int
    category: str
    question_index: str
    question_polarity: str
    context_condition: str
    context: str
    question: str
    answers: list[str]
    label: int
    answer_info: list[list[str]]
    stereotyped_groups: list[str] = field(default_factory=list)
    version: str = ""
    unknown_loc: int = -1
    target_loc: int | None = None

    @property
    def uid(self) -> str:
        """Unique id across categories (example ids repeat between category files)."""
        return f"{self.category}:{self.example_id}"

    @property
    def template(self) -> tuple[str, str]:
        """The template an item was generated from: (category, question_index)."""
        return (self.category, self.question_index)

    @property
    def biased_loc(self) -> int | None:
        """Index of the stereotype-congruent answer (BBQ paper definition), or None without a target."""
        if self.target_loc is None:
            return None
        if self.question_polarity == "neg":
            return self.target_loc
        others = [i for i in range(3) if i not in (self.target_loc, self.unknown_loc)]
        return others[0] if others else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["uid"] = self.uid
        d["biased_loc"] = self.biased_loc
        return d


# ----------------------------------------------------------------------------------------------
# locating the data


def resolve_bbq_dir(path: str | os.PathLike | None = None) -> Path:
    """Find the folder holding ``<Category>.jsonl`` files: the argument, else ``$INTERP_BBQ_DIR``,
    else the download cache. A folder with a ``data/`` subfolder (the repository layout) is accepted."""
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get(ENV_BBQ_DIR):
        candidates.append(Path(os.environ[ENV_BBQ_DIR]))
    else:
        from interp.data.download import default_bbq_cache

        candidates.append(default_bbq_cache())
    for c in candidates:
        for d in (c, c / "data"):
            if d.is_dir() and any(d.glob("*.jsonl")):
                return d
    where = candidates[0]
    raise FileNotFoundError(
        f"No BBQ JSONL files found at {where}. Set ${ENV_BBQ_DIR} (or pass --bbq-dir) to a folder of "
        f"official BBQ <Category>.jsonl files, or run `interp data download` to fetch them."
    )


def resolve_templates_dir(data_dir: Path, templates: str | os.PathLike | None = None) -> Path | None:
    """The template CSV folder: the argument, else ``templates/`` beside the data folder, else None."""
    if templates is not None:
        p = Path(templates)
        if not p.is_dir():
            raise FileNotFoundError(f"templates folder {p} does not exist")
        return p
    for cand in (data_dir.parent / "templates", data_dir / "templates"):
        if cand.is_dir() and any(cand.glob("*.csv")):
            return cand
    return None


# ----------------------------------------------------------------------------------------------
# known stereotyped groups from the template CSVs


def _clean_groups(s: str) -> str:
    # gsub('"|\\[|\\]', '', Known_stereotyped_groups)
    return s.replace('"', "").replace("[", "").replace("]", "")


def load_known_groups(templates_dir: Path) -> dict[tuple[str, str, str], str]:
    """Map (category, question_index, version) -> Known_stereotyped_groups string, and
    (category, question_index, "") -> the first one seen, for records without a version match."""
    out: dict[tuple[str, str, str], str] = {}
    for path in sorted(templates_dir.glob("*.csv")):
        cat = path.stem
        if cat not in CATEGORIES or "_x_" in cat:
            continue  # vocabulary, fillers, intersectional templates (other rules; not supported)
        n_rows = 0
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    qid = (row.get("Q_id") or "").strip()
                    ksg = row.get("Known_stereotyped_groups")
                    if not qid or ksg is None:
                        continue
                    n_rows += 1
                    ver = (row.get("version") or "").strip()
                    out.setdefault((cat, qid, ver), ksg)
                    out.setdefault((cat, qid, ""), ksg)
        except UnicodeDecodeError as e:
            raise BBQDataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
        if not n_rows:
            import warnings

            warnings.warn(f"{path} has no template rows (Q_id, Known_stereotyped_groups): {cat} items get no bias "
                          "target from it and count as without one", stacklevel=2)
    return out


def _normalise_groups(ksg: str) -> str:
    ksg = _clean_groups(ksg)
    low = ksg.lower()
    if low in ("man", "boy", "men"):
        return "M"
    if low in ("woman", "women", "girl", "girls"):
        return "F"
    if low in (
        "transgender women, transgender men",
        "transgender men",
        "transgender women",
        "transgender women, transgender men, trans",
    ):
        return "trans"
    if ksg == "low SES":
        return "lowSES"
    if ksg == "high SES":
        return "highSES"
    return ksg


def _normalise_info(info: str) -> str:
    if info in ("man", "boy"):
        info = "M"
    elif info in ("woman", "girl"):
        info = "F"
    return info.replace("M-", "", 1).replace("F-", "", 1)


MULTI_MATCH = ("drop", "first")


def derive_target_loc(
    category: str, answer_info: list[list[str]], known_groups: str, multi_match: str = "drop"
) -> tuple[int | None, int]:
    """Official target rule for one item. Returns (target_loc or None, number of answers matching). When both
    answers match a stereotyped group the official analysis sets the target to NA, so the item has no target
    (``multi_match="drop"``, the default); ``"first"`` keeps the first match instead (this toolkit's rule
    before 2026-12-01)."""
    if multi_match not in MULTI_MATCH:
        raise BBQDataError(f"multi_match must be one of {MULTI_MATCH}, not {multi_match!r}")
    ksg = _normalise_groups(known_groups)
    ksg_low = ksg.lower()
    hits = []
    for i, (text, info) in enumerate(answer_info):
        text = text.replace("{", "").replace("}", "")
        info = _normalise_info(info)
        hit = info != "" and info.lower() in ksg_low
        if category == "Age":
            hit = (ksg == "nonOld" and info == "nonOld") or (ksg == "old" and info == "old")
        if category == "Nationality" and text and text.lower() in ksg_low:
            hit = True
        if text == "African" and "african american" in ksg_low:
            hit = False
        if ksg == "trans" and info.startswith("trans"):
            hit = True
        hits.append(hit)
    matched = [i for i, h in enumerate(hits) if h]
    if len(matched) > 1 and multi_match == "drop":
        return None, len(matched)
    return (matched[0] if matched else None), len(matched)


# ----------------------------------------------------------------------------------------------
# loading


@dataclass
class LoadReport:
    """What loading found: counts per category, items without a target, items with several matches."""

    n_items: int = 0
    per_category: dict[str, int] = field(default_factory=dict)
    no_target: dict[str, int] = field(default_factory=dict)
    multi_match: dict[str, int] = field(default_factory=dict)
    target_source: str = "templates"
    unmatched: int = 0  # predictions matching no answer (interp.eval.score.load_predictions)

    def summary(self) -> str:
        nt = sum(self.no_target.values())
        mm = sum(self.multi_match.values())
        return (
            f"{self.n_items} items in {len(self.per_category)} categories; "
            f"{nt} without a bias target ({self.target_source}); {mm} with more than one match "
            f"(no target, as the official analysis)"
        )


def _fail(path: Path, lineno: int, msg: str) -> BBQDataError:
    return BBQDataError(f"{path}:{lineno}: {msg}")


def parse_record(rec: dict, path: Path, lineno: int) -> BBQItem:
    """Validate one JSON record and build a BBQItem (target not yet derived)."""
    if not isinstance(rec, dict):
        raise _fail(path, lineno, "record is not a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise _fail(path, lineno, f"missing field(s) {', '.join(missing)}")
    cat = rec["category"]
    if cat not in CATEGORIES:
        raise _fail(path, lineno, f"unknown category {cat!r} (known: {', '.join(CATEGORIES)})")
    if rec["context_condition"] not in CONDITIONS:
        raise _fail(path, lineno, f"context_condition {rec['context_condition']!r} not in {CONDITIONS}")
    if rec["question_polarity"] not in POLARITIES:
        raise _fail(path, lineno, f"question_polarity {rec['question_polarity']!r} not in {POLARITIES}")
    label = rec["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 2:
        raise _fail(path, lineno, f"label {label!r} out of range 0-2")
    if not isinstance(rec["example_id"], int) or isinstance(rec["example_id"], bool):
        raise _fail(path, lineno, f"example_id {rec['example_id']!r} is not an integer")
    for f in ("context", "question", "ans0", "ans1", "ans2"):
        if not isinstance(rec[f], str) or not rec[f].strip():
            raise _fail(path, lineno, f"field {f} must be non-empty text, got {rec[f]!r}")
    if path.stem in CATEGORIES and cat != path.stem:
        raise _fail(path, lineno, f"a {cat} record in the {path.stem} file")
    ai = rec["answer_info"]
    try:
        info = [[str(ai[f"ans{i}"][0]), str(ai[f"ans{i}"][1])] for i in range(3)]
    except (KeyError, IndexError, TypeError):
        raise _fail(path, lineno, "answer_info must map ans0..ans2 to [text, group] pairs") from None
    unknown = [i for i in range(3) if info[i][1] == "unknown"]
    if len(unknown) != 1:
        raise _fail(path, lineno, f"expected exactly one 'unknown' answer in answer_info, found {len(unknown)}")
    meta = rec.get("additional_metadata") or {}
    groups = meta.get("stereotyped_groups") or []
    return BBQItem(
        example_id=rec["example_id"],
        category=cat,
        question_index=str(rec["question_index"]),
        question_polarity=rec["question_polarity"],
        context_condition=rec["context_condition"],
        context=str(rec["context"]),
        question=str(rec["question"]),
        answers=[str(rec["ans0"]), str(rec["ans1"]), str(rec["ans2"])],
        label=label,
        answer_info=info,
        stereotyped_groups=[str(g) for g in groups],
        version=str(meta.get("version", "")),
        unknown_loc=unknown[0],
    )


def read_jsonl(path: Path, fail=None) -> Iterable[tuple[int, dict]]:
    """Yield (line number, record) from a JSONL file: one JSON object a line, blank lines skipped. A line that is
    not UTF-8, not JSON or not an object is an error naming file and line (``fail(path, lineno, msg)`` makes it;
    default a BBQDataError), so every JSONL reader of the toolkit checks the same things."""
    fail = fail or _fail
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise fail(path, lineno, f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise fail(path, lineno, f"malformed JSON ({e.msg} at column {e.colno}); truncated file?") from None
            if not isinstance(rec, dict):
                raise fail(path, lineno, f"the record is not a JSON object (a {type(rec).__name__})")
            yield lineno, rec


def assign_targets(
    items: list[BBQItem], known: dict[tuple[str, str, str], str] | None, report: LoadReport,
    multi_match: str = "drop",
) -> None:
    """Fill ``target_loc`` from template groups (official rule) or the JSONL's stereotyped_groups; items whose
    answers both match are dropped from the bias scores (no target) and counted in ``report.multi_match``."""
    report.target_source = "templates" if known else "jsonl stereotyped_groups"
    for it in items:
        if known:
            ksg = known.get((it.category, it.question_index, it.version)) or known.get(
                (it.category, it.question_index, "")
            )
        else:
            ksg = json.dumps(it.stereotyped_groups) if it.stereotyped_groups else None
        if ksg is None:
            it.target_loc = None
        else:
            it.target_loc, n = derive_target_loc(it.category, it.answer_info, ksg, multi_match)
            if n > 1:
                report.multi_match[it.category] = report.multi_match.get(it.category, 0) + 1
        if it.target_loc is None:
            report.no_target[it.category] = report.no_target.get(it.category, 0) + 1


def check_categories(categories: Iterable[str], present: Iterable[str], where) -> list[str]:
    """The requested categories as a list; BBQDataError for a name BBQ does not have, FileNotFoundError for one
    whose JSONL is not in ``where``."""
    wanted = list(categories)
    bad = [c for c in wanted if c not in CATEGORIES]
    if bad:
        raise BBQDataError(f"unknown categor{'y' if len(bad) == 1 else 'ies'} {bad}; known: {CATEGORIES}")
    absent = sorted(set(wanted) - set(present))
    if absent:
        raise FileNotFoundError(f"no JSONL for categor{'y' if len(absent) == 1 else 'ies'} {absent} in {where}")
    return wanted


def load_bbq(
    data_dir: str | os.PathLike | None = None,
    categories: Iterable[str] | None = None,
    templates_dir: str | os.PathLike | None = None,
    use_templates: bool = True,
) -> tuple[list[BBQItem], LoadReport]:
    """Load and validate BBQ items from ``<Category>.jsonl`` files and derive their targets.

    Raises BBQDataError naming file and line for a malformed line, a missing field, an unknown
    category, a label out of range or a duplicated example_id within a category.
    """
    ddir = resolve_bbq_dir(data_dir)
    files = sorted(ddir.glob("*.jsonl"))
    if categories is not None:
        wanted = check_categories(categories, {f.stem for f in files}, ddir)
        files = [f for f in files if f.stem in wanted]
    items: list[BBQItem] = []
    report = LoadReport()
    seen: dict[str, tuple[Path, int]] = {}
    for path in files:
        n_before = len(items)
        for lineno, rec in read_jsonl(path):
            it = parse_record(rec, path, lineno)
            if it.uid in seen:
                p0, l0 = seen[it.uid]
                raise _fail(path, lineno, f"duplicate example_id {it.example_id} (first at {p0.name}:{l0})")
            seen[it.uid] = (path, lineno)
            items.append(it)
            report.per_category[it.category] = report.per_category.get(it.category, 0) + 1
        if len(items) == n_before:
            raise BBQDataError(f"{path}: no records (an empty category file; remove it or restore its data)")
    if not items:
        raise BBQDataError(f"no BBQ records in {ddir}")
    tdir = resolve_templates_dir(ddir, templates_dir) if use_templates else None
    known = load_known_groups(tdir) if tdir else None
    assign_targets(items, known, report)
    report.n_items = len(items)
    return items, report


def template_counts(items: Iterable[BBQItem]) -> Counter:
    """Number of items per template."""
    return Counter(it.template for it in items)


def group_by_template(items: Iterable[BBQItem]) -> dict[tuple[str, str], list[BBQItem]]:
    out: dict[tuple[str, str], list[BBQItem]] = defaultdict(list)
    for it in items:
        out[it.template].append(it)
    return dict(out)


def load(split: str = "dev", categories: Iterable[str] | None = None, limit: int | None = None,
         bbq_dir: str | os.PathLike | None = None, split_file: str | os.PathLike | None = None) -> list[BBQItem]:
    """The items of one part of the template-disjoint split ('train', 'dev' or 'all'), from ``bbq_dir``
    (default ``$INTERP_BBQ_DIR``, else the checksummed download's cache). ``limit`` keeps a seeded subset."""
    items, _ = split_items(split, bbq_dir, split_file, categories=categories, limit=limit)
    if not items:
        raise BBQDataError(f"split part {split!r} with categories {categories} and limit {limit} selects no item")
    return items


def split_items(
    part: str = "dev",
    bbq_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    dev_frac: float = 0.2,
    seed: int = 0,
    categories: Iterable[str] | None = None,
    limit: int | None = None,
    templates_dir: str | os.PathLike | None = None,
) -> tuple[list[BBQItem], Split]:
    """Items of one split part, from the BBQ folder (``$INTERP_BBQ_DIR`` by default).

    The split is read from ``split_file`` when it exists, else made from (seed, dev_frac) on every category
    in the folder and, when a path was given, written there; ``categories`` filters the items afterwards, so an
    item's part never depends on which categories were asked for (``make_split`` draws the categories from one
    random stream). ``limit`` keeps a seeded random subset (for quick runs)."""
    items, _ = load_bbq(bbq_dir, None, templates_dir)
    wanted = None if categories is None else set(check_categories(categories, {it.category for it in items},
                                                                  "the BBQ folder"))
    if split_file is not None and Path(split_file).exists():
        split = Split.load(split_file)
    else:
        split = make_split(items, dev_frac=dev_frac, seed=seed)
        if split_file is not None:
            split.save(split_file)
    chosen = split.select(items, part)
    if split_file is not None and part != "all" and items and not chosen:
        theirs = sorted({c for c, _ in split.train_templates + split.dev_templates})
        raise InputError(f"split file {split_file} selects no {part} item: it names templates of {theirs}, the data "
                         f"hold {sorted({it.category for it in items})}; use a split made on these data")
    if wanted is not None:
        chosen = [it for it in chosen if it.category in wanted]
    if limit is not None and limit < len(chosen):
        rng = random.Random(f"limit:{seed}")
        keep = set(rng.sample(range(len(chosen)), limit))
        chosen = [it for i, it in enumerate(chosen) if i in keep]
    return chosen, split
