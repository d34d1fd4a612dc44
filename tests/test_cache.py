"""Stage caching: same config and same input hashes do nothing; --force and changes re-run."""

from __future__ import annotations

import os

import pyarrow as pa

from iswcli import artifacts


def _mtime(path) -> int:
    return os.stat(path).st_mtime_ns


def test_sample_and_score_skip_when_up_to_date(tiny_model_dir, cli, tmp_path):
    samples = tmp_path / "s.parquet"
    args = ["sample", "--model", tiny_model_dir, "--limit", "2", "--n", "2", "--max-new-tokens", "4", "--out", samples]
    assert cli("--quiet", *args).exit_code == 0
    before = _mtime(samples)

    again = cli(*args)
    assert again.exit_code == 0
    assert "up to date" in again.stderr
    assert _mtime(samples) == before

    assert cli("--quiet", *args, "--seed", "1").exit_code == 0  # another config: runs
    assert _mtime(samples) != before
    changed = _mtime(samples)
    assert cli("--quiet", *args, "--seed", "1", "--force").exit_code == 0
    assert _mtime(samples) != changed

    scores = tmp_path / "sc.parquet"
    score = ["score", "--samples", samples, "--reward", "math", "--out", scores]
    assert cli("--quiet", *score).exit_code == 0
    scored = _mtime(scores)
    assert "up to date" in cli(*score).stderr and _mtime(scores) == scored

    # new samples content (same path, same config) invalidates the scores
    assert cli("--quiet", *args, "--seed", "2").exit_code == 0
    assert cli("--quiet", *score).exit_code == 0
    assert _mtime(scores) != scored


def test_estimate_z_reruns_when_an_input_changes(tmp_path, cli):
    keys = {"prompt_id": ["a", "a", "b", "b"], "sample_idx": pa.array([0, 1, 0, 1], pa.int32())}
    n = 4
    samples = pa.table(
        {
            **keys,
            "task": ["arith"] * n,
            "prompt": ["p"] * n,
            "task_fields": ["{}"] * n,
            "prompt_text": ["p"] * n,
            "response": ["r"] * n,
            "prompt_token_ids": [[1]] * n,
            "response_token_ids": [[2]] * n,
            "token_logprobs_q": [[-1.0]] * n,
            "logprob_q": [-1.0] * n,
            "token_logprobs_model": [[-1.0]] * n,
            "logprob_model": [-1.0] * n,
            "n_tokens": pa.array([1] * n, pa.int32()),
            "finish_reason": ["stop"] * n,
        }
    )
    prov = artifacts.make_provenance(
        "sample", {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "backend": "hf"}, sampling={"untruncated": True}
    )
    artifacts.write_artifact(samples, str(tmp_path / "s.parquet"), artifacts.SAMPLES, prov)

    def write_scores(rewards):
        table = pa.table({**keys, "reward": rewards, "reward_info": ["x"] * n})
        artifacts.write_artifact(
            table, str(tmp_path / "sc.parquet"), artifacts.SCORES, artifacts.make_provenance("score", {})
        )

    write_scores([1.0, 0.0, 0.0, 1.0])
    z = tmp_path / "z.parquet"
    args = [
        "estimate-z",
        "--proposal",
        tmp_path / "s.parquet",
        "--scores",
        tmp_path / "sc.parquet",
        "--beta",
        "1",
        "--out",
        z,
    ]
    assert cli("--quiet", *args).exit_code == 0
    first = _mtime(z)
    assert "up to date" in cli(*args).stderr and _mtime(z) == first
    write_scores([1.0, 1.0, 0.0, 1.0])
    assert cli("--quiet", *args).exit_code == 0
    assert _mtime(z) != first
