"""Each training objective's fixed point, proven end to end through `iswt train` on an enumerable problem.

The toy model answers 'q' with one token of a 12-token vocabulary, so every
outcome is listable and pi_theta, pi_ref, pi* and Z are exact. The training
data holds every outcome once under a uniform proposal q (each in proportion
to q), so estimate-z's importance-sampling Z is exact, not an estimate:
mean_y exp(beta r) pi_ref(y) / q(y) = sum_y pi_ref(y) exp(beta r(y)).

- tb (frozen or learned Z) and dpg reach pi* = pi_ref exp(beta r) / Z;
- GRPO without clipping puts its mass on the best reward (its objective is linear in pi_theta);
- the pair losses converge to margins, not to a distribution: sigmoid has no
  finite optimum with hard labels, IPO drives every margin to 1/(2 beta),
  hinge stops at any margin of at least 1/beta.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts
from tests.toy import BETA, TOY_REWARD, VOCAB, estimate_z, kl, response_distribution, train_args, write_scores

UNIFORM_LOGQ = -math.log(len(VOCAB))


@pytest.fixture(scope="module")
def enumerable(toy_model_dir, toy_pipeline, tmp_path_factory):
    """Samples with each of the 12 one-token responses once under a uniform q, their scores, and the exact z."""

    d = tmp_path_factory.mktemp("enumerable")
    sampled = pq.read_table(toy_pipeline / "samples.parquet")
    art = artifacts.read_artifact(str(toy_pipeline / "samples.parquet"), artifacts.SAMPLES)
    pi_ref = response_distribution(toy_model_dir)
    n = len(VOCAB)
    first = sampled.slice(0, 1).to_pylist()[0]
    rows = [
        {
            **first,
            "sample_idx": t,
            "response": VOCAB[t],
            "response_token_ids": [t],
            "token_logprobs_q": [UNIFORM_LOGQ],
            "logprob_q": UNIFORM_LOGQ,
            "token_logprobs_model": [math.log(pi_ref[t])],
            "logprob_model": math.log(pi_ref[t]),
            "n_tokens": 1,
        }
        for t in range(n)
    ]
    table = pa.Table.from_pylist(rows, schema=sampled.schema)
    artifacts.write_artifact(table, str(d / "samples.parquet"), artifacts.SAMPLES, art.provenance)
    write_scores(d / "samples.parquet", d / "scores.parquet", logprob_ref=np.log(pi_ref).tolist())
    estimate_z(d)
    return d


def pi_star(model_dir: str) -> np.ndarray:
    tilted = response_distribution(model_dir) * np.exp(BETA * TOY_REWARD)
    return tilted / tilted.sum()


def train(cli, d, model_dir, run, *extra) -> list[dict]:
    result = cli(*train_args(d, model_dir, run, "--full", "--batch-size", len(VOCAB), *extra))
    assert result.exit_code == 0, result.stderr
    return pq.read_table(run / "train_log.parquet").to_pylist()


def test_importance_sampling_z_is_exact_when_every_outcome_is_sampled_in_proportion_to_q(enumerable, toy_model_dir):
    exact = math.log(np.sum(response_distribution(toy_model_dir) * np.exp(BETA * TOY_REWARD)))
    z = pq.read_table(enumerable / "z.parquet").to_pylist()[0]
    assert z["log_z"] == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize(
    "objective",
    [
        ["--loss", "tb", "--z", "{z}"],
        ["--loss", "tb", "--z-mode", "learned", "--z-lr", "0.1"],
        ["--loss", "dpg", "--z", "{z}"],
        ["--loss", "dpg", "--z", "{z}", "--no-dpg-baseline"],
    ],
    ids=["tb-frozen", "tb-learned", "dpg", "dpg-no-baseline"],
)
def test_distribution_matching_objectives_reach_pi_star(enumerable, toy_model_dir, cli, tmp_path, objective):
    target = pi_star(toy_model_dir)
    start = kl(target, response_distribution(toy_model_dir))
    args = [a.replace("{z}", str(enumerable / "z.parquet")) for a in objective]
    log = train(cli, enumerable, toy_model_dir, tmp_path / "run", *args, "--lr", "1e-2", "--max-steps", 300)
    end = kl(target, response_distribution(str(tmp_path / "run")))
    print(
        f"{' '.join(objective)}: KL(pi*||pi_theta) {start:.4f} -> {end:.5f}, loss {log[0]['loss']:.4f} -> {log[-1]['loss']:.4f}"
    )
    assert start > 0.3
    assert end < 0.01


def test_grpo_without_clipping_converges_to_the_best_reward_not_to_pi_star(enumerable, toy_model_dir, cli, tmp_path):
    run = tmp_path / "run"
    train(
        cli, enumerable, toy_model_dir, run, "--loss", "grpo", "--clip-eps", "1e6", "--lr", "1e-2", "--max-steps", 300
    )
    policy = response_distribution(str(run))
    assert policy[int(np.argmax(TOY_REWARD))] > 0.95
    assert kl(pi_star(toy_model_dir), policy) > kl(pi_star(toy_model_dir), response_distribution(toy_model_dir))


def disjoint_pairs(d, out) -> list[tuple[int, int]]:
    """Three pairs, no outcome in two of them (chosen has the higher reward): each margin is free."""
    pairs = [
        (VOCAB.index("d"), VOCAB.index("a")),
        (VOCAB.index("h"), VOCAB.index("c")),
        (VOCAB.index("f"), VOCAB.index("b")),
    ]
    n = len(pairs)
    table = pa.table(
        {
            "prompt_id": ["toy"] * n,
            "chosen_idx": pa.array([c for c, _ in pairs], pa.int32()),
            "rejected_idx": pa.array([r for _, r in pairs], pa.int32()),
            "r_chosen": [float(TOY_REWARD[c]) for c, _ in pairs],
            "r_rejected": [float(TOY_REWARD[r]) for _, r in pairs],
            "log_weight_base": [0.0] * n,
            "margin_score": [0.0] * n,
            "weight": [1.0 / n] * n,
            "method": ["direct"] * n,
        }
    )
    artifacts.write_artifact(table, str(out), artifacts.PAIRS, artifacts.make_provenance("weight-pairs", {}))
    return pairs


def log_ratio_margins(model_dir, run, pairs) -> np.ndarray:
    """(log pi_theta - log pi_ref)(chosen) - (same)(rejected), per pair."""
    ratio = np.log(response_distribution(str(run))) - np.log(response_distribution(model_dir))
    return np.array([ratio[c] - ratio[r] for c, r in pairs])


def test_pair_losses_converge_to_margins_not_to_a_distribution(enumerable, toy_model_dir, cli, tmp_path):
    pairs = disjoint_pairs(enumerable, tmp_path / "pairs.parquet")
    margins = {}
    for loss, steps in [("ipo", 300), ("hinge", 300), ("sigmoid", 100), ("sigmoid", 400)]:
        run = tmp_path / f"{loss}-{steps}"
        extra = ["--pairs", tmp_path / "pairs.parquet", "--lr", "1e-2", "--max-steps", steps, "--warmup-steps", 0]
        train(cli, enumerable, toy_model_dir, run, "--loss", loss, *extra)
        margins[loss, steps] = log_ratio_margins(toy_model_dir, run, pairs)
    print({k: v.round(3).tolist() for k, v in margins.items()})
    assert margins["ipo", 300] == pytest.approx(1 / (2 * BETA), abs=0.02)  # every margin, whatever the rewards
    assert np.all(margins["hinge", 300] >= 1 / BETA - 0.02)  # any margin past 1/beta is optimal
    # sigmoid: no finite optimum, the margins keep growing as long as it trains
    assert np.all(margins["sigmoid", 400] > margins["sigmoid", 100] + 0.3)
    assert np.all(margins["sigmoid", 400] > 5 / BETA)


def test_a_diverging_run_is_named_with_its_step(enumerable, toy_model_dir, cli, tmp_path):
    run = tmp_path / "run"
    args = train_args(enumerable, toy_model_dir, run, "--full", "--loss", "tb", "--z", enumerable / "z.parquet")
    result = cli(*[a for a in args if a != "--quiet"], "--lr", "1", "--max-steps", 30, "--warmup-steps", 0)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    step = manifest["diverged_at_step"]
    assert step is not None and 4 <= step < 30
    assert (
        "the loss diverges" in result.stderr and f"at step {step}:" in result.stderr and "lower --lr" in result.stderr
    )
