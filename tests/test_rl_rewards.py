"""The GRPO rewards, case by case, and the dataset columns TRL hands them."""

from __future__ import annotations

import pytest

from interp.data.prompts import parse_letter
from rl.rewards import LambdaReward, accuracy_reward, accuracy_score, completion_text, lambda_score, make_reward


@pytest.mark.parametrize(
    "reply, gold, expected",
    [
        ("A", "A", 1.0),
        ("B", "A", 0.0),
        ("C.", "C", 1.0),
        ("(B)", "B", 1.0),
        (" c", "C", 1.0),
        ("Answer: B", "A", 0.0),
        ("", "A", -0.1),
        ("a man", "A", -0.1),  # lower-case English word is not an answer
        ("Dunno", "B", -0.1),
        ("ABC", "A", -0.1),  # not a standalone letter
    ],
)
def test_accuracy_reward_cases(reply, gold, expected):
    assert accuracy_reward([reply], gold_letter=[gold]) == [pytest.approx(expected)]


# gold, biased, unknown, condition for one ambiguous item whose unknown is C and biased answer A
AMB = dict(gold="C", biased="A", cond="ambig")
# a disambiguated item where the biased answer is the gold one, and one where it is not
DIS_PRO = dict(gold="A", biased="A", cond="disambig")
DIS_ANTI = dict(gold="B", biased="A", cond="disambig")


@pytest.mark.parametrize(
    "item, reply, lam, lambda_on, expected",
    [
        (AMB, "C", 1.5, "ambig", 1.0),  # abstains correctly: untouched
        (AMB, "A", 1.5, "ambig", -1.5),  # stereotype-congruent commit: 0 - lambda
        (AMB, "A", 0.5, "ambig", -0.5),
        (AMB, "A", 0.0, "ambig", 0.0),  # lambda 0 is the accuracy reward
        (AMB, "B", 1.5, "ambig", 0.0),  # counter-stereotypical commit: wrong, not penalised
        (AMB, "xyz", 1.5, "ambig", -0.1),  # unparseable: never penalised by lambda
        (DIS_PRO, "A", 1.5, "ambig", 1.0),  # disambiguated: no penalty by default, even when biased == gold
        (DIS_ANTI, "A", 1.5, "ambig", 0.0),
        (DIS_PRO, "A", 1.5, "all", -0.5),  # lambda_on=all penalises it everywhere
        (DIS_ANTI, "A", 1.5, "all", -1.5),
        (DIS_ANTI, "B", 1.5, "all", 1.0),
    ],
)
def test_lambda_reward_cases(item, reply, lam, lambda_on, expected):
    f = LambdaReward(lam, lambda_on)
    got = f([reply], gold_letter=[item["gold"]], biased_letter=[item["biased"]], unknown_letter=["C"],
            context_condition=[item["cond"]])
    assert got == [pytest.approx(expected)]
    letter = parse_letter(reply)
    assert lambda_score(letter, item["gold"], item["biased"], item["cond"], lam, lambda_on) == pytest.approx(expected)


@pytest.mark.parametrize("biased", ["", None])
def test_no_target_item_never_penalised(biased):
    f = LambdaReward(1.5)
    assert f(["A"], gold_letter=["C"], biased_letter=[biased], context_condition=["ambig"]) == [0.0]


def test_lambda_zero_equals_accuracy_reward():
    replies = ["A", "B", "C", "", "(A)", "zzz"]
    gold = ["A", "C", "C", "B", "B", "A"]
    biased = ["A", "A", "B", "B", "", "C"]
    cond = ["ambig", "ambig", "disambig", "ambig", "ambig", "disambig"]
    assert make_reward(0.0)(replies, gold_letter=gold, biased_letter=biased, context_condition=cond) == \
        accuracy_reward(replies, gold_letter=gold)


def test_conversational_completions_and_logged_rates():
    logged = {}
    comps = [[{"role": "assistant", "content": "C"}], [{"role": "assistant", "content": "A"}],
             [{"role": "assistant", "content": "?"}], [{"role": "assistant", "content": "B"}]]
    assert completion_text(comps[0]) == "C"
    r = LambdaReward(1.0)(comps, gold_letter=["C"] * 4, biased_letter=["A"] * 4, unknown_letter=["C"] * 4,
                          context_condition=["ambig", "ambig", "ambig", "disambig"],
                          log_metric=lambda k, v: logged.__setitem__(k, v))
    assert r == [1.0, -1.0, -0.1, 0.0]
    assert logged["abstain"] == pytest.approx(1 / 4)
    assert logged["abstain_ambig"] == pytest.approx(1 / 3)
    assert logged["biased_ambig"] == pytest.approx(1 / 3)
    assert logged["unparsed"] == pytest.approx(1 / 4)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="gold_letter"):
        accuracy_reward(["A"])
    with pytest.raises(ValueError, match="biased_letter"):
        LambdaReward(1.0)(["A"], gold_letter=["A"], context_condition=["ambig"])
    with pytest.raises(ValueError, match="2 values for 1"):
        LambdaReward(1.0)(["A"], gold_letter=["A"], biased_letter=["A", "B"], context_condition=["ambig"])
    with pytest.raises(ValueError, match="lambda_on"):
        LambdaReward(1.0, "disambig")
    with pytest.raises(ValueError, match=">= 0"):
        LambdaReward(-1.0)


def test_dataset_rows_carry_reward_columns(fixture_items):
    """Each row's letters match the prompt it shows: gold is the label, biased follows the BBQ definition."""
    from rl.data import REWARD_COLUMNS, build_dataset

    ds = build_dataset(fixture_items, shuffle=True, seed=3)
    assert set(REWARD_COLUMNS) <= set(ds.column_names)
    letters = "ABC"
    for it, row in zip(fixture_items, ds):
        text = row["prompt"][0]["content"]
        shown = [text.split(f"\n{L}. ")[1].split("\n")[0] for L in letters]
        assert shown[letters.index(row["gold_letter"])] == it.answers[it.label]
        assert shown[letters.index(row["unknown_letter"])] == it.answers[it.unknown_loc]
        if it.biased_loc is None:
            assert row["biased_letter"] == ""
        else:
            assert shown[letters.index(row["biased_letter"])] == it.answers[it.biased_loc]
            want = it.target_loc if it.question_polarity == "neg" else \
                next(i for i in range(3) if i not in (it.target_loc, it.unknown_loc))
            assert it.answers[want] == shown[letters.index(row["biased_letter"])]
        assert row["context_condition"] == it.context_condition


def test_lambda_active_share_counts_groups_the_penalty_reaches():
    """Group-standardized advantages ignore an affine change of the rewards, so the penalty changes GRPO's
    update only in groups holding a third reward value: prompt p1 (Unknown or biased only) is unchanged for every
    lambda, p2 (Unknown, biased and anti) is changed, p3 (no biased commit) is unchanged: share 1/3."""
    from rl.rewards import _standardize, lambda_active_share

    letters = ["C", "C", "A", "A"] + ["C", "A", "B", "B"] + ["C", "B", "B", "C"]
    prompts = ["p1"] * 4 + ["p2"] * 4 + ["p3"] * 4
    for lam in (0.5, 1.5):
        logged = {}
        r = LambdaReward(lam)(letters, gold_letter=["C"] * 12, biased_letter=["A"] * 12, unknown_letter=["C"] * 12,
                              context_condition=["ambig"] * 12, prompts=prompts,
                              log_metric=lambda k, v: logged.__setitem__(k, v))
        plain = [accuracy_score(x, "C") for x in letters]
        assert logged["lambda_active"] == pytest.approx(1 / 3)
        assert _standardize(r[:4]) == pytest.approx(_standardize(plain[:4]), abs=1e-3)  # p1: same advantages
        assert _standardize(r[4:8]) != pytest.approx(_standardize(plain[4:8]))  # p2: the penalty bites
    assert lambda_active_share(prompts, plain, plain) == 0.0
    # without group standardization (scale_rewards none / batch) the penalty moves every group with a biased
    # commit next to another answer: p1 and p2, not p3
    r = LambdaReward(1.5, scale_rewards="none")(letters, gold_letter=["C"] * 12, biased_letter=["A"] * 12,
                                               unknown_letter=["C"] * 12, context_condition=["ambig"] * 12,
                                               prompts=prompts, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert logged["lambda_active"] == pytest.approx(2 / 3)
    assert lambda_active_share(prompts, plain, r, "none") == pytest.approx(2 / 3)
    logged = {}
    LambdaReward(0.0)(letters, gold_letter=["C"] * 12, biased_letter=["A"] * 12, unknown_letter=["C"] * 12,
                      context_condition=["ambig"] * 12, prompts=prompts, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert "lambda_active" not in logged
