"""The demo pipeline end to end through its Makefile, on the tiny model: every artifact names its inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from iswcli import artifacts, models

REPO = Path(__file__).resolve().parents[1]
REWARD = "python:tests/pipeline_reward.py:length_reward"  # dense, so pairs and Z are never degenerate


def provenance(path: Path) -> dict:
    return artifacts.read_metadata(str(path))[2]


def sha(path: Path) -> str:
    return artifacts.file_sha256(str(path))


def test_demo_pipeline_runs_and_chains_provenance(tiny_model_dir, tmp_path):
    out = tmp_path / "demo"
    iswt = f"{sys.executable} -m iswcli.cli --quiet"
    variables = [
        f"ISWT={iswt}", f"MODEL={tiny_model_dir}", f"OUT={out}", "LIMIT=4", "N=4", "TOKENS=8",
        "EVAL_LIMIT=3", "EVAL_N=2", "JUDGE_TOKENS=8", f"REWARD={REWARD}", f"EVAL_REWARD={REWARD}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(["make", "-f", "examples/demo.mk", *variables], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]

    samples, scores, z, pairs = (out / f for f in ("samples.parquet", "scores.parquet", "z.parquet", "pairs.parquet"))
    assert provenance(scores)["inputs"]["samples"]["sha256"] == sha(samples)
    assert provenance(z)["inputs"]["proposal"]["sha256"] == sha(samples)
    assert provenance(z)["inputs"]["scores"]["sha256"] == sha(scores)
    assert provenance(pairs)["inputs"]["scores"]["sha256"] == sha(scores)

    tb = json.loads((out / "tb" / "manifest.json").read_text())
    assert tb["z_sha256"] == sha(z) and tb["inputs"]["z"]["sha256"] == sha(z)  # anchored to this frozen Z
    assert tb["inputs"]["samples"]["sha256"] == sha(samples)
    iso = json.loads((out / "iso" / "manifest.json").read_text())
    assert iso["inputs"]["pairs"]["sha256"] == sha(pairs)

    for policy in ("base", "tb", "iso"):
        eval_path = out / f"eval-{policy}.parquet"
        prov = provenance(eval_path)
        assert prov["inputs"]["samples"]["sha256"] == sha(out / f"eval-{policy}.samples.parquet")
        if policy != "base":  # the evaluated policy is the trained adapter, by hash
            assert prov["model"]["adapter"]["weights_sha256"] == models.weights_sha256(str(out / policy))
        diversity = provenance(out / f"diversity-{policy}.parquet")
        assert diversity["inputs"]["samples"]["sha256"] == sha(eval_path)

    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html

    target = str(out / "report.html")
    again = subprocess.run(["make", "-f", "examples/demo.mk", "-q", *variables, target], cwd=REPO, env=env)
    assert again.returncode == 0  # make -q: every file target is up to date
