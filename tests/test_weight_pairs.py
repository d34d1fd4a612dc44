"""`iswt weight-pairs` end to end: known answers through the CLI, provenance, bad input."""

import math
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts
from tests.test_estimate_z import assert_one_line_error, summary_of, write_samples, write_scores

# Prompt 'x': 3 samples with distinct rewards (sample_idx not 0..K-1 on purpose);
# 'y': a tie on top; 'z': all tied, so it has no pair and is dropped.
ROWS = [
    ("y", 0, 1.0),
    ("x", 5, 0.0),
    ("z", 0, 2.0),
    ("x", 2, 1.0),
    ("y", 1, 1.0),
    ("x", 9, 3.0),
    ("y", 2, 0.0),
    ("z", 1, 2.0),
]
PIDS = [r[0] for r in ROWS]
IDX = [r[1] for r in ROWS]
REWARDS = [r[2] for r in ROWS]


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _inputs(tmp_path, pids=PIDS, idx=IDX, rewards=REWARDS):
    return (
        write_samples(tmp_path / "samples.parquet", pids, idx),
        write_scores(tmp_path / "scores.parquet", pids, idx, rewards),
    )


def _run(cli, tmp_path, *flags, inputs=None):
    samples, scores = inputs or _inputs(tmp_path)
    out = tmp_path / "pairs.parquet"
    result = cli("--json", "weight-pairs", "--samples", samples, "--scores", scores, "--out", out, *flags)
    return result, out


def _by_prompt(out):
    pairs = defaultdict(dict)
    for row in pq.read_table(out).to_pylist():
        pairs[row["prompt_id"]][(row["chosen_idx"], row["rejected_idx"])] = row
    return pairs


def test_iso_weights_of_a_three_sample_prompt_by_hand(cli, tmp_path):
    gamma = 2.0
    result, out = _run(cli, tmp_path, "--method", "iso", "--gamma", gamma)
    summary = summary_of(result)
    pairs = _by_prompt(out)

    # sample_idx 5, 2, 9 have rewards 0, 1, 3.
    hand = {
        (2, 5): (1 + 0) / gamma + math.log(_sigmoid(1) - 0.5),
        (9, 5): (3 + 0) / gamma + math.log(_sigmoid(3) - 0.5),
        (9, 2): (3 + 1) / gamma + math.log(_sigmoid(2) - 0.5),
    }
    total = sum(math.exp(v) for v in hand.values())
    assert set(pairs["x"]) == set(hand)
    for key, log_w in hand.items():
        row = pairs["x"][key]
        assert row["log_weight_base"] == pytest.approx(log_w, rel=1e-12)
        assert row["weight"] == pytest.approx(math.exp(log_w) / total, rel=1e-12)
        assert row["r_chosen"] > row["r_rejected"] and row["method"] == "iso"
    # 'y': the tie (0, 1) is not a pair; both untied pairs have equal weight.
    assert set(pairs["y"]) == {(0, 2), (1, 2)}
    assert [r["weight"] for r in pairs["y"].values()] == pytest.approx([0.5, 0.5])
    assert "z" not in pairs
    for prompt in pairs.values():
        assert sum(r["weight"] for r in prompt.values()) == pytest.approx(1.0, rel=1e-12)
    assert summary["prompts_in"] == 3 and summary["pairs"] == 5
    assert summary["dropped_prompts"] == 1
    assert summary["pairs_per_prompt"] == {"mean": 2.5, "max": 3}
    assert summary["acceptance_rate"] is None


def test_iso_does_not_overflow_with_large_rewards_and_small_gamma(cli, tmp_path):
    pids, idx, rewards = ["p"] * 4, [0, 1, 2, 3], [100.0, 99.0, 0.0, 50.0]
    result, out = _run(cli, tmp_path, "--method", "iso", "--gamma", 0.05, inputs=_inputs(tmp_path, pids, idx, rewards))
    summary_of(result)
    weight = pq.read_table(out).column("weight").to_numpy()
    assert weight.size == 6 and np.all(np.isfinite(weight))
    assert weight.sum() == pytest.approx(1.0, rel=1e-12)


def test_direct_is_uniform_and_max_pairs_keeps_the_heaviest(cli, tmp_path):
    result, out = _run(cli, tmp_path, "--method", "direct")
    summary_of(result)
    assert [r["weight"] for r in _by_prompt(out)["x"].values()] == pytest.approx([1 / 3] * 3)

    result, out = _run(cli, tmp_path, "--method", "iso", "--gamma", 2, "--max-pairs-per-prompt", 1)
    summary = summary_of(result)
    pairs = _by_prompt(out)
    assert list(pairs["x"]) == [(9, 2)]  # the largest hand-computed log weight above
    assert pairs["x"][(9, 2)]["weight"] == 1.0
    assert summary["pairs_per_prompt"]["max"] == 1


def test_rso_reports_its_acceptance_rate(cli, tmp_path):
    # With a tiny beta only the best remaining candidate is ever accepted, so
    # accepting all 4 (the default) takes passes over 4, 3, 2 and 1 candidates:
    # 10 tests for 4 acceptances, a rate of 0.4 in every prompt.
    pids, idx, rewards = ["p"] * 4 + ["q"] * 4, [0, 1, 2, 3] * 2, [0.1, 0.7, 0.3, 0.9, 3.0, 1.0, 2.0, 0.0]
    inputs = _inputs(tmp_path, pids, idx, rewards)
    result, out = _run(cli, tmp_path, "--method", "rso", "--beta", 1e-6, inputs=inputs)
    summary = summary_of(result)
    assert summary["acceptance_rate"] == pytest.approx({"mean": 0.4, "min": 0.4, "max": 0.4})
    assert summary["pairing"] == "first-round"
    pairs = _by_prompt(out)
    assert [len(pairs["p"]), len(pairs["q"])] == [2, 2]  # 4 accepted, distinct rewards: 2 matches
    rows = [r for p in pairs.values() for r in p.values()]
    assert all(r["r_chosen"] > r["r_rejected"] and r["weight"] == 0.5 and r["method"] == "rso" for r in rows)

    # A huge beta accepts every candidate it tests: rate 1.
    result, _ = _run(cli, tmp_path, "--method", "rso", "--beta", 1e6, "--seed", 4, inputs=inputs)
    assert summary_of(result)["acceptance_rate"]["mean"] == pytest.approx(1.0)


def test_rso_is_reproducible_with_a_seed(cli, tmp_path):
    rewards = list(np.random.default_rng(0).normal(size=8 * 6))
    pids, idx = [f"p{i}" for i in range(8) for _ in range(6)], list(range(6)) * 8
    inputs = _inputs(tmp_path, pids, idx, rewards)
    flags = ("--method", "rso", "--beta", 0.5, "--pairing", "tournament", "--seed", 11)
    first, out = _run(cli, tmp_path, *flags, inputs=inputs)
    rate = summary_of(first)["acceptance_rate"]
    table = pq.read_table(out)
    again, _ = _run(cli, tmp_path, *flags, "--force", inputs=inputs)  # a real second run, not the cache
    assert summary_of(again)["acceptance_rate"] == rate
    assert pq.read_table(out).equals(table)
    assert 0 < rate["min"] <= rate["max"] <= 1


def test_provenance_records_both_inputs(cli, tmp_path):
    result, out = _run(cli, tmp_path, "--method", "iso", "--gamma", 1, "--plot", tmp_path / "w.png")
    summary = summary_of(result)
    pairs = artifacts.read_artifact(str(out), artifacts.PAIRS)
    prov = pairs.provenance
    assert prov["stage"] == "weight-pairs" and prov["method"] == "iso" and prov["pairing"] == "all"
    assert prov["inputs"]["samples"]["sha256"] == artifacts.file_sha256(str(tmp_path / "samples.parquet"))
    assert prov["inputs"]["scores"]["sha256"] == artifacts.file_sha256(str(tmp_path / "scores.parquet"))
    assert prov["config"]["gamma"] == 1.0 and prov["dropped_prompts"] == 1
    assert summary["sha256"] == pairs.sha256
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------
# Bad input: exit 2, one line, nothing written
# --------------------------------------------------------------------------

ISO = ("--method", "iso", "--gamma", "1")

BAD_CASES = {
    "gamma-zero": (None, ("--method", "iso", "--gamma", "0"), ["--gamma 0.0", "> 0"]),
    "gamma-negative": (None, ("--method", "iso", "--gamma", "-2"), ["--gamma -2.0", "> 0"]),
    "gamma-missing": (None, ("--method", "iso"), ["--gamma is required"]),
    "beta-zero": (None, ("--method", "rso", "--beta", "0"), ["--beta 0.0", "> 0"]),
    "unknown-method": (None, ("--method", "best"), ["--method best"]),
    "num-accept-zero": (None, ("--method", "rso", "--beta", "1", "--num-accept", "0"), ["--num-accept 0"]),
    "orphan-score": (
        (PIDS, IDX, [*PIDS, "w"], [*IDX, 4], [*REWARDS, 0.0]),
        ISO,
        ["1 score(s) have no matching sample", "prompt_id='w', sample_idx=4"],
    ),
    "duplicate-key": (
        (PIDS, IDX, [*PIDS, "x"], [*IDX, 9], [*REWARDS, 0.0]),
        ISO,
        ["duplicate key", "prompt_id='x', sample_idx=9"],
    ),
    "nan-reward": (
        (PIDS, IDX, PIDS, IDX, [math.nan, *REWARDS[1:]]),
        ISO,
        ["column 'reward'", "NaN", "prompt_id='y', sample_idx=0"],
    ),
    "one-sample-prompt": (
        ([*PIDS, "v"], [*IDX, 0], [*PIDS, "v"], [*IDX, 0], [*REWARDS, 1.0]),
        ISO,
        ["prompt 'v' has 1 sample", "at least 2"],
    ),
    "no-untied-pair": ((["a", "a"], [0, 1], ["a", "a"], [0, 1], [1.0, 1.0]), ISO, ["no pair"]),
}


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing-out"])
@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, name, existing):
    data, flags, fragments = BAD_CASES[name]
    sample_pids, sample_idx, pids, idx, rewards = data or (PIDS, IDX, PIDS, IDX, REWARDS)
    samples = write_samples(tmp_path / "samples.parquet", sample_pids, sample_idx)
    scores = write_scores(tmp_path / "scores.parquet", pids, idx, rewards)
    out = tmp_path / "pairs.parquet"
    before = b"an earlier, valid pairs artifact"
    if existing:
        out.write_bytes(before)
    result = cli("weight-pairs", "--samples", samples, "--scores", scores, "--out", out, *flags)
    assert_one_line_error(result, *fragments)
    assert out.read_bytes() == before if existing else not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
