"""The model card train writes, and an adapter that names its base by hub id and loads with peft's own loader."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from iswcli import model_card
from tests.toy import train_args

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def run(toy_model_dir, toy_pipeline, tmp_path_factory):
    from typer.testing import CliRunner

    from iswcli.cli import app

    out = tmp_path_factory.mktemp("card") / "run"
    args = train_args(toy_pipeline, toy_model_dir, out, "--loss", "tb", "--z", toy_pipeline / "z.parquet")
    args += ["--max-steps", "3", "--lr", "3e-4", "--no-dpg-baseline"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_card_says_what_was_trained(run, toy_pipeline):
    card = (run / "README.md").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert "More Information Needed" not in card  # peft's template is gone
    for heading in ("## Base model", "## Objective", "## Data", "## Training", "## Reproduce", "## Citations"):
        assert heading in card
    assert "fixed point pi* = pi_ref exp(beta r) / Z" in card
    assert "log Z frozen, estimated offline by importance sampling" in card
    for role in ("samples", "scores", "z"):
        assert manifest["inputs"][role]["sha256"] in card
    rows = {line.split(" | ")[0]: line.split(" | ")[3] for line in card.splitlines() if line.startswith("| s")}
    assert rows == {"| samples": "256", "| scores": "256"}
    assert manifest["model"]["weights_sha256"] in card
    assert f"torch {manifest['libraries']['torch']}" in card
    assert "DISA" in card and "Importance Sampling Optimization" in card


def test_reproduce_command_parses_to_the_run_config(run):
    import shlex

    from typer.main import get_command

    from iswcli.cli import app

    card = (run / "README.md").read_text()
    line = next(x for x in card.splitlines() if x.startswith("iswt train "))
    assert "--no-dpg-baseline" in line and "--lr 0.0003" in line and "--max-steps 3" in line
    command = get_command(app).commands["train"]
    parsed = command.make_context("train", shlex.split(line)[2:]).params
    recorded = json.loads((run / "iswt_config.json").read_text())
    assert {k: v for k, v in parsed.items() if k in recorded} == {
        k: v for k, v in recorded.items() if k in parsed and k not in ("resume", "force")
    } | {"resume": False, "force": False}


def test_curves_table_when_measured():
    rows = [
        {"step": 0, "loss": 1.0, "train_kl_set": 0.5},
        {"step": 1, "loss": 0.5},
        {"step": 2, "train_kl_set": 0.25},
    ]
    lines = model_card._curves(rows)
    assert "| step | train_kl_set |" in lines
    assert "| 0 | 0.5 |" in lines and "| 2 | 0.25 |" in lines
    assert model_card._curves([{"step": 0, "loss": 1.0}]) == []


def test_base_id_is_the_hub_id_of_an_alias():
    assert model_card.base_id({"kind": "alias", "spec": "smollm2-135m", "path": "/c/models/smollm2-135m"}) == HUB_ID
    assert model_card.base_id({"kind": "hub", "spec": "org/model", "path": "/c/hub/x"}) == "org/model"
    assert model_card.base_id({"kind": "local", "spec": "./m", "path": "/abs/m"}) == "/abs/m"


def test_adapter_finds_its_base_by_hub_id_offline(run, toy_model_dir, tmp_path):
    """peft's AutoPeftModelForCausalLM on a machine whose HF cache holds the base under its hub id, offline."""
    adapter = tmp_path / "adapter"
    shutil.copytree(run, adapter)
    model_card.name_base(adapter, HUB_ID)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    commit = "0" * 40
    repo = tmp_path / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(toy_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = textwrap.dedent(
        f"""
        import torch
        from peft import AutoPeftModelForCausalLM, PeftModel
        from transformers import AutoModelForCausalLM
        by_id = AutoPeftModelForCausalLM.from_pretrained({str(adapter)!r})
        assert by_id.peft_config["default"].base_model_name_or_path == {HUB_ID!r}
        direct = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({toy_model_dir!r}), {str(run)!r})
        ids = torch.tensor([[3]])
        with torch.no_grad():
            assert torch.allclose(by_id(input_ids=ids).logits, direct(input_ids=ids).logits)
        print("ok")
        """
    )
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
