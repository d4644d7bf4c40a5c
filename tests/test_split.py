"""Template-disjoint split."""

import pytest

from interp.data.bbq import split_items
from interp.data.split import Split, SplitLeakageError, make_split


def test_split_is_template_disjoint_and_seeded(bbq_dir, tmp_path):
    from interp.data.bbq import load_bbq

    items, _ = load_bbq(bbq_dir)
    s = make_split(items, dev_frac=0.2, seed=0)
    assert not set(s.train_templates) & set(s.dev_templates)
    train, dev = s.select(items, "train"), s.select(items, "dev")
    assert len(train) + len(dev) == len(items)
    assert not {it.template for it in train} & {it.template for it in dev}
    # every category keeps about a fifth of its 25 templates in dev
    for cat in {it.category for it in items}:
        assert sum(1 for t in s.dev_templates if t[0] == cat) == 5
    assert make_split(items, 0.2, 0).hash == s.hash
    assert make_split(items, 0.2, 1).hash != s.hash
    p = s.save(tmp_path / "split.json")
    assert Split.load(p).hash == s.hash


def test_leakage_is_detected(tmp_path):
    s = Split(seed=0, dev_frac=0.2, train_templates=[("Age", "1"), ("Age", "2")], dev_templates=[("Age", "2")])
    with pytest.raises(SplitLeakageError, match="in both train and dev"):
        s.check()
    (tmp_path / "bad.json").write_text(s.to_json())
    with pytest.raises(SplitLeakageError):
        Split.load(tmp_path / "bad.json")


def test_split_items_writes_and_reuses_file(fixture_bbq_dir, tmp_path):
    f = tmp_path / "s.json"
    dev, s1 = split_items("dev", fixture_bbq_dir, split_file=f, dev_frac=0.25, seed=3)
    assert f.exists()
    dev2, s2 = split_items("dev", fixture_bbq_dir, split_file=f, dev_frac=0.5, seed=9)  # file wins
    assert s1.hash == s2.hash and [i.uid for i in dev] == [i.uid for i in dev2]
    sub, _ = split_items("all", fixture_bbq_dir, limit=10, seed=0)
    assert len(sub) == 10


def test_category_filter_does_not_change_the_split(bbq_dir):
    """Asking for some categories gives exactly those categories' items of the full split: make_split draws
    every category from one random stream, so splitting the filtered items would move templates between
    parts (a model trained on the full split would then be "evaluated" on its own train templates)."""
    from interp.data.bbq import load_bbq
    from interp.data.split import make_split

    cats = ["Disability_status", "Sexual_orientation"]
    full = {it.uid for it in split_items("dev", bbq_dir)[0] if it.category in cats}
    assert {it.uid for it in split_items("dev", bbq_dir, categories=cats)[0]} == full
    filtered_first = make_split(load_bbq(bbq_dir, cats)[0])  # the old behaviour, for contrast
    assert {it.uid for it in filtered_first.select(load_bbq(bbq_dir, cats)[0], "dev")} != full
    with pytest.raises(ValueError, match="unknown category"):
        split_items("dev", bbq_dir, categories=["Nope"])
