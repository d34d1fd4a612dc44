"""`iswt evaluate`: the sample and score stages end to end, metrics, win rate, compare, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, console, metrics, tasks
from stages import evaluate

TINY = ["--task", "arith", "--limit", "3", "--n", "4", "--max-new-tokens", "8"]


# --------------------------------------------------------------------------- helpers


def rows_of(path) -> list[dict]:
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: (r["prompt_id"], r["sample_idx"]))


def provenance(path) -> dict:
    return artifacts.read_metadata(str(path))[2]


def write_samples(path, rows: list[tuple[str, int, str, str]]) -> str:
    """A samples artifact of (prompt_id, sample_idx, response, answer) with controlled responses."""
    table = pa.Table.from_pylist(
        [
            {
                "prompt_id": pid,
                "sample_idx": idx,
                "task": "custom",
                "prompt": f"What is {pid}?",
                "task_fields": json.dumps({"answer": answer}),
                "prompt_text": "",
                "response": response,
                "prompt_token_ids": [],
                "response_token_ids": [],
                "token_logprobs_q": [],
                "logprob_q": 0.0,
                "token_logprobs_model": [],
                "logprob_model": 0.0,
                "n_tokens": 0,
                "finish_reason": "stop",
            }
            for pid, idx, response, answer in rows
        ],
        schema=artifacts.SAMPLES.schema,
    )
    artifacts.write_artifact(table, str(path), artifacts.SAMPLES, artifacts.make_provenance("sample", {}))
    return str(path)


def write_eval(path, rows: list[tuple[str, int, str]], correct=None) -> str:
    """An eval artifact of (prompt_id, sample_idx, response) rows; correctness optional."""
    correct = correct or [False] * len(rows)
    table = pa.Table.from_pylist(
        [
            {
                "prompt_id": pid,
                "sample_idx": idx,
                "prompt": "Q?",
                "response": response,
                "reward": float(ok),
                "reward_info": "",
                "correct": ok,
                "answer": None,
            }
            for (pid, idx, response), ok in zip(rows, correct)
        ],
        schema=artifacts.EVAL.schema,
    )
    prov = artifacts.make_provenance("evaluate", {"reward": "math"})
    artifacts.write_artifact(table, str(path), artifacts.EVAL, prov)
    return str(path)


#: Two prompts with hand-checked metrics (math reward, answers 5 and 12).
HAND = [
    ("p1", 0, "The answer is 5", "5"),
    ("p1", 1, "The answer is 5.0", "5"),
    ("p1", 2, "The answer is 7", "5"),
    ("p1", 3, "no idea", "5"),
    ("p2", 0, "The answer is 3", "12"),
    ("p2", 1, "The answer is 3", "12"),
    ("p2", 2, "12", "12"),
    ("p2", 3, "The answer is 4", "12"),
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model evaluated on 3 held-out arithmetic prompts, 4 samples each."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    out = tmp_path_factory.mktemp("eval") / "eval.parquet"
    result = CliRunner().invoke(app, ["--quiet", "evaluate", "--model", tiny_model_dir, *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def tiny_rm_dir(tmp_path_factory, smollm_dir) -> str:
    """A tiny random one-label reward model with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-rm")
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def hand(tmp_path) -> tuple[str, evaluate.EvaluateConfig]:
    """Hand-written samples and the config that evaluates them into tmp/hand.parquet."""
    samples = write_samples(tmp_path / "hand.samples.parquet", HAND)
    return samples, evaluate.EvaluateConfig(out=str(tmp_path / "hand.parquet"), reward="math")


# --------------------------------------------------------------------------- end to end


def test_eval_rows_and_companion_artifacts(evaluated):
    rows = rows_of(evaluated)
    assert set(artifacts.EVAL.columns) <= set(rows[0])
    prompt_ids = [p.prompt_id for p in tasks.load_prompts("arith", split="test", limit=3)]
    keys = sorted((r["prompt_id"], r["sample_idx"]) for r in rows)
    assert keys == sorted((p, j) for p in prompt_ids for j in range(4))
    assert all(r["correct"] == (r["reward"] >= 1.0) for r in rows)
    assert all(r["reward_info"] for r in rows)
    # the samples and scores beside OUT are the sample and score stages' own artifacts, held-out split
    samples, scores = evaluated.with_suffix(".samples.parquet"), evaluated.with_suffix(".scores.parquet")
    assert provenance(samples)["stage"] == "sample"
    assert provenance(samples)["config"]["split"] == "test"
    assert provenance(scores)["stage"] == "score"
    assert provenance(scores)["inputs"]["samples"]["sha256"] == artifacts.file_sha256(str(samples))
    prov = provenance(evaluated)
    assert prov["stage"] == "evaluate"
    assert prov["config"]["reward"] == "math"
    summary = json.loads(evaluated.with_suffix(".summary.json").read_text())
    assert summary["pooled"] == prov["summary"]["pooled"]
    assert summary["sha256"] == artifacts.file_sha256(str(evaluated))


def test_summary_equals_recomputation_from_rows(evaluated):
    rows = rows_of(evaluated)
    summary = json.loads(evaluated.with_suffix(".summary.json").read_text())
    per_prompt = {p["prompt_id"]: p for p in summary["per_prompt"]}
    pids = sorted(per_prompt)
    correct = np.array([[r["correct"] for r in rows if r["prompt_id"] == pid] for pid in pids])
    answers = [[r["answer"] for r in rows if r["prompt_id"] == pid] for pid in pids]
    rewards = np.array([[r["reward"] for r in rows if r["prompt_id"] == pid] for pid in pids])
    pooled = summary["pooled"]
    assert pooled["Mean@4"] == pytest.approx(metrics.mean_at_k(correct))
    for k in metrics.ks_up_to(4):
        expected = metrics.pass_at_k(4, correct.sum(axis=1), k)
        assert pooled[f"pass@{k}"] == pytest.approx(float(np.mean(expected)))
        assert [per_prompt[p][f"pass@{k}"] for p in pids] == pytest.approx(list(expected))
        assert pooled[f"maj@{k}"] == pytest.approx(metrics.maj_at_k(answers, correct, k))
    assert pooled["mean reward"] == pytest.approx(rewards.mean())


def test_rerun_reuses_samples_and_scores(cli, evaluated, tiny_model_dir):
    before = artifacts.file_sha256(str(evaluated.with_suffix(".samples.parquet")))
    result = cli("--json", "evaluate", "--model", tiny_model_dir, *TINY, "--out", evaluated)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["sampling"], summary["scoring"]) == ("reused", "reused")
    assert artifacts.file_sha256(str(evaluated.with_suffix(".samples.parquet"))) == before


def test_win_rate_against_a_baseline_eval(cli, evaluated, tiny_model_dir, tiny_rm_dir, tmp_path):
    """Even sample indices copy the policy's response (ties), odd ones differ (the judge decides)."""
    rows = rows_of(evaluated)
    base_rows = [
        (r["prompt_id"], j, r["response"] if j % 2 == 0 else f"other {j}") for r in rows for j in [r["sample_idx"]]
    ]
    baseline = write_eval(tmp_path / "base.parquet", base_rows)
    result = cli(
        "--json",
        "evaluate",
        "--model",
        tiny_model_dir,
        *TINY,
        "--out",
        evaluated,
        "--baseline",
        baseline,
        "--judge",
        f"rm:{tiny_rm_dir}",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sampling"] == "reused"

    judge_rows = rows_of(evaluated.with_suffix(".judge.scores.parquet"))
    judged = {(r["prompt_id"], r["sample_idx"]): r["reward"] for r in judge_rows}
    assert provenance(evaluated.with_suffix(".judge.scores.parquet"))["stage"] == "score"
    expected = {}
    for r in rows:
        duel = f"{r['prompt_id']}#{r['sample_idx']}"
        if r["sample_idx"] % 2 == 0:
            outcome = 0.5  # the same response: a tie
        else:
            mine, theirs = judged[(duel, 0)], judged[(duel, 1)]
            outcome = 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
        expected.setdefault(r["prompt_id"], []).append(outcome)
    summary = json.loads(evaluated.with_suffix(".summary.json").read_text())
    assert {p["prompt_id"]: p["win rate"] for p in summary["per_prompt"]} == pytest.approx(
        {pid: np.mean(v) for pid, v in expected.items()}
    )
    assert summary["pooled"]["win rate"] == pytest.approx(np.mean([np.mean(v) for v in expected.values()]))
    assert summary["win"]["pairs_judged"] == 6


# --------------------------------------------------------------------------- hand cases


def test_hand_samples_give_hand_metrics(hand):
    samples, config = hand
    evaluate.evaluate_samples(config, samples)
    rows = rows_of(config.out)
    assert [r["correct"] for r in rows] == [True, True, False, False, False, False, True, False]
    assert [r["answer"] for r in rows] == ["5", "5", "7", None, "3", "3", "12", "4"]  # 5.0 votes with 5
    pooled = json.loads(Path(config.out).with_suffix(".summary.json").read_text())["pooled"]
    # p1: 2 of 4 correct, majority 5 (right); p2: 1 of 4 correct, majority 3 (wrong)
    assert pooled["Mean@4"] == pytest.approx((0.5 + 0.25) / 2)
    assert pooled["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert pooled["pass@2"] == pytest.approx((1 - 1 / 6 + 1 - 3 / 6) / 2)  # 1 - C(n-c,2)/C(4,2)
    assert pooled["pass@4"] == pytest.approx(1.0)
    assert [pooled[f"maj@{k}"] for k in (1, 2, 4)] == pytest.approx([0.5, 0.5, 0.5])
    assert pooled["mean reward"] == pytest.approx(0.375)


def test_identical_baseline_ties_everywhere_without_a_judge(hand, tiny_rm_dir, tmp_path):
    samples, config = hand
    baseline = write_eval(tmp_path / "base.parquet", [(pid, idx, response) for pid, idx, response, _ in HAND])
    config = evaluate.EvaluateConfig(out=config.out, reward="math", baseline=baseline, judge=f"rm:{tiny_rm_dir}")
    result = evaluate.evaluate_samples(config, samples)
    assert result.pooled["win rate"] == 0.5
    assert not Path(config.out).with_suffix(".judge.samples.parquet").exists()


def test_pairwise_judge_decides_the_differing_pairs(hand, tiny_model_dir, tmp_path):
    samples, config = hand
    base_rows = [(pid, idx, response if idx < 2 else "I do not know.") for pid, idx, response, _ in HAND]
    baseline = write_eval(tmp_path / "base.parquet", base_rows)
    judge = f"pairwise:{tiny_model_dir}"
    config = evaluate.EvaluateConfig(out=config.out, reward="math", baseline=baseline, judge=judge)
    evaluate.evaluate_samples(config, samples)
    margins = {r["prompt_id"]: r["reward"] for r in rows_of(Path(config.out).with_suffix(".judge.scores.parquet"))}
    assert sorted(margins) == ["p1#2", "p1#3", "p2#2", "p2#3"]  # identical pairs never reach the judge
    per_prompt = json.loads(Path(config.out).with_suffix(".summary.json").read_text())["per_prompt"]
    for p in per_prompt:
        judged = [margins[f"{p['prompt_id']}#{j}"] for j in (2, 3)]
        outcomes = [0.5, 0.5] + [1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in judged]
        assert p["win rate"] == pytest.approx(np.mean(outcomes))


# --------------------------------------------------------------------------- compare


def test_compare_side_by_side_on_common_prompts(cli, tmp_path):
    keys = [(pid, j, "") for pid in ("p1", "p2", "p3") for j in (0, 1)]
    a = write_eval(tmp_path / "a.parquet", keys[:4], correct=[True, False, False, False])
    b = write_eval(tmp_path / "b.parquet", keys, correct=[True, True, True, False, True, True])
    result = cli("--json", "evaluate", "--compare", a, b)
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    assert (compared["prompts_common"], compared["prompts_per_run"], compared["k"]) == (2, [2, 3], 2)
    mean = next(m for m in compared["metrics"] if m["metric"] == "Mean@2")
    assert [run["estimate"] for run in mean["runs"]] == pytest.approx([0.25, 0.75])  # p3 left out
    assert mean["diff_to_first"][0] is None
    assert mean["diff_to_first"][1]["estimate"] == pytest.approx(0.5)
    assert mean["diff_to_first"][1]["n"] == 2

    table = cli("evaluate", "--compare", a, b)
    assert table.exit_code == 0 and "2 prompts common to all runs" in table.stdout

    too_many = cli("evaluate", "--compare", a, b, "--n", "3")
    assert too_many.exit_code == 2
    assert "--n 3:" in too_many.stderr and "has only 2 samples" in too_many.stderr


def test_compare_table_names_each_run_distinctly(cli, tmp_path):
    """Headers are the runs' short names: whole paths under one long directory were cut to the same text."""
    runs = tmp_path / "runs" / "a-long-experiment-directory-name"
    runs.mkdir(parents=True)
    keys = [("p1", 0, ""), ("p2", 0, "")]
    names = ["eval-base", "eval-tb", "eval-tb-learned", "eval-sft"]
    table = cli("evaluate", "--compare", *(write_eval(runs / f"{name}.parquet", keys) for name in names))
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rule = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    rows = [[cell.strip() for cell in line.strip().strip("┃").split("┃")] for line in lines[top + 1 : rule]]
    assert ["".join(parts) for parts in zip(*rows)] == ["metric", *names]  # a long name folds onto two lines


def test_short_names_add_parent_folders_until_unique():
    assert console.short_names(["out/eval-a.parquet", "out/eval-b.parquet"]) == ["eval-a", "eval-b"]
    assert console.short_names(["x/tb/eval.parquet", "y/tb/eval.parquet"]) == ["x/tb/eval", "y/tb/eval"]
    assert console.short_names(["runs/tb", "runs/sft"]) == ["tb", "sft"]


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def baseline_other_prompts(tmp_path) -> str:
    return write_eval(tmp_path / "other.parquet", [("elsewhere", j, "x") for j in range(4)])


@pytest.fixture
def baseline_too_few(tmp_path) -> str:
    ids = [p.prompt_id for p in tasks.load_prompts("arith", split="test", limit=3)]
    return write_eval(tmp_path / "few.parquet", [(pid, j, "x") for pid in ids for j in range(2)])


BAD = {
    "baseline with other prompt_ids": (["--judge", "rm:{rm}", "--baseline", "{other}"], "its prompt_ids differ"),
    "baseline with fewer samples than --n": (["--judge", "rm:{rm}", "--baseline", "{few}"], "has no sample_idx 2"),
    "missing judge model": (
        ["--judge", "rm:/no/such/model", "--baseline", "{few}"],
        "--judge rm:/no/such/model: no such directory",
    ),
    "baseline without judge": (["--baseline", "{few}"], "--baseline and --judge go together"),
    "pairwise as the reward": (["--reward", "pairwise:{rm}"], "a pairwise judge needs a baseline"),
    "prompts without reward": (["--prompts", "{other}"], "--reward: required"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_in_one_line_and_writes_nothing(
    cli, tmp_path, tiny_model_dir, tiny_rm_dir, baseline_other_prompts, baseline_too_few, case
):
    args, message = BAD[case]
    args = [a.format(rm=tiny_rm_dir, other=baseline_other_prompts, few=baseline_too_few) for a in args]
    out = tmp_path / "out" / "eval.parquet"
    task = [] if "--prompts" in args else ["--task", "arith"]
    result = cli("evaluate", "--model", tiny_model_dir, *task, "--limit", "3", "--n", "4", *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr
    assert not out.parent.exists()


def test_compare_and_out_are_exclusive(cli, tmp_path):
    result = cli("evaluate", "--compare", "a.parquet", "b.parquet", "--out", tmp_path / "x.parquet")
    assert result.exit_code == 2 and "--compare prints a comparison" in result.stderr
    stray = cli("evaluate", "a.parquet", "--out", tmp_path / "x.parquet")
    assert stray.exit_code == 2 and "give --compare" in stray.stderr
