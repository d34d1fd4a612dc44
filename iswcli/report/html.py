"""The page: figures written as PNG files and embedded as data URIs, HTML tables, the provenance list and the page itself."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from iswcli import __version__, estimators, metrics, plots
from iswcli.report.discovery import Found, Run
from iswcli.report.recompute import float_column

DEFAULT_GAMMAS = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class ReportOptions:
    """What the page and its sections need from `iswt report`'s flags."""

    inputs: tuple[str, ...]
    title: str = "iswt report"
    gammas: tuple[float, ...] = DEFAULT_GAMMAS  # ISO gammas the pairs section recomputes weights for
    bootstrap: int = 2000  # resamples of every interval over prompts
    seed: int = 0


#: Config keys that say nothing about what an artifact is (where it went, how fast it ran).
NOT_HIGHLIGHTS = frozenset({"out", "plot", "device", "workers", "batch_size", "shard", "resume", "save_every"})
#: Flagged prompts listed per z artifact; the rest are counted.
MAX_FLAGGED_ROWS = 40
#: Pooled metrics from an eval's summary.json shown in the table (the file itself has them all).
MAX_POOLED_COLUMNS = 12


@dataclass
class Section:
    title: str
    caption: str
    blocks: list[str]  # HTML fragments: figures, tables, notes
    sources: list  # Source or Run: what the section used


def flag_tables(label: str, table: pa.Table) -> str:
    """Counts per flag, then the flagged prompts, lowest ESS/K first."""
    flags = table["flags"].to_pylist()
    counts = [[name, str(sum(name in (f or []) for f in flags))] for name in estimators.FLAG_NAMES]
    parts = [html_table(["flag", f"prompts of {table.num_rows}"], counts, f"flags in {label}")]
    flagged = [i for i, f in enumerate(flags) if f]
    if not flagged:
        return parts[0] + note_html(f"{label}: no prompt is flagged.")
    ess = float_column(table, "ess_frac")
    flagged.sort(key=lambda i: (ess[i], i))
    columns = {
        name: float_column(table, name) for name in ("ess_frac", "khat", "max_weight_share", "log_z", "log_z_se")
    }
    ids = table["prompt_id"].to_pylist()
    rows = [
        [ids[i], ", ".join(flags[i]), *(format_number(columns[c][i]) for c in columns)]
        for i in flagged[:MAX_FLAGGED_ROWS]
    ]
    parts.append(
        html_table(
            ["prompt_id", "flags", "ESS/K", "k-hat", "max weight share", "log Z", "log Z s.e."],
            rows,
            f"flagged prompts in {label}",
        )
    )
    if len(flagged) > MAX_FLAGGED_ROWS:
        parts.append(note_html(f"... and {len(flagged) - MAX_FLAGGED_ROWS} more flagged prompts."))
    return "".join(parts)


def pair_table(series) -> str:
    rows = [
        [label, str(relative.size), str(ess.size), format_number(_median(ess)), format_number(_median(heaviest))]
        for label, relative, ess, heaviest in series
    ]
    return html_table(
        ["weights", "pairs", "prompts", "median ESS / pairs", "median weight of a prompt's heaviest pair"], rows
    )


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def run_summary(run: Run, table: pa.Table) -> str:
    loss = float_column(table, "loss")
    objective = run.manifest.get("objective") or (run.manifest.get("config") or {}).get("loss", "unknown")
    rows = [
        ["objective", str(objective)],
        ["steps", str(table.num_rows)],
        ["loss first → last", f"{format_number(loss[0])} → {format_number(loss[-1])}" if loss.size else "n/a"],
    ]
    if "log_ratio_mean" in table.column_names:
        rows.append(["log-ratio mean at first step", format_number(float_column(table, "log_ratio_mean")[0])])
    if not run.manifest:
        rows.append(["manifest", "missing: the run did not finish"])
    return html_table(["run " + run.label, ""], rows)


def eval_table(rows) -> str:
    """Per eval: prompts, samples, the two bootstrapped means, then the pooled metrics of its summary.json."""
    extra_keys = list(dict.fromkeys(k for *_, pooled in rows for k in pooled))[:MAX_POOLED_COLUMNS]
    body = [
        [
            source.label,
            str(correct.n),
            str(n_samples),
            interval_text(correct),
            interval_text(reward),
            *(format_number(pooled.get(k, math.nan)) for k in extra_keys),
        ]
        for source, n_samples, (correct, reward), pooled in rows
    ]
    headers = ["eval", "prompts", "samples", "mean correctness [95% CI]", "mean reward [95% CI]", *extra_keys]
    return html_table(headers, body)


class FigureWriter:
    """Saves each figure as a PNG in the figures directory and returns it as embedded HTML."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.written: list[Path] = []

    def remove_stale(self) -> None:
        """Drop figures an earlier report left under this name, so the folder matches the page."""
        for old in self.directory.glob("[0-9][0-9]-*.png"):
            if old not in self.written:
                old.unlink()

    def publish(self, target: Path) -> None:
        """Move the figures written so far (into a staging directory) to `target`, once the page is written:
        a report refused half-way leaves the earlier report's figures as they were, and no new ones."""
        target.mkdir(parents=True, exist_ok=True)
        moved = []
        for path in self.written:
            os.replace(path, target / path.name)
            moved.append(target / path.name)
        self.directory, self.written = target, moved
        self.remove_stale()

    def add(self, fig, name: str, alt: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = self.directory / f"{len(self.written) + 1:02d}-{safe}.png"
        data = plots.save_png(fig, str(path))
        self.written.append(path)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (
            f'<figure><img src="{uri}" alt="{_e(alt)}" width="{width}" height="{height}">'
            f"<figcaption>{_e(alt)} · {_e(path.name)}</figcaption></figure>"
        )


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1150px; margin: 24px auto; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.meta, figcaption, .prov { color: #555; font-size: 0.85em; }
.caption { margin: 0.3em 0 0.8em; }
figure { margin: 0.6em 0; } img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: 600; padding: 2px 0; }
.note { color: #8a5300; font-size: 0.85em; }
code { font-size: 0.95em; } details { margin: 0.2em 0 0.4em; }
"""


def render_page(config: ReportOptions, found: Found, sections: list[Section]) -> str:
    toc = " · ".join(f'<a href="#s{i}">{_e(s.title)}</a>' for i, s in enumerate(sections))
    body = [
        f"<h1>{_e(config.title)}</h1>",
        f'<p class="meta">iswt {__version__} · {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())} · inputs: '
        + f"{_e(', '.join(config.inputs))}</p>",
        f'<p class="meta">{toc}</p>',
    ]
    for i, section in enumerate(sections):
        body.append(f'<section id="s{i}"><h2>{_e(section.title)}</h2><p class="caption">{_e(section.caption)}</p>')
        body.extend(section.blocks)
        body.append(_provenance(section.sources))
        body.append("</section>")
    if found.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in found.notes)
        body.append(f'<section id="skipped"><h2>Skipped</h2><ul class="note">{items}</ul></section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(config.title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _provenance(sources) -> str:
    """One line per artifact (stage, time, hash, config highlights, input hashes), the full record folded."""
    lines = []
    for item in sources:
        prov = item.manifest if isinstance(item, Run) else item.provenance
        config = prov.get("config") or {}
        inputs = prov.get("inputs") or {}
        input_paths = {ref.get("path") for ref in inputs.values() if isinstance(ref, dict)}
        highlights = [
            f"{k}={v}"
            for k, v in config.items()
            if k not in NOT_HIGHLIGHTS and v is not None and not isinstance(v, (list, dict)) and v not in input_paths
        ][:12]
        used = [
            f"{role} {ref.get('path')} ({str(ref.get('sha256', ''))[:12]})"
            for role, ref in inputs.items()
            if isinstance(ref, dict)
        ]
        head = (
            f"<b>{_e(item.label)}</b> <code>{_e(str(item.path))}</code> · {_e(prov.get('stage', 'unknown stage'))}"
            f" · {_e(prov.get('created_at', 'time unknown'))} · sha256 {_e((item.sha256 or '?')[:12])}"
        )
        detail = f"config: {_e(', '.join(highlights) or 'none recorded')}"
        detail += f"<br>inputs: {_e('; '.join(used) or 'none recorded')}"
        if isinstance(item, Run) and prov.get("z_sha256"):
            detail += f"<br>anchored to z {_e(prov['z_sha256'][:12])}"
        full = _e(json.dumps({k: prov.get(k) for k in ("config", "inputs", "model", "seed")}, indent=1, default=str))
        lines.append(
            f'<div class="prov">{head}<br>{detail}<details><summary>full provenance</summary>'
            f"<pre>{full}</pre></details></div>"
        )
    return '<div class="prov"><b>Provenance</b></div>' + "".join(lines)


def html_table(headers, rows, caption: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def note_html(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def interval_text(ci: metrics.Interval) -> str:
    return "n/a" if ci.n == 0 else f"{format_number(ci.estimate)} [{format_number(ci.lo)}, {format_number(ci.hi)}]"


def format_number(value) -> str:
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)
