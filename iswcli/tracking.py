"""`iswt train --report-to`: the per-step log rows mirrored to an experiment tracker (TRL's names).

`train_log.parquet` and the HTML report stay the source of truth; a tracker
gets the same rows, the run's name and its config, so a run shows up next to
runs from other tools. tensorboard writes event files into the run
directory; trackio writes its local database (TRACKIO_DIR, by default under
HF_HOME); wandb runs offline unless WANDB_MODE says otherwise. None of them
needs the network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from iswcli.errors import IswtError

TRACKERS = ("none", "tensorboard", "trackio", "wandb")
PROJECT = "iswt"
_PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}


def check(report_to: str) -> None:
    """The tracker is known and installed; fail before any work otherwise."""
    if report_to not in TRACKERS:
        raise IswtError(f"--report-to {report_to}: must be one of {', '.join(TRACKERS)}")
    package = _PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise IswtError(f"--report-to {report_to}: the '{package}' package is not installed (pip install {package})")
    if report_to == "trackio":  # trackio only warns when it cannot write, and the rows are lost
        from iswcli.artifacts import check_parent_writable

        check_parent_writable(str(trackio_dir()), "--report-to trackio: TRACKIO_DIR", directory=True)


def trackio_dir() -> Path:
    """Where trackio keeps its database (its own rule, without importing it): TRACKIO_DIR, else HF_HOME/trackio."""
    if os.environ.get("TRACKIO_DIR"):
        return Path(os.environ["TRACKIO_DIR"])
    from huggingface_hub.constants import HF_HOME

    return Path(HF_HOME) / "trackio"


def _resuming(run_dir: Path) -> bool:
    """Whether train resumes this run (a checkpoint is there), rather than starting it (anew, with --force)."""
    return any((run_dir / "checkpoints").glob("step-*/state.pt"))


class Tracker:
    """One run in the chosen tracker: open, a row per optimizer step, close."""

    def __init__(self, report_to: str, run_dir: Path, config: dict[str, Any]):
        self.kind = report_to
        self.name = run_dir.name
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            self._writer.add_text("config", f"```\n{json.dumps(config, indent=2, default=str)}\n```")
        elif report_to == "trackio":
            import trackio

            with contextlib.redirect_stdout(sys.stderr):  # its banner must not mix with --json output
                # a run started over must not continue the finished one's steps: trackio drops steps it has
                resume = "allow" if _resuming(run_dir) else "never"
                trackio.init(project=PROJECT, name=self.name, config=config, resume=resume, embed=False)
        elif report_to == "wandb":
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            self._run = wandb.init(project=PROJECT, name=self.name, config=config, dir=str(run_dir))

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        values = {k: float(v) for k, v in row.items() if k != "step" and _is_number(v)}
        if self.kind == "tensorboard":
            for key, value in values.items():
                self._writer.add_scalar(f"train/{key}", value, step)
        elif self.kind == "trackio":
            import trackio

            trackio.log(values, step=step)
        elif self.kind == "wandb":
            self._run.log(values, step=step)

    def close(self) -> None:
        if self.kind == "tensorboard":
            self._writer.close()
        elif self.kind == "trackio":
            import trackio

            with contextlib.redirect_stdout(sys.stderr):
                trackio.finish()
        elif self.kind == "wandb":
            self._run.finish()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
