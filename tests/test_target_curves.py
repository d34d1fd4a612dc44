"""`iswt train --eval-target-every`: exact curves against pi* while training, equal to `evaluate --target-beta`."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from iswcli.target_curves import CURVE_METRICS, PER_PROMPT_FILE, REFERENCE_FILE
from tests.test_answer_sets import sample_sets

BETA = 2.0
LIMIT = 2


@pytest.fixture(scope="module")
def set_inputs(tiny_model_dir, tmp_path_factory):
    """Samples of two answer-set training prompts, their set-reward scores and z (beta 2)."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    d = tmp_path_factory.mktemp("curves")
    runner = CliRunner()

    def cli(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result

    sample_sets(cli, tiny_model_dir, d / "s.parquet", n=4, limit=LIMIT)
    cli("--quiet", "score", "--samples", d / "s.parquet", "--reward", "set", "--out", d / "sc.parquet")
    cli(
        "--quiet",
        "estimate-z",
        "--proposal",
        d / "s.parquet",
        "--scores",
        d / "sc.parquet",
        "--beta",
        BETA,
        "--out",
        d / "z.parquet",
    )
    return d


def train(cli, model, d, run, *extra):
    args = ["--quiet", "train", "--model", model, "--samples", d / "s.parquet", "--scores", d / "sc.parquet"]
    return cli(*args, "--z", d / "z.parquet", "--out", run, *extra)


def evaluate_kl(cli, model, out, adapter=None) -> dict[str, float]:
    """evaluate --target-beta on the same training prompts: each metric's mean over them."""
    args = ["--quiet", "evaluate", "--model", model, "--task", "sets", "--split", "train", "--limit", LIMIT]
    args += ["--n", 1, "--max-new-tokens", 3, "--target-beta", BETA, "--out", out]
    result = cli(*args, *(["--adapter", adapter] if adapter else []))
    assert result.exit_code == 0, result.output
    rows = pq.read_table(str(out).replace(".parquet", ".target.parquet")).to_pylist()
    return {m: float(np.mean([r[m] for r in rows])) for m in CURVE_METRICS}


def test_curves_are_logged_every_n_steps_and_match_evaluate(cli, tiny_model_dir, set_inputs, tmp_path):
    run = tmp_path / "run"
    # the random model never says an answer, so pi* = pi_ref = q and dpg's baseline zeroes every gradient;
    # without it a step is maximum likelihood on the samples, which moves the curves
    extra = ["--loss", "dpg", "--no-dpg-baseline", "--lr", "1e-2", "--max-steps", 3, "--batch-size", 4]
    extra += ["--eval-target-every", 2]
    result = train(cli, tiny_model_dir, set_inputs, run, *extra, "--eval-prompts", "sets:test")
    assert result.exit_code == 0, result.stderr
    log = pq.read_table(run / "train_log.parquet").to_pylist()
    measured = [r["step"] for r in log if r["train_kl_set"] is not None and not np.isnan(r["train_kl_set"])]
    assert measured == [0, 2, 3]  # every 2 steps before the update, then after the last one
    assert log[-1]["step"] == 3 and log[-1]["loss"] is None or np.isnan(log[-1]["loss"])
    assert all(f"heldout_{m}" in log[0] for m in CURVE_METRICS)
    assert (run / REFERENCE_FILE).exists()
    per_prompt = pq.read_table(run / PER_PROMPT_FILE).to_pylist()
    assert {(r["step"], r["group"]) for r in per_prompt} == {(s, g) for s in (0, 2, 3) for g in ("train", "heldout")}
    for step in (0, 2, 3):
        rows = [r for r in per_prompt if r["step"] == step and r["group"] == "train"]
        assert len(rows) == LIMIT
        assert np.mean([r["kl_set"] for r in rows]) == pytest.approx(log[step]["train_kl_set"])

    # step 0 is the base model, the last row the trained adapter: the same numbers evaluate gives
    base = evaluate_kl(cli, tiny_model_dir, tmp_path / "base.parquet")
    trained = evaluate_kl(cli, tiny_model_dir, tmp_path / "trained.parquet", adapter=run)
    for m in CURVE_METRICS:
        assert log[0][f"train_{m}"] == pytest.approx(base[m], rel=1e-4, abs=1e-6), m
        assert log[-1][f"train_{m}"] == pytest.approx(trained[m], rel=1e-4, abs=1e-6), m
    assert log[-1]["train_p_valid"] != pytest.approx(log[0]["train_p_valid"])  # it trained

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["target_curve"]["first"]["train_kl_set"] == log[0]["train_kl_set"]
    assert manifest["target_curve"]["last"]["step"] == 3


def test_frozen_z_tb_reports_its_step0_residuals(cli, tiny_model_dir, set_inputs, tmp_path):
    """mean(log Z - beta r) per prompt at step 0: log mean e^{beta r} - mean beta r >= 0 for an IS z at q = pi_ref."""
    run = tmp_path / "run"
    assert train(cli, tiny_model_dir, set_inputs, run, "--loss", "tb", "--max-steps", 1).exit_code == 0
    manifest = json.loads((run / "manifest.json").read_text())
    z = {r["prompt_id"]: r["log_z"] for r in pq.read_table(set_inputs / "z.parquet").to_pylist()}
    scores = pq.read_table(set_inputs / "sc.parquet").to_pylist()
    for prompt_id, residual in manifest["step0_residuals"].items():
        rewards = np.array([r["reward"] for r in scores if r["prompt_id"] == prompt_id])
        assert residual == pytest.approx(z[prompt_id] - BETA * rewards.mean(), abs=1e-9)
        assert residual == pytest.approx(np.log(np.mean(np.exp(BETA * rewards))) - BETA * rewards.mean(), abs=1e-9)
        assert residual >= -1e-12


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--eval-prompts", "sets:test"], "give --eval-target-every too"),
        (["--eval-target-every", 1, "--eval-prompts", "nope"], "--eval-prompts nope: no such file"),
        (["--eval-target-every", -1], "--eval-target-every -1: must be at least 0"),
        (["--warmup-steps", -1], "--warmup-steps -1: must be at least 0"),
    ],
)
def test_bad_curve_flags_fail_in_one_line(cli, tiny_model_dir, set_inputs, tmp_path, extra, message):
    run = tmp_path / "run"
    result = train(cli, tiny_model_dir, set_inputs, run, "--loss", "dpg", *extra)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not run.exists()


def test_curves_need_the_set_reward(cli, tiny_model_dir, set_inputs, tmp_path):
    from tests.toy import write_scores

    scores = tmp_path / "other.parquet"
    write_scores(set_inputs / "s.parquet", scores, reward_of=lambda ids: float(len(ids)))
    args = ["--quiet", "train", "--model", tiny_model_dir, "--samples", set_inputs / "s.parquet", "--scores", scores]
    result = cli(*args, "--loss", "sft", "--eval-target-every", 1, "--eval-target-beta", 2, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "needs --reward set" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_report_draws_kl_set_against_samples_per_prompt(cli, tiny_model_dir, set_inputs, tmp_path):
    """A study's layout (nN-sSEED/METHOD): the report pairs each run with its N and averages seeds per prompt.

    The seeds differ in training only, so both train on the samples, scores and z of the seed-0 cell."""
    for n in (2, 4):
        inputs = tmp_path / f"n{n}-s0"
        sample_sets(cli, tiny_model_dir, inputs / "s.parquet", n=n, limit=LIMIT)
        assert (
            cli(
                "--quiet", "score", "--samples", inputs / "s.parquet", "--reward", "set", "--out", inputs / "sc.parquet"
            ).exit_code
            == 0
        )
        z = ["--quiet", "estimate-z", "--proposal", inputs / "s.parquet", "--scores", inputs / "sc.parquet"]
        assert cli(*z, "--beta", BETA, "--out", inputs / "z.parquet").exit_code == 0
        for seed in (0, 1):
            extra = ["--loss", "dpg", "--no-dpg-baseline", "--lr", "1e-2", "--max-steps", 2, "--eval-target-every", 2]
            run = tmp_path / f"n{n}-s{seed}" / "dpg"
            assert train(cli, tiny_model_dir, inputs, run, *extra, "--seed", seed).exit_code == 0
    result = cli("--quiet", "report", tmp_path, "--out", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    html = (tmp_path / "r.html").read_text()
    assert "Distance to the target against samples per prompt" in html
    for n in (2, 4):
        changes = []
        for seed in (0, 1):
            rows = pq.read_table(tmp_path / f"n{n}-s{seed}" / "dpg" / PER_PROMPT_FILE).to_pylist()
            first = {r["prompt_id"]: r["kl_set"] for r in rows if r["step"] == 0 and r["group"] == "train"}
            last = {r["prompt_id"]: r["kl_set"] for r in rows if r["step"] == 2 and r["group"] == "train"}
            changes.append([last[p] - first[p] for p in first])
        mean = float(np.mean(np.mean(changes, axis=0)))  # seeds averaged per prompt, then prompts
        assert f"<td>train</td><td>dpg</td><td>{n}</td><td>2</td><td>{mean:.4g} [" in html


def test_answer_mass_errors_by_hand():
    from iswcli.target_eval import answer_mass_errors

    # answers 0 and 2 sampled: (0.2 - 0.1) + (0.3 - 0.2) = +0.2; answer 1 never: 0.1 - 0.3 = -0.2
    split = answer_mass_errors([0.2, 0.1, 0.3], [0.1, 0.3, 0.2], [True, False, True])
    assert split["mass_error_sampled"] == pytest.approx(0.2) and split["mass_error_unsampled"] == pytest.approx(-0.2)
    assert (split["answers_sampled"], split["answers_unsampled"]) == (2, 1)


def test_evaluate_splits_the_error_by_answers_the_training_samples_hold(cli, tiny_model_dir, tmp_path):
    """Training samples crafted to hold 'Monday' (tok + stop) and 'Sunday' without a stop: only Monday counts."""
    import pyarrow as pa

    from iswcli import artifacts, models

    samples, crafted = tmp_path / "s.parquet", tmp_path / "train.parquet"
    sample_sets(cli, tiny_model_dir, samples, n=3, limit=1)
    tokenizer = models.load_tokenizer(tiny_model_dir)
    art = artifacts.read_artifact(str(samples), artifacts.SAMPLES)
    stop = art.provenance["sampling"]["stop_token_ids"][0]
    word = lambda w: tokenizer(w, add_special_tokens=False)["input_ids"]  # noqa: E731
    cases = [word("Monday") + [stop], word("Sunday"), word("Monday") + [stop]]
    index = art.table.schema.get_field_index("response_token_ids")
    table = art.table.set_column(index, "response_token_ids", pa.array(cases, pa.list_(pa.int32())))
    artifacts.write_artifact(table, str(crafted), artifacts.SAMPLES, art.provenance)

    out = tmp_path / "e.parquet"
    args = ["--quiet", "evaluate", "--model", tiny_model_dir, "--task", "sets", "--split", "train", "--limit", 1]
    result = cli(
        *args, "--n", 1, "--max-new-tokens", 3, "--target-beta", BETA, "--train-samples", crafted, "--out", out
    )
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "e.summary.json").read_text())["target"]["answer_split"]
    row = pq.read_table(tmp_path / "e.target.parquet").to_pylist()[0]
    answers = json.loads(row["answers"])
    diff = np.array(row["p_answers"]) - np.array(row["p_answers_target"])
    values = split["prompts"][row["prompt_id"]]
    assert values["answers_sampled"] == 1 and values["answers_unsampled"] == len(answers) - 1
    assert values["mass_error_sampled"] == pytest.approx(diff[answers.index("Monday")])
    assert values["mass_error_unsampled"] == pytest.approx(diff.sum() - diff[answers.index("Monday")])

    other = tmp_path / "other.parquet"
    sample_sets(cli, tiny_model_dir, other, n=1, limit=1, split="test")  # another prompt: nothing to split by
    bad = cli(*args, "--n", 1, "--target-beta", BETA, "--train-samples", other, "--out", tmp_path / "bad.parquet")
    assert bad.exit_code == 2 and "has no samples of 1 evaluated prompt" in bad.stderr
    assert not list(tmp_path.glob("bad*"))  # refused before anything was sampled
