"""The vLLM backend run for real: `make test-vllm` runs this file in .venv-vllm (vLLM's CPU build).

Where vllm does not import (the main suite's .venv) the module is skipped;
with ISWT_REQUIRE_VLLM=1 (set by `make test-vllm`) a failed import is an
error instead, so a broken vLLM install can never pass as "skipped".

The backend keeps one engine per process and every test here samples
in-process through the CLI, so they all share one engine (a minute to start
on CPU). The first runs use the adapter, so that engine is started with LoRA
enabled and serves the runs without an adapter too. Only the kill-and-resume
test starts a second engine, in the process it kills.
"""

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

if os.environ.get("ISWT_REQUIRE_VLLM") == "1":
    import vllm  # noqa: F401 - must import here: `make test-vllm` fails rather than skips
else:
    pytest.importorskip("vllm", reason="vllm is an optional extra (GPU: iswt[vllm]; CPU: make test-vllm)")

import torch  # noqa: E402

from iswcli import artifacts, models  # noqa: E402
from iswcli.logprobs import teacher_forced_logprobs  # noqa: E402

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; plenty for these few short sequences

TOLERANCE = 1e-3  # nats per token, against a float32 teacher-forced recomputation


@pytest.fixture(scope="module", autouse=True)
def _stop_the_engine_after_the_module():
    """Stop the shared engine while pytest still owns the streams its shutdown logs to."""
    yield
    from iswcli import vllm_backend

    vllm_backend.shutdown_engine()


COMMON = ["--limit", "2", "--n", "2", "--max-new-tokens", "24", "--batch-size", "4"]
SETTINGS = {"t1": ["--temperature", "1"], "t07p09": ["--temperature", "0.7", "--top-p", "0.9"]}


@pytest.fixture(scope="module")
def adapter_dir(smollm_dir, tmp_path_factory) -> str:
    """A LoRA adapter on the embedded model whose updates are far from zero (peft starts B at 0)."""
    from peft import LoraConfig, get_peft_model

    model = models.load_model(smollm_dir)
    torch.manual_seed(1)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)
    path = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(path)
    return str(path)


def sample(cli, out, *args) -> dict:
    result = cli("--json", "sample", "--backend", "vllm", *COMMON, *args, "--out", out)
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def runs(smollm_dir, adapter_dir, tmp_path_factory) -> dict[tuple[str, bool], str]:
    """Samples for each setting, with and without the adapter (adapter first: one LoRA-enabled engine)."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    runner = CliRunner()
    root = tmp_path_factory.mktemp("vllm-runs")
    paths = {}
    for with_adapter in (True, False):
        for name, flags in SETTINGS.items():
            out = root / f"{name}-{'adapter' if with_adapter else 'base'}.parquet"
            extra = ["--adapter", adapter_dir] if with_adapter else []
            result = runner.invoke(
                app,
                [
                    "--json",
                    "sample",
                    "--backend",
                    "vllm",
                    "--model",
                    smollm_dir,
                    *COMMON,
                    *flags,
                    *extra,
                    "--out",
                    str(out),
                ],
            )
            assert result.exit_code == 0, result.stderr + result.stdout
            paths[(name, with_adapter)] = str(out)
    return paths


@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "adapter"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_logprobs_match_a_float32_teacher_forced_recomputation(runs, smollm_dir, adapter_dir, setting, with_adapter):
    table = artifacts.read_artifact(runs[(setting, with_adapter)], artifacts.SAMPLES).table
    temperature = 1.0 if setting == "t1" else 0.7
    top_p = 1.0 if setting == "t1" else 0.9
    model = models.load_model(smollm_dir, adapter_dir if with_adapter else None)
    worst_q = worst_raw = 0.0
    for row in table.to_pylist():
        assert row["n_tokens"] == len(row["response_token_ids"]) > 0
        prompt, response = [row["prompt_token_ids"]], [row["response_token_ids"]]
        with torch.inference_mode():
            raw = teacher_forced_logprobs(model, prompt, response, 0)[0]
            q = teacher_forced_logprobs(model, prompt, response, 0, temperature=temperature, top_p=top_p)[0]
        worst_raw = max(worst_raw, float((torch.tensor(row["token_logprobs_model"]) - raw).abs().max()))
        worst_q = max(worst_q, float((torch.tensor(row["token_logprobs_q"]) - q).abs().max()))
        assert row["logprob_q"] == pytest.approx(sum(row["token_logprobs_q"]), abs=1e-4)
        assert row["logprob_model"] == pytest.approx(sum(row["token_logprobs_model"]), abs=1e-4)
    print(f"{setting} adapter={with_adapter}: max |q - tf| {worst_q:.2e}, max |raw - tf| {worst_raw:.2e}")
    assert worst_raw < TOLERANCE and worst_q < TOLERANCE


def test_the_adapter_changes_what_is_sampled(runs):
    base = pq.read_table(runs[("t1", False)]).column("token_logprobs_model").to_pylist()
    tuned = pq.read_table(runs[("t1", True)]).column("token_logprobs_model").to_pylist()
    assert base != tuned


def test_provenance_names_the_engine(runs, adapter_dir):
    import vllm

    prov = artifacts.read_artifact(runs[("t07p09", True)], artifacts.SAMPLES).provenance
    sampling = prov["sampling"]
    assert sampling["backend"] == "vllm" and sampling["dtype"] == "float32"
    engine = sampling["engine"]
    assert engine["vllm_version"] == vllm.__version__
    assert engine["tensor_parallel_size"] == 1 and engine["max_model_len"] > 0 and engine["lora"] is True
    assert 2 in sampling["stop_token_ids"]  # SmolLM2's <|im_end|>, from its generation config
    assert prov["model"]["adapter"]["path"] == str(Path(adapter_dir).resolve())
    assert sampling["untruncated"] is False and prov["config"]["top_p"] == 0.9


def test_same_columns_and_schema_as_the_transformers_backend(cli, runs, smollm_dir, tmp_path):
    hf = tmp_path / "hf.parquet"
    result = cli(
        "--quiet",
        "sample",
        "--model",
        smollm_dir,
        "--limit",
        "1",
        "--n",
        "2",
        "--max-new-tokens",
        "8",
        "--device",
        "cpu",
        "--out",
        hf,
    )
    assert result.exit_code == 0, result.stderr
    vllm_file, hf_file = pq.ParquetFile(runs[("t1", False)]), pq.ParquetFile(hf)
    assert vllm_file.schema_arrow.remove_metadata() == hf_file.schema_arrow.remove_metadata()
    v_prov = artifacts.read_metadata(runs[("t1", False)])[2]
    h_prov = artifacts.read_metadata(str(hf))[2]
    assert v_prov["sampling"].keys() == h_prov["sampling"].keys()
    assert v_prov["config"].keys() == h_prov["config"].keys()
    assert h_prov["sampling"]["backend"] == "hf"
    reasons = set(pq.read_table(runs[("t1", False)]).column("finish_reason").to_pylist())
    assert reasons <= {"stop", "length"}
    for row in pq.read_table(runs[("t1", False)]).to_pylist():
        if row["finish_reason"] == "stop":
            assert row["response_token_ids"][-1] in v_prov["sampling"]["stop_token_ids"]


def test_shards_partition_the_prompts(cli, smollm_dir, tmp_path):
    shards = tmp_path / "shards"
    for i in range(2):
        sample(cli, shards / f"part{i}.parquet", "--model", smollm_dir, "--limit", "4", "--shard", f"{i}/2")
    table = artifacts.read_artifact(str(shards), artifacts.SAMPLES).table
    ids = [pq.read_table(shards / f"part{i}.parquet").column("prompt_id").to_pylist() for i in range(2)]
    assert set(ids[0]).isdisjoint(ids[1])
    assert len(set(table.column("prompt_id").to_pylist())) == 4 and table.num_rows == 8


def _wait_for_part(partial: Path, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if list(partial.glob("part-*.parquet")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the sampler exited ({proc.returncode}) before its first batch landed")
        time.sleep(0.5)
    pytest.fail(f"no batch landed in {partial} within {limit:.0f} s")


def test_a_killed_run_resumes_to_what_an_uninterrupted_run_draws(cli, smollm_dir, tmp_path):
    args = [
        "--model",
        smollm_dir,
        "--limit",
        "3",
        "--n",
        "2",
        "--max-new-tokens",
        "48",
        "--batch-size",
        "2",
        "--temperature",
        "0.7",
        "--top-p",
        "0.9",
        "--seed",
        "5",
    ]
    killed = tmp_path / "killed.parquet"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "iswcli.cli", "--quiet", "sample", "--backend", "vllm", *args, "--out", str(killed)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_part(Path(str(killed) + ".partial"), proc, limit=600)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sampler and its engine processes, mid-run
        proc.wait()
    assert not killed.exists()
    done_before = len(list(Path(str(killed) + ".partial").glob("part-*.parquet")))
    assert 1 <= done_before < 3

    result = cli("sample", "--backend", "vllm", *args, "--out", killed)
    assert result.exit_code == 0, result.stderr
    assert "resuming" in result.stderr
    whole = tmp_path / "whole.parquet"
    sample(cli, whole, *args)
    a = pq.read_table(killed).sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])
    b = pq.read_table(whole).sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])
    assert a.column("response_token_ids").to_pylist() == b.column("response_token_ids").to_pylist()
    for x, y in zip(a.column("logprob_q").to_pylist(), b.column("logprob_q").to_pylist()):
        assert x == pytest.approx(y, abs=1e-4)


def test_estimate_z_needs_the_reference_and_reports_the_sampler_gap(cli, runs, smollm_dir, tmp_path):
    samples = runs[("t1", False)]
    plain, ref = tmp_path / "plain.parquet", tmp_path / "ref.parquet"
    assert cli("--quiet", "score", "--samples", samples, "--reward", "math", "--out", plain).exit_code == 0
    refused = cli(
        "estimate-z", "--proposal", samples, "--scores", plain, "--beta", "1", "--out", tmp_path / "z0.parquet"
    )
    assert refused.exit_code == 2
    assert "logprob_ref" in refused.stderr and "vllm" in refused.stderr and "Traceback" not in refused.stderr

    scored = cli(
        "--quiet",
        "score",
        "--samples",
        samples,
        "--reward",
        "math",
        "--ref-model",
        smollm_dir,
        "--device",
        "cpu",
        "--out",
        ref,
    )
    assert scored.exit_code == 0, scored.stderr
    z_out = tmp_path / "z.parquet"
    result = cli("--json", "estimate-z", "--proposal", samples, "--scores", ref, "--beta", "1", "--out", z_out)
    assert result.exit_code == 0, result.stderr
    z = pq.read_table(z_out).to_pylist()
    for row in z:
        assert row["sampler_gap_max"] < 0.05  # float32 vLLM vs float32 transformers: kernel noise only
        assert "sampler_mismatch" not in row["flags"]
    summary = json.loads(result.stdout)
    assert summary["sampler_gap"]["compared"] is True


def test_evaluate_samples_through_vllm(cli, smollm_dir, tmp_path):
    out = tmp_path / "eval.parquet"
    result = cli(
        "--quiet",
        "evaluate",
        "--backend",
        "vllm",
        "--model",
        smollm_dir,
        "--limit",
        "2",
        "--n",
        "2",
        "--max-new-tokens",
        "24",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.stderr
    prov = artifacts.read_metadata(str(out.with_suffix(".samples.parquet")))[2]
    assert prov["sampling"]["backend"] == "vllm"
    assert pq.read_table(out).num_rows == 4


def test_an_adapter_rank_past_the_engine_is_one_clear_line(cli, smollm_dir, adapter_dir, tmp_path):
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    big = tmp_path / "big"
    big.mkdir()
    (big / "adapter_config.json").write_text(json.dumps({**config, "r": 1024}))
    result = cli(
        "sample",
        "--backend",
        "vllm",
        "--model",
        smollm_dir,
        "--adapter",
        big,
        "--limit",
        "1",
        "--out",
        tmp_path / "s.parquet",
    )
    assert result.exit_code == 2
    assert "rank 1024" in result.stderr and "Traceback" not in result.stderr
