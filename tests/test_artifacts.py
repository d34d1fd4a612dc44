"""The artifact contract: validated reads, shard rules, atomic writes with provenance."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts
from iswcli.errors import IswtError


def scores_table(ids=("a", "a", "b"), idx=(0, 1, 0), rewards=(1.0, 0.0, 0.5)):
    return pa.table(
        {
            "prompt_id": list(ids),
            "sample_idx": pa.array(idx, pa.int32()),
            "reward": list(rewards),
            "reward_info": ["x"] * len(ids),
        }
    )


def write(path, table=None, **config):
    prov = artifacts.make_provenance("score", {"reward": "math", **config}, seed=3)
    return artifacts.write_artifact(table or scores_table(), str(path), artifacts.SCORES, prov)


def test_hashes_are_the_file_bytes_and_follow_rewrites(tmp_path):
    import hashlib

    path = tmp_path / "scores.parquet"
    first = write(path)
    assert artifacts.file_sha256(str(path)) == first == hashlib.sha256(path.read_bytes()).hexdigest()
    second = write(path, scores_table(rewards=(0.0, 0.0, 0.5)))  # same size, new content
    assert second != first
    assert artifacts.file_sha256(str(path)) == second == hashlib.sha256(path.read_bytes()).hexdigest()
    art = artifacts.read_artifact(str(path), artifacts.SCORES)
    assert art.sha256 == second


def test_a_written_artifacts_hash_is_kept_on_disk_for_other_processes(tmp_path, monkeypatch):
    import hashlib
    import subprocess
    import sys

    monkeypatch.setenv("ISWT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "scores.parquet"
    sha = write(path)
    records = list((tmp_path / "cache" / "sha256").rglob("*"))
    assert [r.read_text() for r in records if r.is_file()] == [sha]
    # another process reads the record, not the file: a forged record shows it was used
    (record,) = [r for r in records if r.is_file()]
    record.write_text("f" * 64)
    child = [sys.executable, "-c", f"from iswcli import artifacts; print(artifacts.file_sha256({str(path)!r}))"]
    assert subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip() == "f" * 64
    # any write makes a new version: hashed again from the bytes
    with open(path, "ab") as f:
        f.write(b"\0")
    got = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip()
    assert got == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dictionary_columns_are_written_compactly_and_read_plain(tmp_path):
    table = scores_table()
    codes = pa.array([0, 0, 1], pa.int32())
    table = table.set_column(0, "prompt_id", pa.DictionaryArray.from_arrays(codes, pa.array(["a", "b"])))
    path = tmp_path / "scores.parquet"
    write(path, table)
    art = artifacts.read_artifact(str(path), artifacts.SCORES)
    assert art.table.schema.field("prompt_id").type == pa.string()
    assert art.table["prompt_id"].to_pylist() == ["a", "a", "b"]


def test_round_trip_keeps_rows_and_provenance(tmp_path):
    path = tmp_path / "scores.parquet"
    sha = write(path)
    art = artifacts.read_artifact(str(path), artifacts.SCORES)
    assert art.table.num_rows == 3
    assert art.sha256 == sha == artifacts.file_sha256(str(path))
    assert art.kind == "scores"
    prov = art.provenance
    assert prov["stage"] == "score" and prov["seed"] == 3 and prov["config"]["reward"] == "math"
    assert {"torch", "pyarrow", "python"} <= set(prov["libraries"])
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]  # no temp file left


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(scores_table().drop(["reward"]), path)
    with pytest.raises(IswtError, match=r"s.parquet: column 'reward' is missing \(required in scores\)"):
        artifacts.read_artifact(str(path), artifacts.SCORES)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(scores_table().set_column(2, "reward", pa.array(["1", "0", "1"])), path)
    with pytest.raises(IswtError, match="column 'reward' has type string, expected double"):
        artifacts.read_artifact(str(path), artifacts.SCORES)


def test_integer_columns_are_accepted_and_cast(tmp_path):
    path = tmp_path / "s.parquet"
    table = scores_table().set_column(2, "reward", pa.array([1, 0, 1], pa.int64()))
    pq.write_table(table.set_column(1, "sample_idx", pa.array([0, 1, 0], pa.int64())), path)
    art = artifacts.read_artifact(str(path), artifacts.SCORES)
    assert art.table.schema.field("reward").type == pa.float64()
    assert art.table.schema.field("sample_idx").type == pa.int32()


def test_duplicate_key_is_refused(tmp_path):
    path = tmp_path / "s.parquet"
    write(path, scores_table(ids=("a", "a"), idx=(1, 1), rewards=(1.0, 0.0)))
    with pytest.raises(IswtError, match=r"duplicate key \(prompt_id='a', sample_idx=1\)"):
        artifacts.read_artifact(str(path), artifacts.SCORES)


def test_wrong_kind_is_refused(tmp_path):
    path = tmp_path / "s.parquet"
    write(path)
    with pytest.raises(IswtError, match="is a scores artifact, expected samples"):
        artifacts.read_artifact(str(path), artifacts.SAMPLES)


def test_shards_read_as_one_and_must_share_config(tmp_path):
    write(tmp_path / "shards" / "0.parquet", scores_table(ids=("a",), idx=(0,), rewards=(1.0,)), shard="0/2")
    write(tmp_path / "shards" / "1.parquet", scores_table(ids=("b",), idx=(0,), rewards=(0.0,)), shard="1/2")
    art = artifacts.read_artifact(str(tmp_path / "shards"), artifacts.SCORES)
    assert sorted(art.table.column("prompt_id").to_pylist()) == ["a", "b"]
    assert len(art.files) == 2
    glob = artifacts.read_artifact(str(tmp_path / "shards" / "*.parquet"), artifacts.SCORES)
    assert glob.sha256 == art.sha256

    write(tmp_path / "shards" / "2.parquet", scores_table(ids=("c",), idx=(0,), rewards=(0.0,)), reward="code")
    with pytest.raises(IswtError, match=r"2.parquet: shard from a different config .* \('reward': 'code' vs 'math'\)"):
        artifacts.read_artifact(str(tmp_path / "shards"), artifacts.SCORES)


def test_duplicate_rows_across_shards_are_refused(tmp_path):
    write(tmp_path / "d" / "0.parquet", scores_table(ids=("a",), idx=(0,), rewards=(1.0,)))
    write(tmp_path / "d" / "1.parquet", scores_table(ids=("a",), idx=(0,), rewards=(1.0,)))
    with pytest.raises(IswtError, match="duplicate key"):
        artifacts.read_artifact(str(tmp_path / "d"), artifacts.SCORES)


def test_failed_write_leaves_the_existing_file(tmp_path):
    path = tmp_path / "s.parquet"
    write(path)
    before = path.read_bytes()
    with pytest.raises(IswtError):
        artifacts.write_artifact(scores_table().drop(["reward"]), str(path), artifacts.SCORES, {})
    assert path.read_bytes() == before


def test_not_parquet_and_missing_paths(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(IswtError, match="junk.parquet: not a readable Parquet file"):
        artifacts.read_artifact(str(junk), artifacts.SCORES)
    with pytest.raises(IswtError, match="no such file or directory"):
        artifacts.read_artifact(str(tmp_path / "nope.parquet"), artifacts.SCORES)
    with pytest.raises(IswtError, match="no file matches"):
        artifacts.read_artifact(str(tmp_path / "x-*.parquet"), artifacts.SCORES)


def test_parts_are_finished_in_key_order_whatever_order_they_ran_in(tmp_path):
    # "é" sorts after "z" by its UTF-8 bytes, as DuckDB's join orders keys
    out = str(tmp_path / "scores.parquet")
    writer = artifacts.PartWriter(out, artifacts.SCORES, {"run": 1})
    writer.open()
    writer.write_part(0, scores_table(ids=("é", "b", "b"), idx=(0, 1, 0), rewards=(0.0, 1.0, 2.0)))
    writer.write_part(1, scores_table(ids=("z", "a"), idx=(0, 10), rewards=(3.0, 4.0)))
    writer.finish(artifacts.make_provenance("score", {}))
    table = artifacts.read_artifact(out, artifacts.SCORES).table
    assert list(zip(table["prompt_id"].to_pylist(), table["sample_idx"].to_pylist())) == [
        ("a", 10),
        ("b", 0),
        ("b", 1),
        ("z", 0),
        ("é", 0),
    ]
    assert table["reward"].to_pylist() == [4.0, 2.0, 1.0, 3.0, 0.0]
