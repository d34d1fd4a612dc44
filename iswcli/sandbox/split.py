"""Split runs: a test against untrusted code, without letting that code decide the verdict.

A program that both runs the candidate's code and decides whether the tests
passed can be talked into a pass: the candidate shares its process with the
test (it can patch builtins, swap `check` through sys.settrace, return an
object whose __eq__ always says True) and its files (it can read the test
and print what success looks like). A split run keeps the two apart:

- the candidate process runs the candidate's code, in the sandbox of
  :mod:`iswcli.sandbox.process`,
  and nothing else: it sees the standard library (site-packages masked, so
  not the dataset's tests or solutions either) and its own temporary
  directory holding only its own source. It answers calls on one socket;
  each reply is plain data (None, bool, int, float, str, list, tuple, dict),
  encoded as JSON with tagged tuples and dicts;
- the harness process runs the trusted code (the task's prompt and tests)
  and never runs candidate code. In it the entry point is a proxy that sends
  the arguments over the socket and decodes the reply into fresh built-in
  objects, exact types only; a reply that is not plain data, or a candidate
  that goes away, fails the run whatever the test does next. The harness
  writes the verdict to its own stdout, which only the parent reads.

So nothing the candidate prints, writes, patches or returns decides the
verdict: the harness passes only when the test function returned normally.
The candidate's exit status and stdout are read only to explain a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from iswcli.errors import IswtError
from iswcli.sandbox.process import (
    SETUP_ERRORS,
    SandboxResult,
    base_python,
    bwrap_argv,
    choose_isolation,
    death_signal,
    exception_summary,
    kill_group,
    sandbox_isolation,
    scrubbed_env,
    signal_name,
    tail,
    wait_unreaped,
)

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
_CANDIDATE_RUNNER = (
    _COMMON
    + r"""
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
"""
)

# Runs the trusted code and the test: argv = limits(4) max_bytes fd; stdin
# holds {"trusted": prompt, "test": test, "entry_point": ..., "check": ...}.
# The verdict is the one JSON line it writes to its original stdout.
_HARNESS_RUNNER = (
    _COMMON
    + r'''
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
)


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


def run_split(
    job: SplitJob,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 64,
    isolation: str | None = None,
) -> SandboxResult:
    """Run `job.test` in a harness process against `job.candidate` in the sandbox.

    'passed' only when the harness's check() returned normally and every
    reply was plain data; 'failed' for a failing test, an exception, a reply
    that is not plain data or a candidate that exits; 'error' for code that
    cannot be set up or a death by signal; 'timeout' past the wall clock
    (both processes share it) or the candidate's CPU limit.
    """
    kind = choose_isolation(isolation)
    cand_dir = tempfile.mkdtemp(prefix="iswt-sandbox-")
    harness_dir = tempfile.mkdtemp(prefix="iswt-harness-")
    try:
        program = os.path.join(cand_dir, "candidate.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(job.candidate)
        limits = [
            str(max(1, int(timeout_s + 1.999))),
            str(int(memory_mb * 2**20)),
            str(int(max_file_mb * 2**20)),
            str(max_processes),
            str(MAX_MESSAGE_BYTES),
        ]
        ours, theirs = socket.socketpair()
        with ours, theirs:
            cand_argv = [
                base_python(),
                "-I",
                "-c",
                _CANDIDATE_RUNNER,
                *limits,
                str(theirs.fileno()),
                job.entry_point,
                program,
            ]
            if kind == "bubblewrap":
                cand_argv = bwrap_argv(cand_dir, candidate=True) + cand_argv
            harness_argv = [base_python(), "-I", "-S", "-c", _HARNESS_RUNNER, *limits, str(ours.fileno())]
            payload = json.dumps(
                {
                    "trusted": job.trusted,
                    "test": job.test,
                    "entry_point": job.entry_point,
                    "check": job.check,
                    "setup_errors": sorted(SETUP_ERRORS),
                }
            ).encode()
            return _execute_split(
                cand_argv, cand_dir, (ours, theirs), harness_argv, harness_dir, payload, kind, timeout_s
            )
    finally:
        shutil.rmtree(cand_dir, ignore_errors=True)
        shutil.rmtree(harness_dir, ignore_errors=True)


def run_split_many(jobs: list[SplitJob], *, workers: int = 4, **options) -> list[SandboxResult]:
    """Several split runs, `workers` at a time; results keep input order."""
    if workers < 1:
        raise IswtError(f"--workers {workers}: must be at least 1")
    if options.get("isolation") is None:
        sandbox_isolation()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda j: run_split(j, **options), jobs))


def _execute_split(
    cand_argv: list[str],
    cand_dir: str,
    sockets,
    harness_argv: list[str],
    harness_dir: str,
    payload: bytes,
    kind: str,
    timeout_s: float,
) -> SandboxResult:
    """Start both processes, feed the harness, wait for its verdict."""
    ours, theirs = sockets
    with tempfile.TemporaryFile() as cand_err, tempfile.TemporaryFile() as h_out, tempfile.TemporaryFile() as h_err:
        start = time.monotonic()
        cand = subprocess.Popen(
            cand_argv,
            cwd=cand_dir,
            env=scrubbed_env(cand_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=cand_err,
            start_new_session=True,
            pass_fds=(theirs.fileno(),),
        )
        try:
            harness = subprocess.Popen(
                harness_argv,
                cwd=harness_dir,
                env=scrubbed_env(harness_dir),
                stdin=subprocess.PIPE,
                stdout=h_out,
                stderr=h_err,
                start_new_session=True,
                pass_fds=(ours.fileno(),),
            )
        except BaseException:
            kill_group(cand.pid)
            cand.wait()
            raise
        theirs.close()  # from here on, only the two children hold the channel
        ours.close()
        try:
            harness.stdin.write(payload)
            harness.stdin.close()
        except OSError:
            pass
        finished = wait_unreaped(harness.pid, start + timeout_s)
        if finished and '"gone"' in tail(h_out):
            # the candidate went away: let it finish dying, for its exit status
            wait_unreaped(cand.pid, min(start + timeout_s, time.monotonic() + 1.0))
        cand_done = bool(os.waitid(os.P_PID, cand.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT))
        for proc in (harness, cand):
            kill_group(proc.pid)
        harness_rc, cand_rc = harness.wait(), cand.wait()
        duration = time.monotonic() - start
        verdict_text, h_tail, cand_tail = tail(h_out), tail(h_err), tail(cand_err)
    if not finished:
        return SandboxResult("timeout", cand_rc, cand_tail, kind, f"timeout after {timeout_s:.1f}s", duration)
    status, detail = _split_verdict(verdict_text, harness_rc, h_tail, cand_rc if cand_done else None, cand_tail, kind)
    return SandboxResult(status, cand_rc, cand_tail, kind, detail, duration)


def _split_verdict(
    verdict_text: str, harness_rc: int, harness_tail: str, cand_rc: int | None, cand_tail: str, kind: str
) -> tuple[str, str]:
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
    sig = death_signal(cand_rc, kind) if cand_rc is not None else None
    if sig == signal.SIGXCPU:
        return "timeout", "CPU time limit exceeded"
    if sig is not None:
        return "error", f"killed by {signal_name(sig)} {when}"
    if cand_rc is None:
        return "failed", f"closed the channel {when}"
    name, summary = exception_summary(cand_tail)
    if name is not None and cand_rc:
        return ("error" if name in SETUP_ERRORS else "failed"), summary + f" ({when})"
    return "failed", f"exited with status {cand_rc} {when}"
