"""The vLLM backend writes the same columns with the same meaning (runs only where vllm imports: a GPU machine)."""

from __future__ import annotations

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vllm is an optional extra that needs a GPU")

from iswcli import artifacts, models  # noqa: E402


def test_vllm_samples_match_teacher_forced_logprobs(smollm_dir, cli, tmp_path):
    out = tmp_path / "s.parquet"
    args = ["--quiet", "sample", "--backend", "vllm", "--model", smollm_dir, "--limit", "2", "--n", "2",
            "--max-new-tokens", "16", "--temperature", "0.8", "--top-p", "0.9", "--out", out]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    table = artifacts.read_artifact(str(out), artifacts.SAMPLES).table
    model = models.load_model(smollm_dir, device="cuda")
    from iswcli.logprobs import teacher_forced_logprobs

    for row in table.to_pylist():
        raw = teacher_forced_logprobs(model, [row["prompt_token_ids"]], [row["response_token_ids"]], 0)[0]
        q = teacher_forced_logprobs(
            model, [row["prompt_token_ids"]], [row["response_token_ids"]], 0, temperature=0.8, top_p=0.9
        )[0]
        assert torch.allclose(torch.tensor(row["token_logprobs_model"]), raw.cpu(), atol=1e-2)
        assert torch.allclose(torch.tensor(row["token_logprobs_q"]), q.cpu(), atol=1e-2)
