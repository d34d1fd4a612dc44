"""The example Makefiles end to end on the tiny model: each runs, its artifacts chain by hash, a re-run is a no-op."""

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
REWARD = "python:tests/pipeline_reward.py:length_reward"  # dense, so pairs and Z are never degenerate
TINY = ["TOKENS=8", "EVAL_LIMIT=2", "EVAL_N=2"]
ARITH = [*TINY, "LIMIT=3", "N=2", f"REWARD={REWARD}", f"EVAL_REWARD={REWARD}"]
VARIABLES = {
    "offline_anchoring": ARITH,
    "iso_vs_rso": ARITH,  # RSO_N defaults to 4 * N = 8
    "online_iso": [*ARITH, "T=2"],
    # the sandboxed code reward itself: the random model fails every test, and the pipeline must take that
    "humaneval": [*TINY, "LIMIT=2", "N=2", "WORKERS=2"],
}


def provenance(path: Path) -> dict:
    return artifacts.read_metadata(str(path))[2]


def sha(path: Path) -> str:
    return artifacts.file_sha256(str(path))


def column(path: Path, name: str) -> list:
    return pq.read_table(path, columns=[name]).column(name).to_pylist()


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def adapter_sha(prov: dict) -> str | None:
    """The adapter a stage's model carried, by its weights' hash; None for the bare model."""
    return ((prov.get("model") or {}).get("adapter") or {}).get("weights_sha256")


def make(name: str, out: Path, model: str, *extra: str) -> subprocess.CompletedProcess:
    variables = [f"ISWT={sys.executable} -m iswcli.cli --quiet", f"MODEL={model}", f"OUT={out}", *VARIABLES[name]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = ["make", "-f", f"examples/{name}.mk", *variables, *extra]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


def check_offline_anchoring(out: Path) -> dict[str, Path]:
    samples, scores, z = out / "samples.parquet", out / "scores.parquet", out / "z.parquet"
    assert provenance(scores)["inputs"]["samples"]["sha256"] == sha(samples)
    assert provenance(z)["inputs"]["scores"]["sha256"] == sha(scores)
    runs = {name: out / name for name in ("tb", "tb-learned", "sft")}
    tb, learned, sft = (manifest(run) for run in runs.values())
    assert (tb["config"]["loss"], tb["config"]["z_mode"], tb["z_sha256"]) == ("tb", "frozen", sha(z))
    assert (learned["config"]["loss"], learned["config"]["z_mode"]) == ("tb", "learned")
    assert "z" not in learned["inputs"]  # the ablation learns log Z instead of reading it
    assert (sft["config"]["loss"], sft["config"]["sft_select"]) == ("sft", "best")
    for run in (tb, learned, sft):  # all three on the same samples
        assert run["inputs"]["samples"]["sha256"] == sha(samples)
        assert run["inputs"]["scores"]["sha256"] == sha(scores)
    return runs


def check_iso_vs_rso(out: Path) -> dict[str, Path]:
    prompts, n = 3, 2
    for method, k in (("iso", n), ("direct", n), ("rso", 4 * n)):
        samples, scores, pairs = (
            out / f"samples-n{k}.parquet",
            out / f"scores-n{k}.parquet",
            out / f"pairs-{method}.parquet",
        )
        assert provenance(samples)["config"]["n"] == k and pq.read_metadata(samples).num_rows == prompts * k
        assert set(column(pairs, "method")) == {method}
        assert provenance(pairs)["inputs"]["scores"]["sha256"] == sha(scores)
        run = manifest(out / method)
        assert run["inputs"]["pairs"]["sha256"] == sha(pairs)
        assert run["inputs"]["samples"]["sha256"] == sha(samples)  # the samples its pairs were formed from
    return {method: out / method for method in ("iso", "rso", "direct")}


def check_online_iso(out: Path) -> dict[str, Path]:
    previous = None
    for t in (1, 2):
        samples, scores, pairs, run = (
            out / f"round{t}" / f for f in ("samples.parquet", "scores.parquet", "pairs.parquet", "run")
        )
        policy = models.weights_sha256(str(previous)) if previous else None
        assert adapter_sha(provenance(samples)) == policy  # sampled from the previous round's policy
        assert provenance(pairs)["inputs"]["scores"]["sha256"] == sha(scores)
        trained = manifest(run)
        assert trained["config"]["adapter"] == (str(previous) if previous else None)
        assert adapter_sha(trained) == policy  # and trained on from it
        assert trained["inputs"]["pairs"]["sha256"] == sha(pairs)
        assert trained["inputs"]["samples"]["sha256"] == sha(samples)
        previous = run
    assert models.weights_sha256(str(out / "round2" / "run")) != models.weights_sha256(str(out / "round1" / "run"))
    return {"round2": out / "round2" / "run"}


def check_humaneval(out: Path) -> dict[str, Path]:
    scores, z = out / "scores.parquet", out / "z.parquet"
    assert provenance(scores)["config"]["reward"] == "code"
    assert set(column(scores, "reward")) == {0.0}  # no random completion passes its tests
    assert all("all_equal_rewards" in flags for flags in column(z, "flags"))
    assert provenance(z)["inputs"]["scores"]["sha256"] == sha(scores)
    assert manifest(out / "tb")["z_sha256"] == sha(z)
    return {"tb": out / "tb"}


CHECKS = {
    "offline_anchoring": check_offline_anchoring,
    "iso_vs_rso": check_iso_vs_rso,
    "online_iso": check_online_iso,
    "humaneval": check_humaneval,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_makefile_runs_and_chains_provenance(name, tiny_model_dir, tmp_path):
    out = tmp_path / name
    run = make(name, out, tiny_model_dir, "-j2")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]

    trained = CHECKS[name](out)
    assert adapter_sha(provenance(out / "eval-base.parquet")) is None
    for policy, run_dir in trained.items():  # each trained policy is evaluated, by its adapter's hash
        assert adapter_sha(provenance(out / f"eval-{policy}.parquet")) == models.weights_sha256(str(run_dir))
    assert "data:image/png;base64," in (out / "report.html").read_text()

    again = make(name, out, tiny_model_dir, "-q", str(out / "report.html"))
    assert again.returncode == 0, again.stdout  # make -q: every file target is up to date
