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
KINDS = [pytest.param("bubblewrap", marks=pytest.mark.skipif(not BWRAP, reason=NO_BWRAP)), "rlimits"]


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


@pytest.mark.parametrize(
    "source, status, detail",
    [
        ("x = 1", "passed", "passed"),
        ("assert 1 + 1 == 3, 'bad sum'", "failed", "AssertionError: bad sum at line 1"),
        ("def f(:\n    pass", "error", "SyntaxError"),
        ("undefined_helper()", "error", "NameError"),
        ("raise ValueError('nope')", "failed", "ValueError: nope"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "error", "killed by SIGSEGV"),
    ],
)
def test_exit_status_mapping(kind, source, status, detail):
    result = run_python(source, timeout_s=5, isolation=kind)
    assert (result.status, result.isolation) == (status, kind)
    assert detail in result.detail


def test_success_marker_stops_early_exit_from_passing(kind):
    early = run_python("import sys\nsys.exit(0)\nprint('DONE')", isolation=kind, success_marker="DONE")
    assert early.status == "failed" and "before the tests finished" in early.detail
    full = run_python("print('noise')\nprint('DONE')", isolation=kind, success_marker="DONE")
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
    result = run_python(
        "import os\nopen('scratch.txt', 'w').write('x')\nraise SystemExit('CWD=' + os.getcwd())", isolation=kind
    )
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
    return (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
        "except OSError:\n"
        "    print('NO-NETWORK')\n"
        "else:\n"
        "    print('CONNECTED')\n"
    )


@pytest.mark.skipif(not BWRAP, reason=f"only bubblewrap removes the network: {NO_BWRAP}")
def test_network_is_unreachable_under_bubblewrap(listening_port):
    result = run_python(_connect_program(listening_port), isolation="bubblewrap", success_marker="NO-NETWORK")
    assert result.status == "passed", result.detail
    # The same program does reach the parent without bubblewrap: the check is real.
    bare = run_python(_connect_program(listening_port), isolation="rlimits", success_marker="CONNECTED")
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


@pytest.mark.skipif(os.geteuid() == 0, reason="the kernel does not enforce RLIMIT_NPROC for root (uid 0)")
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
    sources = [
        "import time\ntime.sleep(1.0)\nassert False, 'first'",
        "import time\ntime.sleep(1.0)",
        "import time\ntime.sleep(0.2)\nraise KeyError('third')",
        "import time\ntime.sleep(0.1)",
    ]
    start = time.monotonic()
    results = run_many(sources, workers=4, isolation=kind)
    assert time.monotonic() - start < 3.5  # serial would take over 2.3 s of sleep alone
    assert [r.status for r in results] == ["failed", "passed", "failed", "passed"]
    assert "first" in results[0].detail and "KeyError" in results[2].detail


def test_temp_files_do_not_pile_up():
    before = set(os.listdir(tempfile.gettempdir()))
    run_many(["x = 1"] * 4, workers=2)
    leftovers = {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("iswt-sandbox-")}
    assert leftovers == set()


def test_bad_worker_count_is_rejected():
    with pytest.raises(IswtError, match="--workers 0"):
        run_many(["x = 1"], workers=0)


def test_interpreter_dirs_cover_the_running_python():
    dirs = sandbox.process._interpreter_dirs()
    exe = os.path.realpath(sys.executable)
    system = sandbox.process.SYSTEM_DIRS
    assert any(exe.startswith(d + "/") for d in dirs + system)


# ------------------------------------------------- split runs: tests vs candidate

from iswcli.sandbox import SplitJob, run_split, run_split_many  # noqa: E402


def split(candidate: str, test: str, *, entry: str = "f", trusted: str = "", **options):
    return run_split(SplitJob(candidate, entry, test, trusted), **options)


RICH = (
    "[None, True, False, 0, -2**100, 1.5, -0.0, float('inf'), 'é☃\\n', [], (), {}, "
    "(1, (2, [3])), {'a': 1, (1, 2): [3], 4: None, None: (5,)}]"
)


def test_split_plain_data_round_trips_with_exact_types(kind):
    test = (
        f"def check(c):\n"
        f"    v = c()\n"
        f"    assert v == {RICH}, v\n"
        f"    assert [type(x).__name__ for x in v] == ['NoneType', 'bool', 'bool', 'int', 'int',\n"
        f"        'float', 'float', 'float', 'str', 'list', 'tuple', 'dict', 'tuple', 'dict']\n"
        f"    assert str(v[6]) == '-0.0'\n"
        f"    assert c.__name__ == 'f'\n"
    )
    result = split(f"def f():\n    return {RICH}\n", test, isolation=kind)
    assert result.status == "passed", result.detail


def test_split_arguments_cross_as_plain_data(kind):
    candidate = "def f(*args, **kwargs):\n    return [list(args), kwargs, [type(a).__name__ for a in args]]\n"
    test = (
        "def check(c):\n"
        "    got = c((1, 2), {'k': (3,)}, 2.5, z=[1])\n"
        "    assert got == [[(1, 2), {'k': (3,)}, 2.5], {'z': [1]}, ['tuple', 'dict', 'float']], got\n"
    )
    assert split(candidate, test, isolation=kind).status == "passed"


@pytest.mark.parametrize(
    "value",
    [
        "S('x')",
        "set()",
        "frozenset()",
        "b'x'",
        "range(3)",
        "object()",
        "1j",
        "__import__('decimal').Decimal(1)",
        "lambda: 0",
        "R()",
        "[S('x')]",
        "{'k': {1}}",
        "__import__('collections').OrderedDict()",
        "cycle()",
    ],
)
def test_split_anything_but_plain_data_fails(value):
    candidate = (
        "class S(str):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = str.__hash__\n"
        "class R:\n    def __eq__(self, other):\n        return True\n"
        "def cycle():\n    a = []\n    a.append(a)\n    return a\n"
        f"def f():\n    return {value}\n"
    )
    test = "def check(c):\n    try:\n        c()\n    except BaseException:\n        pass\n"
    result = split(candidate, test)
    assert result.status == "failed", (value, result)
    assert "not plain data" in result.detail or "nested" in result.detail, result.detail


def test_split_test_that_swallows_a_bad_reply_still_fails():
    # The fault is remembered: a test that catches everything cannot pass a
    # candidate that returned something other than plain data or went away.
    test = "def check(c):\n    try:\n        c()\n    except BaseException:\n        pass\n"
    for body in ("return {1}", "import os; os._exit(0)"):
        result = split(f"def f():\n    {body}\n", test)
        assert result.status == "failed", (body, result)


def test_split_exceptions_are_relayed_as_builtin_types(kind):
    test = (
        "def check(c):\n"
        "    try:\n        c(0)\n    except ValueError as e:\n        assert str(e) == 'bad 0'\n"
        "    else:\n        raise AssertionError('no exception')\n"
    )
    ok = split("def f(x):\n    raise ValueError(f'bad {x}')\n", test, isolation=kind)
    assert ok.status == "passed", ok.detail
    custom = split(
        "class ValueError(Exception):\n    pass\ndef f(x):\n    raise ValueError(f'bad {x}')\n", test, isolation=kind
    )
    assert custom.status == "passed"  # relayed by name: a ValueError is a ValueError
    other = split("class Oops(Exception):\n    pass\ndef f(x):\n    raise Oops('no')\n", test, isolation=kind)
    assert other.status == "failed" and "CandidateError: Oops: no" in other.detail
    stop = split("def f(x):\n    raise StopIteration\n", test, isolation=kind)
    assert stop.status == "failed" and "CandidateError" in stop.detail


@pytest.mark.parametrize(
    "candidate, detail",
    [
        ("def f():\n    import sys\n    sys.exit(0)\n", "exited with status 0 during a call"),
        ("def f():\n    import os\n    os._exit(3)\n", "exited with status 3 during a call"),
        ("import sys\nsys.exit(0)\ndef f():\n    return 1\n", "exited with status 0 while loading"),
        ("def f(:\n    pass\n", "SyntaxError"),
        ("undefined_helper()\n", "NameError: name 'undefined_helper' is not defined at line 1"),
        ("def g():\n    return 1\n", "NameError: name 'f' is not defined"),
        ("f = 3\n", "TypeError: 'f' is not a function"),
        (
            "def f():\n    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
            "killed by SIGSEGV during a call",
        ),
    ],
)
def test_split_candidate_that_cannot_answer(kind, candidate, detail):
    result = split(candidate, "def check(c):\n    c()\n", isolation=kind)
    assert result.status in ("failed", "error") and detail in result.detail, result


def test_split_timeout_kills_both_processes(kind):
    start = time.monotonic()
    result = split(
        "def f():\n    while True:\n        pass\n", "def check(c):\n    c()\n", timeout_s=1.5, isolation=kind
    )
    assert result.status == "timeout" and result.detail == "timeout after 1.5s"
    assert time.monotonic() - start < 5


def test_split_memory_limit_holds(kind):
    result = split(
        "def f():\n    return len(bytearray(64 * 1024 ** 3))\n",
        "def check(c):\n    c()\n",
        memory_mb=512,
        isolation=kind,
    )
    assert result.status == "failed" and "MemoryError" in result.detail, result


def test_split_trusted_code_and_test_stay_on_the_trusted_side(kind):
    trusted = "def helper(x):\n    return x + 1\n\ndef f(x):\n    '''stub'''\n"
    candidate = "def helper(x):\n    return 0\n\ndef f(x):\n    return helper(x) * 2\n"
    test = (
        "def check(c):\n"
        "    print('noise from the test')\n"
        "    assert helper(1) == 2\n"
        "    assert f is c\n"
        "    assert c(1) == 0\n"
    )
    result = split(candidate, test, trusted=trusted, isolation=kind)
    assert result.status == "passed", result.detail


@pytest.mark.skipif(not BWRAP, reason=f"only bubblewrap hides the harness: {NO_BWRAP}")
def test_split_candidate_sees_only_its_own_source():
    candidate = (
        "import os, sys\n"
        "def f():\n"
        "    tmp = sorted(n for n in os.listdir('/tmp') if n.startswith('iswt-'))\n"
        "    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "    return [sorted(os.listdir('.')), tmp, len(pids), sys.flags.isolated,\n"
        "            any('site-packages' in p and os.listdir(p) for p in sys.path\n"
        "                if os.path.isdir(p))]\n"
    )
    test = (
        "def check(c):\n"
        "    files, tmp, n_pids, isolated, packages = c()\n"
        "    assert files == ['candidate.py'], files\n"
        "    assert len(tmp) == 1 and tmp[0].startswith('iswt-sandbox-'), tmp\n"
        "    assert n_pids <= 3, n_pids\n"
        "    assert isolated == 1 and packages is False\n"
    )
    result = split(candidate, test, isolation="bubblewrap")
    assert result.status == "passed", result.detail


def test_split_temp_dirs_are_removed():
    before = set(os.listdir(tempfile.gettempdir()))
    jobs = [
        SplitJob("def f():\n    open('x', 'w').write('x')\n    return 1\n", "f", "def check(c):\n    assert c() == 1\n")
    ] * 3
    assert [r.status for r in run_split_many(jobs, workers=2)] == ["passed"] * 3
    leftovers = {
        n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith(("iswt-sandbox-", "iswt-harness-"))
    }
    assert leftovers == set()


def test_split_many_keeps_order_and_checks_workers():
    jobs = [SplitJob(f"def f():\n    return {i}\n", "f", "def check(c):\n    assert c() % 2 == 0\n") for i in range(4)]
    assert [r.status for r in run_split_many(jobs, workers=2)] == ["passed", "failed"] * 2
    with pytest.raises(IswtError, match="--workers 0"):
        run_split_many(jobs, workers=0)
