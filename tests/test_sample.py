"""`iswt sample`: log-probs that match an independent recomputation, resume, seeds, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from iswcli import artifacts, models

SAMPLE = ["--quiet", "sample", "--limit", "3", "--n", "3", "--max-new-tokens", "12"]


def read_rows(path) -> list[dict]:
    table = pq.read_table(path)
    return sorted(table.to_pylist(), key=lambda r: (r["prompt_id"], r["sample_idx"]))


def hf_warped_logprobs(logits, temperature, top_k, top_p):
    """transformers' own warpers: the reference for what 'processed' means."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = TemperatureLogitsWarper(temperature)(None, logits)
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return scores.log_softmax(-1)


def recompute(model, row, temperature, top_k, top_p):
    """Teacher-force one stored sample without cache or padding; return (processed, raw) per token."""
    ids = torch.tensor([row["prompt_token_ids"] + row["response_token_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    n = len(row["response_token_ids"])
    steps = logits[-n - 1 : -1]
    target = torch.tensor(row["response_token_ids"])[:, None]
    processed = hf_warped_logprobs(steps, temperature, top_k, top_p).gather(-1, target).squeeze(-1)
    raw = steps.log_softmax(-1).gather(-1, target).squeeze(-1)
    return processed, raw


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [(1.0, 0, 1.0), (0.7, 0, 0.9), (1.3, 20, 1.0), (0.8, 50, 0.8)],
)
def test_logprob_q_matches_teacher_forced_recomputation(tiny_model_dir, cli, tmp_path, temperature, top_k, top_p):
    out = tmp_path / "s.parquet"
    flags = ["--temperature", temperature, "--top-k", top_k, "--top-p", top_p, "--batch-size", "4"]
    result = cli(*SAMPLE, "--model", tiny_model_dir, *flags, "--out", out)
    assert result.exit_code == 0, result.stderr
    model = models.load_model(tiny_model_dir)
    rows = read_rows(out)
    assert len(rows) == 9
    for row in rows:
        processed, raw = recompute(model, row, temperature, top_k, top_p)
        assert torch.allclose(torch.tensor(row["token_logprobs_q"]), processed, atol=1e-4)
        assert torch.allclose(torch.tensor(row["token_logprobs_model"]), raw, atol=1e-4)
        assert row["logprob_q"] == pytest.approx(sum(row["token_logprobs_q"]), abs=1e-4)
        assert row["n_tokens"] == len(row["response_token_ids"])
        if temperature == 1.0 and top_k == 0 and top_p == 1.0:
            assert row["logprob_q"] == pytest.approx(row["logprob_model"], abs=1e-6)


def test_samples_stop_at_eos_and_carry_prompt(tiny_model_dir, cli, tmp_path):
    out = tmp_path / "s.parquet"
    assert cli(*SAMPLE, "--model", tiny_model_dir, "--max-new-tokens", "40", "--out", out).exit_code == 0
    tokenizer = models.load_tokenizer(tiny_model_dir)
    art = artifacts.read_artifact(str(out), artifacts.SAMPLES)
    rows = art.table.to_pylist()
    for row in rows:
        if row["finish_reason"] == "stop":
            assert row["response_token_ids"][-1] == tokenizer.eos_token_id
            assert tokenizer.eos_token_id not in row["response_token_ids"][:-1]
        else:
            assert row["n_tokens"] == 40
        assert row["prompt_text"].startswith("<|im_start|>")  # chat template applied
        assert json.loads(row["task_fields"])["answer"].lstrip("-").isdigit()
    prov = art.provenance
    assert prov["stage"] == "sample" and prov["model"]["weights_sha256"]
    assert prov["sampling"]["untruncated"] is True
    assert prov["inputs"]["prompts"]["task"] == "arith"


def test_same_seed_same_samples_other_seed_differs(tiny_model_dir, cli, tmp_path):
    runs = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        out = tmp_path / f"{name}.parquet"
        assert cli(*SAMPLE, "--model", tiny_model_dir, "--seed", seed, "--out", out).exit_code == 0
        runs[name] = [r["response_token_ids"] for r in read_rows(out)]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_greedy_samples_are_the_argmax_path(tiny_model_dir, cli, tmp_path):
    out = tmp_path / "g.parquet"
    assert cli(*SAMPLE, "--model", tiny_model_dir, "--temperature", "0", "--out", out).exit_code == 0
    rows = read_rows(out)
    by_prompt = {}
    for row in rows:
        assert all(lp == 0.0 for lp in row["token_logprobs_q"])
        by_prompt.setdefault(row["prompt_id"], set()).add(tuple(row["response_token_ids"]))
    assert all(len(v) == 1 for v in by_prompt.values())


def test_shards_partition_the_prompts(tiny_model_dir, cli, tmp_path):
    full = tmp_path / "full.parquet"
    args = [*SAMPLE, "--limit", "6", "--n", "1", "--model", tiny_model_dir]
    assert cli(*args, "--out", full).exit_code == 0
    ids = set()
    for i in range(3):
        result = cli(*args, "--shard", f"{i}/3", "--out", tmp_path / "shards" / f"part-{i}.parquet")
        assert result.exit_code in (0, 2), result.stderr
        if result.exit_code == 2:  # an empty shard is reported, not written
            assert "no prompts fall in this shard" in result.stderr
    art = artifacts.read_artifact(str(tmp_path / "shards"), artifacts.SAMPLES)
    ids = set(art.table.column("prompt_id").to_pylist())
    assert ids == {r["prompt_id"] for r in read_rows(full)}
    assert art.table.num_rows == len(ids)


def _sample_args(model_dir: str, out: Path) -> list[str]:
    return [
        "--quiet",
        "sample",
        "--model",
        model_dir,
        "--limit",
        "8",
        "--n",
        "4",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "24",
        "--out",
        str(out),
    ]


def test_resume_after_kill_yields_the_uninterrupted_rows(tiny_model_dir, cli, tmp_path):
    """Only the run that is killed needs a process of its own; the reference and the resumed run go in-process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    reference = tmp_path / "ref.parquet"
    result = cli(*_sample_args(tiny_model_dir, reference))
    assert result.exit_code == 0, result.output

    out = tmp_path / "resumed.parquet"
    partial = tmp_path / "resumed.parquet.partial"
    proc = subprocess.Popen([sys.executable, "-m", "iswcli.cli", *_sample_args(tiny_model_dir, out)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("part-*.parquet"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(partial.glob("part-*.parquet")))
    assert not out.exists(), "the final file must not appear before the run completes"
    assert 2 <= done_before < 16

    result = cli(*_sample_args(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    assert not partial.exists()
    drop = {"prompt_text"}  # everything, token for token, equals the uninterrupted run
    resumed = [{k: v for k, v in r.items() if k not in drop} for r in read_rows(out)]
    expected = [{k: v for k, v in r.items() if k not in drop} for r in read_rows(reference)]
    assert resumed == expected


def test_partial_from_another_config_is_refused(tiny_model_dir, cli, tmp_path):
    out = tmp_path / "s.parquet"
    partial = tmp_path / "s.parquet.partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    result = cli(*SAMPLE, "--model", tiny_model_dir, "--out", out)
    assert result.exit_code == 2
    assert "different config" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_embedded_default_model_samples(cli, tmp_path, smollm_dir):
    out = tmp_path / "s.parquet"
    result = cli("--quiet", "sample", "--limit", "2", "--n", "2", "--max-new-tokens", "32", "--out", out)
    assert result.exit_code == 0, result.stderr
    art = artifacts.read_artifact(str(out), artifacts.SAMPLES)
    assert art.provenance["model"]["spec"] == "smollm2-135m"
    rows = art.table.to_pylist()
    assert len(rows) == 4
    assert all(r["response"].strip() for r in rows)
    assert all(r["logprob_q"] == pytest.approx(r["logprob_model"], abs=1e-4) for r in rows)
