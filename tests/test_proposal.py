"""What the samples' provenance proves about q: the zero-log-ratio shortcut, tempered vs truncated, the sampler gap."""

import json

import numpy as np
import pytest

from iswcli import artifacts, proposal
from tests.test_estimate_z import IDX, PIDS, REWARDS, write_samples, write_scores


def prov(backend="hf", dtype="float32", temperature=1.0, top_p=1.0, top_k=0, untruncated=None, **sampling):
    untruncated = temperature == 1.0 and top_p == 1.0 and top_k == 0 if untruncated is None else untruncated
    config = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
    if backend is not None:
        config["backend"] = backend
    record = {"untruncated": untruncated, **sampling}
    if dtype is not None:
        record["dtype"] = dtype
    return {"config": config, "sampling": record}


def test_the_shortcut_needs_the_reference_backend_and_dtype_at_temperature_1():
    assert proposal.describe(prov())["zero_log_ratio"] is True
    bf16 = proposal.describe(prov(dtype="bfloat16"))
    assert bf16["zero_log_ratio"] is False and "bfloat16" in bf16["why"]
    vllm = proposal.describe(prov(backend="vllm"))
    assert vllm["zero_log_ratio"] is False and "vllm" in vllm["why"]
    assert proposal.describe(prov(backend=None))["zero_log_ratio"] is False
    tempered = proposal.describe(prov(temperature=0.7))
    assert tempered["zero_log_ratio"] is False and "temperature 0.7" in tempered["why"]
    assert proposal.describe({})["zero_log_ratio"] is False
    # an hf artifact from before --dtype existed: the transformers backend always loaded float32
    assert proposal.describe(prov(dtype=None))["zero_log_ratio"] is True


def test_tempered_and_truncated_are_different_facts():
    t = proposal.describe(prov(temperature=0.7))
    assert t["tempered"] and not t["truncated"]
    p = proposal.describe(prov(top_p=0.9))
    assert p["truncated"] and not p["tempered"]
    both = proposal.describe(prov(temperature=0.7, top_k=50))
    assert both["tempered"] and both["truncated"]
    greedy = proposal.describe(prov(temperature=0.0))
    assert greedy["truncated"] and not greedy["tempered"]
    plain = proposal.describe(prov())
    assert not plain["tempered"] and not plain["truncated"]
    unknown = proposal.describe({})
    assert not unknown["known"] and not unknown["tempered"] and not unknown["truncated"]


def test_same_model_compares_weights_and_adapter():
    base = {"weights_sha256": "a"}
    tuned = {"weights_sha256": "a", "adapter": {"weights_sha256": "x"}}
    assert proposal.same_model({"model": base}, {"model": dict(base)})[0]
    assert proposal.same_model({"model": tuned}, {"model": dict(tuned)})[0]
    assert not proposal.same_model({"model": tuned}, {"model": base})[0]
    assert not proposal.same_model({"model": base}, {"model": {"weights_sha256": "b"}})[0]
    assert not proposal.same_model({"model": base}, {"model": None})[0]
    assert proposal.gap_plan({"model": base}, {"model": base}, has_ref=False) == (
        False,
        "the scores have no logprob_ref",
    )


def test_sampler_gap_per_prompt():
    group = np.array([0, 0, 1, 1, 1])
    model = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    ref = np.array([-1.0, -2.02, -3.0, -4.5, -4.9])
    gap = proposal.sampler_gap(group, 2, model, ref, threshold=0.1)
    assert gap["mean"] == pytest.approx([0.01, (0.0 + 0.5 - 0.1) / 3])
    assert gap["mean_abs"] == pytest.approx([0.01, (0.0 + 0.5 + 0.1) / 3])
    assert gap["max_abs"] == pytest.approx([0.02, 0.5])
    assert gap["flagged"].tolist() == [False, True]


def _samples_with(tmp_path, *, backend, dtype, logprob_model, model_sha="w", temperature=1.0):
    """A samples artifact whose provenance names a backend, dtype and model, with chosen raw log-probs."""
    path = write_samples(
        tmp_path / "s.parquet", PIDS, IDX, np.full(6, -1.0), temperature=temperature, untruncated=temperature == 1.0
    )
    art = artifacts.read_artifact(path, artifacts.SAMPLES)
    table = art.table.set_column(
        art.table.column_names.index("logprob_model"), "logprob_model", [np.asarray(logprob_model, dtype=float)]
    )
    record = dict(art.provenance)
    record["config"] = {**record["config"], "backend": backend, "dtype": dtype}
    record["sampling"] = {**record["sampling"], "backend": backend, "dtype": dtype}
    record["model"] = {"weights_sha256": model_sha}
    artifacts.write_artifact(table, path, artifacts.SAMPLES, record)
    return path


def _scores_with_ref(tmp_path, logprob_ref, model_sha="w"):
    path = write_scores(tmp_path / "sc.parquet", PIDS, IDX, REWARDS, logprob_ref=logprob_ref)
    art = artifacts.read_artifact(path, artifacts.SCORES)
    artifacts.write_artifact(
        art.table, path, artifacts.SCORES, {**art.provenance, "model": {"weights_sha256": model_sha}}
    )
    return path


def test_estimate_z_refuses_the_shortcut_for_a_vllm_sampler(cli, tmp_path):
    samples = _samples_with(tmp_path, backend="vllm", dtype="float32", logprob_model=np.full(6, -1.0))
    scores = write_scores(tmp_path / "sc.parquet", PIDS, IDX, REWARDS)
    result = cli(
        "estimate-z", "--proposal", samples, "--scores", scores, "--beta", "1", "--out", tmp_path / "z.parquet"
    )
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "logprob_ref" in line and "--backend vllm" in line


def test_estimate_z_refuses_the_shortcut_for_a_bfloat16_sampler(cli, tmp_path):
    samples = _samples_with(tmp_path, backend="hf", dtype="bfloat16", logprob_model=np.full(6, -1.0))
    scores = write_scores(tmp_path / "sc.parquet", PIDS, IDX, REWARDS)
    result = cli(
        "estimate-z", "--proposal", samples, "--scores", scores, "--beta", "1", "--out", tmp_path / "z.parquet"
    )
    assert result.exit_code == 2 and "bfloat16" in result.stderr


def test_the_sampler_gap_is_reported_per_prompt_and_flagged(cli, tmp_path):
    lm = np.array([-1.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    lref = np.array([-1.6, -1.01, -1.0, -1.0, -1.0, -1.0])  # rows b, a, b, a, a, b: one of b's is 0.6 nats off
    samples = _samples_with(tmp_path, backend="vllm", dtype="bfloat16", logprob_model=lm)
    scores = _scores_with_ref(tmp_path, lref)
    out = tmp_path / "z.parquet"
    result = cli("--json", "estimate-z", "--proposal", samples, "--scores", scores, "--beta", "1", "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = {r["prompt_id"]: r for r in artifacts.read_artifact(str(out), artifacts.Z).table.to_pylist()}
    assert rows["a"]["sampler_gap_max"] == pytest.approx(0.01)
    assert rows["b"]["sampler_gap_max"] == pytest.approx(0.6)
    assert "sampler_mismatch" in rows["b"]["flags"] and "sampler_mismatch" not in rows["a"]["flags"]
    summary = json.loads(result.stdout)
    assert summary["sampler_gap"]["prompts flagged"] == 1
    assert summary["share_flagged"]["sampler_mismatch"] == 0.5
    assert any("sampler_mismatch" in note for note in summary["notes"])
    z_prov = artifacts.read_artifact(str(out), artifacts.Z).provenance
    assert z_prov["sampler_gap"]["compared"] is True and z_prov["proposal_sampling"]["backend"] == "vllm"
    # a looser threshold flags nothing
    loose = cli(
        "--json",
        "estimate-z",
        "--proposal",
        samples,
        "--scores",
        scores,
        "--beta",
        "1",
        "--mismatch-threshold",
        "1",
        "--out",
        tmp_path / "z2.parquet",
    )
    assert json.loads(loose.stdout)["sampler_gap"]["prompts flagged"] == 0


def test_no_gap_when_the_reference_is_another_model(cli, tmp_path):
    samples = _samples_with(tmp_path, backend="vllm", dtype="float32", logprob_model=np.full(6, -1.0))
    scores = _scores_with_ref(tmp_path, np.full(6, -3.0), model_sha="other")
    out = tmp_path / "z.parquet"
    result = cli("--json", "estimate-z", "--proposal", samples, "--scores", scores, "--beta", "1", "--out", out)
    assert result.exit_code == 0, result.stderr
    gap = json.loads(result.stdout)["sampler_gap"]
    assert gap == {"compared": False, "why": "the reference's weights differ from the sampler's"}
    rows = artifacts.read_artifact(str(out), artifacts.Z).table
    assert np.isnan(rows.column("sampler_gap_max").to_numpy()).all()


def test_a_tempered_proposal_is_not_called_truncated(cli, tmp_path):
    samples = _samples_with(tmp_path, backend="hf", dtype="float32", logprob_model=np.full(6, -1.0), temperature=0.7)
    scores = _scores_with_ref(tmp_path, np.full(6, -1.5))
    out = tmp_path / "z.parquet"
    result = cli("--json", "estimate-z", "--proposal", samples, "--scores", scores, "--beta", "1", "--out", out)
    assert result.exit_code == 0, result.stderr
    z = artifacts.read_artifact(str(out), artifacts.Z)
    # a temperature is a fact of the proposal (in the provenance), not a flag on every prompt's estimate
    assert z.provenance["proposal_sampling"]["tempered"] and not z.provenance["proposal_sampling"]["truncated"]
    for row in z.table.to_pylist():
        assert row["log_mean_ratio"] == pytest.approx(-0.5) and "weight_mass_off" not in row["flags"]
    assert not any("support" in note for note in json.loads(result.stdout)["notes"])
