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


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"p{i:02d}" for i in range(N_PROMPTS) for _ in range(K)]
    idx = [j for _ in range(N_PROMPTS) for j in range(K)]
    rewards = rng.integers(0, 3, len(ids)).astype(float)  # ties, all-equal prompts, dropped prompts
    lq = rng.normal(-5, 1, len(ids))
    samples = write_samples(tmp_path / "samples.parquet", ids, idx, lq)
    order = rng.permutation(len(ids))  # scores in another order: the join has work to do
    scores = write_scores(
        tmp_path / "scores.parquet",
        [ids[i] for i in order],
        [idx[i] for i in order],
        rewards[order],
        (lq + rng.normal(0, 0.3, len(ids)))[order],
    )
    return samples, scores


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
