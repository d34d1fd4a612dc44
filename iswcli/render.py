"""What the commands print: a stage's result, a comparison of runs, an artifact's description.

A table for people, or with --json one JSON object for scripts; nothing with
--quiet (the description of `iswt info` aside, which is the command's output).
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.table import Table
from rich.text import Text

from iswcli import console
from iswcli.results import StageResult


def show_result(title: str, result: StageResult) -> None:
    """A stage's closing table, or with --json its result as one JSON object."""
    if console.settings.json:
        print(json.dumps({"title": title, **result.as_json()}, default=str))
        return
    if console.settings.quiet:
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in result.display().items():
        table.add_row(key, _fmt(value))
    console.out.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def show_comparison(title: str, result: dict) -> None:
    """Runs side by side: mean [95% CI] per run, and under each later run its paired Δ to the first."""
    if console.settings.json:
        print(json.dumps({"title": title, **result}, default=str))
        return
    if console.settings.quiet:
        return
    per_run = ", ".join(str(c) for c in result["prompts_per_run"])
    caption = f"{result['prompts_common']} prompts common to all runs (per run: {per_run})"
    if "k" in result:
        caption += f"; first {result['k']} samples per prompt"
    caption += "; 95% bootstrap CIs over prompts; Δ: paired difference to the first run"
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    table.add_column("metric", style="bold")
    for name in console.short_names(result["runs"]):  # whole paths get cut to the same few characters
        table.add_column(name, overflow="fold")
    for row in result["metrics"]:
        cells = [_ci(cell) for cell in row["runs"]]
        deltas = [f"\nΔ {_ci(d, signed=True)}" for d in row["diff_to_first"][1:]]
        table.add_row(row["metric"], cells[0], *(c + d for c, d in zip(cells[1:], deltas)))
    console.out.print(table)


def _ci(cell: dict, signed: bool = False) -> str:
    if not math.isfinite(cell["estimate"]):  # e.g. no prompt has a value in both runs
        return "n/a (no prompt with a value in both)" if signed else "n/a"
    fmt = "+.3f" if signed else ".3f"
    return f"{cell['estimate']:{fmt}} [{cell['lo']:{fmt}}, {cell['hi']:{fmt}}]"


def show_description(d: dict) -> None:
    """`iswt info`: provenance, then one line per column."""
    if console.settings.json:
        print(json.dumps(d, default=str))
        return
    out = console.out
    out.print(
        Text.assemble(
            (d["path"], "bold"), f"  kind: {d['kind'] or 'unknown'}  rows: {d['rows']}  files: {len(d['files'])}"
        )
    )
    out.print(f"sha256: {d['sha256']}")
    prov = d["provenance"]
    if prov:
        out.print(
            f"made by: iswt {prov.get('stage')} (v{prov.get('iswt_version')}) at {prov.get('created_at')}, "
            f"seed {prov.get('seed')}"
        )
        out.print_json(json.dumps({k: prov[k] for k in ("config", "inputs", "model") if prov.get(k)}, default=str))
    table = Table(title="columns", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("type")
    table.add_column("summary")
    for name, kind in d["schema"]:
        table.add_row(name, kind, d["columns"][name])
    out.print(table)
