"""The binary-reward ground truth of log Z, and estimate-z checked against it on longer sequences.

On the word-level toy model (tests/toy.py) generating up to 12 tokens, a
proposal at temperature 0.5 has a sequence log-ratio spread over nats, as
reasoning traces do; the truth comes from 1024 reference samples per
prompt and Z = 1 + (e^beta - 1) P_ref(has the letter d).
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from iswcli import binary_truth
from iswcli.errors import IswtError

REWARD = "python:tests/pipeline_reward.py:has_letter_d"
BETA = 2.0
PROMPTS = [("p-q", "q"), ("p-a", "a"), ("p-bq", "b q"), ("p-hc", "h c")]
Z_FILE = {"snis": "z-t05-b2.parquet", "is": "z-is.parquet"}


def test_clopper_pearson_is_the_exact_binomial_interval():
    correct = np.array([0, 1, 5, 50, 99, 100, 256])
    n = np.array([256, 256, 256, 100, 100, 100, 256])
    lo, hi = binary_truth.clopper_pearson(correct, n)
    with np.errstate(invalid="ignore"):
        expected_lo = np.where(correct > 0, stats.beta.ppf(0.025, correct, n - correct + 1), 0.0)
        expected_hi = np.where(correct < n, stats.beta.ppf(0.975, correct + 1, n - correct), 1.0)
    np.testing.assert_allclose(lo, expected_lo, atol=1e-12)
    np.testing.assert_allclose(hi, expected_hi, atol=1e-12)
    with pytest.raises(IswtError, match="0 <= correct <= n"):
        binary_truth.clopper_pearson([3], [2])


def test_log_z_of_a_binary_reward_is_the_closed_form():
    assert binary_truth.log_z_of(0.0, 4.0) == 0.0
    assert binary_truth.log_z_of(1.0, 4.0) == pytest.approx(4.0)
    assert binary_truth.log_z_of(0.25, 1.0) == pytest.approx(math.log(1 + (math.e - 1) / 4))


@pytest.fixture(scope="module")
def toy_run(toy_model_dir, tmp_path_factory):
    from typer.testing import CliRunner

    from iswcli.cli import app

    # laid out as examples/log_z_reasoning.mk lays out one cap: RUN/tokens12/{ref,t05}.parquet, z-t05-bB.parquet
    d = tmp_path_factory.mktemp("binary-truth") / "tokens12"
    d.mkdir()
    prompts = d / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": p, "prompt": t}) + "\n" for p, t in PROMPTS))
    common = ["--model", toy_model_dir, "--prompts", str(prompts), "--max-new-tokens", "12", "--no-chat-template"]

    def run(*args):
        result = CliRunner().invoke(app, ["--quiet", *args])
        assert result.exit_code == 0, result.stderr

    run("sample", *common, "--n", "1024", "--batch-size", "512", "--out", str(d / "ref.parquet"))
    run("score", "--samples", str(d / "ref.parquet"), "--reward", REWARD, "--out", str(d / "ref.scores.parquet"))
    run("sample", *common, "--n", "64", "--temperature", "0.5", "--seed", "1", "--out", str(d / "t05.parquet"))
    run(
        "score",
        "--samples",
        str(d / "t05.parquet"),
        "--reward",
        REWARD,
        "--ref-model",
        toy_model_dir,
        "--out",
        str(d / "t05.scores.parquet"),
    )
    for estimator in ("snis", "is"):
        run(
            "estimate-z",
            "--proposal",
            str(d / "t05.parquet"),
            "--scores",
            str(d / "t05.scores.parquet"),
            "--beta",
            str(BETA),
            "--estimator",
            estimator,
            "--bootstrap",
            "200",
            "--out",
            str(d / ("z-t05-b2.parquet" if estimator == "snis" else "z-is.parquet")),
        )
    return d


def _against(d, estimator):
    counts = binary_truth.reference_counts(str(d / "ref.parquet"), str(d / "ref.scores.parquet"))
    return binary_truth.against_truth(str(d / Z_FILE[estimator]), counts).to_pylist()


def test_on_longer_sequences_the_default_stays_in_bounds_and_covers_what_it_does_not_flag(toy_run):
    snis, plain = _against(toy_run, "snis"), _against(toy_run, "is")
    assert all(0.0 <= row["log_z"] <= BETA for row in snis)
    assert not any("outside_reward_bounds" in row["flags"] for row in snis)
    # plain IS breaks the bound log Z >= beta * min r = 0 somewhere, and says so where it does
    assert any(row["log_z"] < 0.0 for row in plain)
    assert all("outside_reward_bounds" in row["flags"] for row in plain if row["log_z"] < 0.0)
    assert sum(row["covered"] for row in snis) >= 3
    assert all("weight_mass_off" in row["flags"] for row in snis if not row["covered"])
    mean_error = {name: np.mean([abs(r["error"]) for r in rows]) for name, rows in (("snis", snis), ("is", plain))}
    assert mean_error["snis"] < mean_error["is"]


def test_the_truth_script_prints_coverage_and_refuses_a_proposal_as_the_reference(toy_run):
    d = toy_run
    script = [sys.executable, "examples/log_z_truth.py", "--reference-scores"]
    ok = subprocess.run(
        [
            *script,
            str(d / "ref.scores.parquet"),
            "--reference",
            str(d / "ref.parquet"),
            "--z",
            str(d / Z_FILE["snis"]),
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "interval covers the truth on" in ok.stdout
    tempered = subprocess.run(
        [*script, str(d / "t05.scores.parquet"), "--reference", str(d / "t05.parquet"), "--z", str(d / Z_FILE["snis"])],
        capture_output=True,
        text=True,
    )
    assert tempered.returncode == 2
    assert tempered.stderr.strip().count("\n") == 0 and "not a sample of the reference itself" in tempered.stderr


def test_train_refuses_a_z_that_breaks_the_bounds_and_warns_of_missed_mass(toy_run, toy_model_dir, tmp_path, cli):
    d = toy_run
    train = ["train", "--model", toy_model_dir, "--samples", d / "t05.parquet", "--scores", d / "t05.scores.parquet"]
    train += ["--loss", "tb", "--max-steps", "1", "--batch-size", "8"]
    refused = cli(*train, "--z", d / Z_FILE["is"], "--out", tmp_path / "is-run")
    assert refused.exit_code == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "outside_reward_bounds" in refused.stderr
    assert not (tmp_path / "is-run").exists()
    ran = cli(*train, "--z", d / Z_FILE["snis"], "--out", tmp_path / "snis-run")
    assert ran.exit_code == 0, ran.stderr
    assert "flagged weight_mass_off" in ran.stderr


def test_the_study_table_reads_the_runs_and_agrees_with_estimate_z(toy_run):
    sys.path.insert(0, "examples")
    import log_z_reasoning_table as table

    rows = table.study_rows(toy_run.parent, [BETA], [8, 64])  # also checks z-t05-b2.parquet against the library
    cells = {(r["k"], r["estimator"]) for r in rows}
    assert cells == {(k, estimator) for k in (8, 64) for estimator in ("snis", "cv", "is")}
    assert sum(1 for r in rows if r["k"] == 8 and r["estimator"] == "snis") == len(PROMPTS) * 8
    by_prompt = {r["prompt"]: r for r in rows if r["k"] == 64 and r["estimator"] == "snis"}
    truth = {row["prompt_id"]: row for row in _against(toy_run, "snis")}
    for i, (pid, _) in enumerate(sorted(PROMPTS)):
        assert by_prompt[i]["log_z"] == pytest.approx(truth[pid]["log_z"], abs=1e-9)
        assert by_prompt[i]["true"] == pytest.approx(truth[pid]["log_z_true"], abs=1e-12)
    assert all(-1e-9 <= r["log_z"] <= BETA + 1e-9 for r in rows if r["estimator"] == "snis")
    text = table.render(rows, 0.5, "RUN")
    assert "| 12 | temperature 0.5 | 2 | 8 | snis | 32 |" in text and "weight_mass_off" in text
