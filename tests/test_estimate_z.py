"""`iswt estimate-z` end to end: known answers through the CLI, provenance, bad input."""

import json
import math
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts
from iswcli.proposal import LOG_RATIO_REF, LOG_RATIO_ZERO

# --------------------------------------------------------------------------
# Artifact builders (also used by test_weight_pairs)
# --------------------------------------------------------------------------


def write_samples(path, prompt_ids, sample_idx, logprob_q=None, *, untruncated=True, temperature=1.0, top_p=1.0):
    """A samples artifact with every required column; only keys and logprob_q carry meaning."""
    n = len(prompt_ids)
    lq = np.zeros(n) if logprob_q is None else np.asarray(logprob_q, dtype=float)
    ints = pa.array([[1, 2]] * n, pa.list_(pa.int32()))
    floats = pa.array([[float(x)] for x in lq], pa.list_(pa.float32()))
    table = pa.table(
        {
            "prompt_id": pa.array(prompt_ids, pa.string()),
            "sample_idx": pa.array(sample_idx, pa.int32()),
            "task": ["arith"] * n,
            "prompt": ["1+1?"] * n,
            "task_fields": ["{}"] * n,
            "prompt_text": ["1+1?"] * n,
            "response": ["2"] * n,
            "prompt_token_ids": ints,
            "response_token_ids": ints,
            "token_logprobs_q": floats,
            "logprob_q": lq,
            "token_logprobs_model": floats,
            "logprob_model": lq,
            "n_tokens": pa.array([1] * n, pa.int32()),
            "finish_reason": ["stop"] * n,
        }
    )
    provenance = artifacts.make_provenance(
        "sample",
        {"temperature": temperature, "top_p": top_p, "top_k": 0, "backend": "hf", "dtype": "float32"},
        seed=0,
        sampling={"untruncated": untruncated, "stop_token_ids": [2], "chat_template": True},
    )
    artifacts.write_artifact(table, str(path), artifacts.SAMPLES, provenance)
    return str(path)


def write_scores(path, prompt_ids, sample_idx, rewards, logprob_ref=None):
    n = len(prompt_ids)
    columns = {
        "prompt_id": pa.array(prompt_ids, pa.string()),
        "sample_idx": pa.array(sample_idx, pa.int32()),
        "reward": pa.array(rewards, pa.float64()),
        "reward_info": ["test"] * n,
    }
    if logprob_ref is not None:
        columns["logprob_ref"] = pa.array(logprob_ref, pa.float64())
    artifacts.write_artifact(pa.table(columns), str(path), artifacts.SCORES, artifacts.make_provenance("score", {}))
    return str(path)


def summary_of(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _logsumexp(x):
    x = np.asarray(x, dtype=float)
    return float(x.max() + np.log(np.exp(x - x.max()).sum()))


# --------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------

BETA = 1.5
# Two prompts; rows deliberately out of order, and sample_idx not 0..K-1.
ROWS = [("b", 7, 2.0), ("a", 0, 0.0), ("b", 3, -1.0), ("a", 1, 1.0), ("a", 2, 3.0), ("b", 1, 0.5)]
PIDS = [r[0] for r in ROWS]
IDX = [r[1] for r in ROWS]
REWARDS = np.array([r[2] for r in ROWS])


def _run(cli, tmp_path, *extra, samples=None, scores=None):
    samples = samples or write_samples(tmp_path / "samples.parquet", PIDS, IDX)
    scores = scores or write_scores(tmp_path / "scores.parquet", PIDS, IDX, REWARDS)
    out = tmp_path / "z.parquet"
    result = cli(
        "--json", "estimate-z", "--proposal", samples, "--scores", scores, "--beta", BETA, "--out", out, *extra
    )
    return result, out


def _rows(out):
    return {r["prompt_id"]: r for r in pq.read_table(out).to_pylist()}


def test_log_z_of_an_untruncated_proposal_is_logsumexp_minus_log_k(cli, tmp_path):
    result, out = _run(cli, tmp_path)
    summary = summary_of(result)
    rows = _rows(out)
    assert list(pq.read_table(out).column("prompt_id").to_pylist()) == ["a", "b"]
    for pid in ("a", "b"):
        lw = BETA * REWARDS[np.array(PIDS) == pid]
        row = rows[pid]
        assert row["log_z"] == pytest.approx(_logsumexp(lw) - math.log(3), rel=1e-12)
        w = np.exp(lw)
        assert row["ess"] == pytest.approx(w.sum() ** 2 / (w * w).sum(), rel=1e-12)
        assert row["ess_frac"] == pytest.approx(row["ess"] / 3, rel=1e-12)
        assert row["max_weight_share"] == pytest.approx(w.max() / w.sum(), rel=1e-12)
        assert row["n_samples"] == 3 and row["beta"] == BETA
        assert math.isnan(row["khat"]) and "K=3" in row["khat_note"]
        # no --bootstrap: log Z_hat +- 1.96 se, widened by a missed share p of weight e^{1.5 * 3} (the highest
        # reward) or e^{1.5 * -1} (the lowest); lw of a prompt's top and bottom sample is 1.5 r, as the ratio is 0;
        # then cut to [1.5 * -1, 1.5 * 3], where every log Z lies
        half = NormalDist().inv_cdf(0.975) * row["log_z_se"]
        lo, hi = row["log_z"] - half, row["log_z"] + half
        p = 1 - 0.025 ** (1 / 3)
        hi = max(hi, math.log((1 - p) * math.exp(hi) + p * math.exp(4.5)))
        lo = min(lo, math.log((1 - p) * math.exp(lo) + p * math.exp(-1.5)))
        assert row["log_z_hi"] == pytest.approx(min(hi, 4.5))
        assert row["log_z_lo"] == pytest.approx(max(lo, -1.5))
    assert summary["prompts"] == 2 and summary["samples"] == 6
    assert summary["khat_nan"] == 2
    assert summary["log_z"]["min"] == pytest.approx(min(r["log_z"] for r in rows.values()))
    prov = artifacts.read_artifact(str(out), artifacts.Z).provenance
    assert prov["log_ratio"] == LOG_RATIO_ZERO


def test_logprob_ref_turns_on_the_importance_ratio(cli, tmp_path):
    lq = np.array([-3.0, -2.0, -1.5, -4.0, -0.5, -2.5])
    lref = np.array([-2.0, -2.5, -1.0, -3.0, -1.5, -2.0])
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX, lq)
    scores = write_scores(tmp_path / "sc.parquet", PIDS, IDX, REWARDS, logprob_ref=lref)
    result, out = _run(cli, tmp_path, samples=samples, scores=scores)
    summary_of(result)
    plain, plain_out = _run(cli, tmp_path / "is", "--estimator", "is", samples=samples, scores=scores)
    summary_of(plain)
    plain_rows = _rows(plain_out)
    for pid, row in _rows(out).items():
        mine = np.array(PIDS) == pid
        ratio = lref[mine] - lq[mine]
        lw = ratio + BETA * REWARDS[mine]
        # the default self-normalizes by the ratios; plain IS divides by K; they differ by the log mean ratio
        assert row["log_z"] == pytest.approx(_logsumexp(lw) - _logsumexp(ratio), rel=1e-12)
        assert row["log_z_is"] == pytest.approx(_logsumexp(lw) - math.log(3), rel=1e-12)
        assert row["log_mean_ratio"] == pytest.approx(_logsumexp(ratio) - math.log(3), rel=1e-12)
        assert plain_rows[pid]["log_z"] == pytest.approx(row["log_z_is"], rel=1e-12)
    for path, estimator in ((out, "snis"), (plain_out, "is")):
        provenance = artifacts.read_artifact(str(path), artifacts.Z).provenance
        assert provenance["log_ratio"] == LOG_RATIO_REF and provenance["estimator"] == estimator


def test_binary_rewards_match_the_closed_form(cli, tmp_path):
    k = 10
    correct = {"p0": 0, "p1": 3, "p2": 7, "p3": 10}
    pids = [p for p in correct for _ in range(k)]
    idx = [i for _ in correct for i in range(k)]
    rewards = [1.0 if i < correct[p] else 0.0 for p, i in zip(pids, idx)]
    samples = write_samples(tmp_path / "s.parquet", pids, idx)
    scores = write_scores(tmp_path / "sc.parquet", pids, idx, rewards)
    result, out = _run(cli, tmp_path, samples=samples, scores=scores)
    summary = summary_of(result)
    for pid, row in _rows(out).items():
        p_hat = correct[pid] / k
        assert row["log_z"] == pytest.approx(math.log(1 + (math.exp(BETA) - 1) * p_hat), rel=1e-12)
        assert ("all_equal_rewards" in row["flags"]) == (p_hat in (0.0, 1.0))
    assert summary["share_flagged"]["all_equal_rewards"] == pytest.approx(0.5)


def test_provenance_records_both_inputs_and_the_frozen_output_hash(cli, tmp_path):
    result, out = _run(cli, tmp_path, "--reward-transform", "group-zscore")
    summary = summary_of(result)
    z = artifacts.read_artifact(str(out), artifacts.Z)
    prov = z.provenance
    assert prov["stage"] == "estimate-z"
    assert prov["inputs"]["proposal"]["sha256"] == artifacts.file_sha256(str(tmp_path / "samples.parquet"))
    assert prov["inputs"]["scores"]["sha256"] == artifacts.file_sha256(str(tmp_path / "scores.parquet"))
    assert prov["beta"] == BETA and prov["config"]["beta"] == BETA
    assert prov["reward_transform"]["name"] == "group-zscore"
    assert prov["reward_transform"]["changes_target"] is True
    assert summary["sha256"] == z.sha256
    # The transform really is applied: log Z of the z-scored rewards.
    for pid, row in _rows(out).items():
        r = REWARDS[np.array(PIDS) == pid]
        zr = (r - r.mean()) / r.std()
        assert row["log_z"] == pytest.approx(_logsumexp(BETA * zr) - math.log(3), rel=1e-12)


def test_truncated_proposal_shows_the_share_it_covers_and_is_said_to_miss_support(cli, tmp_path):
    # top-p renormalized what it kept: every sample is e (1 nat) likelier under q than under pi_ref,
    # so q covers e^-1 of pi_ref's mass, which the log mean ratio shows and weight_mass_off flags
    lq = np.full(6, -1.0)
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX, lq, untruncated=False, top_p=0.9)
    scores = write_scores(tmp_path / "sc.parquet", PIDS, IDX, REWARDS, logprob_ref=lq - 1.0)
    result, out = _run(cli, tmp_path, samples=samples, scores=scores)
    summary = summary_of(result)
    for row in _rows(out).values():
        assert row["log_mean_ratio"] == pytest.approx(-1.0, rel=1e-12)
        assert "weight_mass_off" in row["flags"]
    assert summary["share_flagged"]["weight_mass_off"] == 1.0
    assert any("misses part of pi_ref's support" in note for note in summary["notes"])
    assert any("2 prompt(s) flagged weight_mass_off" in note for note in summary["notes"])


def test_low_ess_threshold_and_seeded_bootstrap(cli, tmp_path):
    first, out = _run(cli, tmp_path, "--low-ess", "0.99", "--bootstrap", "200", "--seed", "3")
    summary_of(first)
    rows = _rows(out)
    assert all("low_ess" in row["flags"] for row in rows.values())
    for row in rows.values():
        assert row["log_z_lo"] <= row["log_z"] <= row["log_z_hi"]
    again, _ = _run(cli, tmp_path, "--low-ess", "0.99", "--bootstrap", "200", "--seed", "3")
    summary_of(again)
    same = _rows(out)
    for pid, row in rows.items():  # khat is NaN here, so compare the interval itself
        assert (same[pid]["log_z_lo"], same[pid]["log_z_hi"]) == (row["log_z_lo"], row["log_z_hi"])


def test_plot_is_a_png(cli, tmp_path):
    plot = tmp_path / "figs" / "z.png"
    result, _ = _run(cli, tmp_path, "--plot", plot)
    summary_of(result)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Bad input: exit 2, one line, nothing written
# --------------------------------------------------------------------------


def _bad_orphan_score(tmp_path):
    scores = write_scores(tmp_path / "sc.parquet", [*PIDS, "c"], [*IDX, 0], [*REWARDS, 1.0])
    return {"scores": scores}, ["1 score(s) have no matching sample", "prompt_id='c', sample_idx=0"]


def _bad_unscored_sample(tmp_path):
    scores = write_scores(tmp_path / "sc.parquet", PIDS[1:], IDX[1:], REWARDS[1:])
    return {"scores": scores}, ["1 sample(s) have no score", "prompt_id='b', sample_idx=7"]


def _bad_shifted_sample_idx(tmp_path):
    # every sample_idx off by one: same counts per prompt, no key in common
    scores = write_scores(tmp_path / "sc.parquet", PIDS, [i + 1 for i in IDX], REWARDS)
    return {"scores": scores}, ["score(s) have no matching sample", "sample(s) have no score"]


def _bad_duplicate_key(tmp_path):
    scores = write_scores(tmp_path / "sc.parquet", [*PIDS, "a"], [*IDX, 1], [*REWARDS, 1.0])
    return {"scores": scores}, ["duplicate key", "prompt_id='a', sample_idx=1"]


def _bad_nan_reward(tmp_path):
    rewards = REWARDS.copy()
    rewards[3] = np.nan
    scores = write_scores(tmp_path / "sc.parquet", PIDS, IDX, rewards)
    return {"scores": scores}, ["column 'reward'", "NaN", "prompt_id='a', sample_idx=1"]


def _bad_one_sample_prompt(tmp_path):
    pids, idx, rewards = [*PIDS, "c"], [*IDX, 0], [*REWARDS, 1.0]
    samples = write_samples(tmp_path / "s.parquet", pids, idx)
    scores = write_scores(tmp_path / "sc.parquet", pids, idx, rewards)
    return {"samples": samples, "scores": scores}, ["prompt 'c' has 1 sample", "at least 2"]


def _bad_missing_logprob_ref(tmp_path):
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX, untruncated=False, top_p=0.9)
    return {"samples": samples}, ["'logprob_ref' is missing", "iswt score --ref-model"]


def _bad_beta_zero(tmp_path):
    return {"beta": 0}, ["--beta 0.0", "> 0"]


def _bad_beta_negative(tmp_path):
    return {"beta": -1}, ["--beta -1.0", "> 0"]


BAD_CASES = [
    _bad_orphan_score,
    _bad_unscored_sample,
    _bad_shifted_sample_idx,
    _bad_duplicate_key,
    _bad_nan_reward,
    _bad_one_sample_prompt,
    _bad_missing_logprob_ref,
    _bad_beta_zero,
    _bad_beta_negative,
]


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing-out"])
@pytest.mark.parametrize("case", BAD_CASES, ids=lambda f: f.__name__[5:])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, case, existing):
    given, fragments = case(tmp_path)
    samples = given.get("samples") or write_samples(tmp_path / "samples.parquet", PIDS, IDX)
    scores = given.get("scores") or write_scores(tmp_path / "scores.parquet", PIDS, IDX, REWARDS)
    out = tmp_path / "z.parquet"
    before = b"an earlier, valid z artifact"
    if existing:
        out.write_bytes(before)
    result = cli(
        "estimate-z",
        "--proposal",
        samples,
        "--scores",
        scores,
        "--beta",
        given.get("beta", BETA),
        "--out",
        out,
        "--plot",
        tmp_path / "z.png",
    )
    assert_one_line_error(result, *fragments)
    assert out.read_bytes() == before if existing else not out.exists()
    assert not (tmp_path / "z.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_scores_in_another_row_order_give_the_same_estimates(cli, tmp_path):
    result, out = _run(cli, tmp_path)
    summary_of(result)
    expected = pq.read_table(out).drop_columns(["flags"])
    scores = write_scores(tmp_path / "reversed.parquet", PIDS[::-1], IDX[::-1], REWARDS[::-1])
    result, out = _run(cli, tmp_path, scores=scores)
    summary_of(result)
    for name in ("prompt_id", "log_z", "ess", "max_weight_share", "log_z_se"):
        assert pq.read_table(out).column(name).equals(expected.column(name))
