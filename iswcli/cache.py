"""Stage caching: skip a stage whose output already records the same config and inputs.

An output is fresh when its provenance names the same stage, the same
resolved config (flags that do not change the result aside) and the same
content hash for every input, model weights included. `--force` re-runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iswcli import artifacts
from iswcli.errors import IswtError
from iswcli.results import StageResult

# Flags that change how a stage runs, not what it writes.
IGNORED = frozenset({"force", "workers", "resume", "device", "quiet", "report_to"})


def existing_provenance(out: str) -> dict[str, Any] | None:
    """The provenance of an artifact file, or of a run directory's manifest."""
    path = Path(out)
    try:
        if path.is_dir():
            manifest = path / "manifest.json"
            return json.loads(manifest.read_text()) if manifest.exists() else None
        if path.is_file():
            return artifacts.read_metadata(str(path))[2] or None
    except (OSError, ValueError, IswtError):
        return None
    return None


def is_fresh(out: str, stage: str, config: dict, inputs: dict[str, Any], model: dict | None = None) -> bool:
    """True when `out` was made by `stage` from this config, these inputs and this model."""
    prov = existing_provenance(out)
    if not prov or prov.get("stage") != stage:
        return False
    if _relevant(prov.get("config", {})) != _relevant(artifacts.jsonable(config)):
        return False
    recorded = prov.get("inputs", {})
    for role, ref in inputs.items():
        if _fingerprint(recorded.get(role)) != _fingerprint(ref):
            return False
    if model is not None and _model_hashes(prov.get("model")) != _model_hashes(model):
        return False
    return True


def _relevant(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in IGNORED}


def _fingerprint(ref: Any) -> Any:
    """An input's identity: its content hash when it has one, else its whole description."""
    if isinstance(ref, (artifacts.Artifact, InputRef)):
        return ref.sha256
    if isinstance(ref, dict):
        return ref.get("sha256") or artifacts.jsonable(ref)
    return ref


def _model_hashes(model: dict | None) -> tuple:
    model = model or {}
    adapter = model.get("adapter") or {}
    return model.get("weights_sha256"), adapter.get("weights_sha256")


@dataclass(frozen=True)
class InputRef:
    """An input file set whose content hash is computed in the background and awaited only when compared."""

    files: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return artifacts.combined_sha256(list(self.files))


def input_ref(path: str) -> InputRef:
    """An input for the freshness check: a missing path fails now, hashing starts now.

    The hash is only awaited when an existing output has to be compared with
    it; otherwise the stage's own read picks the same hash up later.
    """
    files = artifacts.resolve_files(path)
    artifacts.start_hashing(files)
    return InputRef(tuple(files))


def up_to_date(
    out: str,
    stage: str,
    config: dict,
    inputs: dict[str, Any],
    model: dict | None = None,
    *,
    result: type[StageResult],
) -> StageResult | None:
    """The stage's `result` type marked reused, to return instead of re-running; None when the stage must run."""
    if config.get("force") or not is_fresh(out, stage, config, inputs, model):
        return None
    from iswcli import console

    console.warn(f"{out} is up to date (same config, inputs and model); nothing to do, --force re-runs")
    return result(output=out, reused=True)
