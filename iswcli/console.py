"""Terminal output: progress bars, warnings, errors; silent with --quiet (the tables: iswcli/render.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


@dataclass
class Settings:
    quiet: bool = False
    json: bool = False
    debug: bool = False  # --debug: tracebacks instead of one-line errors


settings = Settings()
# Messages and table cells carry user text (paths, ids, flag values, answers): printed verbatim, never read as
# rich markup or emoji codes, so `q[/b]` or `set:abc:` cannot crash a message or turn into something else.
err = Console(stderr=True, markup=False, emoji=False)
out = Console(markup=False, emoji=False)


def one_line(message: str) -> str:
    """A message on one line: a newline inside an id or path is shown as \\n, not as a second line."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _line(label: str, style: str, message: str) -> None:
    err.print(Text.assemble((label, style), " ", one_line(message)), highlight=False, soft_wrap=True)


_held: list[str] | None = None  # warnings held by held_warnings(), else None


def warn(message: str) -> None:
    if _held is not None:
        _held.append(message)
    elif not settings.quiet:
        _line("warning:", "yellow", message)


@contextmanager
def held_warnings() -> Iterator[None]:
    """Warnings inside are printed once the block completes and dropped when it raises, so that a refusal
    found after them (a resume with other flags, say) is still the one line the user gets."""
    global _held
    outer, _held = _held, []
    try:
        yield
    except BaseException:
        _held = outer
        raise
    held, _held = _held, outer
    for message in held:
        warn(message)


@dataclass
class ProgressHandle:
    progress: Progress | None
    task: Any = None
    fields: dict = field(default_factory=dict)

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n, **fields)


@contextmanager
def progress(total: int, label: str, rate_unit: str = "tok/s") -> Iterator[ProgressHandle]:
    """A rich progress bar with an extra rate column the stage keeps updated."""
    if settings.quiet or settings.json:
        yield ProgressHandle(None)
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.1f} " + rate_unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    with bar:
        task = bar.add_task(label, total=total, rate=0.0)
        yield ProgressHandle(bar, task)


def short_names(paths: list) -> list[str]:
    """Names for table headers and legends: each path's file stem, with parent folders added until unique."""
    depth = 1
    while True:
        names = ["/".join(Path(str(path).removesuffix(".parquet")).parts[-depth:]) for path in paths]
        if len(set(names)) == len(names) or depth > 6:
            return names
        depth += 1


def fail(message: str) -> None:
    _line("error:", "red", message)
    sys.stderr.flush()
