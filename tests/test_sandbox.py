"""The sandbox runs real child processes: isolation, limits and verdicts."""

import os
import socket
import sys
import tempfile
import threading
import time
import uuid

import pytest

from iswcli import sandbox
from iswcli.errors import IswtError
from iswcli.sandbox import run_many, run_python, sandbox_isolation

BWRAP = sandbox_isolation().kind == "bubblewrap"
NO_BWRAP = f"bubblewrap is not usable here: {sandbox_isolation().detail}"
KINDS = [pytest.param("bubblewrap", marks=pytest.mark.skipif(not BWRAP, reason=NO_BWRAP)),
         "rlimits"]


@pytest.fixture(params=KINDS)
def kind(request):
    """Each test runs under bubblewrap (where usable) and under rlimits alone."""
    return request.param


def test_probe_reports_what_protects_runs():
    iso = sandbox_isolation()
    assert iso.kind in ("bubblewrap", "rlimits")
    if iso.kind == "bubblewrap":
        assert iso.warning == ""
    else:
        assert "resource limits only" in iso.warning and "bubblewrap" in iso.warning


def test_unknown_isolation_is_rejected():
    with pytest.raises(IswtError, match="must be 'bubblewrap' or 'rlimits'"):
        run_python("pass", isolation="docker")


@pytest.mark.parametrize("source, status, detail", [
    ("x = 1", "passed", "passed"),
    ("assert 1 + 1 == 3, 'bad sum'", "failed", "AssertionError: bad sum at line 1"),
    ("def f(:\n    pass", "error", "SyntaxError"),
    ("undefined_helper()", "error", "NameError"),
    ("raise ValueError('nope')", "failed", "ValueError: nope"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "error", "killed by SIGSEGV"),
])
def test_exit_status_mapping(kind, source, status, detail):
    result = run_python(source, timeout_s=5, isolation=kind)
    assert (result.status, result.isolation) == (status, kind)
    assert detail in result.detail


def test_success_marker_stops_early_exit_from_passing(kind):
    early = run_python("import sys\nsys.exit(0)\nprint('DONE')", isolation=kind,
                       success_marker="DONE")
    assert early.status == "failed" and "before the tests finished" in early.detail
    full = run_python("print('noise')\nprint('DONE')", isolation=kind,
                      success_marker="DONE")
    assert full.status == "passed"


def test_infinite_loop_is_killed_at_the_timeout(kind):
    start = time.monotonic()
    result = run_python("while True:\n    pass", timeout_s=1.5, isolation=kind)
    assert result.status == "timeout" and result.detail == "timeout after 1.5s"
    assert time.monotonic() - start < 5


def test_huge_allocation_is_stopped(kind):
    result = run_python("block = bytearray(64 * 1024 ** 3)", memory_mb=512, isolation=kind)
    assert result.status == "failed" and "MemoryError" in result.detail


def test_environment_is_scrubbed_and_stdin_closed(kind, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    source = (
        "import os, sys\n"
        "assert 'SECRET_TOKEN' not in os.environ, 'secret leaked'\n"
        "assert 'hunter2' not in repr(os.environ), 'secret leaked'\n"
        "allowed = {'PATH', 'LANG', 'LC_ALL', 'HOME', 'TMPDIR', 'PWD', 'LC_CTYPE',\n"
        "           'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'}\n"
        "assert set(os.environ) <= allowed, sorted(set(os.environ) - allowed)\n"
        "assert sys.stdin.read() == ''\n"
        "assert sys.flags.isolated\n"
    )
    result = run_python(source, isolation=kind)
    assert result.status == "passed", result.stderr_tail


def test_runs_in_a_fresh_temp_dir_that_is_removed(kind):
    result = run_python("import os\nopen('scratch.txt', 'w').write('x')\n"
                        "raise SystemExit('CWD=' + os.getcwd())", isolation=kind)
    cwd = result.stderr_tail.strip().split("CWD=")[1]
    assert os.path.basename(cwd).startswith("iswt-sandbox-")
    assert cwd != os.getcwd() and not os.path.exists(cwd)


@pytest.mark.skipif(not BWRAP, reason=f"only bubblewrap protects files: {NO_BWRAP}")
def test_cannot_modify_files_outside_its_temp_dir(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    source = (
        "import os\n"
        f"os.system('echo pwned > {victim}; rm -f {victim}')\n"
        "try:\n"
        f"    open({str(victim)!r}, 'w').write('pwned')\n"
        "except OSError:\n"
        "    pass\n"
    )
    result = run_python(source, isolation="bubblewrap")
    assert result.status == "passed", result.stderr_tail
    assert victim.read_text() == "original"


@pytest.fixture
def listening_port():
    """A TCP server on the parent's loopback, accepting in the background."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(10)
    threading.Thread(target=lambda: _accept_one(server), daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _accept_one(server):
    try:
        server.accept()[0].close()
    except OSError:
        pass


def _connect_program(port: int) -> str:
    return ("import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
            "except OSError:\n"
            "    print('NO-NETWORK')\n"
            "else:\n"
            "    print('CONNECTED')\n")


@pytest.mark.skipif(not BWRAP, reason=f"only bubblewrap removes the network: {NO_BWRAP}")
def test_network_is_unreachable_under_bubblewrap(listening_port):
    result = run_python(_connect_program(listening_port), isolation="bubblewrap",
                        success_marker="NO-NETWORK")
    assert result.status == "passed", result.detail
    # The same program does reach the parent without bubblewrap: the check is real.
    bare = run_python(_connect_program(listening_port), isolation="rlimits",
                      success_marker="CONNECTED")
    assert bare.status == "passed", bare.detail


def _processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_leftover_processes_are_killed(kind):
    token = f"iswt-leftover-{uuid.uuid4().hex}"
    source = (
        "import subprocess, sys\n"
        "for _ in range(20):\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {token!r}])\n"
    )
    result = run_python(source, isolation=kind)
    assert result.status == "passed", result.stderr_tail
    deadline = time.monotonic() + 5
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(token) == []


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="the kernel does not enforce RLIMIT_NPROC for root (uid 0)")
def test_process_count_is_limited(kind):
    source = (
        "import os, time\n"
        "made = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        made += 1\n"
        "    except OSError:\n"
        "        break\n"
        "raise SystemExit(f'MADE={made}')\n"
    )
    result = run_python(source, max_processes=16, isolation=kind)
    made = int(result.stderr_tail.strip().split("MADE=")[1])
    assert made < 16


def test_workers_run_in_parallel_and_keep_order(kind):
    sources = ["import time\ntime.sleep(1.0)\nassert False, 'first'",
               "import time\ntime.sleep(1.0)",
               "import time\ntime.sleep(0.2)\nraise KeyError('third')",
               "import time\ntime.sleep(0.1)"]
    start = time.monotonic()
    results = run_many(sources, workers=4, isolation=kind)
    assert time.monotonic() - start < 3.5  # serial would take over 2.3 s of sleep alone
    assert [r.status for r in results] == ["failed", "passed", "failed", "passed"]
    assert "first" in results[0].detail and "KeyError" in results[2].detail


def test_temp_files_do_not_pile_up():
    before = set(os.listdir(tempfile.gettempdir()))
    run_many(["x = 1"] * 4, workers=2)
    leftovers = {n for n in set(os.listdir(tempfile.gettempdir())) - before
                 if n.startswith("iswt-sandbox-")}
    assert leftovers == set()


def test_bad_worker_count_is_rejected():
    with pytest.raises(IswtError, match="--workers 0"):
        run_many(["x = 1"], workers=0)


def test_interpreter_dirs_cover_the_running_python():
    dirs = sandbox._interpreter_dirs()
    exe = os.path.realpath(sys.executable)
    system = sandbox._SYSTEM_DIRS
    assert any(exe.startswith(d + "/") for d in dirs + system)
