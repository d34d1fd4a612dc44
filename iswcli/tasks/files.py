"""Prompt files: .jsonl, .json (a list of objects), .csv or .parquet with prompt_id and prompt.

Row numbers in error messages count data records from 1 (a CSV header is not
a record); ``line N`` in a JSONL error is the physical line of the file.
"""

from __future__ import annotations

import csv
import io
import json
import os

from iswcli.errors import IswtError
from iswcli.tasks.prompt import Prompt, rows_to_prompts

FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")


def file_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_TYPES:
        shown = ext or "(no extension)"
        raise IswtError(f"{path}: unsupported prompts file type {shown} (use .jsonl, .json, .csv or .parquet)")
    return ext


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise IswtError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IswtError(f"{path}: cannot read (not UTF-8 text)") from None


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise IswtError(f"{path} line {lineno}: not valid JSON") from None
        if not isinstance(row, dict):
            raise IswtError(f"{path} line {lineno}: expected a JSON object")
        rows.append(row)
    return rows


def _read_json(path: str) -> list[dict]:
    try:
        data = json.loads(_read_text(path))
    except ValueError as e:
        raise IswtError(f"{path}: not valid JSON (line {getattr(e, 'lineno', '?')})") from None
    if not isinstance(data, list):
        raise IswtError(f"{path}: expected a JSON list of objects")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise IswtError(f"{path} row {i}: expected a JSON object")
    return data


def _csv_messages(cell: str):
    """A CSV cell holding a JSON list of objects is chat messages; else text."""
    if not cell.lstrip().startswith("["):
        return cell
    try:
        value = json.loads(cell)
    except ValueError:
        return cell
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return value
    return cell


def _read_csv(path: str) -> list[dict]:
    text = _read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return []
        seen = set()
        for name in header:
            if name in seen:
                raise IswtError(f"{path}: column '{name}' appears twice in the header")
            seen.add(name)
        rows = []
        for i, cells in enumerate(reader, start=1):
            if not cells:
                continue
            if len(cells) > len(header):
                raise IswtError(f"{path} row {i}: {len(cells)} cells but the header has {len(header)} columns")
            row = dict(zip(header, cells))
            if "prompt" in row and isinstance(row["prompt"], str):
                row["prompt"] = _csv_messages(row["prompt"])
            rows.append(row)
    except csv.Error as e:
        raise IswtError(f"{path}: not valid CSV ({e})") from None
    return rows


def _read_parquet(path: str) -> list[dict]:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise IswtError(f"{path}: cannot read ({e.strerror or e})") from None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IswtError(f"{path}: cannot read (not a valid Parquet file: {first})") from None
    return table.to_pylist()


def file_prompts(path: str, split: str | None) -> list[Prompt]:
    ext = file_type(path)
    reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}[ext]
    rows = reader(path)
    if not rows:
        raise IswtError(f"{path}: contains no prompts")
    prompts = rows_to_prompts(rows, path, "custom")
    if split is None:
        return prompts
    if not any("split" in r for r in rows):
        raise IswtError(f"--split {split}: {path} has no 'split' column")
    kept = [p for p, r in zip(prompts, rows) if r.get("split") is not None and str(r.get("split")) == split]
    if not kept:
        values = sorted({str(r["split"]) for r in rows if r.get("split") is not None})
        raise IswtError(
            f"--split {split}: no rows of {path} have split '{split}' (values: {', '.join(values) or 'none'})"
        )
    return kept
