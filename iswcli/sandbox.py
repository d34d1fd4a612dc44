"""Run untrusted Python (generated code) in a sandboxed subprocess.

:func:`run_python` runs one program and classifies how it ended.
:func:`run_split` runs a test against untrusted code without letting that
code decide the verdict: the test in a harness process, the candidate in the
sandbox, plain data between them (see the section "split runs" below).

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
import json
import os
import shutil
import signal
import site
import socket
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
    "SyntaxError", "IndentationError", "TabError",
    "NameError", "ImportError", "ModuleNotFoundError",
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

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
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
        return _fallback(f"bubblewrap (bwrap) is not installed; install the "
                         f"Debian package '{BWRAP_PACKAGE}'")
    problem = _bwrap_self_check()
    if problem:
        return _fallback(f"bubblewrap self-check failed ({problem})")
    detail = f"{_bwrap_version(bwrap)} at {bwrap}"
    if os.geteuid() == 0:
        detail += ("; running as root: capabilities dropped, RLIMIT_NPROC not "
                   "enforced by the kernel (PID namespace + timeout bound forks)")
    return Isolation("bubblewrap", "", detail)


@functools.cache
def _bwrap_path() -> str | None:
    """Where bwrap is installed (looked up on the parent's PATH), if anywhere."""
    return shutil.which("bwrap")


def _fallback(reason: str) -> Isolation:
    """The rlimits-only isolation, with a warning that says what is lost."""
    warning = (f"sandbox: {reason}; generated code runs with resource limits "
               "only: no file-system, network or PID isolation")
    if os.geteuid() == 0:
        warning += ", and as root it can read and write anything root can"
    return Isolation("rlimits", warning, reason)


def _bwrap_version(bwrap: str) -> str:
    """`bwrap --version`'s answer, e.g. 'bubblewrap 0.8.0'."""
    done = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=10)
    return done.stdout.strip() or "bubblewrap (unknown version)"


def _bwrap_self_check() -> str:
    """Run a probe program under bwrap; '' if it works, else why not."""
    result = _run(_PROBE, "bubblewrap", timeout_s=30.0, memory_mb=1024,
                  max_processes=64, max_file_mb=1, success_marker=None)
    if result.status == "passed":
        return ""
    tail = result.stderr_tail.strip().splitlines()
    return tail[-1] if tail else f"exit status {result.returncode}"


def run_python(source: str, *, timeout_s: float = 10.0, memory_mb: int = 1024,
               max_processes: int = 64, max_file_mb: int = 64,
               success_marker: str | None = None,
               isolation: str | None = None) -> SandboxResult:
    """Run `source` as a Python program in the sandbox and classify the outcome.

    Exit 0 is 'passed' (with `success_marker`, only if stdout ends with that
    marker, so a program that exits before its last line does not pass);
    a test failure or other exception is 'failed'; code that cannot be set up
    (SyntaxError, NameError, ImportError) or a death by signal is 'error';
    the wall-clock or CPU limit is 'timeout'. `isolation` forces 'rlimits'
    (or demands 'bubblewrap'); by default the probed best is used.
    """
    kind = _choose_isolation(isolation)
    return _run(source, kind, timeout_s=timeout_s, memory_mb=memory_mb,
                max_processes=max_processes, max_file_mb=max_file_mb,
                success_marker=success_marker)


def run_many(sources: list[str], *, workers: int = 4,
             **options) -> list[SandboxResult]:
    """Run several programs, `workers` at a time; results keep input order."""
    if workers < 1:
        raise IswtError(f"--workers {workers}: must be at least 1")
    if options.get("isolation") is None:
        sandbox_isolation()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_python(s, **options), sources))


def _choose_isolation(requested: str | None) -> str:
    """Resolve the requested isolation against what this machine offers."""
    if requested is None:
        return sandbox_isolation().kind
    if requested == "rlimits":
        return requested
    if requested == "bubblewrap":
        probe = sandbox_isolation()
        if probe.kind != "bubblewrap":
            raise IswtError(f"sandbox: bubblewrap was required but is not "
                            f"usable: {probe.detail}")
        return requested
    raise IswtError(f"sandbox isolation {requested!r}: must be 'bubblewrap' "
                    "or 'rlimits'")


def _run(source: str, kind: str, *, timeout_s: float, memory_mb: int,
         max_processes: int, max_file_mb: int,
         success_marker: str | None) -> SandboxResult:
    """Write the program into a fresh directory, run it there, clean up."""
    workdir = tempfile.mkdtemp(prefix="iswt-sandbox-")
    try:
        program = os.path.join(workdir, "main.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(source)
        limits = [str(max(1, int(timeout_s + 1.999))), str(int(memory_mb * 2**20)),
                  str(int(max_file_mb * 2**20)), str(max_processes)]
        argv = [sys.executable, "-I", "-c", _BOOTSTRAP, *limits, program]
        if kind == "bubblewrap":
            argv = _bwrap_argv(workdir) + argv
        return _execute(argv, workdir, kind, timeout_s, success_marker)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _bwrap_argv(workdir: str, candidate: bool = False) -> list[str]:
    """The bwrap prefix: read-only system and interpreter, writable workdir.

    For a split run's candidate, the base interpreter instead of the running
    one's environment, with every site-packages directory masked by an empty
    read-only tmpfs.
    """
    argv = [_bwrap_path() or "bwrap"]
    for path in _SYSTEM_DIRS + _SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    mounts, masks = _candidate_dirs() if candidate else (_interpreter_dirs(), ())
    for path in mounts:
        argv += ["--ro-bind", path, path]
    for path in masks:
        argv += ["--tmpfs", path, "--remount-ro", path]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--bind", workdir, workdir, "--chdir", workdir,
             "--remount-ro", "/",
             "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    return argv + ["--"]


@functools.cache
def _interpreter_dirs() -> tuple[str, ...]:
    """Directories the interpreter needs that the system dirs do not cover."""
    real_home = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    found = set()
    for path in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                 sys.base_exec_prefix, real_home):
        for p in (path, os.path.realpath(path)):
            covered = any(p == d or p.startswith(d + "/") for d in _SYSTEM_DIRS)
            if os.path.isdir(p) and p != "/" and not covered:
                found.add(p)
    return tuple(sorted(found))


def _execute(argv: list[str], workdir: str, kind: str, timeout_s: float,
             success_marker: str | None) -> SandboxResult:
    """Start the child, enforce the wall clock, collect and classify."""
    env = _scrubbed_env(workdir)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        finished = _wait_unreaped(proc.pid, start + timeout_s)
        _kill_group(proc.pid)  # the leader is not reaped yet: no PID reuse race
        returncode = proc.wait()
        duration = time.monotonic() - start
        stdout_tail, stderr_tail = _tail(out), _tail(err)
    if not finished:
        return SandboxResult("timeout", returncode, stderr_tail, kind,
                             f"timeout after {timeout_s:.1f}s", duration)
    status, detail = _classify(returncode, kind, stdout_tail, stderr_tail,
                               success_marker)
    return SandboxResult(status, returncode, stderr_tail, kind, detail, duration)


def _scrubbed_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing inherited from the parent."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": workdir, "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def _wait_unreaped(pid: int, deadline: float) -> bool:
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


def _kill_group(pgid: int) -> None:
    """SIGKILL the child's process group, leftovers included."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(stream) -> str:
    """The last TAIL_CHARS characters written to a captured stream."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - 4 * TAIL_CHARS))
    return stream.read().decode("utf-8", errors="replace")[-TAIL_CHARS:]


def _classify(returncode: int, kind: str, stdout_tail: str, stderr_tail: str,
              success_marker: str | None) -> tuple[str, str]:
    """Map an exit status and stderr to (status, short detail)."""
    if kind == "bubblewrap" and stderr_tail.startswith("bwrap:") and returncode:
        return "error", "sandbox failure: " + stderr_tail.splitlines()[0][:160]
    sig = _death_signal(returncode, kind)
    if sig is not None:
        if sig == signal.SIGXCPU:
            return "timeout", "CPU time limit exceeded"
        return "error", f"killed by {_signal_name(sig)}"
    if returncode == 0:
        if success_marker is None or stdout_tail.rstrip().endswith(success_marker):
            return "passed", "passed"
        return "failed", "exited with status 0 before the tests finished"
    name, summary = _exception_summary(stderr_tail)
    if name is None:
        return "failed", f"exit status {returncode}"
    return ("error" if name in SETUP_ERRORS else "failed"), summary


def _signal_name(sig: int) -> str:
    """'SIGSEGV' for 11; 'signal 34' for numbers without a name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _death_signal(returncode: int, kind: str) -> int | None:
    """The signal that killed the program, if any (bwrap reports 128 + n)."""
    if returncode < 0:
        return -returncode
    if kind == "bubblewrap" and 128 < returncode < 128 + signal.NSIG:
        return returncode - 128
    return None


def _exception_summary(stderr: str) -> tuple[str | None, str]:
    """(exception name, 'Name: message at line N: source') from a traceback."""
    lines = stderr.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        head = line.split(":", 1)[0]
        if (line and not line[0].isspace() and head.replace(".", "").isidentifier()
                and any(l.lstrip().startswith('File "') for l in lines[:i])):
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


# ------------------------------------------------- split runs: tests vs candidate
#
# A program that both runs the candidate's code and decides whether the tests
# passed can be talked into a pass: the candidate shares its process with the
# test (it can patch builtins, swap `check` through sys.settrace, return an
# object whose __eq__ always says True) and its files (it can read the test
# and print what success looks like). A split run keeps the two apart:
#
# - the candidate process runs the candidate's code, in the sandbox above,
#   and nothing else: it sees the standard library (site-packages masked, so
#   not the dataset's tests or solutions either) and its own temporary
#   directory holding only its own source. It answers calls on one socket;
#   each reply is plain data (None, bool, int, float, str, list, tuple, dict),
#   encoded as JSON with tagged tuples and dicts;
# - the harness process runs the trusted code (the task's prompt and tests)
#   and never runs candidate code. In it the entry point is a proxy that sends
#   the arguments over the socket and decodes the reply into fresh built-in
#   objects, exact types only; a reply that is not plain data, or a candidate
#   that goes away, fails the run whatever the test does next. The harness
#   writes the verdict to its own stdout, which only the parent reads.
#
# So nothing the candidate prints, writes, patches or returns decides the
# verdict: the harness passes only when the test function returned normally.
# The candidate's exit status and stdout are read only to explain a failure.

MAX_MESSAGE_BYTES = 64 * 2**20

# Shared by both runners: resource limits, framing, plain-data encoding.
_COMMON = r'''
import os, resource, sys
def _cap(kind, soft, hard):
    old = resource.getrlimit(kind)[1]
    if old != resource.RLIM_INFINITY:
        soft, hard = min(soft, old), min(hard, old)
    resource.setrlimit(kind, (soft, hard))
def _limits(cpu, mem, fsize, nproc):
    _cap(resource.RLIMIT_CPU, cpu, cpu + 1)
    _cap(resource.RLIMIT_AS, mem, mem)
    _cap(resource.RLIMIT_FSIZE, fsize, fsize)
    _cap(resource.RLIMIT_CORE, 0, 0)
    _cap(resource.RLIMIT_NPROC, nproc, nproc)
_limits(*(int(v) for v in sys.argv[1:5]))
import json, socket, struct, traceback
sys.set_int_max_str_digits(0)
MAX = int(sys.argv[5])
SOCK = socket.socket(fileno=int(sys.argv[6]))
_rfile = SOCK.makefile("rb")
_JSON_SCALARS = (type(None), bool, int, float, str)
class NotPlain(Exception):
    pass
def encode(value, depth=0):
    """value as JSON-ready data: exact built-in types only."""
    kind = type(value)
    if depth > 200:
        raise NotPlain("nested more than 200 levels deep")
    if kind in _JSON_SCALARS:
        return value
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind is tuple:
        return {"t": [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise NotPlain(f"an object of type {kind.__module__}.{kind.__qualname__}")
def decode(data, depth=0):
    """Fresh built-in objects from encode()'s output; anything else is NotPlain."""
    kind = type(data)
    if depth > 200:
        raise NotPlain("nested more than 200 levels deep")
    if kind in _JSON_SCALARS:
        return data
    if kind is list:
        return [decode(v, depth + 1) for v in data]
    if kind is dict and len(data) == 1:
        (tag, items), = data.items()
        if tag == "t" and type(items) is list:
            return tuple(decode(v, depth + 1) for v in items)
        if tag == "d" and type(items) is list:
            out = {}
            for pair in items:
                if type(pair) is not list or len(pair) != 2:
                    raise NotPlain("a malformed dict entry")
                key = decode(pair[0], depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise NotPlain("an unhashable dict key") from None
                out[key] = decode(pair[1], depth + 1)
            return out
    raise NotPlain("data that is not a tagged plain value")
def send(message):
    data = json.dumps(message, separators=(",", ":")).encode()
    SOCK.sendall(struct.pack(">Q", len(data)) + data)
def receive():
    """The next message, or None when the other side has gone."""
    head = _rfile.read(8)
    if len(head) < 8:
        return None
    size, = struct.unpack(">Q", head)
    if size > MAX:
        raise NotPlain(f"a message of {size} bytes (limit {MAX})")
    data = _rfile.read(size)
    if len(data) < size:
        return None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise NotPlain("a message that is not JSON") from None
    if type(message) is not dict:
        raise NotPlain("a message that is not a JSON object")
    return message
def where(exc, filename, source):
    """'line N: text' of the innermost frame of `exc` in `filename`."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        line = exc.lineno
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == filename:
                line = frame.lineno
    if not line:
        return ""
    lines = source.splitlines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"line {line}: {text}" if text else f"line {line}"
def describe(exc):
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return [type(exc).__name__, text]
'''

# Runs the candidate: argv = limits(4) max_bytes fd entry_point source_file.
# Trusted only to the extent that it is the first code in its process; the
# candidate can rewrite all of it, which changes nothing but its own replies.
_CANDIDATE_RUNNER = _COMMON + r'''
import types
entry, path = sys.argv[7], sys.argv[8]
with open(path, encoding="utf-8") as f:
    source = f.read()
module = types.ModuleType("__main__")
module.__file__ = path
module.__builtins__ = __builtins__
sys.modules["__main__"] = module
try:
    exec(compile(source, path, "exec"), module.__dict__)
    function = module.__dict__.get(entry)
    if function is None:
        raise NameError(f"name {entry!r} is not defined")
    if not callable(function):
        raise TypeError(f"{entry!r} is not a function")
except Exception as exc:
    send({"load_error": describe(exc) + [where(exc, path, source)]})
    raise SystemExit(1)
send({"ready": True})
while True:
    try:
        request = receive()
    except NotPlain:
        raise SystemExit(1)
    if request is None:
        break
    try:
        args, kwargs = decode(request["args"]), decode(request["kwargs"])
    except (KeyError, NotPlain):
        raise SystemExit(1)
    try:
        result = function(*args, **kwargs)
    except Exception as exc:
        send({"raised": describe(exc) + [where(exc, path, source)]})
        continue
    try:
        send({"returned": encode(result)})
    except NotPlain as exc:
        send({"not_plain": str(exc)})
    except (ValueError, RecursionError) as exc:
        send({"not_plain": f"a value that cannot be encoded ({exc})"})
'''

# Runs the trusted code and the test: argv = limits(4) max_bytes fd; stdin
# holds {"trusted": prompt, "test": test, "entry_point": ..., "check": ...}.
# The verdict is the one JSON line it writes to its original stdout.
_HARNESS_RUNNER = _COMMON + r'''
import builtins
verdict_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # what the tests print goes to stderr
job = json.loads(sys.stdin.read())
entry, test = job["entry_point"], job["test"]
SETUP_ERRORS = set(job["setup_errors"])
def verdict(status, detail, **extra):
    verdict_out.write(json.dumps({"status": status, "detail": detail, **extra}) + "\n")
    verdict_out.flush()
    os._exit(0)
class CandidateGone(BaseException):
    """The candidate process ended; not catchable by `except Exception`."""
class CandidateError(Exception):
    """An exception raised in the candidate that is not a built-in one."""
NOT_RELAYED = {"StopIteration", "StopAsyncIteration", "GeneratorExit"}
state = {"calls": 0, "fault": None}
def fault(text):
    if state["fault"] is None:
        state["fault"] = text
def _reply():
    try:
        message = receive()
    except NotPlain as exc:
        fault(f"the candidate sent {exc}")
        raise CandidateGone from None
    if message is None:
        fault("gone")
        raise CandidateGone
    return message
def candidate(*args, **kwargs):
    state["calls"] += 1
    try:
        request = {"args": encode(list(args)), "kwargs": encode(kwargs)}
    except NotPlain as exc:
        verdict("error", f"harness: the test passed the candidate {exc}; only plain data crosses")
    try:
        send(request)
    except OSError:
        fault("gone")
        raise CandidateGone from None
    message = _reply()
    if len(message) == 1 and "returned" in message:
        try:
            return decode(message["returned"])
        except NotPlain as exc:
            fault(f"the candidate returned {exc}")
            raise CandidateGone from None
    if len(message) == 1 and "raised" in message and _is_strings(message["raised"], 3):
        name, text, place = message["raised"]
        cls = getattr(builtins, name, None)
        if (isinstance(cls, type) and issubclass(cls, Exception)
                and name not in NOT_RELAYED and cls.__module__ == "builtins"):
            try:
                exc = cls(text)
            except Exception:
                exc = CandidateError(f"{name}: {text}")
        else:
            exc = CandidateError(f"{name}: {text}")
        exc.candidate_where = place
        raise exc
    if len(message) == 1 and type(message.get("not_plain")) is str:
        fault(f"the candidate returned {message['not_plain'][:200]}, not plain data")
        raise CandidateGone
    fault("the candidate sent a malformed reply")
    raise CandidateGone
candidate.__name__ = candidate.__qualname__ = entry
def _is_strings(value, n):
    return type(value) is list and len(value) == n and all(type(v) is str for v in value)
try:
    hello = receive()
except NotPlain as exc:
    verdict("failed", f"the candidate sent {exc} before it was ready")
if hello is None:
    verdict("gone", "", phase="load")
if len(hello) == 1 and "load_error" in hello and _is_strings(hello["load_error"], 3):
    name, text, place = hello["load_error"]
    head = f"{name}: {text}" if text else name
    verdict("error" if name in SETUP_ERRORS else "failed",
            head + (f" at {place}" if place else ""))
if hello != {"ready": True}:
    verdict("failed", "the candidate sent a malformed greeting")
namespace = {"__name__": "__main__", "__builtins__": builtins}
try:
    exec(compile(job["trusted"], "<trusted>", "exec"), namespace)
    namespace[entry] = candidate
    exec(compile(test, "<test>", "exec"), namespace)
    check = namespace[job["check"]]
except Exception as exc:
    name, text = describe(exc)
    verdict("error", f"harness: the task's own code failed: {name}: {text}")
try:
    check(candidate)
except CandidateGone:
    pass
except Exception as exc:
    if state["fault"] is None:
        name, text = describe(exc)
        head = f"{name}: {text}" if text else name
        place = where(exc, "<test>", test)
        inner = getattr(exc, "candidate_where", None)
        detail = head + (f" at test {place}" if place else "")
        if inner is not None:
            detail += " (raised by the candidate" + (f" at {inner})" if inner else ")")
        verdict("error" if name in SETUP_ERRORS else "failed", detail)
if state["fault"] == "gone":
    verdict("gone", "", phase="call", calls=state["calls"])
if state["fault"] is not None:
    verdict("failed", state["fault"])
verdict("passed", "passed", calls=state["calls"])
'''


@dataclass(frozen=True)
class SplitJob:
    """One split run: the candidate's program and the trusted test.

    candidate: the candidate's source (it must define `entry_point`);
    trusted: trusted code the test relies on (e.g. the task's prompt with its
    helper functions), run in the harness before the entry point is replaced
    by the proxy; test: defines `check`, which is called with the proxy.
    """

    candidate: str
    entry_point: str
    test: str
    trusted: str = ""
    check: str = "check"


def run_split(job: SplitJob, *, timeout_s: float = 10.0, memory_mb: int = 1024,
              max_processes: int = 64, max_file_mb: int = 64,
              isolation: str | None = None) -> SandboxResult:
    """Run `job.test` in a harness process against `job.candidate` in the sandbox.

    'passed' only when the harness's check() returned normally and every
    reply was plain data; 'failed' for a failing test, an exception, a reply
    that is not plain data or a candidate that exits; 'error' for code that
    cannot be set up or a death by signal; 'timeout' past the wall clock
    (both processes share it) or the candidate's CPU limit.
    """
    kind = _choose_isolation(isolation)
    cand_dir = tempfile.mkdtemp(prefix="iswt-sandbox-")
    harness_dir = tempfile.mkdtemp(prefix="iswt-harness-")
    try:
        program = os.path.join(cand_dir, "candidate.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(job.candidate)
        limits = [str(max(1, int(timeout_s + 1.999))), str(int(memory_mb * 2**20)),
                  str(int(max_file_mb * 2**20)), str(max_processes), str(MAX_MESSAGE_BYTES)]
        ours, theirs = socket.socketpair()
        with ours, theirs:
            cand_argv = [_base_python(), "-I", "-c", _CANDIDATE_RUNNER, *limits,
                         str(theirs.fileno()), job.entry_point, program]
            if kind == "bubblewrap":
                cand_argv = _bwrap_argv(cand_dir, candidate=True) + cand_argv
            harness_argv = [_base_python(), "-I", "-S", "-c", _HARNESS_RUNNER, *limits,
                            str(ours.fileno())]
            payload = json.dumps({"trusted": job.trusted, "test": job.test,
                                  "entry_point": job.entry_point, "check": job.check,
                                  "setup_errors": sorted(SETUP_ERRORS)}).encode()
            return _execute_split(cand_argv, cand_dir, (ours, theirs), harness_argv,
                                  harness_dir, payload, kind, timeout_s)
    finally:
        shutil.rmtree(cand_dir, ignore_errors=True)
        shutil.rmtree(harness_dir, ignore_errors=True)


def run_split_many(jobs: list[SplitJob], *, workers: int = 4,
                   **options) -> list[SandboxResult]:
    """Several split runs, `workers` at a time; results keep input order."""
    if workers < 1:
        raise IswtError(f"--workers {workers}: must be at least 1")
    if options.get("isolation") is None:
        sandbox_isolation()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda j: run_split(j, **options), jobs))


def _execute_split(cand_argv: list[str], cand_dir: str, sockets, harness_argv: list[str],
                   harness_dir: str, payload: bytes, kind: str,
                   timeout_s: float) -> SandboxResult:
    """Start both processes, feed the harness, wait for its verdict."""
    ours, theirs = sockets
    with tempfile.TemporaryFile() as cand_err, tempfile.TemporaryFile() as h_out, \
            tempfile.TemporaryFile() as h_err:
        start = time.monotonic()
        cand = subprocess.Popen(cand_argv, cwd=cand_dir, env=_scrubbed_env(cand_dir),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=cand_err, start_new_session=True,
                                pass_fds=(theirs.fileno(),))
        try:
            harness = subprocess.Popen(harness_argv, cwd=harness_dir,
                                       env=_scrubbed_env(harness_dir), stdin=subprocess.PIPE,
                                       stdout=h_out, stderr=h_err, start_new_session=True,
                                       pass_fds=(ours.fileno(),))
        except BaseException:
            _kill_group(cand.pid)
            cand.wait()
            raise
        theirs.close()  # from here on, only the two children hold the channel
        ours.close()
        try:
            harness.stdin.write(payload)
            harness.stdin.close()
        except OSError:
            pass
        finished = _wait_unreaped(harness.pid, start + timeout_s)
        if finished and '"gone"' in _tail(h_out):
            # the candidate went away: let it finish dying, for its exit status
            _wait_unreaped(cand.pid, min(start + timeout_s, time.monotonic() + 1.0))
        cand_done = bool(os.waitid(os.P_PID, cand.pid,
                                   os.WEXITED | os.WNOHANG | os.WNOWAIT))
        for proc in (harness, cand):
            _kill_group(proc.pid)
        harness_rc, cand_rc = harness.wait(), cand.wait()
        duration = time.monotonic() - start
        verdict_text, h_tail, cand_tail = _tail(h_out), _tail(h_err), _tail(cand_err)
    if not finished:
        return SandboxResult("timeout", cand_rc, cand_tail, kind,
                             f"timeout after {timeout_s:.1f}s", duration)
    status, detail = _split_verdict(verdict_text, harness_rc, h_tail,
                                    cand_rc if cand_done else None, cand_tail, kind)
    return SandboxResult(status, cand_rc, cand_tail, kind, detail, duration)


def _split_verdict(verdict_text: str, harness_rc: int, harness_tail: str,
                   cand_rc: int | None, cand_tail: str, kind: str) -> tuple[str, str]:
    """(status, detail) from the harness's verdict line and, for a candidate
    that went away, how it ended."""
    try:
        verdict = json.loads(verdict_text.strip().splitlines()[-1])
        status, detail = verdict["status"], verdict["detail"]
    except (IndexError, ValueError, KeyError, TypeError):
        last = harness_tail.strip().splitlines()[-1:] or [f"exit status {harness_rc}"]
        return "error", f"harness ended without a verdict: {last[0][:160]}"
    if status != "gone":
        return status, detail
    if kind == "bubblewrap" and cand_tail.startswith("bwrap:") and cand_rc:
        return "error", "sandbox failure: " + cand_tail.splitlines()[0][:160]
    when = "while loading" if verdict.get("phase") == "load" else "during a call"
    sig = _death_signal(cand_rc, kind) if cand_rc is not None else None
    if sig == signal.SIGXCPU:
        return "timeout", "CPU time limit exceeded"
    if sig is not None:
        return "error", f"killed by {_signal_name(sig)} {when}"
    if cand_rc is None:
        return "failed", f"closed the channel {when}"
    name, summary = _exception_summary(cand_tail)
    if name is not None and cand_rc:
        return ("error" if name in SETUP_ERRORS else "failed"), summary + f" ({when})"
    return "failed", f"exited with status {cand_rc} {when}"


@functools.cache
def _base_python() -> str:
    """The interpreter itself, not a virtual environment's link to it: the
    candidate's view holds the standard library, not the environment."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base if os.path.isfile(base) else sys.executable)


@functools.cache
def _candidate_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(directories to mount, site-packages directories to mask) for a
    candidate: the base interpreter's prefix, without third-party packages
    (where a dataset with its tests and solutions may be installed)."""
    real = _base_python()
    home = os.path.dirname(os.path.dirname(real))
    mounts = set()
    for p in (sys.base_prefix, sys.base_exec_prefix, home):
        for q in (p, os.path.realpath(p)):
            covered = any(q == d or q.startswith(d + "/") for d in _SYSTEM_DIRS)
            if os.path.isdir(q) and q != "/" and not covered:
                mounts.add(q)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    masks = set()
    candidates = [sysconfig.get_paths(vars={"base": sys.base_prefix,
                                            "platbase": sys.base_exec_prefix})[k]
                  for k in ("purelib", "platlib")]
    candidates += list(getattr(site, "getsitepackages", list)())  # a venv under /usr, say
    candidates += [site.getusersitepackages(), "/usr/lib/python3/dist-packages",
                   f"/usr/local/lib/{ver}/dist-packages", f"/usr/local/lib/{ver}/site-packages",
                   f"/usr/lib/{ver}/site-packages", f"/usr/lib/{ver}/dist-packages"]
    visible = tuple(mounts) + _SYSTEM_DIRS
    for path in candidates:
        real_path = os.path.realpath(path)
        if os.path.isdir(real_path) and any(real_path == d or real_path.startswith(d + "/")
                                            for d in visible):
            masks.add(real_path)
    return tuple(sorted(mounts)), tuple(sorted(masks))
