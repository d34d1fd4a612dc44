"""Content hashes of files, computed once per file version and in the background.

Every artifact a stage reads is hashed (provenance records the hashes of its
inputs); hashing runs on a daemon thread while the stage reads and computes.
A hash is kept per file version (path, size, inode, mtime and ctime in ns):
in this process, and on disk under ISWT_CACHE/sha256 (default
~/.cache/iswt), where the writer of an artifact leaves the hash it computed
anyway. So a 25 GB samples file is read once to hash it, when it is
written, not by every stage that reads it; any change to the file makes a
new version. The ctime is what makes that hold: a file rewritten in place
with its size kept and its mtime set back (`touch -d`, `cp -p`, rsync)
looks unchanged by the rest, but every write or utime moves the ctime to
now, and no user can set it back.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future
from pathlib import Path


def cache_root() -> Path:
    """ISWT_CACHE, or ~/.cache/iswt: the embedded model's files (iswcli.models) and the hash cache (below)."""
    return Path(os.environ.get("ISWT_CACHE") or "~/.cache/iswt").expanduser()


def in_background(function, *args) -> Future:
    """Run ``function(*args)`` on a daemon thread (killed at exit, so an error never waits on it)."""
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to whoever waits on the result
            future.set_exception(exc)

    threading.Thread(target=work, daemon=True).start()
    return future


def hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)  # releases the GIL: hashing overlaps the Parquet reads
    return digest.hexdigest()


# One hash per file version in this process, keyed by what changes when the file does.
_HASHES: dict[tuple, Future] = {}
_HASHES_LOCK = threading.Lock()


def _version(path: str) -> tuple:
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def start_hashing(files: list[str]) -> None:
    """Begin hashing ``files`` on one background thread; `file_sha256` picks the results up."""
    todo = []
    with _HASHES_LOCK:
        for file in files:
            version = _version(file)
            if version not in _HASHES:
                _HASHES[version] = Future()
                todo.append((file, version, _HASHES[version]))
    if todo:
        in_background(_fill_hashes, todo)


def _fill_hashes(todo: list[tuple[str, tuple, Future]]) -> None:
    for file, version, future in todo:
        try:
            sha = _recorded(version)
            if sha is None:
                sha = hash_file(file)
                _record(version, sha)
            future.set_result(sha)
        except BaseException as exc:  # raised again in whoever waits for this hash
            future.set_exception(exc)


def remember(path: str, sha: str) -> None:
    """Record the hash of a file just written (by whoever computed it while writing)."""
    version = _version(path)
    with _HASHES_LOCK:
        _HASHES[version] = Future()
        _HASHES[version].set_result(sha)
    _record(version, sha)


def _record_path(version: tuple) -> Path:
    key = hashlib.sha256(repr(version).encode()).hexdigest()
    return cache_root() / "sha256" / key[:2] / key


def _recorded(version: tuple) -> str | None:
    try:
        return _record_path(version).read_text().strip() or None
    except OSError:
        return None


def _record(version: tuple, sha: str) -> None:
    """Keep the hash on disk; a cache that cannot be written only costs a re-hash later."""
    target = _record_path(version)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(sha)
        os.replace(tmp, target)
    except OSError:
        pass


def file_sha256(path: str) -> str:
    start_hashing([path])
    with _HASHES_LOCK:
        future = _HASHES[_version(path)]
    return future.result()


def combined_sha256(files: list[str]) -> str:
    """One hash for a set of shards; a single file keeps its own hash."""
    start_hashing(files)
    hashes = [file_sha256(f) for f in files]
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()
