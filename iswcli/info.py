"""`iswt info`: what an artifact is, where it came from, and what its columns hold."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from iswcli import artifacts


def describe(path: str) -> dict[str, Any]:
    files = artifacts.resolve_files(path)
    metas = [artifacts.read_metadata(f) for f in files]
    artifacts.check_shards_agree(files, [m[2] for m in metas])
    tables = [artifacts.read_rows(f) for f in files]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return {
        "path": path,
        "kind": metas[0][1],
        "files": files,
        "sha256": artifacts.combined_sha256(files),
        "rows": table.num_rows,
        "provenance": metas[0][2],
        "schema": [(f.name, str(f.type)) for f in table.schema],
        "columns": {name: summarize(table.column(name)) for name in table.column_names},
    }


def summarize(column: pa.ChunkedArray) -> str:
    """One line per column: range and mean for numbers, lengths for lists, distinct values for text."""
    kind = column.type
    nulls = column.null_count
    suffix = f", {nulls} null" if nulls else ""
    if len(column) == 0:
        return "empty"
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        values = column.drop_null()
        if pa.types.is_floating(kind):
            nan = pc.sum(pc.is_nan(values).cast(pa.int64())).as_py() or 0
            values = values.filter(pc.invert(pc.is_nan(values)))
            suffix += f", {nan} NaN" if nan else ""
        if len(values) == 0:
            return "no finite values" + suffix
        lo, hi = pc.min_max(values).values()
        mean = pc.mean(values).as_py()
        return f"min {_num(lo.as_py())}  mean {_num(mean)}  max {_num(hi.as_py())}" + suffix
    if pa.types.is_boolean(kind):
        true = pc.sum(column.cast(pa.int64())).as_py() or 0
        return f"{true} true of {len(column) - nulls}" + suffix
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.list_value_length(column).drop_null()
        lo, hi = pc.min_max(lengths).values()
        return f"length min {lo.as_py()}  mean {_num(pc.mean(lengths).as_py())}  max {hi.as_py()}" + suffix
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        counts = pc.value_counts(column.drop_null())
        top = sorted(counts.to_pylist(), key=lambda c: -c["counts"])[:3]
        shown = ", ".join(f"{_clip(c['values'])} ({c['counts']})" for c in top)
        return f"{len(counts)} distinct: {shown}" + suffix
    return str(kind) + suffix


def _num(value: float) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.4g}"


def _clip(text: str, width: int = 24) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= width else text[: width - 1] + "…")
