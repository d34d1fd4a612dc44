"""Run untrusted Python (generated code) in a sandboxed subprocess, one program at a time.

:func:`run_python` runs one program and classifies how it ended; the
candidate side of a split run (:mod:`iswcli.sandbox.split`) runs under the
same sandbox.

Every run gets:

- a fresh temporary directory as its working directory, removed afterwards;
- resource limits set inside the child before the program starts (CPU
  seconds, address space, file size, no core dumps, process count);
- a wall-clock timeout that kills the child's whole process group;
- a scrubbed environment (a minimal PATH/LANG/HOME, nothing inherited, so no
  tokens or keys), stdin closed, and Python in isolated mode (``-I``).

Where bubblewrap (``bwrap``, Debian package ``bubblewrap``) works, the child
also runs in its own mount, PID, network, IPC and UTS namespaces: it sees only
the system and interpreter directories, read-only, plus its temporary
directory, the one writable place; it has no network, cannot see or signal
other processes, and dies with its parent. When run as root, bwrap gets
``--cap-drop ALL`` so the child cannot undo its mounts.

Where bwrap is missing or fails its self-check, runs fall back to the limits
alone, and :func:`sandbox_isolation` says so in a warning that callers print
and record in provenance. Limits of the design, stated plainly:

- Without bwrap the child can read and write whatever the user can, and use
  the network; a child that calls ``setsid()`` escapes the process-group kill.
- The kernel does not enforce RLIMIT_NPROC for root (uid 0). As root, a fork
  bomb is bounded only by the PID namespace (bwrap) and the wall-clock timeout,
  so run the code reward as an unprivileged user where that matters.
- Disk writes are bounded per file (RLIMIT_FSIZE), not in total.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from iswcli.errors import IswtError

BWRAP_PACKAGE = "bubblewrap"
STATUSES = ("passed", "failed", "timeout", "error")
TAIL_CHARS = 2000

# Exception types that mean the program could not even be set up (bad code),
# as opposed to a test that ran and failed.
SETUP_ERRORS = {
    "SyntaxError",
    "IndentationError",
    "TabError",
    "NameError",
    "ImportError",
    "ModuleNotFoundError",
}

# Runs first inside the sandbox: lowers the resource limits, then replaces
# itself with the real interpreter, so the limits hold for the whole program
# and no Python code runs between fork and exec in the parent (preexec_fn is
# unsafe with threads). argv: cpu_s mem_bytes fsize_bytes nproc program.py
_BOOTSTRAP = """\
import os, resource, sys
cpu, mem, fsize, nproc = (int(v) for v in sys.argv[1:5])
def cap(kind, soft, hard):
    old = resource.getrlimit(kind)[1]
    if old != resource.RLIM_INFINITY:
        soft, hard = min(soft, old), min(hard, old)
    resource.setrlimit(kind, (soft, hard))
cap(resource.RLIMIT_CPU, cpu, cpu + 1)
cap(resource.RLIMIT_AS, mem, mem)
cap(resource.RLIMIT_FSIZE, fsize, fsize)
cap(resource.RLIMIT_CORE, 0, 0)
cap(resource.RLIMIT_NPROC, nproc, nproc)
os.execv(sys.executable, [sys.executable, "-I", *sys.argv[5:]])
"""

# The bwrap self-check program: must run, import a few extension modules and
# write only into its working directory.
_PROBE = """\
import decimal, hashlib, json, math, os
open("probe.txt", "w").write("ok")
try:
    open("/probe-outside.txt", "w")
except OSError:
    pass
else:
    raise SystemExit("the root file system is writable")
"""

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
)


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed run.

    status: 'passed' | 'failed' | 'timeout' | 'error'; detail: a short
    human-readable reason ('AssertionError at line 12: assert f(1) == 2',
    'timeout after 10.0s', 'killed by SIGSEGV').
    """

    status: str
    returncode: int | None
    stderr_tail: str
    isolation: str
    detail: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class Isolation:
    """What protects sandboxed runs on this machine.

    kind: 'bubblewrap' or 'rlimits'; warning: '' when bubblewrap works, else
    the text to print and record in provenance; detail: what was found.
    """

    kind: str
    warning: str
    detail: str


@functools.cache
def sandbox_isolation() -> Isolation:
    """Probe bubblewrap once (cached) and say which isolation runs will get."""
    bwrap = _bwrap_path()
    if bwrap is None:
        return _fallback(f"bubblewrap (bwrap) is not installed; install the Debian package '{BWRAP_PACKAGE}'")
    problem = _bwrap_self_check()
    if problem:
        return _fallback(f"bubblewrap self-check failed ({problem})")
    detail = f"{_bwrap_version(bwrap)} at {bwrap}"
    if os.geteuid() == 0:
        detail += (
            "; running as root: capabilities dropped, RLIMIT_NPROC not "
            "enforced by the kernel (PID namespace + timeout bound forks)"
        )
    return Isolation("bubblewrap", "", detail)


@functools.cache
def _bwrap_path() -> str | None:
    """Where bwrap is installed (looked up on the parent's PATH), if anywhere."""
    return shutil.which("bwrap")


def _fallback(reason: str) -> Isolation:
    """The rlimits-only isolation, with a warning that says what is lost."""
    warning = (
        f"sandbox: {reason}; generated code runs with resource limits only: no file-system, network or PID isolation"
    )
    if os.geteuid() == 0:
        warning += ", and as root it can read and write anything root can"
    return Isolation("rlimits", warning, reason)


def _bwrap_version(bwrap: str) -> str:
    """`bwrap --version`'s answer, e.g. 'bubblewrap 0.8.0'."""
    done = subprocess.run([bwrap, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
    return done.stdout.strip() or "bubblewrap (unknown version)"


def _bwrap_self_check() -> str:
    """Run a probe program under bwrap; '' if it works, else why not."""
    result = _run(
        _PROBE, "bubblewrap", timeout_s=30.0, memory_mb=1024, max_processes=64, max_file_mb=1, success_marker=None
    )
    if result.status == "passed":
        return ""
    tail = result.stderr_tail.strip().splitlines()
    return tail[-1] if tail else f"exit status {result.returncode}"


def run_python(
    source: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 64,
    success_marker: str | None = None,
    isolation: str | None = None,
) -> SandboxResult:
    """Run `source` as a Python program in the sandbox and classify the outcome.

    Exit 0 is 'passed' (with `success_marker`, only if stdout ends with that
    marker, so a program that exits before its last line does not pass);
    a test failure or other exception is 'failed'; code that cannot be set up
    (SyntaxError, NameError, ImportError) or a death by signal is 'error';
    the wall-clock or CPU limit is 'timeout'. `isolation` forces 'rlimits'
    (or demands 'bubblewrap'); by default the probed best is used.
    """
    kind = choose_isolation(isolation)
    return _run(
        source,
        kind,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        max_processes=max_processes,
        max_file_mb=max_file_mb,
        success_marker=success_marker,
    )


def run_many(sources: list[str], *, workers: int = 4, **options) -> list[SandboxResult]:
    """Run several programs, `workers` at a time; results keep input order."""
    if workers < 1:
        raise IswtError(f"--workers {workers}: must be at least 1")
    if options.get("isolation") is None:
        sandbox_isolation()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_python(s, **options), sources))


def choose_isolation(requested: str | None) -> str:
    """Resolve the requested isolation against what this machine offers."""
    if requested is None:
        return sandbox_isolation().kind
    if requested == "rlimits":
        return requested
    if requested == "bubblewrap":
        probe = sandbox_isolation()
        if probe.kind != "bubblewrap":
            raise IswtError(f"sandbox: bubblewrap was required but is not usable: {probe.detail}")
        return requested
    raise IswtError(f"sandbox isolation {requested!r}: must be 'bubblewrap' or 'rlimits'")


def _run(
    source: str,
    kind: str,
    *,
    timeout_s: float,
    memory_mb: int,
    max_processes: int,
    max_file_mb: int,
    success_marker: str | None,
) -> SandboxResult:
    """Write the program into a fresh directory, run it there, clean up."""
    workdir = tempfile.mkdtemp(prefix="iswt-sandbox-")
    try:
        program = os.path.join(workdir, "main.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(source)
        limits = [
            str(max(1, int(timeout_s + 1.999))),
            str(int(memory_mb * 2**20)),
            str(int(max_file_mb * 2**20)),
            str(max_processes),
        ]
        argv = [sys.executable, "-I", "-c", _BOOTSTRAP, *limits, program]
        if kind == "bubblewrap":
            argv = bwrap_argv(workdir) + argv
        return _execute(argv, workdir, kind, timeout_s, success_marker)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bwrap_argv(workdir: str, candidate: bool = False) -> list[str]:
    """The bwrap prefix: read-only system and interpreter, writable workdir.

    For a split run's candidate, the base interpreter instead of the running
    one's environment, with every site-packages directory masked by an empty
    read-only tmpfs.
    """
    argv = [_bwrap_path() or "bwrap"]
    for path in SYSTEM_DIRS + _SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    mounts, masks = candidate_dirs() if candidate else (_interpreter_dirs(), ())
    for path in mounts:
        argv += ["--ro-bind", path, path]
    for path in masks:
        argv += ["--tmpfs", path, "--remount-ro", path]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--bind",
        workdir,
        workdir,
        "--chdir",
        workdir,
        "--remount-ro",
        "/",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
    ]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    return argv + ["--"]


@functools.cache
def _interpreter_dirs() -> tuple[str, ...]:
    """Directories the interpreter needs that the system dirs do not cover."""
    real_home = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    found = set()
    for path in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, real_home):
        for p in (path, os.path.realpath(path)):
            covered = any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS)
            if os.path.isdir(p) and p != "/" and not covered:
                found.add(p)
    return tuple(sorted(found))


def _execute(argv: list[str], workdir: str, kind: str, timeout_s: float, success_marker: str | None) -> SandboxResult:
    """Start the child, enforce the wall clock, collect and classify."""
    env = scrubbed_env(workdir)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        finished = wait_unreaped(proc.pid, start + timeout_s)
        kill_group(proc.pid)  # the leader is not reaped yet: no PID reuse race
        returncode = proc.wait()
        duration = time.monotonic() - start
        stdout_tail, stderr_tail = tail(out), tail(err)
    if not finished:
        return SandboxResult("timeout", returncode, stderr_tail, kind, f"timeout after {timeout_s:.1f}s", duration)
    status, detail = _classify(returncode, kind, stdout_tail, stderr_tail, success_marker)
    return SandboxResult(status, returncode, stderr_tail, kind, detail, duration)


def scrubbed_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing inherited from the parent."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait until the child exits (without reaping it) or the deadline passes."""
    delay = 0.0005
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        delay = min(delay * 2, remaining, 0.02)
        time.sleep(delay)


def kill_group(pgid: int) -> None:
    """SIGKILL the child's process group, leftovers included."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tail(stream) -> str:
    """The last TAIL_CHARS characters written to a captured stream."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - 4 * TAIL_CHARS))
    return stream.read().decode("utf-8", errors="replace")[-TAIL_CHARS:]


def _classify(
    returncode: int, kind: str, stdout_tail: str, stderr_tail: str, success_marker: str | None
) -> tuple[str, str]:
    """Map an exit status and stderr to (status, short detail)."""
    if kind == "bubblewrap" and stderr_tail.startswith("bwrap:") and returncode:
        return "error", "sandbox failure: " + stderr_tail.splitlines()[0][:160]
    sig = death_signal(returncode, kind)
    if sig is not None:
        if sig == signal.SIGXCPU:
            return "timeout", "CPU time limit exceeded"
        return "error", f"killed by {signal_name(sig)}"
    if returncode == 0:
        if success_marker is None or stdout_tail.rstrip().endswith(success_marker):
            return "passed", "passed"
        return "failed", "exited with status 0 before the tests finished"
    name, summary = exception_summary(stderr_tail)
    if name is None:
        return "failed", f"exit status {returncode}"
    return ("error" if name in SETUP_ERRORS else "failed"), summary


def signal_name(sig: int) -> str:
    """'SIGSEGV' for 11; 'signal 34' for numbers without a name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def death_signal(returncode: int, kind: str) -> int | None:
    """The signal that killed the program, if any (bwrap reports 128 + n)."""
    if returncode < 0:
        return -returncode
    if kind == "bubblewrap" and 128 < returncode < 128 + signal.NSIG:
        return returncode - 128
    return None


def exception_summary(stderr: str) -> tuple[str | None, str]:
    """(exception name, 'Name: message at line N: source') from a traceback."""
    lines = stderr.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        head = line.split(":", 1)[0]
        if (
            line
            and not line[0].isspace()
            and head.replace(".", "").isidentifier()
            and any(l.lstrip().startswith('File "') for l in lines[:i])
        ):
            where = _failing_line(lines[:i])
            text = line if len(line) <= 120 else line[:117] + "..."
            return head.rsplit(".", 1)[-1], text + (f" at {where}" if where else "")
    return None, ""


def _failing_line(lines: list[str]) -> str:
    """'line N: source' for the innermost traceback entry in the program."""
    for i in range(len(lines) - 1, -1, -1):
        entry = lines[i].strip()
        if entry.startswith('File "') and "main.py" in entry and ", line " in entry:
            number = entry.split(", line ", 1)[1].split(",", 1)[0]
            source = lines[i + 1].strip() if i + 1 < len(lines) else ""
            source = source if len(source) <= 80 else source[:77] + "..."
            return f"line {number}: {source}" if source else f"line {number}"
    return ""


def base_python() -> str:
    """The interpreter itself, not a virtual environment's link to it: the
    candidate's view holds the standard library, not the environment."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base if os.path.isfile(base) else sys.executable)


@functools.cache
def candidate_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(directories to mount, site-packages directories to mask) for a
    candidate: the base interpreter's prefix, without third-party packages
    (where a dataset with its tests and solutions may be installed)."""
    real = base_python()
    home = os.path.dirname(os.path.dirname(real))
    mounts = set()
    for p in (sys.base_prefix, sys.base_exec_prefix, home):
        for q in (p, os.path.realpath(p)):
            covered = any(q == d or q.startswith(d + "/") for d in SYSTEM_DIRS)
            if os.path.isdir(q) and q != "/" and not covered:
                mounts.add(q)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    masks = set()
    candidates = [
        sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})[k]
        for k in ("purelib", "platlib")
    ]
    candidates += list(getattr(site, "getsitepackages", list)())  # a venv under /usr, say
    candidates += [
        site.getusersitepackages(),
        "/usr/lib/python3/dist-packages",
        f"/usr/local/lib/{ver}/dist-packages",
        f"/usr/local/lib/{ver}/site-packages",
        f"/usr/lib/{ver}/site-packages",
        f"/usr/lib/{ver}/dist-packages",
    ]
    visible = tuple(mounts) + SYSTEM_DIRS
    for path in candidates:
        real_path = os.path.realpath(path)
        if os.path.isdir(real_path) and any(real_path == d or real_path.startswith(d + "/") for d in visible):
            masks.add(real_path)
    return tuple(sorted(mounts)), tuple(sorted(masks))
