"""The `code` reward: HumanEval tests in a trusted harness process, the response's code in the sandbox behind a plain-data channel."""

from __future__ import annotations

import math
import re

from iswcli import sandbox
from iswcli.errors import IswtError
from iswcli.rewards.base import (
    BaseReward,
    RewardItem,
    RewardOptions,
    RewardResult,
    no_argument,
    register_reward,
    require_fields,
)

_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def fenced_code(response: str, entry_point: str) -> str | None:
    """The response's Python code fence: the first that defines `entry_point`,
    else the first one; None without a fence."""
    blocks = [m.group(2) for m in _FENCE.finditer(response)]
    for block in blocks:
        if defines(block, entry_point):
            return block
    return blocks[0] if blocks else None


def defines(code: str, name: str) -> bool:
    """Whether `code` defines a top-level function `name`."""
    pattern = rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\("
    return re.search(pattern, code, re.MULTILINE) is not None


def build_job(item: RewardItem) -> tuple[sandbox.SplitJob, str]:
    """(split job, how the response was used) for a HumanEval item.

    The candidate's program: with a code fence that defines the entry point,
    the fence replaces the completion: it runs after the prompt's own
    definitions (imports, helper functions), which it overrides, when the
    prompt is valid Python on its own, else alone. Otherwise the fence, or
    the whole response, is the completion of the prompt.

    The trusted side gets the prompt (its helpers, e.g. the encoder a decoder
    is tested against, come from the task, never from the response) and the
    test; it calls check() with a proxy for the entry point.
    """
    test, entry = item.fields["test"], item.fields["entry_point"]
    code = fenced_code(item.response, entry)
    if code is not None and defines(code, entry):
        head = item.prompt + "\n" if _compiles(item.prompt) else ""
        body, how = head + code, "fenced code with its own def"
    elif code is not None:
        body, how = item.prompt + code, "fenced code as completion"
    else:
        body, how = item.prompt + item.response, "completion"
    trusted = item.prompt if _compiles(item.prompt) else ""
    return sandbox.SplitJob(candidate=body, entry_point=entry, test=test, trusted=trusted), how


def _with_test_alias(item: RewardItem) -> RewardItem:
    """The item with 'tests' copied to 'test' when only the alias is given."""
    if item.fields.get("test") is None and item.fields.get("tests") is not None:
        return RewardItem(item.prompt, item.response, {**item.fields, "test": item.fields["tests"]})
    return item


def _compiles(source: str) -> bool:
    """Whether `source` is valid Python by itself."""
    try:
        compile(source, "<prompt>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


class CodeReward(BaseReward):
    """1.0 when the HumanEval tests pass against the response.

    The tests run in a trusted harness process; the response's code runs in
    the sandbox, in another process, and answers the harness's calls of the
    entry point with plain data only (see :func:`iswcli.sandbox.run_split`),
    so nothing it prints, patches, reads or returns can forge a pass.
    """

    name = "code"
    required_fields = ("test", "entry_point")

    def __init__(self, options: RewardOptions):
        if options.workers < 1:
            raise IswtError(f"--workers {options.workers}: must be at least 1")
        if not (math.isfinite(options.timeout_s) and options.timeout_s > 0):  # the sandbox's CPU limit is an int
            raise IswtError(f"--timeout {options.timeout_s:g}: generated code runs only under a finite time limit > 0")
        self.options = options
        self.isolation = sandbox.sandbox_isolation()

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Run every item's program, `workers` at a time."""
        items = [_with_test_alias(item) for item in items]
        require_fields("code", items, "test", "entry_point")
        built = [build_job(item) for item in items]
        results = sandbox.run_split_many(
            [job for job, _ in built],
            workers=self.options.workers,
            timeout_s=self.options.timeout_s,
            memory_mb=self.options.memory_mb,
        )
        return [_code_result(r, how) for r, (_, how) in zip(results, built)]


def _code_result(result: sandbox.SandboxResult, how: str) -> RewardResult:
    """'passed' / 'failed: ...' / 'timeout after ...' / 'error: ...'."""
    if result.status == "passed":
        info = "passed"
    elif result.status == "timeout":
        info = result.detail if result.detail.startswith("timeout") else f"timeout: {result.detail}"
    else:
        info = f"{result.status}: {result.detail}"
    if how != "completion":
        info += f" ({how})"
    return RewardResult(1.0 if result.status == "passed" else 0.0, info)


@register_reward("code")
def _make_code(arg: str | None, options: RewardOptions) -> CodeReward:
    no_argument("code", arg)
    return CodeReward(options)
