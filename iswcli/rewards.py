"""Rewards: turn (prompt, response, task fields) into a score and a reason.

A reward is built from a spec string with :func:`make_reward` ('math',
'code', or NAME:ARG for rewards others register with :func:`register_reward`)
and scores a whole batch at once with ``score_batch``; results keep input
order. Every result carries ``info``, a short human-readable why.

- ``math``: math-verify extracts the final answer from the response (its
  LaTeX and expression extraction: the last ``\\boxed{...}`` or "answer is"
  phrase, else the last math or number), parses the task's ``answer`` the
  same way and compares the two. A few rewrites of our own run first, only
  for forms the library misreads (see :func:`normalize_math_text`). Reward
  1.0 or 0.0; ``math:graded`` adds partial credit for near misses.
  math-verify bounds its parsing and comparison time with SIGALRM, which
  works only in the main thread (elsewhere it raises, or runs unbounded if
  its timeouts are switched off, and sympy can then hang on inputs such as
  ``10^{10^{10}}``), so the math reward must be called from the main thread.
- ``code``: HumanEval format. The candidate's program (prompt + completion,
  or its fenced code) runs in the :mod:`iswcli.sandbox`; the task's test runs
  in a separate harness process that never runs candidate code and calls the
  entry point through a proxy that passes plain data only
  (:func:`iswcli.sandbox.run_split`), ``workers`` runs at a time. 1.0 only
  when the harness's ``check`` returned normally.
- ``rm:PATH``: a scalar reward model (sequence classification, one label)
  on prompt + response, rendered with the model's chat template when it has
  one; the reward is its logit.
- ``pairwise:PATH``: a causal LM judge asked whether response A or B is
  better; compares each response with a baseline response for the same
  prompt (``RewardOptions.baseline``: a sample_idx, or a samples/eval file
  with one response per prompt_id). Reward = logit(prefer response) -
  logit(prefer baseline), averaged over both presentation orders, so it is
  antisymmetric in (response, baseline) and 0 for the baseline itself.
- ``python:MODULE:FUNCTION``: ``FUNCTION(row, response)`` returning a float
  or ``(float, info)``; ``row`` holds prompt_id, sample_idx, prompt and the
  task fields. MODULE is a dotted module name or a path to a ``.py`` file.
  Dotted names are imported with the current working directory at the front
  of sys.path (as ``python -m`` does), so a module next to where iswt runs
  is found; PYTHONPATH works too. An exception in the function, or a
  non-number returned, becomes a NaN reward whose info says why, so the
  score stage reports it with the sample's key (or skips it).

Model-based rewards check their paths when built and load the model on
first use, so a bad spec fails before any heavy work.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import os
import re
import sys
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
    ('answer' for math; 'test' and 'entry_point' for HumanEval); key:
    (prompt_id, sample_idx); messages: the prompt as chat messages when it
    was given as a conversation.
    """

    prompt: str
    response: str
    fields: dict
    key: tuple = ()  # (prompt_id, sample_idx) where known
    messages: tuple = ()  # the prompt as chat messages; () means one user turn of `prompt`


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
    batch_size: int = 16  # sequences per forward pass (rm, pairwise)
    device: str = "auto"  # where reward models run: auto, cpu, cuda[:i]
    baseline: str | None = None  # pairwise: a sample_idx, or a samples/eval file
    samples: str | None = None  # pairwise: the samples artifact a sample_idx baseline comes from


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
#
# math-verify finds the answer (its LaTeX and expression extraction: the
# rightmost \boxed{} or "final answer is ..." phrase, else the last math or
# number) and compares it with the gold answer, which goes through the same
# parser. A few rules of our own run first, each rewriting the text (response
# and gold alike) into a form the library reads correctly, only where it
# reads it wrongly (math-verify 0.9):
#
# - the Unicode minus sign (U+2212, and the full-width U+FF0D): the library
#   does not see it, so "−5" was read as 5;
# - numbers in scientific notation (2.5e3, 3.2e-2) outside LaTeX: read as 2.5
#   or 3; rewritten as plain decimals;
# - plain-text mixed numbers ("2 1/2"): read as 2 * 1/2 = 1; rewritten as the
#   improper fraction 5/2 (LaTeX's 2\frac{1}{2} the library already reads);
# - an escaped dollar sign before a number outside math mode ("\$1,250"):
#   nothing was read; the sign is dropped;
# - LaTeX after "the answer is" / "Answer:" without $...$ delimiters ("The
#   answer is 3\sqrt{2}."): read as its leading number; put between dollars;
# - a full stop right after a number ("The answer is 10/3."): read as a
#   decimal point (10/3. is the float 3.333..., which does not verify against
#   10/3); dropped when whitespace or the end of the text follows.

_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\uff0d": "-"})
_SCIENTIFIC = re.compile(r"(?<![\w.\\^{])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,3})(?!\w|\.\d)")
_MIXED_NUMBER = re.compile(r"(?<![\w.,/\\{}^])(\d+)[ \t]+(\d+)/(\d+)(?!\w|\.\d|[/^])")
_ESCAPED_DOLLAR = re.compile(r"\\\$(?=[ \t]?[\d.])")
_FULL_STOP = re.compile(r"(?<=\d)\.(?=\s|$)")
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:|=)[\s:]*", re.IGNORECASE)
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")


def normalize_math_text(text: str) -> str:
    """`text` with the forms math-verify misreads rewritten (see above)."""
    text = text.translate(_MINUS_SIGNS)
    text = _SCIENTIFIC.sub(_decimal, text)
    text = _MIXED_NUMBER.sub(_improper, text)
    text = _ESCAPED_DOLLAR.sub("", text)
    text = _FULL_STOP.sub("", text)
    return _delimit_bare_latex_answer(text)


def _decimal(match: re.Match) -> str:
    from decimal import Decimal

    plain = format(Decimal(f"{match.group(1)}e{match.group(2)}"), "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def _improper(match: re.Match) -> str:
    whole, num, den = (int(g) for g in match.groups())
    if den == 0 or num >= den:
        return match.group(0)
    return f"{whole * den + num}/{den}"


def _delimit_bare_latex_answer(text: str) -> str:
    """Put $...$ around LaTeX that follows the last answer phrase on its line
    when the line has no math delimiters of its own."""
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return text
    start = phrases[-1].end()
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    rest = text[start:end]
    if "\\" not in rest or any(d in text[phrases[-1].start():end] for d in ("$", "\\(", "\\[")):
        return text
    answer = rest.strip().rstrip(".").strip()
    return f"{text[:start]}${answer}$.{text[end:]}" if answer else text


def _parse_math(text: str, timeout_s: int) -> list:
    """math-verify's parse with LaTeX and expression extraction; boxed answers
    rank with the "final answer" phrases, so the last one stated wins."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return parse(normalize_math_text(text), extraction_config=config,
                 parsing_timeout=timeout_s)


def _parse_gold(answer: str, timeout_s: int) -> list:
    """The gold answer through the same parser, read as a whole (boxed) first."""
    return _parse_math(f"\\boxed{{{answer}}}", timeout_s) or _parse_math(answer, timeout_s)


def _shown(parsed: list) -> str:
    """The text math-verify extracted (its fallback string), else the value."""
    return parsed[-1] if len(parsed) > 1 and isinstance(parsed[-1], str) else str(parsed[0])


def extract_answer(text: str, timeout_s: int = 5) -> tuple[str, str] | None:
    """The final answer in `text` as math-verify extracts it, and how ('math-verify'), or None.

    Call from the main thread (math-verify's timeouts use SIGALRM).
    """
    parsed = _parse_math(text, timeout_s)
    return (_shown(parsed), "math-verify") if parsed else None


def as_number(text: str) -> Fraction | None:
    """`text` as an exact number ('1,000', '-0.5', '1/2', '\\frac{1}{2}'), else None."""
    s = text.translate(_MINUS_SIGNS).strip().strip("$").strip().rstrip(".")
    s = s.replace("{,}", ",").replace("\\!", "").replace(" ", "")
    frac = _FRAC.match(s)
    if frac:
        s = f"{frac.group(1)}{frac.group(2)}/{frac.group(3)}"
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(/-?\d+)?", s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _value(parsed: list) -> Fraction | None:
    """The exact value of a parsed answer that is a plain number, else None."""
    import sympy

    expr = parsed[0] if parsed else None
    if isinstance(expr, (sympy.Integer, sympy.Rational)):
        return Fraction(int(expr.p), int(expr.q))
    if isinstance(expr, sympy.Float):
        return Fraction(str(expr))
    return as_number(_shown(parsed)) if parsed else None


def _quote(s: str, limit: int = 60) -> str:
    """s in double quotes, shortened for an info line."""
    s = " ".join(s.split())
    return '"' + (s if len(s) <= limit else s[:limit - 3] + "...") + '"'


class MathReward:
    """1.0 when math-verify finds the response's final answer equal to the task's `answer`.

    `math:graded` gives a wrong numeric answer partial credit,
    0.5 * exp(-|x - answer| / max(1, |answer|)): a dense signal for small
    models that are rarely exactly right, still below every correct answer.
    """

    name = "math"
    required_fields = ("answer",)

    def __init__(self, options: RewardOptions, graded: bool = False):
        self.verify_timeout_s = max(1, round(options.timeout_s))
        self.graded = graded

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Score every item in the calling (main) thread."""
        _require_fields("math", items, "answer")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("math reward: call score_batch from the main thread "
                               "(math-verify times out with SIGALRM)")
        return [self.score_one(item.response, str(item.fields["answer"]))
                for item in items]

    def score_one(self, response: str, answer: str) -> RewardResult:
        """Parse both sides, verify, explain."""
        from math_verify import verify

        t = self.verify_timeout_s
        pred = _parse_math(response, t)
        if not pred:
            return RewardResult(0.0, "nothing extracted (no \\boxed{}, answer phrase, "
                                     f"math or number); answer {_quote(answer)}")
        gold = _parse_gold(answer, t)
        if not gold:
            return RewardResult(0.0, f"extracted {_quote(_shown(pred))}; the answer "
                                     f"{_quote(answer)} could not be parsed")
        ok = verify(gold, pred, timeout_seconds=t)
        verdict = "matches" if ok else "does not match"
        why = f"extracted {_quote(_shown(pred))}; {verdict} answer {_quote(answer)} (math-verify)"
        if ok or not self.graded:
            return RewardResult(float(ok), why)
        credit = _credit(_value(pred), _value(gold))
        return RewardResult(credit, f"{why}; partial credit {credit:.3g}")


def _credit(x: Fraction | None, a: Fraction | None) -> float:
    if x is None or a is None:
        return 0.0
    try:
        return 0.5 * math.exp(-abs(float(x) - float(a)) / max(1.0, abs(float(a))))
    except OverflowError:
        return 0.0


def partial_credit(extracted: str, answer: str) -> float:
    """0.5 * exp(-relative distance) for a wrong number; 0 when either side is not a number."""
    return _credit(as_number(extracted), as_number(answer))


@register_reward("math")
def _make_math(arg: str | None, options: RewardOptions) -> MathReward:
    if arg not in (None, "graded"):
        raise IswtError(f"--reward math:{arg}: the only variant is math:graded (partial credit for near misses)")
    return MathReward(options, graded=arg == "graded")


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
    return sandbox.SplitJob(candidate=body, entry_point=entry, test=test,
                            trusted=trusted), how


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
        self.options = options
        self.isolation = sandbox.sandbox_isolation()

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Run every item's program, `workers` at a time."""
        items = [_with_test_alias(item) for item in items]
        _require_fields("code", items, "test", "entry_point")
        built = [build_job(item) for item in items]
        results = sandbox.run_split_many(
            [job for job, _ in built], workers=self.options.workers,
            timeout_s=self.options.timeout_s, memory_mb=self.options.memory_mb)
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


# ------------------------------------------------- helpers for the rewards below


def describe_key(key: tuple) -> str:
    """How messages name a sample: "sample (prompt_id='p1', sample_idx=3)"."""
    if len(key) == 2:
        return f"sample (prompt_id={key[0]!r}, sample_idx={key[1]})"
    return "sample (key unknown)"


def prompt_messages(item: RewardItem) -> list[dict]:
    """The prompt as chat messages: the item's own, else one user turn."""
    if item.messages:
        return [dict(m) for m in item.messages]
    return [{"role": "user", "content": item.prompt}]


def _chunks(seq: list, size: int) -> list[list]:
    return [seq[i:i + size] for i in range(0, len(seq), max(1, size))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _reward_model(reward: str, spec: str | None):
    """(ModelRef, local path) for rm:SPEC / pairwise:SPEC; SPEC is a model
    directory, an alias such as smollm2-135m, or a hub id."""
    from iswcli import models

    flag = f"--reward {reward}:{spec or ''}"
    if not spec:
        raise IswtError(f"{flag}: name the model, e.g. {reward}:./my-model")
    if spec.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(spec)):
        raise IswtError(f"{flag}: no such model directory")
    try:
        ref = models.resolve_model(spec)
        return ref, models.local_path(ref)
    except IswtError as exc:
        rule = str(exc).split(": ", 1)[-1]  # drop resolve_model's own '--model X' prefix
        raise IswtError(f"{flag}: {rule}") from None


def _model_identity(ref, path: str) -> dict:
    from iswcli import models

    return models.model_identity(ref, path, None)


# ---------------------------------------------------------- reward model (rm:PATH)


def render_conversation(tokenizer, item: RewardItem) -> list[int]:
    """Token ids of prompt + response: the chat template when the tokenizer
    has one (it supplies the special tokens), else the plain texts joined."""
    messages = prompt_messages(item) + [{"role": "assistant", "content": item.response}]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"]


def classify(model, sequences: list[list[int]], pad_id: int) -> list[float]:
    """Each sequence's first-label logit, one right-padded forward pass.

    Sequence classifiers pool the rightmost token that is not the configured
    pad id; padding with an id that ends no sequence keeps that token the
    last real one even when a sequence ends with the tokenizer's pad token.
    """
    import torch

    ends = {seq[-1] for seq in sequences if seq}
    pad = pad_id if pad_id is not None and pad_id not in ends else \
        min(set(range(len(ends) + 1)) - ends)
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    device = next(model.parameters()).device
    model.config.get_text_config().pad_token_id = pad
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return logits[:, 0].double().tolist()


class RewardModelReward:
    """The logit of a one-label sequence classifier on prompt + response."""

    name = "rm"
    required_fields = ()

    def __init__(self, spec: str | None, options: RewardOptions):
        self.ref, self.path = _reward_model("rm", spec)
        self.options = options
        self._check_one_label(spec)
        self._loaded = None

    def _check_one_label(self, spec: str) -> None:
        from transformers import AutoConfig

        try:
            labels = AutoConfig.from_pretrained(self.path).num_labels
        except (OSError, ValueError) as exc:
            raise IswtError(f"--reward rm:{spec}: cannot read its config "
                            f"({_first_line(exc)})") from None
        if labels != 1:
            raise IswtError(f"--reward rm:{spec}: has {labels} labels; a scalar reward "
                            "model has num_labels=1")

    def provenance(self) -> dict:
        return {"reward_model": _model_identity(self.ref, self.path)}

    def _load(self):
        if self._loaded is None:
            from transformers import AutoModelForSequenceClassification

            from iswcli import models

            models.quiet_transformers()
            tokenizer = models.load_tokenizer(self.path)
            model = AutoModelForSequenceClassification.from_pretrained(self.path)
            device = models.pick_device(self.options.device)
            self._loaded = tokenizer, model.to(device).eval()
        return self._loaded

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Render, tokenize and classify `batch_size` sequences at a time."""
        tokenizer, model = self._load()
        sequences = [render_conversation(tokenizer, item) for item in items]
        scores: list[float] = []
        for chunk in _chunks(sequences, self.options.batch_size):
            scores += classify(model, chunk, tokenizer.pad_token_id)
        how = "chat template" if tokenizer.chat_template else "plain text"
        return [RewardResult(score, f"reward model score ({how}, {len(seq)} tokens)")
                for score, seq in zip(scores, sequences)]


@register_reward("rm")
def _make_rm(arg: str | None, options: RewardOptions) -> RewardModelReward:
    return RewardModelReward(arg, options)


# ------------------------------------------------------ pairwise judge (pairwise:PATH)

JUDGE_QUESTION = (
    "Compare two responses to the same request and decide which is better: "
    "more correct, more helpful and clearer.\n\n"
    "Request:\n{request}\n\n"
    "Response A:\n{a}\n\n"
    "Response B:\n{b}\n\n"
    "Which response is better? Answer with a single letter: A or B."
)


def parse_baseline(value: str | None) -> int | str:
    """--baseline: a sample_idx (whole number) or an existing file/dir/glob."""
    if value is None:
        raise IswtError("--reward pairwise needs --baseline: a sample_idx (that sample "
                        "of the same prompt) or a samples/eval file with one response "
                        "per prompt_id")
    if re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    from iswcli import artifacts

    try:
        artifacts.resolve_files(value)
    except IswtError as exc:
        raise IswtError(f"--baseline {value}: neither a sample_idx (a whole number) nor a "
                        f"samples/eval file ({exc})") from None
    return value


def _read_responses(path: str, flag: str):
    """prompt_id, sample_idx, response of a samples or eval artifact."""
    import pyarrow as pa

    from iswcli import artifacts

    files = artifacts.resolve_files(path)
    kind = artifacts.read_metadata(files[0])[1] or "samples"
    if kind not in ("samples", "eval"):
        raise IswtError(f"{flag}: {files[0]} is a {kind} artifact; expected samples or eval")
    full = artifacts.SPECS[kind]
    fields = [full.schema.field(n) for n in ("prompt_id", "sample_idx", "response")]
    spec = artifacts.ArtifactSpec(kind, full.key, pa.schema(fields))
    return artifacts.read_artifact(path, spec, columns=["response"])


def load_baselines(baseline: int | str, samples: str | None) -> tuple[dict[str, str], dict]:
    """prompt_id -> baseline response, and what provenance records about it."""
    if isinstance(baseline, int):
        if samples is None:
            raise IswtError(f"--baseline {baseline}: a sample_idx baseline needs the "
                            "samples artifact (RewardOptions.samples)")
        rows = _read_responses(samples, f"--baseline {baseline}").table.to_pylist()
        chosen = {r["prompt_id"]: r["response"] for r in rows if r["sample_idx"] == baseline}
        return chosen, {"sample_idx": baseline}
    art = _read_responses(baseline, f"--baseline {baseline}")
    chosen: dict[str, str] = {}
    for row in art.table.to_pylist():
        if row["prompt_id"] in chosen:
            raise IswtError(f"--baseline {baseline}: prompt_id {row['prompt_id']!r} has "
                            "more than one response; the file needs one per prompt_id "
                            "(or give --baseline SAMPLE_IDX)")
        chosen[row["prompt_id"]] = row["response"]
    return chosen, {"file": art.ref()}


def _request_text(item: RewardItem) -> str:
    messages = prompt_messages(item)
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


class PairwiseReward:
    """A causal LM judge's preference for the response over a baseline.

    For each order (response as A, then as B) the judge's next-token logits
    after the question give logit(letter of response) - logit(letter of
    baseline); the reward is the mean of the two, which cancels a constant
    positional bias.
    """

    name = "pairwise"
    required_fields = ()

    def __init__(self, spec: str | None, options: RewardOptions):
        self.ref, self.path = _reward_model("pairwise", spec)
        self.options = options
        self.baseline = parse_baseline(options.baseline)
        self.baselines, self.baseline_record = load_baselines(self.baseline, options.samples)
        self._loaded = None

    def provenance(self) -> dict:
        return {"judge_model": _model_identity(self.ref, self.path),
                "baseline": self.baseline_record}

    def check_items(self, items: list[RewardItem]) -> None:
        """Every item needs its key and a baseline for its prompt."""
        for item in items:
            if len(item.key) != 2:
                raise IswtError("pairwise reward: items need their key (prompt_id, sample_idx)")
            if item.key[0] not in self.baselines:
                raise IswtError(f"--baseline {self.baseline}: no baseline response for "
                                f"prompt_id {item.key[0]!r}")

    def _load(self):
        if self._loaded is None:
            from iswcli import models

            tokenizer = models.load_tokenizer(self.path)
            model = models.load_model(self.path, None, models.pick_device(self.options.device))
            self._loaded = tokenizer, model, self._letter_ids(tokenizer)
        return self._loaded

    def _letter_ids(self, tokenizer) -> tuple[int, int]:
        """Token ids of the answers: 'A'/'B' after a chat template's assistant
        header, ' A'/' B' after a plain 'Answer:'."""
        letters = ("A", "B") if tokenizer.chat_template else (" A", " B")
        ids = [tokenizer.encode(x, add_special_tokens=False) for x in letters]
        if any(len(i) != 1 for i in ids):
            raise IswtError(f"--reward pairwise:{self.ref.spec}: the judge's tokenizer "
                            "does not encode the answers A and B as single tokens")
        return ids[0][0], ids[1][0]

    def _judge_prompt(self, tokenizer, item: RewardItem, a: str, b: str) -> list[int]:
        question = JUDGE_QUESTION.format(request=_request_text(item), a=a, b=b)
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                 add_generation_prompt=True, tokenize=False)
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        return tokenizer(question + "\nAnswer:")["input_ids"]

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Two judge prompts per item, `batch_size` prompts per forward pass."""
        self.check_items(items)
        tokenizer, model, letters = self._load()
        prompts = []
        for item in items:
            base = self.baselines[item.key[0]]
            prompts.append(self._judge_prompt(tokenizer, item, item.response, base))
            prompts.append(self._judge_prompt(tokenizer, item, base, item.response))
        margins: list[float] = []
        for chunk in _chunks(prompts, self.options.batch_size):
            margins += letter_margins(model, chunk, tokenizer.pad_token_id, letters)
        results = []
        for i in range(len(items)):
            as_a, as_b = margins[2 * i], -margins[2 * i + 1]
            results.append(RewardResult(
                (as_a + as_b) / 2,
                f"judge prefers response over baseline by {as_a:+.3f} (response as A), "
                f"{as_b:+.3f} (response as B)"))
        return results


def letter_margins(model, prompts: list[list[int]], pad_id: int,
                   letters: tuple[int, int]) -> list[float]:
    """logit(A) - logit(B) of the next token after each prompt (left padded)."""
    import torch

    from iswcli.logprobs import pad_left, positions

    device = next(model.parameters()).device
    ids, mask = pad_left(prompts, pad_id if pad_id is not None else 0, device)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                       logits_to_keep=1).logits[:, -1].double()
    return (logits[:, letters[0]] - logits[:, letters[1]]).tolist()


@register_reward("pairwise")
def _make_pairwise(arg: str | None, options: RewardOptions) -> PairwiseReward:
    return PairwiseReward(arg, options)


# ------------------------------------------------ user function (python:MODULE:FUNCTION)


def import_user_module(name: str, label: str):
    """A module by dotted name (cwd first on sys.path) or by .py file path."""
    try:
        if name.endswith(".py"):
            if not os.path.isfile(name):
                raise IswtError(f"--reward {label}: no such file {name}")
            spec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(name))[0], name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        return importlib.import_module(name)
    except IswtError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise IswtError(f"--reward {label}: cannot import {name!r} "
                        f"({type(exc).__name__}: {_first_line(exc)})") from None


def user_row(item: RewardItem) -> dict:
    """What the user function gets as its first argument."""
    prompt = [dict(m) for m in item.messages] if item.messages else item.prompt
    row = dict(item.fields)
    if len(item.key) == 2:
        row.update(prompt_id=item.key[0], sample_idx=item.key[1])
    row["prompt"] = prompt
    return row


class PythonReward:
    """A user function (row, response) -> float | (float, info)."""

    name = "python"
    required_fields = ()

    def __init__(self, arg: str | None):
        self.label = f"python:{arg or ''}"
        module_name, _, function_name = (arg or "").rpartition(":")
        if not module_name or not function_name:
            raise IswtError(f"--reward {self.label}: expected python:MODULE:FUNCTION")
        module = import_user_module(module_name, self.label)
        self.function = getattr(module, function_name, None)
        if not callable(self.function):
            raise IswtError(f"--reward {self.label}: module {module_name!r} has no "
                            f"function {function_name!r}")
        self.file = getattr(module, "__file__", None)

    def provenance(self) -> dict:
        record = {"function": self.label, "file": self.file}
        if self.file and os.path.isfile(self.file):
            from iswcli.artifacts import file_sha256

            record["sha256"] = file_sha256(self.file)
        return record

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        return [self.score_one(item) for item in items]

    def score_one(self, item: RewardItem) -> RewardResult:
        """The function's verdict; an exception or a non-number becomes NaN with why."""
        try:
            out = self.function(user_row(item), item.response)
        except Exception as exc:  # noqa: BLE001 - reported per sample by the caller
            return RewardResult(math.nan, f"error: {self.label} raised "
                                          f"{type(exc).__name__}: {_first_line(exc)}")
        value, info = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        if not isinstance(value, numbers.Real):
            return RewardResult(math.nan, f"error: {self.label} returned {_quote(repr(out))}, "
                                          "expected a float or (float, info)")
        return RewardResult(float(value), self.label if info is None else str(info))


@register_reward("python")
def _make_python(arg: str | None, options: RewardOptions) -> PythonReward:
    return PythonReward(arg)


# set / set:DEFAULT: exact answers on token ids (iswcli.set_reward, for --task sets)
from iswcli.set_reward import make_set_reward  # noqa: E402

register_reward("set")(make_set_reward)
