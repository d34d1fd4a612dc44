"""Rewards: turn (prompt, response, task fields) into a score and a reason.

A reward is built from a spec string with :func:`make_reward` ('math',
'code', or NAME:ARG for rewards others register with :func:`register_reward`)
and scores a whole batch at once with ``score_batch``; results keep input
order. Every result carries ``info``, a short human-readable why.

- ``math``: extracts the final answer from the response (the last
  ``\\boxed{...}``, else the last "answer is X" / "Answer: X" phrase, else the
  last number) and compares it with the task's ``answer`` field: an exact
  string/number match first, then math-verify. Reward 1.0 or 0.0.
  math-verify bounds its parsing and comparison time with SIGALRM, which
  works only in the main thread (elsewhere it raises, or runs unbounded if
  its timeouts are switched off, and sympy can then hang on inputs such as
  ``10^{10^{10}}``), so the math reward must be called from the main thread.
- ``code``: HumanEval format. Builds prompt + completion + test +
  ``check(entry_point)``, runs it in :mod:`iswcli.sandbox` with ``workers``
  programs at a time, and gives 1.0 only when every assertion ran and passed.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Protocol

from iswcli import sandbox
from iswcli.errors import IswtError


@dataclass(frozen=True)
class RewardItem:
    """One sample to score.

    prompt: the original prompt text (for HumanEval, the code prompt);
    response: the model's response; fields: the prompt's task fields
    ('answer' for math; 'test' and 'entry_point' for HumanEval).
    """

    prompt: str
    response: str
    fields: dict


@dataclass(frozen=True)
class RewardResult:
    """A reward and the short reason for it."""

    reward: float
    info: str


@dataclass(frozen=True)
class RewardOptions:
    """Options shared by all rewards (the score stage's flags)."""

    workers: int = 4
    timeout_s: float = 10.0
    memory_mb: int = 1024


class Reward(Protocol):
    """Scores a batch of items; results keep input order."""

    name: str

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]: ...


RewardFactory = Callable[[str | None, RewardOptions], Reward]
REWARDS: dict[str, RewardFactory] = {}


def register_reward(name: str) -> Callable[[RewardFactory], RewardFactory]:
    """Decorator: register `factory(arg, options) -> Reward` under `name`."""

    def add(factory: RewardFactory) -> RewardFactory:
        REWARDS[name] = factory
        return factory

    return add


def make_reward(spec: str, options: RewardOptions | None = None) -> Reward:
    """Build the reward named by `spec`: 'NAME' or 'NAME:ARG' (e.g. 'rm:PATH')."""
    name, colon, arg = spec.partition(":")
    factory = REWARDS.get(name)
    if factory is None:
        known = ", ".join(sorted(REWARDS))
        raise IswtError(f"--reward {spec!r}: unknown reward {name!r}; known: {known}")
    return factory(arg if colon else None, options or RewardOptions())


def _no_argument(name: str, arg: str | None) -> None:
    """Reject 'math:x' and the like: these rewards take no argument."""
    if arg is not None:
        raise IswtError(f"--reward {name}:{arg}: the {name!r} reward takes no argument")


def _require_fields(reward: str, items: list[RewardItem], *keys: str) -> None:
    """Fail before any work if an item lacks a task field the reward needs."""
    for i, item in enumerate(items):
        for key in keys:
            if item.fields.get(key) is None:
                raise IswtError(f"{reward} reward: task field {key!r} is missing "
                                f"(item {i} of the batch); the prompts need a "
                                f"{key!r} column")


# ---------------------------------------------------------------- math reward

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:|=)[\s:]*", re.IGNORECASE)
_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?(?![\d])")
_INLINE_MATH = re.compile(r"^\$\$?(.+?)\$\$?|^\\\((.+?)\\\)|^\\\[(.+?)\\\]", re.DOTALL)
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")


def extract_answer(text: str) -> tuple[str, str] | None:
    """The final answer in `text` and the rule that found it, or None.

    Rules, first that applies: the last balanced \\boxed{...} ('boxed'); the
    last "answer is X" / "Answer: X" phrase ('answer phrase'); the last
    number ('last number').
    """
    boxed = _last_boxed(text)
    if boxed:
        return boxed, "boxed"
    phrase = _last_answer_phrase(text)
    if phrase:
        return phrase, "answer phrase"
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1], "last number"
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} with balanced braces, if any."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                if text[start:i].strip():
                    found = text[start:i].strip()
                break
    return found


def _last_answer_phrase(text: str) -> str | None:
    """What follows the last "answer is" / "Answer:" phrase, if usable."""
    for match in reversed(list(_ANSWER_PHRASE.finditer(text))):
        rest = text[match.end():].split("\n", 1)[0].strip().strip("*").strip()
        math = _INLINE_MATH.match(rest)
        if math:
            return next(g for g in math.groups() if g).strip()
        number = _NUMBER.match(rest)
        if number:
            return number.group()
        if rest.startswith("\\"):
            return re.split(r"[.;,]?\s", rest + " ", maxsplit=1)[0].rstrip(".")
        number = _NUMBER.search(rest)
        if number:
            return number.group()
    return None


def as_number(text: str) -> Fraction | None:
    """`text` as an exact number ('1,000', '-0.5', '1/2', '\\frac{1}{2}'), else None."""
    s = text.strip().strip("$").strip().rstrip(".")
    s = s.replace("{,}", ",").replace("\\!", "").replace(" ", "")
    frac = _FRAC.match(s)
    if frac:
        s = f"{frac.group(1)}{frac.group(2)}/{frac.group(3)}"
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if not re.fullmatch(r"-?\d+(\.\d+)?(/-?\d+)?", s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(extracted: str, answer: str, timeout_s: int) -> tuple[bool, str]:
    """Whether `extracted` equals `answer`, and by which test."""
    if extracted.strip() == answer.strip():
        return True, "exact string"
    a, b = as_number(extracted), as_number(answer)
    if a is not None and a == b:
        return True, "exact number"
    return _math_verify(extracted, answer, timeout_s), "math-verify"


def _math_verify(extracted: str, answer: str, timeout_s: int) -> bool:
    """math-verify's verdict; each side is parsed as if boxed (main thread only)."""
    from math_verify import parse, verify

    def parsed(s: str):
        return parse(f"\\boxed{{{s}}}", parsing_timeout=timeout_s) or \
            parse(s, parsing_timeout=timeout_s)

    gold, pred = parsed(answer), parsed(extracted)
    return bool(gold and pred and verify(gold, pred, timeout_seconds=timeout_s))


def _quote(s: str, limit: int = 60) -> str:
    """s in double quotes, shortened for an info line."""
    s = " ".join(s.split())
    return '"' + (s if len(s) <= limit else s[:limit - 3] + "...") + '"'


class MathReward:
    """1.0 when the response's final answer equals the task's `answer`."""

    name = "math"
    required_fields = ("answer",)

    def __init__(self, options: RewardOptions):
        self.verify_timeout_s = max(1, round(options.timeout_s))

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Score every item in the calling (main) thread."""
        _require_fields("math", items, "answer")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("math reward: call score_batch from the main thread "
                               "(math-verify times out with SIGALRM)")
        return [self.score_one(item.response, str(item.fields["answer"]))
                for item in items]

    def score_one(self, response: str, answer: str) -> RewardResult:
        """Extract, compare, explain."""
        found = extract_answer(response)
        if found is None:
            return RewardResult(0.0, 'nothing extracted (no \\boxed{}, no "answer is" '
                                     f"phrase, no number); answer {_quote(answer)}")
        extracted, rule = found
        ok, how = answers_match(extracted, answer, self.verify_timeout_s)
        verdict = "matches" if ok else "does not match"
        return RewardResult(float(ok), f"extracted {_quote(extracted)} ({rule}); "
                                       f"{verdict} answer {_quote(answer)} ({how})")


@register_reward("math")
def _make_math(arg: str | None, options: RewardOptions) -> MathReward:
    _no_argument("math", arg)
    return MathReward(options)


# ---------------------------------------------------------------- code reward

_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)(?:```|\Z)",
                    re.DOTALL | re.IGNORECASE)


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


def build_program(item: RewardItem, marker: str) -> tuple[str, str]:
    """(program, how the response was used) for a HumanEval item.

    With a code fence that defines the entry point, the fence replaces the
    completion: it runs after the prompt's own definitions (imports, helper
    functions), which it overrides, when the prompt is valid Python on its
    own, else alone. Otherwise the fence, or the whole response, is the
    completion of the prompt. The program ends by printing `marker`, which it
    reaches only if check() returned: a response that exits early (sys.exit(0)
    before the tests) does not pass.
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
    program = f"{body}\n{test}\ncheck({entry})\nprint({marker!r})\n"
    return program, how


def _with_test_alias(item: RewardItem) -> RewardItem:
    """The item with 'tests' copied to 'test' when only the alias is given."""
    if item.fields.get("test") is None and item.fields.get("tests") is not None:
        return RewardItem(item.prompt, item.response,
                          {**item.fields, "test": item.fields["tests"]})
    return item


def _compiles(source: str) -> bool:
    """Whether `source` is valid Python by itself."""
    try:
        compile(source, "<prompt>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


class CodeReward:
    """1.0 when the HumanEval tests pass in the sandbox."""

    name = "code"
    required_fields = ("test", "entry_point")

    def __init__(self, options: RewardOptions):
        if options.workers < 1:
            raise IswtError(f"--workers {options.workers}: must be at least 1")
        self.options = options
        self.isolation = sandbox.sandbox_isolation()

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Run every item's program, `workers` at a time."""
        items = [_with_test_alias(item) for item in items]
        _require_fields("code", items, "test", "entry_point")
        marker = f"iswt-tests-finished-{secrets.token_hex(16)}"
        built = [build_program(item, marker) for item in items]
        results = sandbox.run_many(
            [program for program, _ in built], workers=self.options.workers,
            timeout_s=self.options.timeout_s, memory_mb=self.options.memory_mb,
            success_marker=marker)
        return [_code_result(r, how) for r, (_, how) in zip(results, built)]


def _code_result(result: sandbox.SandboxResult, how: str) -> RewardResult:
    """'passed' / 'failed: ...' / 'timeout after ...' / 'error: ...'."""
    if result.status == "passed":
        info = "passed"
    elif result.status == "timeout":
        info = result.detail if result.detail.startswith("timeout") \
            else f"timeout: {result.detail}"
    else:
        info = f"{result.status}: {result.detail}"
    if how != "completion":
        info += f" ({how})"
    return RewardResult(1.0 if result.status == "passed" else 0.0, info)


@register_reward("code")
def _make_code(arg: str | None, options: RewardOptions) -> CodeReward:
    _no_argument("code", arg)
    return CodeReward(options)
