"""`iswt judge-diversity`: columns, judge fallbacks, lexical and embedding diversity, compare, bad input."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, diversity
from stages import judge_diversity

#: p1: four different responses; p2: three identical ones; p3: one correct of two.
RESPONSES = {
    "p1": ["Add 3 and 4 to get 7.", "Count up from 3 four times: 7.", "7, because 4 + 3 = 7.", "I think it is 7."],
    "p2": ["The answer is 12.", "The answer is 12.", "The answer is 12."],
    "p3": ["Multiply 6 by 2: 12.", "It is 11."],
}
CORRECT = {"p1": [True, True, True, False], "p2": [False, False, False], "p3": [True, False]}


def write_eval(path, responses=RESPONSES, correct=CORRECT) -> str:
    rows = [
        {
            "prompt_id": pid,
            "sample_idx": j,
            "prompt": f"Problem {pid}: what is the number?",
            "response": text,
            "reward": float(ok),
            "reward_info": "",
            "correct": ok,
            "answer": None,
        }
        for pid, texts in responses.items()
        for j, (text, ok) in enumerate(zip(texts, correct[pid]))
    ]
    table = pa.Table.from_pylist(rows, schema=artifacts.EVAL.schema)
    artifacts.write_artifact(table, str(path), artifacts.EVAL, artifacts.make_provenance("evaluate", {}))
    return str(path)


def by_prompt(path) -> dict[str, dict]:
    return {r["prompt_id"]: r for r in pq.read_table(path).to_pylist()}


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory) -> str:
    return write_eval(tmp_path_factory.mktemp("div") / "eval.parquet")


@pytest.fixture(scope="module")
def judged(tmp_path_factory, eval_file, tiny_model_dir):
    """eval_file judged by the tiny random model (garbage answers), all responses."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    out = tmp_path_factory.mktemp("judged") / "diversity.parquet"
    args = [
        "--quiet",
        "judge-diversity",
        "--samples",
        eval_file,
        "--judge",
        tiny_model_dir,
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_columns_and_lexical_metrics(judged):
    rows = by_prompt(judged)
    assert set(artifacts.DIVERSITY.columns) <= set(rows["p1"])
    assert sorted(rows) == ["p1", "p2", "p3"]
    for pid, texts in RESPONSES.items():
        tokens = [diversity.word_tokens(t) for t in texts]
        row = rows[pid]
        assert row["n_responses"] == len(texts)
        assert row["distinct_1"] == pytest.approx(diversity.distinct_n(tokens, 1))
        assert row["distinct_2"] == pytest.approx(diversity.distinct_n(tokens, 2))
        assert row["self_bleu"] == pytest.approx(diversity.self_bleu(tokens))
    assert artifacts.read_metadata(str(judged))[2]["stage"] == "judge-diversity"


def test_identical_responses_have_zero_dispersion(judged):
    rows = by_prompt(judged)
    assert rows["p2"]["embed_dispersion"] == pytest.approx(0.0, abs=1e-6)
    assert rows["p2"]["self_bleu"] == pytest.approx(1.0)
    assert rows["p1"]["embed_dispersion"] > 0.05


def test_unreadable_judge_answers_give_nan_and_keep_the_raw_answer(judged):
    """The tiny random model answers garbage: NaN, with what it said and why kept."""
    rows = by_prompt(judged)
    for row in rows.values():
        assert row["judge_raw"] is not None and row["judge_how"]
        if math.isnan(row["n_strategies"]):
            assert row["judge_how"] in ("unparseable", "empty answer") or "outside" in row["judge_how"]
        else:
            assert 1 <= row["n_strategies"] <= row["n_responses"]
    assert any(math.isnan(r["n_strategies"]) for r in rows.values())


@pytest.mark.parametrize(
    ("raw", "count", "how"),
    [
        ('{"groups": [[1, 2], [3]], "num_strategies": 2}', 2.0, "json num_strategies"),
        ("Solutions 1 and 2 add; 3 counts. There are 2 distinct strategies.", 2.0, "count phrase"),
        ("```json\n{groups: [[1], [2], [3]],}\n```", 3.0, "fenced-json groups"),
        ("!!garbled<<", math.nan, "unparseable"),
        ("", math.nan, "empty answer"),
    ],
)
def test_judged_reads_real_looking_answers(raw, count, how):
    prompt = judge_diversity.Prompt("p", "problem", ["a", "b", "c"])
    got, got_how = judge_diversity.judged(prompt, raw)
    assert (math.isnan(got) and math.isnan(count)) or got == count
    assert got_how == how


def test_correct_only_and_first_n(cli, eval_file, tiny_model_dir, tmp_path):
    out = tmp_path / "correct.parquet"
    args = ["--samples", eval_file, "--judge", tiny_model_dir, "--max-new-tokens", "4"]
    result = cli("--quiet", "judge-diversity", *args, "--correct-only", "--n", "2", "--out", out)
    assert result.exit_code == 0, result.output
    rows = by_prompt(out)
    assert {pid: r["n_responses"] for pid, r in rows.items()} == {"p1": 2, "p2": 0, "p3": 1}
    assert (rows["p3"]["n_strategies"], rows["p3"]["judge_how"]) == (1.0, "single response (not judged)")
    assert math.isnan(rows["p2"]["n_strategies"]) and rows["p2"]["judge_how"] == "no responses"
    assert math.isnan(rows["p2"]["embed_dispersion"]) and rows["p2"]["judge_raw"] is None


def test_compare_diversity_files(cli, judged, tmp_path):
    other = tmp_path / "other.parquet"
    table = pq.read_table(judged).filter(pa.compute.field("prompt_id") != "p3")
    artifacts.write_artifact(table, str(other), artifacts.DIVERSITY, artifacts.make_provenance("judge-diversity", {}))
    result = cli("--json", "judge-diversity", "--compare", judged, other)
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    assert (compared["prompts_common"], compared["prompts_per_run"]) == (2, [3, 2])
    distinct = next(m for m in compared["metrics"] if m["metric"] == "distinct_1")
    assert distinct["diff_to_first"][1]["estimate"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judge", "/no/such/model"], "--judge /no/such/model: no such directory"),
        (["--n", "5"], "--n 5: "),
        (["--embed-model", "/no/such/dir"], "--embed-model /no/such/dir: not a model directory"),
    ],
)
def test_bad_input_fails_in_one_line_and_writes_nothing(cli, eval_file, tiny_model_dir, tmp_path, args, message):
    out = tmp_path / "out" / "diversity.parquet"
    judge = [] if "--judge" in args else ["--judge", tiny_model_dir]
    result = cli("judge-diversity", "--samples", eval_file, *judge, *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr
    assert not out.parent.exists()


def test_correct_only_needs_an_eval_artifact(cli, tmp_path, tiny_model_dir):
    samples = tmp_path / "s.parquet"
    artifacts.write_artifact(
        artifacts.SAMPLES.schema.empty_table(), str(samples), artifacts.SAMPLES, artifacts.make_provenance("sample", {})
    )
    result = cli(
        "judge-diversity",
        "--samples",
        samples,
        "--judge",
        tiny_model_dir,
        "--correct-only",
        "--out",
        tmp_path / "d.parquet",
    )
    assert result.exit_code == 2 and "no 'correct' column" in result.stderr
    assert not (tmp_path / "d.parquet").exists()


@pytest.mark.slow
def test_embedded_model_as_judge(cli, eval_file, tmp_path):
    out = tmp_path / "embedded.parquet"
    args = ["--samples", eval_file, "--n", "2", "--max-new-tokens", "32", "--out", out]
    result = cli("--quiet", "judge-diversity", *args)
    assert result.exit_code == 0, result.output
    rows = by_prompt(out)
    assert artifacts.read_metadata(str(out))[2]["model"]["spec"] == "smollm2-135m"
    for row in rows.values():
        assert row["judge_raw"], row  # SmolLM2 says something
        assert math.isnan(row["n_strategies"]) or 1 <= row["n_strategies"] <= row["n_responses"]
