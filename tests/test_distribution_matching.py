"""examples/distribution_matching.mk end to end on the tiny model (one seed, small sizes): every method's
policy is evaluated against the exact target, the online rounds chain, and the closing table prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, models

REPO = Path(__file__).resolve().parents[1]
METHODS = ("disa", "dpg", "learned", "sft", "iso", "direct", "rso", "grpo", "gspo")


def provenance(path: Path) -> dict:
    return artifacts.read_metadata(str(path))[2]


@pytest.mark.long  # ~50 iswt invocations: minutes on an idle machine, most of an hour on a loaded one
def test_distribution_matching_makefile(tiny_model_dir, tmp_path):
    out = tmp_path / "dm"
    variables = [
        f"ISWT={sys.executable} -m iswcli.cli --quiet",
        f"PYTHON={sys.executable}",
        f"MODEL={tiny_model_dir}",
        f"OUT={out}",
        "LIMIT=2",
        "N=4",
        "T=2",
        "TOKENS=4",
        "SEEDS=0",
        "TEMPS=1.5",
        "EVAL_N=1",
        "BOOTSTRAP=20",
        # the random model never says an exact answer: a dense reward gives the pair methods something to pair
        "REWARD=python:tests/pipeline_reward.py:length_reward",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        ["make", "-f", "examples/distribution_matching.mk", *variables],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]

    for method in METHODS:
        target = out / f"eval-{method}-s0.target.parquet"
        assert pq.read_metadata(target).num_rows == 2
        adapter = provenance(target)["model"]["adapter"]["path"]
        expected = out / f"{method}-s0" / ("round2/run" if method in ("grpo", "gspo") else "")
        assert Path(adapter) == expected.resolve()
    # online: round 2 samples from round 1's adapter; the budget per round is N / T
    round2 = provenance(out / "grpo-s0" / "round2" / "samples.parquet")
    assert round2["model"]["adapter"]["weights_sha256"] == models.weights_sha256(str(out / "grpo-s0/round1/run"))
    assert round2["config"]["n"] == 2
    # the offline methods share one set of samples; rso draws 4x
    for method in ("disa", "learned", "sft", "iso", "direct"):
        manifest = json.loads((out / f"{method}-s0" / "manifest.json").read_text())
        assert manifest["inputs"]["samples"]["path"].endswith("samples-t1-n4.parquet")
    rso = json.loads((out / "rso-s0" / "manifest.json").read_text())
    assert rso["inputs"]["samples"]["path"].endswith("samples-t1-n16.parquet")
    # every proposal's log Z was checked against the exact one
    for proposal in ("t1-n4", "t1-n16", "t1.5-n4", "disa-n4"):
        rows = pq.read_table(out / f"zeval-{proposal}.target.parquet").to_pylist()
        assert all(r["log_z_error"] == r["log_z_estimate"] - r["log_z_exact"] for r in rows)
    assert "| disa | 1 |" in run.stdout and "| t1.5-n4 | 2 |" in run.stdout
