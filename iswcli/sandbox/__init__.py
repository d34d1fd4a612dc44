"""Run untrusted Python (generated code) in a sandboxed subprocess.

:mod:`.process` runs one program in the sandbox and classifies how it ended
(:func:`run_python`, :func:`run_many`); :mod:`.split` runs a test against
untrusted code without letting that code decide the verdict: the test in a
harness process, the candidate in the sandbox, plain data between them
(:func:`run_split`, :func:`run_split_many`).
"""

from iswcli.sandbox.process import (
    BWRAP_PACKAGE,
    SETUP_ERRORS,
    STATUSES,
    Isolation,
    SandboxResult,
    run_many,
    run_python,
    sandbox_isolation,
)
from iswcli.sandbox.split import SplitJob, run_split, run_split_many

__all__ = [
    "BWRAP_PACKAGE",
    "SETUP_ERRORS",
    "STATUSES",
    "Isolation",
    "SandboxResult",
    "SplitJob",
    "run_many",
    "run_python",
    "run_split",
    "run_split_many",
    "sandbox_isolation",
]
