"""`iswt report`: one self-contained HTML page of figures from any mix of artifacts.

Read top to bottom: validate the output path, discover what the inputs hold
(artifacts by their `iswt.artifact` kind, train runs by `manifest.json`,
directories walked for both), build one section per kind that is present,
each with its figures, tables, a caption and the provenance of what it used,
and write the page atomically. The figures are also written as PNG files into
`<out stem>_figures/` and embedded in the page as base64 data URIs, so the
page needs nothing beside itself.

The page opens with the answer (evaluation and diversity comparisons with
intervals, the health of each log Z); then one section per kind, built in
`iswcli.report` (discovery, recomputation, sections, html). Sections:
rewards (scores), importance weights (z; the log-weights are
recomputed from the z artifact's inputs when they are still on disk), pair
weights (pairs; iso weights recomputed at several gamma from the pairs'
scores), training curves (runs), evaluation and diversity comparisons with
bootstrap intervals over prompts.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from iswcli import artifacts, console, outputs
from iswcli.errors import IswtError
from iswcli.report.discovery import discover
from iswcli.report.html import DEFAULT_GAMMAS, FigureWriter, ReportOptions, render_page
from iswcli.report.sections import (
    diversity_section,
    evaluation_section,
    exact_target_section,
    importance_section,
    overview_section,
    pairs_section,
    rewards_section,
    target_by_n_section,
    training_section,
)
from iswcli.results import StageResult


@dataclass(frozen=True)
class ReportConfig:
    inputs: tuple[str, ...]
    out: str
    title: str = "iswt report"
    gammas: tuple[float, ...] = DEFAULT_GAMMAS
    bootstrap: int = 2000
    seed: int = 0

    @property
    def options(self) -> ReportOptions:
        return ReportOptions(self.inputs, self.title, self.gammas, self.bootstrap, self.seed)

    @property
    def figures_dir(self) -> Path:
        out = Path(self.out)
        return out.with_name(f"{out.stem}_figures")


@dataclass(frozen=True, kw_only=True)
class ReportResult(StageResult):
    """output is the .html page."""

    figures_dir: str
    figures_written: int
    sections: tuple[str, ...]  # section titles, in page order
    artifacts: dict[str, int]  # artifact kind -> artifacts reported
    train_runs: int
    notes: int  # inputs skipped or read only in part, each noted in the page

    def rows(self) -> dict:
        return {
            "output": self.output,
            "figures": f"{self.figures_dir} ({self.figures_written} PNG)",
            "sections": ", ".join(self.sections),
            "artifacts": self.artifacts,
            "train runs": self.train_runs,
            "skipped": self.notes,
        }


def validate(config: ReportConfig) -> None:
    if not config.inputs:
        raise IswtError("give at least one artifact, run directory or directory to report on")
    if any(not (math.isfinite(g) and g > 0) for g in config.gammas):
        raise IswtError(f"--gammas {','.join(map(str, config.gammas))}: each must be a finite number > 0")
    if config.bootstrap < 1:
        raise IswtError(f"--bootstrap {config.bootstrap}: must be at least 1")
    target = Path(config.out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise IswtError(f"--out {config.out}: must end in .html")
    if target.is_dir():
        raise IswtError(f"--out {config.out}: is a directory, expected an .html file path")
    artifacts.check_parent_writable(config.out, "--out")
    figures = Path(config.figures_dir)
    if figures.exists() and not figures.is_dir():
        raise IswtError(f"--out {config.out}: its figures go to {figures}, which is a file, not a directory")


def run(config: ReportConfig) -> ReportResult:
    validate(config)
    with outputs.claim(config.out, {f"argument {i + 1}": path for i, path in enumerate(config.inputs)}):
        found = discover(config.inputs, exclude=(Path(config.out), config.figures_dir))
        reportable = [s for s in found.sources if s.kind != "samples"]
        if not reportable and not found.runs:
            what = "only samples artifacts" if found.sources else "no iswt artifact and no train run directory"
            raise IswtError(
                f"{', '.join(config.inputs)}: nothing to report: found {what} "
                "(give scores, z, pairs, eval or diversity artifacts, train run directories, or a directory holding them)"
            )
        staging = config.figures_dir.with_name(f".{config.figures_dir.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        figures = FigureWriter(staging)  # published beside the page only once the page is written
        try:
            return _write(config, found, figures)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _write(config: ReportConfig, found, figures: FigureWriter) -> ReportResult:
    """Every section's figures and tables, the page, then its figures beside it."""
    builders = (
        overview_section,
        rewards_section,
        importance_section,
        pairs_section,
        training_section,
        evaluation_section,
        diversity_section,
        exact_target_section,
        target_by_n_section,
    )
    sections = [section for build in builders for section in build(found, config.options, figures)]
    if not sections:
        raise IswtError(f"nothing to report: no input could be read ({found.notes[0] if found.notes else 'no notes'})")
    outputs.write_atomically(config.out, render_page(config.options, found, sections))
    figures.publish(config.figures_dir)
    for note in found.notes[:5]:
        console.warn(note)
    if len(found.notes) > 5:
        console.warn(f"... and {len(found.notes) - 5} more notes (listed in the report)")
    return ReportResult(
        output=config.out,
        figures_dir=str(figures.directory),
        figures_written=len(figures.written),
        sections=tuple(s.title for s in sections),
        artifacts={kind: len(found.of_kind(kind)) for kind in artifacts.SPECS if found.of_kind(kind)},
        train_runs=len(found.runs),
        notes=len(found.notes),
    )
