"""One guard for every stage's output: never one of its inputs, one run at a time, no stale temp files.

A stage validates its flags, then claims its output for the rest of the run:

    with outputs.claim(config.out, {"--samples": config.samples}):
        ...

The claim refuses an output that is (or resolves to) one of the inputs, or
that would become a shard of an input directory; takes an exclusive lock
beside the output, so a second run on the same output is told that another
run holds it instead of racing it; and removes the temp files an earlier,
killed run left (with the lock held, every temp file of this output is
stale). The lock file is removed when the claim ends. `write_atomically` is
the one way a stage writes a small file (JSON, HTML, PNG).
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iswcli import artifacts
from iswcli.errors import IswtError


def check_not_input(out: str, inputs: dict[str, str | None], flag: str = "--out") -> None:
    """Refuse an output that is an input file, a symlink to one, or lands inside an input directory."""
    target = os.path.realpath(out)
    for input_flag, path in inputs.items():
        if path is None or not (os.path.exists(path) or glob.has_magic(path)):
            continue  # a missing input is the stage's own error to report
        inside = Path(target).parent == Path(os.path.realpath(path))
        if os.path.isdir(path) and inside and target.endswith(".parquet"):
            raise IswtError(f"{flag} {out}: lies inside {input_flag} {path}, so it would be read as one of its shards")
        files = [path, *artifacts.resolve_files(path)] if not os.path.isdir(path) else [path]
        if any(os.path.realpath(f) == target for f in files):
            raise IswtError(f"{flag} {out}: is the input {input_flag} {path}; a stage never writes over its own input")


def lock_path(out: str) -> Path:
    target = Path(out)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def claim(out: str, inputs: dict[str, str | None], flag: str = "--out") -> Iterator[None]:
    """Hold ``out`` for this run: checked against the inputs, locked, cleared of stale temp files."""
    check_not_input(out, inputs, flag)
    target = Path(out)
    created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _lock(lock_path(out), out, flag)
    except BaseException:
        _remove_empty(created)
        raise
    finished = False
    try:
        remove_stale_temps(out)
        yield
        finished = True
    finally:
        lock_path(out).unlink(missing_ok=True)  # before the unlock, so a run waiting on it re-checks
        os.close(fd)
        if not finished:
            _remove_empty(created)


def _lock(path: Path, out: str, flag: str) -> int:
    """An exclusive lock on ``path``, which must still be the file we locked (not one unlinked meanwhile)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IswtError(
                f"{flag} {out}: another iswt run is writing it now (it holds {path}); "
                f"wait for that run to finish, or choose another {flag}"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_temps(out: str) -> None:
    """The temp files a killed run of this output left: `.NAME.tmp-PID` beside it, `.*.tmp` in its partial or run dir."""
    target = Path(out)
    stale = list(target.parent.glob(f".{glob.escape(target.name)}.tmp*"))
    for directory in (target.with_name(target.name + ".partial"), target, target / "checkpoints"):
        if directory.is_dir():
            stale.extend(directory.glob(".*.tmp*"))
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def write_atomically(path: str | Path, data: bytes | str) -> None:
    """Temp file beside ``path``, fsync, rename: a crash leaves the old file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_empty(directories: list[Path]) -> None:
    """Remove the directories a failed claim created, deepest first, when still empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return
