"""The pipeline's artifacts joined under one rule set.

Every stage that reads more than one artifact comes here: samples and scores
are aligned on (prompt_id, sample_idx) once, by `load_scored`; a z or pairs
artifact is attached to that join by `load_z` / `load_pairs`. Before any heavy
work each check that the artifacts form one chain: the scores were made from
these samples, the z from these samples and scores, the pairs likewise (by
the content hashes their provenance records), and the parameters that must
agree do. Artifacts made outside iswt (no provenance) cannot be traced and
are taken as they are.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iswcli import artifacts, console
from iswcli.errors import IswtError, first_line
from iswcli.tasks import shard_index

KEYS = ["prompt_id", "sample_idx"]
#: The largest magnitude a reward or log-prob may have: finite, and still finite when doubled or subtracted.
LARGEST = 1e300
#: Rows per batch read (whole prompts are kept together, so a batch can hold a few more); DuckDB gives 122,880.
BATCH_ROWS = 1 << 17
#: DuckDB's working memory for the join and sort; beyond it, it spills to disk.
MEMORY_LIMIT = "1GB"
# marker columns of the full outer join: the row has no sample / no score
NO_SAMPLE, NO_SCORE = "_iswt_no_sample", "_iswt_no_score"

# --------------------------------------------------------------------------
# Provenance: each artifact names the inputs it was made from
# --------------------------------------------------------------------------


def check_made_from(art: artifacts.Artifact, role: str, source: artifacts.Artifact) -> None:
    """``art`` records ``source`` (by content hash) as its ``role`` input, or was made outside iswt."""
    recorded = (art.provenance.get("inputs") or {}).get(role) or {}
    sha = recorded.get("sha256")
    if sha is None or sha == source.sha256:
        return
    raise IswtError(
        f"{art.path}: was made from {role} {recorded.get('path')!r} (sha256 {sha[:12]}), not from "
        f"{source.path} (sha256 {source.sha256[:12]}); give the {role} it was made from, or re-run that stage"
    )


# --------------------------------------------------------------------------
# Samples joined to their scores
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """Samples joined to their scores, sorted by (prompt_id, sample_idx): the whole join or one batch of it.

    ``table`` holds the keys and the requested columns of both inputs;
    ``group`` numbers each row's prompt 0..P-1 in ascending prompt_id order,
    ``prompt_ids`` is the prompt_id of each number and ``counts`` its samples.
    """

    samples: artifacts.Artifact
    scores: artifacts.Artifact
    table: pa.Table
    group: np.ndarray
    prompt_ids: pa.Array
    counts: np.ndarray
    key: np.ndarray  # per row, ascending: the prompt number in the high 32 bits, sample_idx in the low

    def key_text(self, row: int) -> str:
        return _key_text(self.table, row)

    def finite(self, column: str, path: str, rule: str) -> np.ndarray:
        """A float column as float64, refusing missing, NaN and infinite values by name and key."""
        values = self.table[column].to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            what = "NaN or missing" if np.isnan(values[row]) else "infinite"
            raise IswtError(
                f"{path}: column '{column}' has {int(bad.sum())} {what} value(s), first at "
                f"({self.key_text(row)}); {rule}"
            )
        huge = np.abs(values) > LARGEST
        if huge.any():
            row = int(np.argmax(huge))
            raise IswtError(
                f"{path}: column '{column}' holds {values[row]:g} at ({self.key_text(row)}); values beyond "
                f"±{LARGEST:g} overflow the log-domain sums (the square of a log-weight, exp of a difference)"
            )
        return values


def has_column(path: str, column: str) -> bool:
    """Whether every shard of an artifact has ``column``; shards that disagree are an error."""
    files = artifacts.resolve_files(path)
    present = [column in artifacts.read_metadata(f)[0].names for f in files]
    if any(present) and not all(present):
        missing = files[present.index(False)]
        raise IswtError(f"{missing}: column '{column}' is missing, though other shards of {path} have it")
    return all(present)


def load_scored(
    samples_path, scores_path, *, sample_columns, score_columns, purpose: str, min_samples: int = 2
) -> Scored:
    """The whole join in memory (see `ScoredStream`): for stages that need every row at once."""
    stream = ScoredStream(
        samples_path,
        scores_path,
        sample_columns=sample_columns,
        score_columns=score_columns,
        purpose=purpose,
        min_samples=min_samples,
    )
    with stream:
        tables = [batch.table for batch in stream]  # at least one: an empty join is refused
    return stream.batch(pa.concat_tables(tables))


class ScoredStream:
    """Samples joined to their scores on DuckDB, read in key order a batch of whole prompts at a time.

    The scores must have been made from these samples (checked on opening,
    before any row is read); every score must have its sample and every
    sample its score, each key must appear once and no key may be missing
    (the error names the count and the first offending key), and every
    prompt needs at least ``min_samples`` samples for ``purpose``. The join
    and its sort run out of core: DuckDB holds at most MEMORY_LIMIT and
    spills the rest to a temp directory beside ``spill_beside`` (the output;
    named like its other temp files, so the next run on that output removes
    what a killed run left) or in the system's temp directory, so
    memory is bounded by the batch size, not the inputs. When both inputs
    are single files already in key order row for row (what `iswt sample`
    and one `iswt score` write), a first pass over their keys proves it and
    the rows are read straight through instead: the same rows in the same
    order, without the join and its sort. With ``shard`` (i, n) only the
    prompts whose sha256 falls in shard i are joined.

        with ScoredStream(samples, scores, ...) as stream:
            for batch in stream:   # Scored, prompts never split across batches
                ...
    """

    def __init__(
        self,
        samples_path: str,
        scores_path: str,
        *,
        sample_columns,
        score_columns,
        purpose: str,
        min_samples: int = 2,
        shard: tuple[int, int] | None = None,
        spill_beside: str | None = None,
        batch_rows: int | None = None,
    ):
        self.samples = artifacts.open_artifact(samples_path, artifacts.SAMPLES, sample_columns)
        self.scores = artifacts.open_artifact(scores_path, artifacts.SCORES, score_columns)
        check_made_from(self.scores, "samples", self.samples)
        self.sample_columns = [c for c in sample_columns if c not in KEYS]
        self.score_columns = [c for c in score_columns if c not in KEYS]
        self.purpose, self.min_samples, self.shard = purpose, min_samples, shard
        self.spill_beside, self.batch_rows = spill_beside, batch_rows or BATCH_ROWS
        self.rows = 0  # joined so far

    def __enter__(self) -> ScoredStream:
        import duckdb

        if self.spill_beside is None:
            self._spill = tempfile.TemporaryDirectory(prefix="iswt-spill-")
        else:
            out = Path(self.spill_beside).resolve()
            self._spill = tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-spill-", dir=out.parent)
        self.db = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": self._spill.name})
        self._registered: set[str] = set()
        return self

    def __exit__(self, *exc) -> None:
        self.db.close()
        self._spill.cleanup()

    def __iter__(self) -> Iterator[Scored]:
        carry = None  # the last prompt of a batch may continue in the next one
        for table in self._read_in_step() if self._in_key_order() else self._joined():
            self.rows += table.num_rows
            if table.num_rows == 0:
                continue
            if carry is not None:
                table = pa.concat_tables([carry, table])
            last = table["prompt_id"][-1]
            tail = pc.sum(pc.equal(table["prompt_id"], last)).as_py()
            carry = table.slice(table.num_rows - tail)
            if table.num_rows > tail:
                yield self.batch(table.slice(0, table.num_rows - tail))
        if carry is not None:
            yield self.batch(carry)
        elif self.rows == 0:
            raise IswtError(f"{self.samples.path}: holds no samples" + (" in this shard" if self.shard else ""))

    def batch(self, table: pa.Table) -> Scored:
        """Number the prompts of key-ordered rows and check each has enough samples."""
        table = table.drop_columns([c for c in (NO_SAMPLE, NO_SCORE) if c in table.column_names]).combine_chunks()
        pid = table["prompt_id"]
        new_prompt = np.ones(table.num_rows, dtype=bool)
        if table.num_rows > 1:
            new_prompt[1:] = pc.not_equal(pid.slice(1), pid.slice(0, table.num_rows - 1)).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(new_prompt)
        group = np.cumsum(new_prompt) - 1
        counts = np.diff(np.append(starts, table.num_rows))
        prompt_ids = pid.take(pa.array(starts)).combine_chunks() if starts.size else pa.array([], pa.string())
        if counts.size and counts.min() < self.min_samples:
            first = int(np.argmin(counts))
            raise IswtError(
                f"{self.samples.path}: prompt {prompt_ids[first].as_py()!r} has {counts[first]} sample; "
                f"{self.purpose} needs at least {self.min_samples} samples per prompt"
            )
        self._check_int32(table["sample_idx"])
        key = (group.astype(np.int64) << 32) | (table["sample_idx"].to_numpy().astype(np.int64) + 2**31)
        return Scored(self.samples, self.scores, table, group, prompt_ids, counts, key)

    def _check_int32(self, sample_idx: pa.ChunkedArray | pa.Array) -> None:
        """Every artifact stores sample_idx as int32: a wider id made elsewhere is refused, not cut short."""
        low, high = pc.min_max(sample_idx).values()
        for value in (low.as_py(), high.as_py()):
            if value is not None and not -(2**31) <= value < 2**31:
                raise IswtError(
                    f"{self.samples.path}, {self.scores.path}: column 'sample_idx' holds {value}, "
                    f"which does not fit in int32 (the type of sample_idx in every iswt artifact)"
                )

    # ------------------------------------------------------------------ the query and its checks

    def _joined(self) -> Iterator[pa.Table]:
        """DuckDB's join in key order, checked as it streams."""
        import duckdb

        previous = None  # the last key of the previous batch, for duplicates across batches
        try:
            for record in self._query():
                table = pa.Table.from_batches([record])
                self._check_rows(table, previous)
                previous = (table["prompt_id"][-1].as_py(), table["sample_idx"][-1].as_py())
                yield table
        except duckdb.Error as exc:  # a corrupt page under an intact footer fails only when its rows are read
            raise IswtError(f"{self.samples.path}, {self.scores.path}: cannot join ({first_line(exc)})") from exc

    def _query(self):
        """Full outer join on the keys, in key order, as a reader of Arrow record batches."""
        samples, scores = self._source(self.samples), self._source(self.scores)
        columns = ", ".join([f's."{c}"' for c in self.sample_columns] + [f'c."{c}"' for c in self.score_columns])
        sql = f"""
            SELECT coalesce(s.prompt_id, c.prompt_id) AS prompt_id,
                   coalesce(s.sample_idx, c.sample_idx) AS sample_idx,
                   s.sample_idx IS NULL AND s.prompt_id IS NULL AS {NO_SAMPLE},
                   c.sample_idx IS NULL AND c.prompt_id IS NULL AS {NO_SCORE}
                   {", " + columns if columns else ""}
            FROM {samples} s FULL OUTER JOIN {scores} c
              ON s.prompt_id = c.prompt_id AND s.sample_idx = c.sample_idx
            ORDER BY 1, 2
        """
        try:
            return self.db.sql(sql).to_arrow_reader(self.batch_rows)
        except Exception as exc:  # a file DuckDB cannot read, a column of the wrong type
            raise IswtError(f"{self.samples.path}, {self.scores.path}: cannot join ({first_line(exc)})") from exc

    # ------------------------------------------------------------------ inputs already in key order

    def _in_key_order(self) -> bool:
        """Whether both inputs are one file each with the same keys row for row, strictly ascending.

        Then the join is the rows side by side, in the order DuckDB's would
        give (both compare strings by their UTF-8 bytes), every check of the
        join already passed: no key missing, unmatched or repeated. Reads
        only the keys, and stops at the first row that breaks the order.
        """
        if len(self.samples.files) != 1 or len(self.scores.files) != 1:
            return False
        if artifacts.row_count(self.samples) != artifacts.row_count(self.scores):
            return False
        last = None  # the previous chunk's last key, so the order holds across chunks
        chunks = zip(
            _chunks(self.samples.files[0], KEYS, self.batch_rows), _chunks(self.scores.files[0], KEYS, self.batch_rows)
        )
        for ours, theirs in chunks:
            ours, theirs = _plain_keys(ours), _plain_keys(theirs)
            if ours["prompt_id"].null_count or ours["sample_idx"].null_count or not ours.equals(theirs):
                return False
            keys = ours if last is None else pa.concat_tables([last, ours])
            if not _strictly_ascending(keys["prompt_id"], keys["sample_idx"]):
                return False
            last = ours.slice(ours.num_rows - 1)
        return True

    def _read_in_step(self) -> Iterator[pa.Table]:
        """Both inputs read side by side, a batch at a time (`_in_key_order` holds)."""
        shard_ids = self._shard_prompts(_relation(self.samples)) if self.shard else None
        score_columns = self.score_columns or ["sample_idx"]  # something to step through the scores with
        samples = _chunks(self.samples.files[0], [*KEYS, *self.sample_columns], self.batch_rows)
        scores = _chunks(self.scores.files[0], score_columns, self.batch_rows)
        for ours, theirs in zip(samples, scores):
            table = _plain_keys(ours.select(KEYS))
            for name in self.sample_columns:
                table = table.append_column(name, ours[name])
            for name in self.score_columns:
                table = table.append_column(name, theirs[name])
            if shard_ids is not None:
                table = table.filter(pc.is_in(table["prompt_id"], value_set=shard_ids["prompt_id"]))
            yield table

    def _source(self, art: artifacts.Artifact) -> str:
        """The SQL relation of an artifact's rows: its files, restricted to the shard's prompts."""
        source = _relation(art)
        if self.shard is None:
            return source
        name = f"shard_of_{art.kind}"
        if name not in self._registered:
            # a table, not a registered view: the error explanations query it from another cursor
            self.db.register("shard_prompts", self._shard_prompts(source))
            self.db.execute(f"CREATE TABLE {name} AS SELECT * FROM shard_prompts")
            self.db.unregister("shard_prompts")
            self._registered.add(name)
        return f"(SELECT * FROM {source} WHERE prompt_id IN (SELECT prompt_id FROM {name}))"

    def _shard_prompts(self, source: str) -> pa.Table:
        """The prompt ids of ``source`` that fall in this shard (sha256 of the id, as `iswt score --shard`)."""
        i, n = self.shard
        distinct = self.db.sql(f"SELECT DISTINCT prompt_id FROM {source} WHERE prompt_id IS NOT NULL").to_arrow_table()
        ids = distinct["prompt_id"].to_pylist()
        return pa.table({"prompt_id": pa.array([p for p in ids if shard_index(p, n) == i], pa.string())})

    def _check_rows(self, table: pa.Table, previous) -> None:
        """Refuse missing keys, unmatched rows and repeated keys, naming the first one."""
        for name in KEYS:
            if table[name].null_count:
                row = int(np.argmax(table[name].is_null().to_numpy(zero_copy_only=False)))
                where = self.samples.path if table[NO_SCORE][row].as_py() else self.scores.path
                raise IswtError(f"{where}: column '{name}' has missing value(s); every row needs its key")
        if pc.any(table[NO_SAMPLE]).as_py() or pc.any(table[NO_SCORE]).as_py():
            self._explain_key_mismatch()
        pid, idx = table["prompt_id"], table["sample_idx"]
        first = (pid[0].as_py(), idx[0].as_py())
        if first == previous:
            self._explain_duplicate(*first)
        n = table.num_rows
        # in Arrow, not numpy: a million prompt ids per batch would each become a Python string
        same = pc.and_(pc.equal(pid.slice(1), pid.slice(0, n - 1)), pc.equal(idx.slice(1), idx.slice(0, n - 1)))
        if n > 1 and pc.any(same).as_py():
            row = pc.index(same, True).as_py()
            self._explain_duplicate(pid[row].as_py(), idx[row].as_py())

    def _side_query(self, sql: str, params=None):
        """A query beside the join's open result (a connection runs one result at a time)."""
        return self.db.cursor().execute(sql, params)

    def _explain_duplicate(self, prompt_id, sample_idx) -> None:
        text = f"prompt_id={prompt_id!r}, sample_idx={int(sample_idx)!r}"
        for art in (self.samples, self.scores):
            found = self._side_query(
                f"SELECT count(*) FROM {self._source(art)} WHERE prompt_id = $1 AND sample_idx = $2",
                [prompt_id, int(sample_idx)],
            ).fetchone()[0]
            if found > 1:
                raise IswtError(f"{art.path}: duplicate key ({text}); each {'/'.join(KEYS)} must appear once")
        raise IswtError(f"duplicate key ({text}) in the join of {self.samples.path} and {self.scores.path}")

    def _explain_key_mismatch(self) -> None:
        """Say which keys are missing where: scores must cover exactly the samples."""
        problems = []
        for art, other, what in (
            (self.scores, self.samples, "score(s) have no matching sample in"),
            (self.samples, self.scores, "sample(s) have no score in"),
        ):
            count, first_pid, first_idx = self._side_query(
                f"""SELECT count(*), min(a.prompt_id), arg_min(a.sample_idx, (a.prompt_id, a.sample_idx))
                    FROM {self._source(art)} a ANTI JOIN {self._source(other)} b USING (prompt_id, sample_idx)"""
            ).fetchone()
            if count:
                problems.append(
                    f"{art.path}: {count} {what} {other.path} (first: prompt_id={first_pid!r}, "
                    f"sample_idx={first_idx!r})"
                )
        raise IswtError("; ".join(problems) + "; scores must cover exactly the samples")


def _relation(art: artifacts.Artifact) -> str:
    """The SQL relation of an artifact's files."""
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in art.files)
    return f"read_parquet([{files}])"


def _chunks(file: str, columns: list[str], rows: int) -> Iterator[pa.Table]:
    """A Parquet file's ``columns`` in tables of exactly ``rows`` rows (the last one shorter)."""
    import pyarrow.parquet as pq

    pending, held = [], 0
    # without pre-buffering: with it, pyarrow holds every row group read until the file is done (GBs at 100M)
    with artifacts.readable(file):  # a corrupt page fails here, mid-file
        for record in pq.ParquetFile(file, pre_buffer=False).iter_batches(batch_size=rows, columns=columns):
            pending.append(record)
            held += record.num_rows
            if held >= rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, rows)
                rest = table.slice(rows)
                pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _plain_keys(table: pa.Table) -> pa.Table:
    """The key columns as DuckDB's join gives them: plain strings (not dictionary) and int64."""
    pid = table["prompt_id"]
    if pa.types.is_dictionary(pid.type):
        pid = pid.cast(pid.type.value_type)
    return pa.table({"prompt_id": pid.cast(pa.string()), "sample_idx": table["sample_idx"].cast(pa.int64())})


def _strictly_ascending(prompt_id, sample_idx) -> bool:
    """Each (prompt_id, sample_idx) greater than the one before (strings by their bytes, as DuckDB sorts)."""
    n = len(prompt_id)
    if n < 2:
        return True
    p0, p1 = prompt_id.slice(0, n - 1), prompt_id.slice(1)
    i0, i1 = sample_idx.slice(0, n - 1), sample_idx.slice(1)
    rising = pc.or_(pc.greater(p1, p0), pc.and_(pc.equal(p1, p0), pc.greater(i1, i0)))
    return pc.all(rising).as_py()


def _key_text(table: pa.Table, row: int) -> str:
    return ", ".join(f"{k}={table[k][row].as_py()!r}" for k in KEYS)


# --------------------------------------------------------------------------
# z and pairs attached to a join
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FrozenZ:
    """A z artifact checked against the join: log Z per prompt of the join and the target it was made for."""

    artifact: artifacts.Artifact
    log_z: np.ndarray  # per prompt number of the join
    beta: float
    reward_transform: str  # 'none' or 'group-zscore'


def z_beta(path: str) -> float | None:
    """The one beta a z artifact was estimated at (None when it holds no prompt)."""
    return _one_beta(artifacts.read_artifact(path, artifacts.Z, columns=["beta"]))


def _one_beta(art: artifacts.Artifact) -> float | None:
    if art.table.num_rows == 0:
        return None
    betas = np.unique(art.table["beta"].to_numpy())
    if betas.size != 1 or not np.isfinite(betas[0]):
        raise IswtError(f"{art.path}: column 'beta' must hold one finite value, found {betas.tolist()[:5]}")
    return float(betas[0])


def load_z(path: str, scored: Scored) -> FrozenZ:
    """The z made from exactly these samples and scores, with a finite log Z for every prompt.

    A z whose flags say an estimate cannot be right (``outside_reward_bounds``:
    beta min r <= log Z <= beta max r broken) is refused; prompts flagged
    ``weight_mass_off`` are counted in a warning, since trajectory balance and
    dpg inherit whatever their log Z is off by.
    """
    art = artifacts.read_artifact(path, artifacts.Z, columns=["log_z", "beta", "flags"])
    check_made_from(art, "proposal", scored.samples)
    check_made_from(art, "scores", scored.scores)
    position = pc.index_in(scored.prompt_ids, value_set=art.table["prompt_id"].combine_chunks())
    if position.null_count:
        first = scored.prompt_ids.filter(position.is_null())[0].as_py()
        raise IswtError(
            f"{path}: no log_z for {position.null_count} prompt(s) of {scored.samples.path}, first {first!r}"
        )
    rows = position.to_numpy(zero_copy_only=False)
    log_z = art.table["log_z"].to_numpy()[rows].astype(np.float64)
    if not np.all(np.isfinite(log_z)):
        bad = scored.prompt_ids[int(np.argmin(np.isfinite(log_z)))].as_py()
        raise IswtError(f"{path}: log_z is not finite for prompt {bad!r}")
    check_z_flags(path, art.table.take(pa.array(rows)))
    transform = (art.provenance.get("reward_transform") or {}).get("name", "none")
    return FrozenZ(art, log_z, float(_one_beta(art)), transform)


def check_z_flags(path: str, z: pa.Table) -> None:
    """Refuse the z's prompts whose log Z breaks the reward bounds; warn of those whose samples missed mass."""
    flags = z["flags"].to_pylist()
    ids = z["prompt_id"].to_pylist()
    broken = [pid for pid, f in zip(ids, flags) if "outside_reward_bounds" in (f or ())]
    if broken:
        raise IswtError(
            f"{path}: {len(broken)} prompt(s) have a log Z outside [beta * lowest reward, beta * highest reward], "
            f"where no log Z can be (flag outside_reward_bounds), first {broken[0]!r}; "
            "re-estimate with `iswt estimate-z --estimator snis`"
        )
    off = sum("weight_mass_off" in (f or ()) for f in flags)
    if off:
        console.warn(
            f"{path}: {off} of {len(flags)} prompt(s) are flagged weight_mass_off: their samples reached a share of "
            "pi_ref's mass far from all of it, so their log Z is uncertain (see log_z_lo/log_z_hi) and the "
            "objective inherits its error; a proposal closer to the reference, or more samples, narrows it"
        )


@dataclass(frozen=True)
class JoinedPairs:
    """A pairs artifact checked against the join: each pair's chosen and rejected row of the join."""

    artifact: artifacts.Artifact
    rows: np.ndarray  # [pairs, 2]: (chosen, rejected) rows of the join
    weight: np.ndarray


def load_pairs(path: str, scored: Scored) -> JoinedPairs:
    """The pairs made from exactly these samples and scores, each side a sample of the join."""
    art = artifacts.read_artifact(path, artifacts.PAIRS, columns=["weight"])
    check_made_from(art, "samples", scored.samples)
    check_made_from(art, "scores", scored.scores)
    if art.table.num_rows == 0:
        raise IswtError(f"{path}: holds no pairs")
    group = pc.index_in(art.table["prompt_id"], value_set=scored.prompt_ids).to_numpy(zero_copy_only=False)
    known = ~np.isnan(group)  # the pair's prompt is in the join
    high = np.where(known, group, 0).astype(np.int64) << 32  # the join's key layout: prompt number, then sample_idx
    sides = []
    for column in ("chosen_idx", "rejected_idx"):
        idx = art.table[column].to_numpy().astype(np.int64)
        key = high | (idx + 2**31)
        row = np.searchsorted(scored.key, key).clip(max=scored.key.size - 1)
        found = known & (scored.key[row] == key)
        if not found.all():
            bad = int(np.argmin(found))
            raise IswtError(
                f"{path}: pair refers to sample (prompt_id={art.table['prompt_id'][bad].as_py()!r}, "
                f"sample_idx={int(idx[bad])}) that is not in {scored.samples.path}"
            )
        sides.append(row)
    weight = art.table["weight"].to_numpy().astype(np.float64)
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise IswtError(f"{path}: column 'weight' must be finite and >= 0")
    return JoinedPairs(art, np.stack(sides, axis=1), weight)
