"""A train run's directory: whether to start or resume, and its checkpoints.

`checkpoints/run.json` records what makes the run this run (its config and
its inputs' hashes). The same command on an unfinished run resumes it; other
flags or inputs on that directory are refused, naming the keys that differ;
`--force` starts over. A checkpoint holds the trainable parameters, the
optimizer, scheduler, RNG states and the log so far, written atomically.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iswcli import artifacts, console
from iswcli.errors import IswtError

# What a run leaves in its directory before its first checkpoint (the reference log-probs, an empty checkpoints/).
LEFTOVERS = ("checkpoints", "ref_logprobs.npy", ".ref_logprobs.tmp.npy")
# Flags that change how a run goes, not what it computes: resuming with other values continues the same run.
RUN_LOCAL_KEYS = frozenset({"resume", "force", "device", "save_every", "report_to"})


def fingerprint(config: dict[str, Any], inputs: dict[str, artifacts.Artifact]) -> dict:
    """What makes a run this run: its config (run-local flags aside) and its inputs' content hashes."""
    kept = {k: v for k, v in artifacts.jsonable(config).items() if k not in RUN_LOCAL_KEYS}
    return {"config": kept, "inputs": {role: art.sha256 for role, art in inputs.items()}}


def _differences(recorded: dict, wanted: dict) -> list[str]:
    keys = []
    for part in ("config", "inputs"):
        old, new = recorded.get(part) or {}, wanted[part]
        keys += [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    return keys


def resume_or_start(out_dir: str, wanted: dict, *, resume: bool, force: bool) -> bool:
    """Whether to resume the run in --out (True) or start one (False); refuse to mix two runs' configs.

    An unfinished run with the identical config and inputs is resumed by the
    same command (so an interrupted Makefile continues); one with another
    config is refused, naming the keys that differ; --force starts over.
    """
    out = Path(out_dir)
    if not out.is_dir() or not any(out.iterdir()):
        if resume:
            raise IswtError(f"--resume: {out_dir} holds no checkpoints to resume from")
        return False
    record = out / "checkpoints" / "run.json"
    is_run = record.exists() or (out / "manifest.json").exists() or all(p.name in LEFTOVERS for p in out.iterdir())
    if not is_run:
        raise IswtError(f"--out {out_dir}: directory holds files that are not an iswt run; choose a new run directory")
    if force and not resume:
        return False
    if (out / "manifest.json").exists():
        raise IswtError(
            f"--out {out_dir}: holds a finished run with another config or other inputs; "
            "choose a new run directory, or --force to retrain in it"
        )
    checkpointed = any((p / "state.pt").exists() for p in (out / "checkpoints").glob("step-*"))
    if not checkpointed:
        if resume:
            raise IswtError(f"--resume: {out_dir} holds no checkpoints to resume from")
        return False  # cut off before its first checkpoint: nothing worth keeping
    if not record.exists():
        raise IswtError(
            f"--out {out_dir}: holds checkpoints of a run whose config is not recorded (no checkpoints/run.json); "
            "choose a new run directory, or --force to start over"
        )
    differ = _differences(json.loads(record.read_text()), wanted)
    if differ:
        raise IswtError(
            f"--out {out_dir}: holds an unfinished run with a different {', '.join(differ)}; re-run that run's "
            "own command to resume it, choose a new run directory, or --force to start over"
        )
    return True


def start_over(out: Path) -> None:
    """Remove an earlier run's files, so that nothing of it (reference log-probs above all) is taken for this run's."""
    for path in out.iterdir() if out.is_dir() else []:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            raise IswtError(f"--out {out}: cannot remove the earlier run's {path} ({exc.strerror or exc})") from None


def save_checkpoint(out: Path, step, accelerator, module, optimizer, scheduler, log_rows) -> None:
    """Trainable parameters, optimizer, scheduler, RNG and the log so far; written atomically."""
    final = out / "checkpoints" / f"step-{step:07d}"
    tmp = out / "checkpoints" / f".step-{step:07d}.tmp"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        unwrapped = accelerator.unwrap_model(module)
        trainable = {n: p.detach().cpu() for n, p in unwrapped.named_parameters() if p.requires_grad}
        torch.save(
            {
                "step": step,
                "trainable": trainable,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "log": log_rows,
            },
            tmp / "state.pt",
        )
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), (tmp if tmp.exists() else final) / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


def load_checkpoint(out: Path, accelerator, module, optimizer, scheduler, log_rows) -> int:
    done = sorted(p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").exists())
    if not done:
        raise IswtError(f"--resume: {out}/checkpoints holds no complete checkpoint")
    latest = done[-1]
    state = torch.load(latest / "state.pt", weights_only=False)
    unwrapped = accelerator.unwrap_model(module)
    params = dict(unwrapped.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = latest / f"rng-{accelerator.process_index}.pt"
    if rng_file.exists():
        _set_rng_state(torch.load(rng_file, weights_only=False))
    log_rows.extend(state["log"])
    console.warn(f"resuming {out} from {latest.name}")
    return int(state["step"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
