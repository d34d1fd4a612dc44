"""The math reward against a hand-graded table of answer forms (tests/math_answer_table.py)."""

import pytest

from iswcli.rewards import RewardItem, RewardOptions, make_reward
from tests.math_answer_table import TABLE


@pytest.fixture(scope="module")
def graded():
    reward = make_reward("math", RewardOptions())
    results = reward.score_batch([RewardItem("Q?", r, {"answer": g}) for r, g, _ in TABLE])
    return [(row, result) for row, result in zip(TABLE, results)]


def test_table_is_large_and_has_both_verdicts():
    assert len(TABLE) >= 80
    assert sum(ok for _, _, ok in TABLE) >= 40 and sum(not ok for _, _, ok in TABLE) >= 30
    assert len({(r, g) for r, g, _ in TABLE}) == len(TABLE)  # no duplicate rows


def test_no_false_pass(graded):
    false_passes = [(r, g, res.info) for (r, g, ok), res in graded if res.reward == 1.0 and not ok]
    assert false_passes == []


def test_agrees_with_hand_grading(graded):
    disagreements = [(r, g, ok, res.info) for (r, g, ok), res in graded if (res.reward == 1.0) != ok]
    assert len(disagreements) <= 2, "\n".join(map(repr, disagreements))


GOLDS = sorted({g for _, g, _ in TABLE})


@pytest.mark.parametrize("template", ["The answer is ${}$.", r"So \boxed{{{}}}", "Answer: {}"])
def test_every_gold_answer_matches_itself(template):
    # The gold answer goes through the same parser as the response, so a
    # response that states the gold answer verbatim gets reward 1.
    reward = make_reward("math", RewardOptions())
    results = reward.score_batch([RewardItem("Q?", template.format(g), {"answer": g}) for g in GOLDS])
    failed = [(g, r.info) for g, r in zip(GOLDS, results) if r.reward != 1.0]
    if template.startswith("Answer"):  # plain text: sets and polynomials need math mode
        failed = [(g, info) for g, info in failed if "," not in g and "x" not in g]
    assert failed == []


def test_normalizing_rules_are_needed_and_enough():
    # Each of our own rules (rewards.normalize_math_text) fixes a form the
    # library misreads; without them the table shows false passes.
    from math_verify import parse, verify

    raw_false_passes = [
        (r, g) for r, g, ok in TABLE if not ok and (p := parse(r)) and verify(parse("\\boxed{" + g + "}"), p)
    ]
    assert raw_false_passes  # e.g. "The answer is 2.5e3." read as 2.5
