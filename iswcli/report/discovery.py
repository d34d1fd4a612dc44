"""Discovery: which artifacts (by their `iswt.artifact` kind) and train runs (by `manifest.json`) the inputs hold; directories are walked for both."""

from __future__ import annotations

import glob as globlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from iswcli import artifacts, console
from iswcli.errors import IswtError


@dataclass
class Source:
    """One artifact: a file, a directory of shards or a glob, as `artifacts.read_artifact` takes it."""

    path: str
    kind: str
    provenance: dict
    label: str = ""
    sha256: str | None = None  # set once the artifact has been read


@dataclass
class Run:
    """A train run directory: its log and its manifest (empty when the run never finished)."""

    path: Path
    manifest: dict
    label: str = ""
    sha256: str | None = None


@dataclass
class Found:
    sources: list[Source] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def of_kind(self, kind: str) -> list[Source]:
        return [s for s in self.sources if s.kind == kind]

    def first_visit(self, path) -> bool:
        key = os.path.realpath(path)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def discover(inputs, exclude=()) -> Found:
    """Find artifacts and runs in the inputs; anything else becomes a note.

    A path that does not exist is an error (most likely a typo); a file that
    is not an artifact is skipped with a note.
    """
    found = Found()
    excluded = {os.path.realpath(p) for p in exclude}
    for path in inputs:
        if globlib.has_magic(path) and not os.path.exists(path):
            _add_parquet_group(found, artifacts.resolve_files(path), group_path=path)
        elif os.path.isdir(path):
            _visit_dir(found, Path(path), excluded)
        elif os.path.isfile(path):
            _visit_file(found, Path(path), explicit=True)
        else:
            raise IswtError(f"{path}: no such file or directory")
    _label(found.sources)
    _label(found.runs)
    return found


def _visit_dir(found: Found, directory: Path, excluded: set[str]) -> None:
    if (directory / "manifest.json").is_file() or (directory / "train_log.parquet").is_file():
        _add_run(found, directory)
        return  # weights, tokenizer and checkpoints of a run are not artifacts
    entries = sorted(directory.iterdir())
    visible = [e for e in entries if not e.name.startswith(".") and os.path.realpath(e) not in excluded]
    shards = [str(e) for e in visible if e.is_file() and e.suffix == ".parquet"]
    _add_parquet_group(found, shards, group_path=str(directory))
    others = [e.name for e in visible if e.is_file() and e.suffix != ".parquet" and not _companion(e)]
    if others:
        shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
        found.notes.append(f"{directory}: {len(others)} file(s) that are not artifacts skipped ({shown})")
    for sub in visible:
        if sub.is_dir() and not sub.name.endswith(".partial"):  # .partial: a stage still running or killed
            _visit_dir(found, sub, excluded)


def _companion(path: Path) -> bool:
    """OUT.summary.json beside OUT.parquet (from `iswt evaluate`): read with its artifact, not on its own."""
    name = path.name
    return name.endswith(".summary.json") and path.with_name(name.removesuffix(".summary.json") + ".parquet").is_file()


def _visit_file(found: Found, path: Path, explicit: bool) -> None:
    if path.name == "manifest.json":
        _add_run(found, path.parent)
    elif path.suffix == ".parquet":
        _add_parquet_group(found, [str(path)], group_path=str(path))
    elif explicit:
        found.notes.append(f"{path}: not a Parquet artifact or a run manifest; skipped")


def _add_parquet_group(found: Found, files: list[str], group_path: str) -> None:
    """Files of one directory (or glob): one sharded artifact when they agree, else one artifact each."""
    metas = {}
    for file in files:
        try:
            _, kind, provenance = artifacts.read_metadata(file)
        except IswtError as exc:
            found.notes.append(f"{exc}; skipped")
            continue
        if kind == "target":  # OUT.target.parquet of `evaluate --target-beta`: read with its eval
            continue
        if kind not in artifacts.SPECS:
            found.notes.append(f"{file}: no iswt artifact kind in its metadata; skipped")
            continue
        metas[file] = (kind, provenance)
    if len(metas) > 1 and len(metas) == len(files) and _one_artifact(list(metas.values())):
        kind, provenance = next(iter(metas.values()))
        _add_source(found, group_path, kind, provenance)
        return
    for file, (kind, provenance) in metas.items():
        _add_source(found, file, kind, provenance)


def _one_artifact(metas: list[tuple[str, dict]]) -> bool:
    """Shards of one artifact share kind, stage and config (bar the keys shards may differ in)."""

    def identity(kind: str, provenance: dict):
        config = provenance.get("config") or {}
        shared = {k: v for k, v in config.items() if k not in artifacts.SHARD_LOCAL_KEYS}
        return kind, provenance.get("stage"), json.dumps(shared, sort_keys=True, default=str)

    return len({identity(kind, prov) for kind, prov in metas}) == 1


def _add_source(found: Found, path: str, kind: str, provenance: dict) -> None:
    if kind == "train_log":  # a run's log given on its own: report the run
        _add_run(found, Path(path).parent)
    elif found.first_visit(path):
        found.sources.append(Source(path, kind, provenance))


def _add_run(found: Found, directory: Path) -> None:
    if not found.first_visit(directory):
        return
    manifest_file = directory / "manifest.json"
    manifest = {}
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text())
        except (OSError, ValueError) as exc:
            found.notes.append(f"{manifest_file}: not readable JSON ({exc}); its run is shown without provenance")
    found.runs.append(Run(directory, manifest))


def _label(items) -> None:
    """Short names for legends and tables: the file stem, with parent folders added until unique."""
    for item, name in zip(items, console.short_names([item.path for item in items])):
        item.label = name
