"""Engine flags of sample/evaluate that need no vLLM engine: each mistake is one line and exit code 2.

These run in the main suite, with or without vllm installed; the backend
itself is tested for real by tests/test_vllm.py (`make test-vllm`).
"""

import importlib.util
import json

import pytest

from iswcli import artifacts, proposal, vllm_backend
from iswcli.errors import IswtError

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.stdout + result.stderr
    text = result.stderr.strip()
    assert "\n" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def test_a_bad_dtype_is_refused_before_any_work(cli, tmp_path):
    out = tmp_path / "s.parquet"
    one_line_error(cli("sample", "--dtype", "float64", "--out", out), "--dtype float64", "float32")
    one_line_error(cli("sample", "--backend", "vllm", "--dtype", "int8", "--out", out), "--dtype int8")
    one_line_error(cli("evaluate", "--dtype", "half", "--limit", "1", "--out", tmp_path / "e.parquet"), "--dtype half")
    assert not out.exists()


@pytest.mark.parametrize(
    "flag,value", [("--tensor-parallel-size", "2"), ("--gpu-memory-utilization", "0.5"), ("--max-model-len", "512")]
)
def test_engine_flags_need_the_vllm_backend(cli, tmp_path, flag, value):
    one_line_error(cli("sample", flag, value, "--out", tmp_path / "s.parquet"), flag, "only with --backend vllm")


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
def test_vllm_missing_is_one_line(cli, tmp_path):
    one_line_error(cli("sample", "--backend", "vllm", "--out", tmp_path / "s.parquet"), "vllm is not installed")
    one_line_error(
        cli("evaluate", "--backend", "vllm", "--limit", "1", "--out", tmp_path / "e.parquet"), "vllm is not installed"
    )


def test_engine_option_rules():
    ok = vllm_backend.EngineOptions()
    vllm_backend.check_options(ok, temperature=1.0)
    vllm_backend.check_options(ok, temperature=0.0)
    bad = [
        (vllm_backend.EngineOptions(tensor_parallel_size=0), 1.0, "--tensor-parallel-size 0"),
        (vllm_backend.EngineOptions(gpu_memory_utilization=1.5), 1.0, "--gpu-memory-utilization 1.5"),
        (vllm_backend.EngineOptions(max_model_len=1), 1.0, "--max-model-len 1"),
        (ok, 0.005, "--temperature 0.005"),
    ]
    for options, temperature, message in bad:
        with pytest.raises(IswtError, match=message):
            vllm_backend.check_options(options, temperature)


def test_adapter_ranks_map_to_the_engine_slots(tmp_path):
    def adapter(**config):
        path = tmp_path / f"a{len(list(tmp_path.iterdir()))}"
        path.mkdir()
        (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}))
        return str(path)

    assert vllm_backend.lora_rank_slot(vllm_backend.adapter_rank(adapter(r=8)), "a") == 8
    assert vllm_backend.lora_rank_slot(vllm_backend.adapter_rank(adapter(r=12, rank_pattern={"q": 40})), "a") == 64
    with pytest.raises(IswtError, match="LoRA rank 1024 is larger"):
        vllm_backend.lora_rank_slot(vllm_backend.adapter_rank(adapter(r=1024)), "a")
    with pytest.raises(IswtError, match="modules_to_save"):
        vllm_backend.adapter_rank(adapter(r=8, modules_to_save=["lm_head"]))
    with pytest.raises(IswtError, match="LoRA adapters only"):
        vllm_backend.adapter_rank(adapter(peft_type="IA3"))


def test_version_gate(monkeypatch):
    monkeypatch.setattr(vllm_backend, "installed_version", lambda: "0.9.2")
    with pytest.raises(IswtError, match="too old"):
        vllm_backend.check_available()
    monkeypatch.setattr(vllm_backend, "installed_version", lambda: "0.32.0+cpu")
    assert vllm_backend.check_available() == "0.32.0+cpu"


def test_stop_ids_come_from_the_files_as_from_the_loaded_model(tiny_model_dir):
    from iswcli import models

    tokenizer = models.load_tokenizer(tiny_model_dir)
    model = models.load_model(tiny_model_dir)
    assert vllm_backend.stop_ids_from_files(tiny_model_dir, tokenizer) == models.stop_token_ids(model, tokenizer)


def test_a_bfloat16_hf_sampler_records_its_dtype_and_loses_the_shortcut(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "s.parquet"
    result = cli(
        "--quiet",
        "sample",
        "--model",
        tiny_model_dir,
        "--dtype",
        "bfloat16",
        "--limit",
        "1",
        "--n",
        "2",
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.stderr
    prov = artifacts.read_metadata(str(out))[2]
    assert prov["sampling"]["backend"] == "hf" and prov["sampling"]["dtype"] == "bfloat16"
    facts = proposal.describe(prov)
    assert facts["untruncated"] and not facts["zero_log_ratio"] and "bfloat16" in facts["why"]
