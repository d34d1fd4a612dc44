"""estimate-z and weight-pairs read the join a batch of whole prompts at a time, and run on shards of prompts.

Whatever the batch size and however the prompts are split into shards, the
output must be the one a single pass over everything gives.
"""

import numpy as np
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, chain
from iswcli.errors import IswtError
from stages import estimate_z, weight_pairs
from tests.test_estimate_z import write_samples, write_scores

N_PROMPTS, K = 40, 5


def write_inputs(directory, scores_order: str):
    """Samples in key order and their scores, ``aligned`` row for row (read straight through) or ``shuffled``."""
    rng = np.random.default_rng(0)
    ids = [f"p{i:02d}" for i in range(N_PROMPTS) for _ in range(K)]
    idx = [j for _ in range(N_PROMPTS) for j in range(K)]
    rewards = rng.integers(0, 3, len(ids)).astype(float)  # ties, all-equal prompts, dropped prompts
    lq = rng.normal(-5, 1, len(ids))
    lr = lq + rng.normal(0, 0.3, len(ids))
    samples = write_samples(directory / "samples.parquet", ids, idx, lq)
    order = rng.permutation(len(ids)) if scores_order == "shuffled" else np.arange(len(ids))
    scores = write_scores(
        directory / "scores.parquet", [ids[i] for i in order], [idx[i] for i in order], rewards[order], lr[order]
    )
    return samples, scores


@pytest.fixture(params=["shuffled", "aligned"])
def inputs(tmp_path, request):
    return write_inputs(tmp_path, request.param)


def _z(samples, scores, out, **options):
    config = estimate_z.EstimateZConfig(proposal=samples, scores=scores, beta=1.5, out=str(out), **options)
    estimate_z.run(config)
    return str(out)


def _pairs(samples, scores, out, **options):
    config = weight_pairs.WeightPairsConfig(
        samples=samples, scores=scores, method="iso", gamma=1.0, out=str(out), **options
    )
    weight_pairs.run(config)
    return str(out)


def _rows(path, spec, keys):
    table = artifacts.read_artifact(path, spec).table
    rows = table.to_pylist()
    return sorted(rows, key=lambda row: tuple(row[k] for k in keys))


def _same(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for name in a:
            if isinstance(a[name], float):
                np.testing.assert_equal(a[name], b[name])  # NaN == NaN here
            else:
                assert a[name] == b[name], name


def test_small_batches_give_the_same_z_and_pairs(inputs, tmp_path, monkeypatch):
    samples, scores = inputs
    whole_z = _z(samples, scores, tmp_path / "z.parquet", bootstrap=0)
    whole_pairs = _pairs(samples, scores, tmp_path / "pairs.parquet")
    monkeypatch.setattr(chain, "BATCH_ROWS", 7)  # prompts of 5 rows straddle every batch boundary
    small_z = _z(samples, scores, tmp_path / "z-small.parquet", bootstrap=0)
    small_pairs = _pairs(samples, scores, tmp_path / "pairs-small.parquet")
    assert pq.ParquetFile(small_z).metadata.num_row_groups > 1  # really written a batch at a time
    _same(_rows(whole_z, artifacts.Z, ["prompt_id"]), _rows(small_z, artifacts.Z, ["prompt_id"]))
    keys = ["prompt_id", "chosen_idx", "rejected_idx"]
    _same(_rows(whole_pairs, artifacts.PAIRS, keys), _rows(small_pairs, artifacts.PAIRS, keys))


@pytest.mark.parametrize("stage", ["estimate-z", "weight-pairs"])
def test_shards_read_back_as_the_whole(inputs, tmp_path, stage):
    samples, scores = inputs
    run, spec, keys = {
        "estimate-z": (_z, artifacts.Z, ["prompt_id"]),
        "weight-pairs": (_pairs, artifacts.PAIRS, ["prompt_id", "chosen_idx", "rejected_idx"]),
    }[stage]
    whole = run(samples, scores, tmp_path / "whole.parquet")
    (tmp_path / "shards").mkdir()
    for i in range(3):
        run(samples, scores, tmp_path / "shards" / f"part-{i}.parquet", shard=f"{i}/3")
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in sorted((tmp_path / "shards").iterdir())]
    assert all(sizes) and sum(sizes) == pq.ParquetFile(whole).metadata.num_rows
    _same(_rows(whole, spec, keys), _rows(str(tmp_path / "shards"), spec, keys))


def test_a_duplicate_key_across_a_batch_boundary_is_refused(tmp_path, monkeypatch):
    ids = ["a"] * 4 + ["b"] * 4
    idx = [0, 1, 2, 3, 0, 1, 1, 2]  # ('b', 1) twice
    samples = write_samples(tmp_path / "samples.parquet", ids, idx)
    scores = write_scores(tmp_path / "scores.parquet", ids[:6] + ["b"], idx[:6] + [2], [0.0, 1.0] * 3 + [1.0])
    monkeypatch.setattr(chain, "BATCH_ROWS", 6)
    with pytest.raises(IswtError, match=r"samples.parquet: duplicate key \(prompt_id='b', sample_idx=1\)"):
        _z(samples, scores, tmp_path / "z.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.parquet", "scores.parquet"]


def _joined_by_duckdb(monkeypatch) -> list[bool]:
    """Record, for each stream opened from now on, whether it went through DuckDB's join."""
    used = []
    query = chain.ScoredStream._query

    def spy(self):
        used.append(True)
        return query(self)

    monkeypatch.setattr(chain.ScoredStream, "_query", spy)
    return used


@pytest.mark.parametrize("stage", ["estimate-z", "weight-pairs"])
def test_inputs_in_key_order_are_read_straight_through_to_the_same_result(tmp_path, monkeypatch, stage):
    run, spec, keys, options = {
        "estimate-z": (_z, artifacts.Z, ["prompt_id"], {"bootstrap": 50, "seed": 3}),
        "weight-pairs": (
            _pairs,
            artifacts.PAIRS,
            ["prompt_id", "chosen_idx", "rejected_idx"],
            {"max_pairs_per_prompt": 2, "seed": 3},  # random tie-breaking: the rng sees prompts in the same order
        ),
    }[stage]
    (tmp_path / "a").mkdir(), (tmp_path / "s").mkdir()
    aligned, shuffled = write_inputs(tmp_path / "a", "aligned"), write_inputs(tmp_path / "s", "shuffled")
    used = _joined_by_duckdb(monkeypatch)
    monkeypatch.setattr(chain, "BATCH_ROWS", 7)
    straight = run(*aligned, tmp_path / "straight.parquet", **options)
    assert used == []  # no join: both files already in key order, row for row
    joined = run(*shuffled, tmp_path / "joined.parquet", **options)
    assert used == [True]
    _same(
        artifacts.read_artifact(straight, spec).table.to_pylist(),
        artifacts.read_artifact(joined, spec).table.to_pylist(),
    )
    _same(_rows(straight, spec, keys), _rows(joined, spec, keys))


def test_inputs_out_of_key_order_or_not_row_for_row_go_through_the_join(tmp_path, monkeypatch):
    used = _joined_by_duckdb(monkeypatch)
    ids, idx = ["b", "b", "a", "a"], [0, 1, 0, 1]  # row for row, but not in key order
    samples = write_samples(tmp_path / "samples.parquet", ids, idx)
    scores = write_scores(tmp_path / "scores.parquet", ids, idx, [0.0, 1.0, 1.0, 0.0])
    z = artifacts.read_artifact(_z(samples, scores, tmp_path / "z.parquet"), artifacts.Z).table
    assert used == [True] and z["prompt_id"].to_pylist() == ["a", "b"]
    # in key order, as many rows, but one key differs: the join's error, naming both sides
    samples = write_samples(tmp_path / "sorted.parquet", ["a", "a", "b", "b"], [0, 1, 0, 1])
    scores = write_scores(tmp_path / "scores-off.parquet", ["a", "a", "b", "b"], [0, 1, 0, 2], [0.0, 1.0, 1.0, 0.0])
    with pytest.raises(
        IswtError,
        match=r"1 score\(s\) have no matching sample .*sample_idx=2.*1 sample\(s\) have no score .*sample_idx=1",
    ):
        _z(samples, scores, tmp_path / "z-off.parquet")
    assert used == [True, True]
