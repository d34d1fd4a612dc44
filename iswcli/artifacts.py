"""Parquet artifacts: schemas declared once, validated reads, atomic writes.

Every artifact is one Parquet file, a directory of shards or a glob of shards.
Its key-value metadata holds the artifact's kind and a JSON provenance record
(stage, toolkit version, resolved config, input hashes, model, seed, library
versions, time), so any output can be traced back to what made it.
"""

from __future__ import annotations

import functools
import glob as globlib
import importlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iswcli import __version__
from iswcli.errors import IswtError, first_line
from iswcli.hashing import combined_sha256, file_sha256, hash_file, in_background, remember, start_hashing

__all__ = ["combined_sha256", "file_sha256", "in_background", "start_hashing"]  # where callers have found them

KIND_KEY = b"iswt.artifact"
PROVENANCE_KEY = b"iswt.provenance"

# Config keys that legitimately differ between shards of one artifact.
SHARD_LOCAL_KEYS = frozenset({"shard", "out", "workers", "batch_size"})


@dataclass(frozen=True)
class ArtifactSpec:
    """An artifact kind: its key columns and the columns it must have."""

    kind: str
    key: tuple[str, ...]
    schema: pa.Schema

    @property
    def columns(self) -> list[str]:
        return self.schema.names


def _spec(kind: str, key: tuple[str, ...], *fields: tuple[str, pa.DataType]) -> ArtifactSpec:
    return ArtifactSpec(kind, key, pa.schema([pa.field(n, t) for n, t in fields]))


_ints = pa.list_(pa.int32())
_floats = pa.list_(pa.float32())

SAMPLES = _spec(
    "samples",
    ("prompt_id", "sample_idx"),
    ("prompt_id", pa.string()),
    ("sample_idx", pa.int32()),
    ("task", pa.string()),
    ("prompt", pa.string()),  # the source prompt: text, or chat messages as JSON
    ("task_fields", pa.string()),  # JSON: answer, tests, entry_point, ...
    ("prompt_text", pa.string()),  # what the model saw, chat template applied
    ("response", pa.string()),
    ("prompt_token_ids", _ints),
    ("response_token_ids", _ints),
    ("token_logprobs_q", _floats),  # under the sampler's processed distribution
    ("logprob_q", pa.float64()),
    ("token_logprobs_model", _floats),  # raw model, temperature 1, untruncated
    ("logprob_model", pa.float64()),
    ("n_tokens", pa.int32()),
    ("finish_reason", pa.string()),  # 'stop' (EOS) or 'length'
)

SCORES = _spec(
    "scores",
    ("prompt_id", "sample_idx"),
    ("prompt_id", pa.string()),
    ("sample_idx", pa.int32()),
    ("reward", pa.float64()),
    ("reward_info", pa.string()),
)

Z = _spec(
    "z",
    ("prompt_id",),
    ("prompt_id", pa.string()),
    ("log_z", pa.float64()),
    ("beta", pa.float64()),
    ("n_samples", pa.int32()),
    ("ess", pa.float64()),
    ("ess_frac", pa.float64()),
    ("max_weight_share", pa.float64()),
    ("khat", pa.float64()),
    ("khat_note", pa.string()),
    ("log_z_se", pa.float64()),
    ("log_z_lo", pa.float64()),  # 95% interval (bootstrap, else +-1.96 se), widened for rewards K samples may miss
    ("log_z_hi", pa.float64()),
    ("flags", pa.list_(pa.string())),
    ("log_z_is", pa.float64()),  # the plain IS estimate, whichever estimator log_z is
    ("log_mean_ratio", pa.float64()),  # log mean_k pi_ref/q: 0 in expectation (exactly 0 when q is pi_ref)
    ("ratio_ess_frac", pa.float64()),
    ("ratio_khat", pa.float64()),
)

PAIRS = _spec(
    "pairs",
    ("prompt_id", "chosen_idx", "rejected_idx"),
    ("prompt_id", pa.string()),
    ("chosen_idx", pa.int32()),
    ("rejected_idx", pa.int32()),
    ("r_chosen", pa.float64()),
    ("r_rejected", pa.float64()),
    ("log_weight_base", pa.float64()),
    ("margin_score", pa.float64()),
    ("weight", pa.float64()),
    ("method", pa.string()),
)

TRAIN_LOG = _spec(
    "train_log",
    ("step",),
    ("step", pa.int64()),
    ("loss", pa.float64()),
    ("lr", pa.float64()),
    ("grad_norm", pa.float64()),
    ("tokens_per_s", pa.float64()),
)

EVAL = _spec(
    "eval",
    ("prompt_id", "sample_idx"),
    ("prompt_id", pa.string()),
    ("sample_idx", pa.int32()),
    ("prompt", pa.string()),  # as in samples: text, or chat messages as JSON
    ("response", pa.string()),
    ("reward", pa.float64()),
    ("reward_info", pa.string()),
    ("correct", pa.bool_()),  # reward >= 1.0
    ("answer", pa.string()),  # extracted final answer (math reward), else null
)

DIVERSITY = _spec(
    "diversity",
    ("prompt_id",),
    ("prompt_id", pa.string()),
    ("n_strategies", pa.float64()),
    ("judge_raw", pa.string()),
    ("distinct_1", pa.float64()),
    ("distinct_2", pa.float64()),
    ("self_bleu", pa.float64()),
    ("embed_dispersion", pa.float64()),
    ("judge_how", pa.string()),  # how n_strategies was read, or why it is NaN
    ("n_responses", pa.int32()),
)

SPECS = {s.kind: s for s in (SAMPLES, SCORES, Z, PAIRS, TRAIN_LOG, EVAL, DIVERSITY)}


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Artifact:
    """A validated artifact read into memory, with where it came from."""

    path: str
    files: tuple[str, ...]
    table: pa.Table
    kind: str | None
    provenance: dict[str, Any]

    @property
    def sha256(self) -> str:
        """The content hash, started in the background when the artifact was read."""
        return combined_sha256(list(self.files))

    def ref(self) -> dict[str, Any]:
        """What a downstream artifact records about this input."""
        return {"path": self.path, "kind": self.kind, "sha256": self.sha256, "files": len(self.files)}


def resolve_files(path: str) -> list[str]:
    """A file, a directory of *.parquet shards, or a glob, as a sorted file list."""
    if os.path.isdir(path):
        files = sorted(str(p) for p in Path(path).glob("*.parquet"))
        if not files:
            raise IswtError(f"{path}: directory holds no .parquet shards")
        return files
    if os.path.isfile(path):
        return [path]
    if globlib.has_magic(path):
        files = sorted(f for f in globlib.glob(path) if os.path.isfile(f))
        if not files:
            raise IswtError(f"{path}: no file matches this pattern")
        return files
    raise IswtError(f"{path}: no such file or directory")


def read_metadata(file: str) -> tuple[pa.Schema, str | None, dict[str, Any]]:
    """Schema, kind and provenance of one Parquet file, without reading its rows.

    Kind and provenance come from the file's key-value metadata, where a
    streamed artifact adds them when it is finished (`ArtifactWriter`).
    """
    with readable(file), pq.ParquetFile(file) as parquet:
        schema, meta = parquet.schema_arrow, parquet.metadata.metadata or {}
    kind = meta.get(KIND_KEY, b"").decode() or None
    provenance = json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}
    return schema, kind, provenance


@contextmanager
def readable(file: str) -> Iterator[None]:
    """Wrap every read of a Parquet file's footer or rows: a file pyarrow cannot read is one line naming it.

    An intact footer over corrupt data pages passes `read_metadata`; the
    rows fail only when read, wherever that happens.
    """
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise IswtError(f"{file}: not a readable Parquet file ({first_line(exc)})") from exc


def read_rows(file: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file's rows (``columns`` of them), without its key-value metadata."""
    # ParquetFile, not read_table: the dataset layer costs a 0.2 s import and adds nothing for one file
    with readable(file), pq.ParquetFile(file) as parquet:
        return parquet.read(columns=columns).replace_schema_metadata(None)


@functools.cache
def _warm_pandas_import() -> Future:
    """Start importing pandas on a spare core, once.

    pyarrow imports pandas (when installed, as it is with `datasets`) on the
    first Arrow/numpy conversion, to rule out pandas objects: about 0.25 s on
    the critical path of every stage. Started here, it overlaps the reads.
    """
    return in_background(importlib.import_module, "pandas")


def open_artifact(path: str, spec: ArtifactSpec, columns: list[str] | None = None) -> Artifact:
    """An artifact's files, kind and provenance, checked (kind, columns, shards), without reading rows.

    ``table`` is empty (the schema's columns, no rows); its content hash
    starts in the background.
    """
    files = resolve_files(path)
    start_hashing(files)
    metas = [read_metadata(f) for f in files]
    for file, (schema, kind, _) in zip(files, metas):
        if kind is not None and kind != spec.kind:
            raise IswtError(f"{file}: is a {kind} artifact, expected {spec.kind}")
        check_columns(schema, spec, file)
        for name in columns or []:
            if name not in schema.names:
                raise IswtError(f"{file}: column '{name}' is missing")
    check_shards_agree(files, [m[2] for m in metas])
    return Artifact(path, tuple(files), metas[0][0].empty_table(), metas[0][1], metas[0][2])


def row_count(art: Artifact) -> int:
    """Rows in all of an artifact's files, from their footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in art.files)


def read_artifact(path: str, spec: ArtifactSpec, columns: list[str] | None = None) -> Artifact:
    """Read and validate an artifact; errors name the file, column and rule."""
    opened = open_artifact(path, spec)
    _warm_pandas_import()
    wanted = None if columns is None else list(dict.fromkeys([*spec.key, *columns]))
    tables = []
    for file in opened.files:
        tables.append(conform(read_rows(file, wanted), spec))
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    check_unique_key(table, spec, path)
    return replace(opened, table=table)


def check_columns(schema: pa.Schema, spec: ArtifactSpec, where: str) -> None:
    for expected in spec.schema:
        if expected.name not in schema.names:
            raise IswtError(f"{where}: column '{expected.name}' is missing (required in {spec.kind})")
        actual = schema.field(expected.name).type
        if not _compatible(actual, expected.type):
            raise IswtError(f"{where}: column '{expected.name}' has type {actual}, expected {expected.type}")


def conform(table: pa.Table, spec: ArtifactSpec, *, keep_dictionaries: bool = False) -> pa.Table:
    """Cast the spec's columns to their declared types (int64 ids to int32, ...).

    Readers always get plain types. A writer may keep a dictionary column of
    the right value type: Parquet stores text dictionary-encoded anyway, and
    handing it the dictionary spares it hashing millions of repeated strings.
    """
    for i, name in enumerate(table.column_names):
        if name in spec.schema.names:
            target, actual = spec.schema.field(name).type, table.schema.field(name).type
            if keep_dictionaries and pa.types.is_dictionary(actual) and actual.value_type == target:
                continue
            if actual != target:
                table = table.set_column(i, name, table.column(name).cast(target))
    return table


def rank_strings(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each row's rank among the column's distinct strings, and those strings in sorted order.

    Dictionary encoding hashes the rows once and only the distinct strings are
    sorted, so no Python string is made per row.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = column.dictionary_encode()
    by_name = pa.compute.sort_indices(encoded.dictionary)
    rank = np.empty(len(by_name), dtype=np.int64)
    rank[by_name.to_numpy()] = np.arange(len(by_name))
    return rank[encoded.indices.to_numpy()], encoded.dictionary.take(by_name)


def check_unique_key(table: pa.Table, spec: ArtifactSpec, where: str) -> None:
    if table.num_rows == 0:
        return
    counts = table.group_by(list(spec.key)).aggregate([([], "count_all")])
    dupes = counts.filter(pa.compute.greater(counts["count_all"], 1))
    if dupes.num_rows:
        first = {k: dupes.column(k)[0].as_py() for k in spec.key}
        shown = ", ".join(f"{k}={v!r}" for k, v in first.items())
        raise IswtError(f"{where}: duplicate key ({shown}); each {'/'.join(spec.key)} must appear once")


def check_shards_agree(files: list[str], provenances: list[dict]) -> None:
    """Shards read as one artifact must come from one stage and one config."""
    if len(files) < 2:
        return
    first = _shared_config(provenances[0])
    for file, prov in zip(files[1:], provenances[1:]):
        other = _shared_config(prov)
        if other != first:
            diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            key = diff[0]
            raise IswtError(
                f"{file}: shard from a different config than {files[0]} "
                f"('{key}': {other.get(key)!r} vs {first.get(key)!r})"
            )


def _shared_config(provenance: dict) -> dict:
    """What shards of one artifact share: stage, config (shard-local flags aside) and input hashes."""
    config = {k: v for k, v in provenance.get("config", {}).items() if k not in SHARD_LOCAL_KEYS}
    config["stage"] = provenance.get("stage")
    inputs = provenance.get("inputs") or {}
    config["input hashes"] = {role: (ref or {}).get("sha256") for role, ref in inputs.items() if isinstance(ref, dict)}
    return config


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Same family is enough: an int64 column is a fine int32 column, etc."""
    if actual == expected or pa.types.is_null(actual):  # an all-null column fits any type
        return True
    if pa.types.is_dictionary(actual):  # dictionary-encoded values (text, mostly)
        return _compatible(actual.value_type, expected)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_list(expected):
        is_list = pa.types.is_list(actual) or pa.types.is_large_list(actual)
        return is_list and _compatible(actual.value_type, expected.value_type)
    return False


# --------------------------------------------------------------------------- writing


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "accelerate", "pyarrow", "numpy", "vllm"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def jsonable(value: Any) -> Any:
    """Config values as JSON: paths to strings, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def make_provenance(
    stage: str,
    config: dict[str, Any],
    inputs: dict[str, Artifact | dict] | None = None,
    model: dict[str, Any] | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "stage": stage,
        "iswt_version": __version__,
        "config": jsonable(config),
        "inputs": {role: art.ref() if isinstance(art, Artifact) else art for role, art in (inputs or {}).items()},
        "model": model,
        "seed": seed,
        "libraries": library_versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **jsonable(extra),
    }


def write_artifact(table: pa.Table, path: str, spec: ArtifactSpec, provenance: dict[str, Any]) -> str:
    """Write atomically (temp file, fsync, rename) and return the file's sha256."""
    with ArtifactWriter(path, spec) as writer:
        writer.write(table)
        return writer.finish(provenance)


class ArtifactWriter:
    """An artifact written a row group at a time, atomically: nothing appears at ``path`` before `finish`.

    Rows go to a temp file beside ``path``; `finish` adds the kind and the
    provenance (known only at the end of a streamed stage) to the file's
    metadata, syncs, hashes and renames it. Leaving the ``with`` block
    without `finish` (an error) removes the temp file.

        with ArtifactWriter(out, Z) as writer:
            for table in batches:
                writer.write(table)
            sha = writer.finish(provenance)
    """

    def __init__(self, path: str, spec: ArtifactSpec):
        self.target, self.spec = Path(path), spec
        self.tmp = self.target.with_name(f".{self.target.name}.tmp-{os.getpid()}")
        self.parquet = None

    def __enter__(self) -> ArtifactWriter:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, table: pa.Table) -> None:
        check_columns(table.schema, self.spec, f"{self.spec.kind} being written")
        table = conform(table, self.spec, keep_dictionaries=True).replace_schema_metadata(None)
        if self.parquet is None:
            # dictionary-encode text only: numeric columns gain nothing and cost write time
            text = [
                f.name
                for f in table.schema
                if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_dictionary(f.type)
            ]
            self.parquet = pq.ParquetWriter(self.tmp, table.schema, use_dictionary=text)
        self.parquet.write_table(table, row_group_size=1 << 20)

    def finish(self, provenance: dict[str, Any]) -> str:
        if self.parquet is None:
            self.write(self.spec.schema.empty_table())
        self.parquet.add_key_value_metadata(
            {KIND_KEY: self.spec.kind.encode(), PROVENANCE_KEY: json.dumps(provenance).encode()}
        )
        self.parquet.close()
        synced = in_background(_fsync, self.tmp)
        sha = hash_file(str(self.tmp))  # while the disk flushes
        synced.result()
        os.replace(self.tmp, self.target)
        remember(str(self.target), sha)
        return sha

    def __exit__(self, *exc) -> None:
        if self.parquet is not None and self.tmp.exists():
            self.parquet.close()
        self.tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def check_output_path(path: str, flag: str = "--out") -> None:
    """Fail before any heavy work when the output cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise IswtError(f"{flag} {path}: is a directory, expected a .parquet file path")
    if target.suffix != ".parquet":
        raise IswtError(f"{flag} {path}: must end in .parquet")
    check_parent_writable(path, flag)


def check_parent_writable(path: str, flag: str, *, directory: bool = False) -> None:
    """The nearest existing directory above ``path`` (from ``path`` itself when it names a directory to write
    into) takes a new file: tried for real, with a probe removed at once.

    Permission bits do not tell (root passes them; /proc refuses files anyway).
    """
    parent = Path(path) if directory else Path(path).parent
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise IswtError(f"{flag} {path}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".iswt-probe-"):
            pass
    except OSError as exc:
        raise IswtError(
            f"{flag} {path}: cannot create files in {existing} ({exc.strerror or first_line(exc)})"
        ) from None


@dataclass
class PartWriter:
    """Resumable output: finished parts land in OUT.partial/, the final file only at the end.

    Each part is written atomically, so a killed run leaves whole parts only; a
    re-run with the same config skips the parts already there.
    """

    out: str
    spec: ArtifactSpec
    config: dict[str, Any]
    done: set[int] = field(default_factory=set)

    @property
    def directory(self) -> Path:
        return Path(self.out).with_name(Path(self.out).name + ".partial")

    def open(self) -> int:
        """Create or reuse the partial directory; return how many parts are already done."""
        config_file = self.directory / "config.json"
        # --force re-runs a finished stage; it must not refuse its own partial output
        wanted = json.dumps(jsonable({k: v for k, v in self.config.items() if k != "force"}), sort_keys=True)
        if self.directory.exists():
            found = config_file.read_text() if config_file.exists() else ""
            if found != wanted:
                raise IswtError(
                    f"{self.directory}: left by a run with a different config; "
                    "delete it to start over, or re-run the original command to resume"
                )
            self.done = {int(p.stem.split("-")[1]) for p in self.directory.glob("part-*.parquet")}
        else:
            self.directory.mkdir(parents=True)
            config_file.write_text(wanted)
        return len(self.done)

    def write_part(self, index: int, table: pa.Table) -> None:
        part = self.directory / f"part-{index:06d}.parquet"
        tmp = part.with_name(f".{part.name}.tmp")
        pq.write_table(conform(table, self.spec), tmp)
        os.replace(tmp, part)
        self.done.add(index)

    def finish(self, provenance: dict[str, Any]) -> str:
        """Concatenate the parts into the final artifact in key order, then drop the parts.

        Key order (strings by their UTF-8 bytes) whatever order the work ran
        in, so samples and the scores made from them lie row for row and the
        stages that join them read both straight through (`chain.ScoredStream`).
        """
        parts = sorted(self.directory.glob("part-*.parquet"))
        tables = [pq.read_table(p) for p in parts]
        table = pa.concat_tables(tables) if tables else self.spec.schema.empty_table()
        table = table.sort_by([(name, "ascending") for name in self.spec.key])
        sha = write_artifact(table, self.out, self.spec, provenance)
        for p in self.directory.iterdir():
            p.unlink()
        self.directory.rmdir()
        return sha
