"""--task sets, the set reward and `evaluate --target-beta` end to end on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, exact_targets, models, rewards, tasks
from iswcli.errors import IswtError
from iswcli.tasks import sets as answer_sets


def test_sets_task_splits_and_fields():
    train, test = tasks.load_prompts("sets", split="train"), tasks.load_prompts("sets", split="test")
    assert len(train) + len(test) >= 40 and len(test) >= 10
    assert tasks.load_prompts("sets") == train  # train is the default split
    ids = [p.prompt_id for p in train + test]
    assert len(set(ids)) == len(ids)
    graded = 0
    for p in train + test:
        answers = exact_targets.parse_answers(p.fields["answers"], p.prompt_id)
        graded += len(set(answers.values())) > 1
        assert p.prompt[0]["role"] == "system" and p.prompt[-1]["role"] == "user"
    assert graded >= 10  # pi* is not just pi_ref restricted to the set there
    assert [p.prompt_id for p in tasks.load_prompts("sets", split="test", limit=3)] == ids[len(train) :][:3]
    with pytest.raises(IswtError, match="--split dev"):
        tasks.load_prompts("sets", split="dev")
    assert tasks.source_description("sets", None, "test", None)["sizes"] == {"train": len(train), "test": len(test)}


def test_every_answer_set_tokenizes_unambiguously(smollm_dir):
    tokenizer = models.load_tokenizer(smollm_dir)
    for split in answer_sets.SPLITS:
        for pid, _, fields in answer_sets.rows(split):
            exact_targets.tokenize_answers(tokenizer, fields["answers"], pid)


def sample_sets(cli, model, out, n=3, limit=2, tokens=3, split="train"):
    result = cli(
        "--quiet",
        "sample",
        "--model",
        model,
        "--task",
        "sets",
        "--split",
        split,
        "--limit",
        limit,
        "--n",
        n,
        "--max-new-tokens",
        tokens,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output


def test_set_reward_matches_token_ids_not_text(cli, tiny_model_dir, tmp_path):
    """Rewrite sampled token ids into known cases and score them: only tok(answer) + stop earns the reward."""
    samples = tmp_path / "s.parquet"
    sample_set = tmp_path / "crafted.parquet"
    sample_sets(cli, tiny_model_dir, samples, n=5, limit=1)
    tokenizer = models.load_tokenizer(tiny_model_dir)
    art = artifacts.read_artifact(str(samples), artifacts.SAMPLES)
    stop = art.provenance["sampling"]["stop_token_ids"][0]
    answers = json.loads(art.table.column("task_fields")[0].as_py())["answers"]  # sets-day: the days, reward 1
    monday = tokenizer("Monday", add_special_tokens=False)["input_ids"]
    split_monday = (
        tokenizer("Mon", add_special_tokens=False)["input_ids"]
        + tokenizer("day", add_special_tokens=False)["input_ids"]
    )
    assert split_monday != monday and tokenizer.decode(split_monday) == "Monday"
    cases = [
        monday + [stop],
        monday,
        split_monday + [stop],
        tokenizer("Monday.", add_special_tokens=False)["input_ids"] + [stop],
        tokenizer("Sunday", add_special_tokens=False)["input_ids"] + [stop],
    ]
    table = art.table.set_column(
        art.table.schema.get_field_index("response_token_ids"),
        "response_token_ids",
        pa.array(cases, pa.list_(pa.int32())),
    )
    artifacts.write_artifact(table, str(sample_set), artifacts.SAMPLES, art.provenance)
    result = cli("--quiet", "score", "--samples", sample_set, "--reward", "set:-1", "--out", tmp_path / "sc.parquet")
    assert result.exit_code == 0, result.output
    scored = pq.read_table(tmp_path / "sc.parquet").sort_by("sample_idx").to_pylist()
    assert [r["reward"] for r in scored] == [answers["Monday"], -1.0, -1.0, -1.0, answers["Sunday"]]
    assert scored[0]["reward_info"] == "answer 'Monday'" and "no stop token" in scored[1]["reward_info"]


def test_set_reward_spec_errors():
    with pytest.raises(IswtError, match="default reward must be a number"):
        rewards.make_reward("set:high")
    assert rewards.make_reward("set").name == "set"


def test_evaluate_target_beta_end_to_end(cli, tiny_model_dir, tmp_path):
    """sample -> score set -> estimate-z -> evaluate --target-beta --z: exact values recomputed independently."""
    s, sc, z, ev = (tmp_path / f for f in ("s.parquet", "sc.parquet", "z.parquet", "eval.parquet"))
    sample_sets(cli, tiny_model_dir, s, n=4, limit=2, split="test")
    assert cli("--quiet", "score", "--samples", s, "--reward", "set", "--out", sc).exit_code == 0
    assert cli("--quiet", "estimate-z", "--proposal", s, "--scores", sc, "--beta", "2", "--out", z).exit_code == 0
    result = cli(
        "--quiet",
        "evaluate",
        "--model",
        tiny_model_dir,
        "--task",
        "sets",
        "--split",
        "test",
        "--limit",
        2,
        "--n",
        2,
        "--max-new-tokens",
        3,
        "--target-beta",
        2,
        "--z",
        z,
        "--out",
        ev,
    )
    assert result.exit_code == 0, result.output
    target = pq.read_table(tmp_path / "eval.target.parquet").to_pylist()
    assert [r["prompt_id"] for r in target] == [p.prompt_id for p in tasks.load_prompts("sets", split="test", limit=2)]

    model, tokenizer = models.load_model(tiny_model_dir), models.load_tokenizer(tiny_model_dir)
    zrows = {r["prompt_id"]: r for r in pq.read_table(z).to_pylist()}
    for row, prompt in zip(target, tasks.load_prompts("sets", split="test", limit=2)):
        _, prompt_ids = models.render_prompt(tokenizer, tasks.messages_of(prompt))
        answers = prompt.fields["answers"]
        ids = exact_targets.tokenize_answers(tokenizer, answers, prompt.prompt_id)
        lp = exact_targets.answer_logprobs(
            model,
            prompt_ids,
            list(ids.values()),
            models.stop_token_ids(model, tokenizer),
            tokenizer.pad_token_id,
            shared_prefix=False,
        )
        assert row["log_z_exact"] == pytest.approx(exact_targets.log_z(lp, list(answers.values()), 0.0, 2.0), abs=1e-6)
        assert row["p_valid"] == pytest.approx(float(np.exp(lp).sum()), rel=1e-4)
        assert row["kl_set"] >= 0 and 0 <= row["tv_set"] <= 1
        assert row["log_z_estimate"] == zrows[row["prompt_id"]]["log_z"]
        assert row["log_z_error"] == pytest.approx(row["log_z_estimate"] - row["log_z_exact"])
        assert row["log_z_covered"] in (0.0, 1.0) or math.isnan(row["log_z_covered"])
    summary = json.loads((tmp_path / "eval.summary.json").read_text())
    assert summary["target"]["means"]["kl_set"]["n"] == 2

    # --compare shows the exact measures when every run has its target file
    other = tmp_path / "eval2.parquet"
    again = cli(
        "--quiet",
        "evaluate",
        "--model",
        tiny_model_dir,
        "--task",
        "sets",
        "--split",
        "test",
        "--limit",
        2,
        "--n",
        2,
        "--max-new-tokens",
        3,
        "--target-beta",
        2,
        "--seed",
        1,
        "--out",
        other,
    )
    assert again.exit_code == 0, again.output
    from stages import evaluate

    names = [row["metric"] for row in evaluate.compare([str(ev), str(other)])["metrics"]]
    assert {"p_valid", "kl_set", "eff_answers", "eff_answers_target"} <= set(names)
    assert "log_z_error" in names  # the first run has it


def test_target_beta_needs_the_set_reward(cli, tiny_model_dir, tmp_path):
    result = cli(
        "evaluate",
        "--model",
        tiny_model_dir,
        "--task",
        "sets",
        "--reward",
        "python:x:y",
        "--target-beta",
        1,
        "--out",
        tmp_path / "e.parquet",
    )
    assert result.exit_code != 0 and "--target-beta: needs --reward set" in result.output
