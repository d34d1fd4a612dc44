"""The demo pipeline (answer sets: base, DISA, GRPO) end to end through its Makefile, on the tiny model: every artifact names its inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from iswcli import artifacts, models

REPO = Path(__file__).resolve().parents[1]


def provenance(path: Path) -> dict:
    return artifacts.read_metadata(str(path))[2]


def sha(path: Path) -> str:
    return artifacts.file_sha256(str(path))


def test_demo_pipeline_runs_and_chains_provenance(tiny_model_dir, tmp_path):
    out = tmp_path / "demo"
    iswt = f"{sys.executable} -m iswcli.cli --quiet"
    variables = [
        f"ISWT={iswt}",
        f"MODEL={tiny_model_dir}",
        f"OUT={out}",
        "LIMIT=4",
        "N=4",
        "TOKENS=4",
        "EVAL_LIMIT=3",
        "EVAL_N=2",
        "EPOCHS=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        ["make", "-f", "examples/demo.mk", "-j2", *variables],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]

    samples, scores, z = (out / f for f in ("samples.parquet", "scores.parquet", "z.parquet"))
    assert provenance(samples)["config"]["task"] == "sets"
    assert provenance(scores)["config"]["reward"] == "set"
    assert provenance(scores)["inputs"]["samples"]["sha256"] == sha(samples)
    assert provenance(z)["inputs"]["proposal"]["sha256"] == sha(samples)
    assert provenance(z)["inputs"]["scores"]["sha256"] == sha(scores)

    disa = json.loads((out / "disa" / "manifest.json").read_text())
    assert disa["config"]["loss"] == "tb"
    assert disa["z_sha256"] == sha(z) and disa["inputs"]["z"]["sha256"] == sha(z)  # anchored to this frozen Z
    grpo = json.loads((out / "grpo" / "manifest.json").read_text())
    assert grpo["config"]["loss"] == "grpo"
    for run_manifest in (disa, grpo):  # both on the same offline samples
        assert run_manifest["inputs"]["samples"]["sha256"] == sha(samples)

    for policy in ("base", "disa", "grpo"):
        eval_path = out / f"eval-{policy}.parquet"
        prov = provenance(eval_path)
        assert prov["inputs"]["samples"]["sha256"] == sha(out / f"eval-{policy}.samples.parquet")
        target = provenance(out / f"eval-{policy}.target.parquet")
        assert target["inputs"]["samples"]["sha256"] == sha(out / f"eval-{policy}.samples.parquet")
        if policy != "base":  # the evaluated policy is the trained adapter, by hash
            assert prov["model"]["adapter"]["weights_sha256"] == models.weights_sha256(str(out / policy))
            assert target["model"]["adapter"]["weights_sha256"] == models.weights_sha256(str(out / policy))
        assert "adapter" not in target["reference"]  # pi* is built from the base model

    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Exact target (answer sets)" in html
    from stages import evaluate

    compared = evaluate.compare([str(out / f"eval-{p}.parquet") for p in ("base", "disa", "grpo")])
    assert [row["metric"] for row in compared["metrics"]][:3] == ["p_valid", "p_valid_target", "kl_set"]

    target = str(out / "report.html")
    again = subprocess.run(["make", "-f", "examples/demo.mk", "-q", *variables, target], cwd=REPO, env=env)
    assert again.returncode == 0  # make -q: every file target is up to date
